"""Reconstruction losses and metrics, per example (contract units).

Every loss is summed over the dimensions of one example; callers average over
examples. `bce` is in nats per example, `sse` is the sum of squared errors per
example (Hinton & Salakhutdinov 2006's unit), `mse` the mean per element.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aelab.errors import choose


def _sum_per_example(x: jax.Array) -> jax.Array:
    """Sum over each example's dimensions, as a matrix-vector product with ones.

    Callers average these sums over the batch; XLA:CPU would merge a plain `.sum(axis=1)` and
    that mean into one badly split reduction of the whole batch (experiments/speed/README.md).
    HIGHEST precision keeps GPU/TPU from summing in TF32/bfloat16; accumulation is float32,
    as `jnp.sum` does for low-precision input.
    """
    flat = x.reshape(x.shape[0], -1)
    ones = jnp.ones(flat.shape[1], flat.dtype)
    return jnp.dot(flat, ones, precision=jax.lax.Precision.HIGHEST,
                   preferred_element_type=jnp.float32).astype(x.dtype)


@jax.custom_jvp
def softplus_series(z: jax.Array) -> jax.Array:
    """log(1 + e^z) without a log, to float32 accuracy: what the compile policy uses on CPU,
    whose log expansion is slow (experiments/speed/README.md).

    max(z, 0) + log(1 + e) with e = e^-|z|, where log(1 + e) = 2 atanh(s), s = e / (2 + e) in
    (0, 1/3], is summed as its odd series to s^13 (the rest is about 1e-8), computed in at
    least float32. One reciprocal, 1 / ((1 + e)(2 + e)), gives both s and the sigmoid. Within
    5 float32 ulps of log(1 + e^z) for every z above -80. The derivative is the exact
    sigmoid(z) (1/2 at z = 0, where the max and the |.| would give 0).
    """
    return _softplus_and_sigmoid(z)[0]


def _softplus_and_sigmoid(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    z = jnp.asarray(z)
    wide = z.astype(jnp.promote_types(z.dtype, jnp.float32))  # bfloat16's 1 + e would lose e
    e = jnp.exp(-jnp.abs(wide))
    reciprocal = 1 / ((1 + e) * (2 + e))
    s = e * (1 + e) * reciprocal  # e / (2 + e)
    s2 = s * s
    series = 1 / 13  # atanh(s) / s = 1 + s^2/3 + s^4/5 + ...
    for coefficient in (1 / 11, 1 / 9, 1 / 7, 1 / 5, 1 / 3, 1):
        series = series * s2 + coefficient
    value = jnp.maximum(wide, 0) + 2 * s * series
    sigmoid = jnp.where(wide >= 0, 1, e) * (2 + e) * reciprocal  # (1 or e) / (1 + e)
    return value.astype(z.dtype), sigmoid.astype(z.dtype)


@softplus_series.defjvp
def _softplus_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    value, sigmoid = _softplus_and_sigmoid(z)
    return value, sigmoid * dz


Softplus = Callable[[jax.Array], jax.Array]


def bce_with_logits(logits: jax.Array, target: jax.Array, softplus: Softplus = softplus_series) -> jax.Array:
    """Bernoulli negative log-likelihood of `target` in [0, 1], nats per example, written as
    softplus(z) - x z: one softplus per pixel, where optax's form takes two log-sigmoids."""
    return _sum_per_example(softplus(logits) - target * logits)


