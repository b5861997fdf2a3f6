"""What the image autoencoders' objectives, penalties and metrics are computed from: one forward
pass (`Forward`), computed once per step and handed to each of them in a `Context`, and the
built-in penalties and metrics, registered as a plugin's are.

Named random streams. Every random draw of a step derives from the step's key (the trainer's
`fold_in(key, step)`), by name, so that adding a term never changes the draws of another:

| task | stream | key |
|---|---|---|
| autoencoder, vqvae | `ctx.rng`: the encoder's input corruption | the step's key |
| vae | `ctx.rng`: the posterior sample (and the IWAE bound's draws) | `split(step key)[0]` |
| vae | binarization of the training batch | `split(step key)[1]` |
| vae | `ctx.key("corruption")` | `fold_in(ctx.rng, 1)` |
| all | `ctx.key("prior")`: draws from the prior p(z) (InfoVAE, the MMD penalty) | `fold_in(ctx.rng, 2)` |
| vqvae | `ctx.key("codebook")`: dead-code restarts | `fold_in(ctx.rng, 3)` |
| vae | `ctx.key("nll")`: the final evaluation's importance samples | `fold_in(eval key, 7)` |
| plugins | `ctx.key("any.other.name")` | `fold_in(ctx.rng, crc32(name) | 2**30)` |
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from aelab import losses
from aelab.errors import UsageError
from aelab.registry import METRICS, PENALTIES, register_metric, register_penalty

STREAMS = {"corruption": 1, "prior": 2, "codebook": 3, "nll": 7}
NEAR_ZERO = 0.01  # |code unit| below this counts as inactive (sparse AE report)


class Forward(NamedTuple):
    """One forward pass of an image autoencoder over a batch (B examples)."""

    x_in: jax.Array  # what the encoder read: the images, corrupted for a denoising autoencoder
    code: jax.Array | None  # (B, D): the code the decoder read (a VAE's posterior sample; None: a hierarchy's)
    raw: jax.Array  # the decoder's raw output: the reconstruction loss's input (logits, a mixture's parameters)
    recon: jax.Array  # (B,): the reconstruction loss per example, nats (-log p(x|z)) or the loss's units
    mean: jax.Array | None = None  # (B, D): a VAE's posterior means...
    logvar: jax.Array | None = None  # ...and log-variances
    kl: jax.Array | None = None  # (B,): KL(q(z|x) || p(z))
    kl_dims: jax.Array | None = None  # (B, D): the same per latent dimension, where p(z) is N(0, I)
    extras: dict[str, Any] | None = None  # what one task adds (a VQ-VAE's z_e and codebook vectors)


@dataclasses.dataclass
class Context:
    """A batch as an objective, penalty or metric sees it. `forward` is computed on first use and
    then shared: a term that needs the code does not encode again."""

    task: Any  # the ReconstructionTask: its config, its reconstruction loss, log_likelihood, ...
    model: Any
    x: jax.Array  # the clean (target) images of the batch
    rng: jax.Array  # the step's key for this task (the table above)
    step: jax.Array | None  # the training step; None at evaluation
    mask: jax.Array | None = None  # evaluation: 1 for the batch's real examples, 0 for its padding
    _forward: Forward | None = dataclasses.field(default=None, repr=False)

    @property
    def training(self) -> bool:
        return self.step is not None

    @property
    def config(self):
        return self.task.config

    @property
    def forward(self) -> Forward:
        if self._forward is None:
            self._forward = self.task.forward(self)
        return self._forward

    def key(self, stream: str) -> jax.Array:
        """The key of a named random stream (the module's table)."""
        return jax.random.fold_in(self.rng, STREAMS.get(stream, zlib.crc32(stream.encode()) | 2 ** 30))

    def batch_mean(self, values: jax.Array) -> jax.Array:
        """The mean over the batch's real examples (at evaluation the last batch is padded)."""
        if self.mask is None:
            return values.mean(axis=0)
        weights = self.mask.reshape(-1, *([1] * (values.ndim - 1)))
        return (values * weights).sum(axis=0) / jnp.maximum(self.mask.sum(), 1.0)


# --- penalties: terms added to the loss, weighted by config.penalty.<name> -------------------------

def active_penalties(config) -> list:
    """The registered penalties of the autoencoder family whose weight is not 0, in registration order."""
    return [p for p in PENALTIES.entries("autoencoder") if config.penalty.get(p.name, 0.0)]


def check_penalties(config) -> None:
    """Each penalty's weight must be >= 0, and each active one's own check must pass."""
    for entry in PENALTIES.entries("autoencoder"):
        weight = config.penalty.get(entry.name, 0.0)
        if weight < 0:
            raise UsageError(f"penalty.{entry.name}={weight} must be >= 0")
        if weight and entry.check is not None:
            entry.check(config.penalty, config)


def penalty_values(ctx: Context) -> list[tuple[Any, float, jax.Array]]:
    """(entry, weight, unweighted value: (B,) per example or a batch-level scalar) of each active penalty."""
    return [(entry, ctx.config.penalty[entry.name], entry.target(ctx)) for entry in active_penalties(ctx.config)]


def with_penalties(objective: jax.Array, terms: list) -> jax.Array:
    """The loss: the objective (per example (B,), or already a batch's scalar) plus each weighted
    penalty; per-example terms join per-example objectives before the batch mean."""
    per_example = [weight * value for _, weight, value in terms if jnp.ndim(value) > 0]
    batch = [weight * value for _, weight, value in terms if jnp.ndim(value) == 0]
    if jnp.ndim(objective) > 0:
        objective = sum(per_example, objective).mean() if per_example else objective.mean()
    elif per_example:
        objective = objective + sum(per_example).mean()
    return sum(batch, objective) if batch else objective


def penalty_metrics(terms: list) -> dict[str, jax.Array]:
    """Each active penalty, unweighted, under its metric name (evaluation reports them)."""
    return {entry.options["metric"] or entry.name: value for entry, _, value in terms}


def _needs_sigmoid_codes(penalty, config) -> None:
    if config.model.get("code_activation", "none") != "sigmoid":
        raise UsageError("penalty.kl_sparsity needs codes in (0, 1): set model.code_activation=sigmoid "
                         "(task=autoencoder)")
    if not 0 < penalty.rho < 1:
        raise UsageError(f"penalty.rho={penalty.rho} must lie strictly between 0 and 1")


def kl_sparsity(rho: float, rho_hat: jax.Array) -> jax.Array:
    """sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), Ng's sparse-autoencoder penalty."""
    rho_hat = jnp.clip(rho_hat, 1e-6, 1 - 1e-6)
    return jnp.sum(rho * jnp.log(rho / rho_hat) + (1 - rho) * jnp.log((1 - rho) / (1 - rho_hat)))


def jacobian_frobenius_sq(encode, x: jax.Array) -> jax.Array:
    """||d encode(x) / d x||_F^2 per example, exactly (reverse mode, one pass per code unit)."""
    def single(xi):
        jac = jax.jacrev(lambda v: encode(v[None])[0])(xi)
        return jnp.sum(jnp.square(jac))
    return jax.vmap(single)(x)


@register_penalty("l1", metric="code_l1")
def code_l1(ctx: Context) -> jax.Array:
    """The sparse autoencoder's sum |z| per example."""
    return jnp.sum(jnp.abs(ctx.forward.code), axis=-1)


@register_penalty("kl_sparsity", config={"rho": 0.05}, check=_needs_sigmoid_codes)
def mean_activation_kl(ctx: Context) -> jax.Array:
    """KL(rho || the batch's mean activation) summed over code units (batch-level; Ng 2011)."""
    return kl_sparsity(ctx.config.penalty.rho, ctx.batch_mean(ctx.forward.code))


@register_penalty("contractive", metric="jacobian_frobenius_sq")
def contractive(ctx: Context) -> jax.Array:
    """The contractive autoencoder's ||d code / d x||_F^2 per example (Rifai et al. 2011)."""
    return jacobian_frobenius_sq(ctx.model.encode, ctx.forward.x_in)


@register_penalty("mmd", prior="standard_normal")
def prior_mmd(ctx: Context) -> jax.Array:
    """MMD(q(z), N(0, I)) of the batch's codes against as many prior draws, inverse multiquadric
    kernel (batch-level): with a plain autoencoder, the Wasserstein autoencoder's WAE-MMD
    (Tolstikhin et al. 2018), which then samples by decoding prior draws."""
    code = ctx.forward.code
    return losses.mmd_imq(code, jax.random.normal(ctx.key("prior"), code.shape), ctx.mask)


# --- metrics every run of the family reports ---------------------------------------------------------

def _sparse(ctx: Context) -> bool:
    p = ctx.config.penalty
    return bool(p.get("l1", 0.0) or p.get("kl_sparsity", 0.0))


@register_metric("mean_activation")
def mean_activation(ctx: Context) -> jax.Array | None:
    """A sparse autoencoder's mean |code unit| per example (None: not a sparse run)."""
    return jnp.mean(jnp.abs(ctx.forward.code), axis=-1) if _sparse(ctx) else None


@register_metric("frac_near_zero")
def frac_near_zero(ctx: Context) -> jax.Array | None:
    """A sparse autoencoder's fraction of code units below NEAR_ZERO in magnitude, per example."""
    return jnp.mean(jnp.abs(ctx.forward.code) < NEAR_ZERO, axis=-1) if _sparse(ctx) else None


def registered_metrics(ctx: Context, final: bool) -> dict[str, jax.Array]:
    """The example- and batch-level registered metrics of the autoencoder family that apply to
    this run (a metric returns None where it does not)."""
    out = {}
    for entry in METRICS.entries("autoencoder"):
        if entry.options["level"] == "split" or (entry.options["final"] and not final):
            continue
        value = entry.target(ctx)
        if value is not None:
            out[entry.name] = value
    return out