def sse(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Sum of squared errors per example."""
    return _sum_per_example(jnp.square(prediction - target))


def psnr(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Peak signal-to-noise ratio per example in dB, for pixels in [0, 1]."""
    return psnr_of_mse(jnp.mean(jnp.square(prediction - target).reshape(target.shape[0], -1), axis=1))


def psnr_of_mse(mse: jax.Array) -> jax.Array:
    """PSNR in dB of per-example mean squared errors of pixels in [0, 1]."""
    return 10.0 * jnp.log10(1.0 / jnp.maximum(mse, 1e-10))


def l1(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """Sum of absolute errors per example."""
    return _sum_per_example(jnp.abs(prediction - target))


def _identity(x):
    return x


class ReconLoss(NamedTuple):
    """A loss on the decoder's raw output, the link that maps that output to pixels, and the
    decoder's output channels for an image of C channels (C, except for a mixture's parameters)."""

    per_example: Callable[[jax.Array, jax.Array], jax.Array]
    link: Callable[[jax.Array], jax.Array]
    name: str
    out_channels: Callable[[int], int] = _identity


RECON_LOSSES = ("bce", "mse", "l1", "dlogistic")


def recon_loss(name: str, softplus: Softplus = softplus_series, mixtures: int = 5) -> ReconLoss:
    """The reconstruction loss `name` (`softplus`: the Bernoulli loss's, from the compile policy;
    `mixtures`: the discretized logistic mixture's components)."""
    choose("loss", name, RECON_LOSSES)
    if name == "bce":
        return ReconLoss(functools.partial(bce_with_logits, softplus=softplus), jax.nn.sigmoid, "bce")
    if name == "dlogistic":
        return ReconLoss(functools.partial(discretized_logistic_nll, mixtures=mixtures),
                         functools.partial(discretized_logistic_mean, mixtures=mixtures), name,
                         lambda channels: mixtures * (1 + 2 * channels))
    return ReconLoss(sse if name == "mse" else l1, _identity, name)


# --- 8-bit pixels: a discretized mixture of logistics (Salimans et al. 2017, PixelCNN++) ---------

LEVELS = 256  # an 8-bit pixel's values, k / 255 in [0, 1]


def _mixture_parameters(raw: jax.Array, mixtures: int):
    """(log mixture weights (..., K), means (..., K, C) in the [-1, 1] scale, log scales (..., K, C))
    from raw decoder output (..., K * (1 + 2C)): K logits, then K*C means, then K*C log scales."""
    channels = (raw.shape[-1] // mixtures - 1) // 2
    logits, means, log_scales = jnp.split(raw, [mixtures, mixtures * (1 + channels)], axis=-1)
    shape = (*raw.shape[:-1], mixtures, channels)
    return (jax.nn.log_softmax(logits, axis=-1), means.reshape(shape),
            jnp.maximum(log_scales.reshape(shape), -7.0))  # scales below e^-7 ~ 1/1100 add nothing at 8 bits


def discretized_logistic_nll(raw: jax.Array, x: jax.Array, mixtures: int) -> jax.Array:
    """-log P(x) per example, nats, of 8-bit pixels x (B, H, W, C) in [0, 1] under a per-pixel
    mixture of `mixtures` logistics shared by the channels (one mixture weight per pixel; given
    z the channels are independent within a component). Each value k/255 gets the logistic's
    mass on its bin [x - 1/255, x + 1/255] of the [-1, 1] scale, the edge bins the tails
    (Salimans et al. 2017, eq. 2): the probabilities of the 256 values sum to 1."""
    log_weights, means, log_scales = _mixture_parameters(raw, mixtures)
    centered = (2.0 * x - 1.0)[..., None, :] - means
    inv_scale = jnp.exp(-log_scales)
    upper, lower = inv_scale * (centered + 1.0 / (LEVELS - 1)), inv_scale * (centered - 1.0 / (LEVELS - 1))
    log_cdf_upper = upper - jax.nn.softplus(upper)  # log sigmoid: the first bin takes the lower tail
    log_survival_lower = -jax.nn.softplus(lower)  # log (1 - sigmoid): the last bin the upper tail
    mass = jax.nn.sigmoid(upper) - jax.nn.sigmoid(lower)
    middle = inv_scale * centered  # where the bin's mass underflows: its density times the width
    log_density_mass = middle - log_scales - 2.0 * jax.nn.softplus(middle) - jnp.log((LEVELS - 1) / 2.0)
    log_mass = jnp.where(mass > 1e-5, jnp.log(jnp.maximum(mass, 1e-12)), log_density_mass)
    value = (2.0 * x - 1.0)[..., None, :]
    log_p = jnp.where(value < -0.999, log_cdf_upper, jnp.where(value > 0.999, log_survival_lower, log_mass))
    per_pixel = jax.scipy.special.logsumexp(log_weights + log_p.sum(axis=-1), axis=-1)  # (B, H, W)
    return -_sum_per_example(per_pixel)


def discretized_logistic_mean(raw: jax.Array, mixtures: int) -> jax.Array:
    """The mixture's mean pixel (B, H, W, C) in [0, 1]: what `decode` shows."""
    log_weights, means, _ = _mixture_parameters(raw, mixtures)
    mean = jnp.sum(jnp.exp(log_weights)[..., None] * means, axis=-2)
    return jnp.clip((mean + 1.0) / 2.0, 0.0, 1.0)


def bits_per_dim(nats: jax.Array | float, dims: int, continuous: bool = False) -> jax.Array | float:
    """Nats per example as bits per dimension; `continuous`: a density on [0, 1] of 8-bit data,
    whose bins are 1/256 wide, so each dimension adds log2(256) = 8 bits."""
    return nats / (dims * math.log(2.0)) + (8.0 if continuous else 0.0)


def recon_metrics(raw_output: jax.Array, target: jax.Array, loss: ReconLoss) -> dict[str, jax.Array]:
    """Per-example metrics of a reconstruction: `recon_sse`, `mse`, `psnr`, `l1` and (for bce) `bce`."""
    prediction = loss.link(raw_output)
    squared = sse(prediction, target)
    metrics = {
        "recon_sse": squared,
        "mse": squared / (target.size // target.shape[0]),
        "psnr": psnr(prediction, target),
        "l1": l1(prediction, target),
    }
    if loss.name == "bce":
        metrics["bce"] = loss.per_example(raw_output, target)
    return metrics


# --- Gaussian latent variables (nats) ------------------------------------------

# log(2 pi) rounded to float32, as the float32 math uses it; numpy, not jax: computing with jax at
# import would start the backend before a multi-process run can initialize jax.distributed.
LOG_2PI = float(np.float32(math.log(2 * math.pi)))


def gaussian_kl(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) per latent dimension, shape of `mean`."""
    return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


def log_normal(z: jax.Array, mean: jax.Array | float = 0.0, logvar: jax.Array | float = 0.0) -> jax.Array:
    """log N(z; mean, exp(logvar)) summed over the last axis."""
    return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(z - mean) / jnp.exp(logvar), axis=-1)


def log_normal_per_dim(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """log N(z; mean, exp(logvar)) per dimension (no sum)."""
    return -0.5 * (LOG_2PI + logvar + jnp.square(z - mean) / jnp.exp(logvar))


def total_correlation_terms(z: jax.Array, mean: jax.Array, logvar: jax.Array,
                            dataset_size: int) -> dict[str, jax.Array]:
    """The KL term of the ELBO split into index-code mutual information, total correlation and
    dimension-wise KL (Chen et al. 2018, beta-TCVAE, eq. 2), per example, each z_i (B, D) drawn
    from its q(z|x_i), with the aggregate posterior q(z) estimated by minibatch-weighted sampling
    over the batch from a data set of `dataset_size` examples:
    log q(z_i) ~ logsumexp_j log q(z_i|x_j) - log(N B), the same per dimension for q(z_id).
    The three sum to log q(z_i|x_i) - log p(z_i)."""
    batch = z.shape[0]
    pairwise = log_normal_per_dim(z[:, None, :], mean[None, :, :], logvar[None, :, :])  # (B, B, D): z_i | x_j
    log_norm = math.log(dataset_size * batch)
    log_qz = jax.scipy.special.logsumexp(pairwise.sum(-1), axis=1) - log_norm
    log_qz_product = jnp.sum(jax.scipy.special.logsumexp(pairwise, axis=1) - log_norm, axis=-1)
    log_qz_x = log_normal(z, mean, logvar)
    log_pz = log_normal(z)
    return {"mutual_information": log_qz_x - log_qz, "total_correlation": log_qz - log_qz_product,
            "dimension_kl": log_qz_product - log_pz}


def mmd_imq(a: jax.Array, b: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Unbiased squared maximum mean discrepancy between samples a (n, D) and b (m, D) with the
    inverse multiquadric kernel k(x, y) = C / (C + |x - y|^2), C = 2D (Tolstikhin et al. 2018,
    WAE; the kernel InfoVAE uses too): sum over pairs i != j within each sample, all pairs across.
    `weights` (n,) of 0 and 1 leave a's padding rows out (an evaluation's last batch)."""
    c = 2.0 * a.shape[-1]

    def kernel(x, y):
        return c / (c + jnp.sum(jnp.square(x[:, None, :] - y[None, :, :]), axis=-1))

    def within(x):
        n = x.shape[0]
        return (jnp.sum(kernel(x, x)) - n) / (n * (n - 1))  # the diagonal is k(x, x) = 1

    if weights is None:
        return within(a) + within(b) - 2.0 * jnp.mean(kernel(a, b))
    w = weights.astype(a.dtype)
    n, m = jnp.sum(w), b.shape[0]
    within_a = (w @ kernel(a, a) @ w - jnp.sum(w)) / jnp.maximum(n * (n - 1), 1.0)
    return within_a + within(b) - 2.0 * jnp.sum(w @ kernel(a, b)) / jnp.maximum(n * m, 1.0)


def gaussian_nll(prediction: jax.Array, target: jax.Array, sigma: float) -> jax.Array:
    """-log N(target; prediction, sigma^2 I) per example, nats."""
    d = target.size // target.shape[0]
    return sse(prediction, target) / (2 * sigma ** 2) + d * (jnp.log(sigma) + 0.5 * LOG_2PI)


# --- segmentation: per-pixel class logits (B, H, W, K), integer targets (B, H, W) ---------------

def pixel_cross_entropy(logits: jax.Array, targets: jax.Array, valid: jax.Array,
                        class_weights: jax.Array, axes=(1, 2)) -> jax.Array:
    """Weighted mean over the labelled (`valid`) pixels of the softmax cross-entropy, nats per pixel.

    Reduced over `axes` ((1, 2): per example; (0, 1, 2): the batch); like PyTorch's
    weighted "mean", each pixel counts with its true class's weight.
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    weight = class_weights[targets] * valid
    return jnp.sum(ce * weight, axis=axes) / jnp.maximum(jnp.sum(weight, axis=axes), 1e-12)


def soft_dice_loss(logits: jax.Array, targets: jax.Array, valid: jax.Array,
                   class_weights: jax.Array, axes=(1, 2), smooth: float = 1.0) -> jax.Array:
    """1 - the class-weighted mean soft Dice (Milletari et al. 2016) over the labelled pixels.

    `smooth` keeps a class that is absent and not predicted at Dice ~1 instead of 0/0.
    """
    probs = jax.nn.softmax(logits) * valid[..., None]
    onehot = jax.nn.one_hot(targets, logits.shape[-1]) * valid[..., None]
    intersection = jnp.sum(probs * onehot, axis=axes)
    total = jnp.sum(probs, axis=axes) + jnp.sum(onehot, axis=axes)
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - jnp.sum(dice * class_weights, axis=-1) / jnp.sum(class_weights)


def confusion_matrices(predictions: jax.Array, targets: jax.Array, valid: jax.Array,
                       num_classes: int) -> jax.Array:
    """(B, K, K) pixel counts per example: [true class, predicted class], labelled pixels only."""
    true = jax.nn.one_hot(targets, num_classes) * valid[..., None]
    pred = jax.nn.one_hot(predictions, num_classes)
    return jnp.einsum("bhwk,bhwl->bkl", true, pred)
