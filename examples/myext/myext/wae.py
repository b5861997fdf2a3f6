"""A Wasserstein autoencoder's penalty and a diagnostic of its codes, as aelab plugins.

`penalty.mmd_multiscale` is WAE-MMD (Tolstikhin et al. 2018) with the multi-scale inverse
multiquadric kernel of the paper's released code: the kernel C / (C + |x - y|^2) summed over
C = s * 2D for the scales s of `penalty.mmd_multiscale_scales`, which is less sensitive to the
codes' scale than aelab's built-in `penalty.mmd` (one scale, s = 1). It declares the prior it
pulls the codes toward, so a run that uses it samples (`aelab sample`).

`code_moment_gap` is a batch-level metric every autoencoder run that imports this module
reports on validation and test: |mean of the codes|^2 + |their covariance - I|_F^2 / D over
the batch's real examples, 0 where the codes' first two moments match N(0, I).

    config.imports = ("myext.wae",)
    config.penalty.mmd_multiscale = 10.0   # its weight; 0 = off
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import aelab
from aelab.errors import UsageError


def imq(a: jax.Array, b: jax.Array, scales) -> jax.Array:
    """(n, m): the inverse multiquadric kernel summed over `scales` (each times 2D)."""
    distance = jnp.sum(jnp.square(a[:, None, :] - b[None, :, :]), axis=-1)
    c = 2.0 * a.shape[-1]
    return sum(s * c / (s * c + distance) for s in scales)


def mmd(a: jax.Array, b: jax.Array, weights: jax.Array, scales) -> jax.Array:
    """The unbiased squared MMD between the rows of `a` weighted 0/1 by `weights` and those of `b`."""
    n, m, k = jnp.sum(weights), b.shape[0], float(len(scales))  # k(x, x) = 1 at every scale
    within_a = (weights @ imq(a, a, scales) @ weights - k * n) / jnp.maximum(n * (n - 1), 1.0)
    within_b = (jnp.sum(imq(b, b, scales)) - k * m) / (m * (m - 1))
    return within_a + within_b - 2.0 * jnp.sum(weights @ imq(a, b, scales)) / jnp.maximum(n * m, 1.0)


def check(penalty, config) -> None:
    if not penalty.mmd_multiscale_scales or min(penalty.mmd_multiscale_scales) <= 0:
        raise UsageError(f"penalty.mmd_multiscale_scales={tuple(penalty.mmd_multiscale_scales)} must hold "
                         "positive scales")


@aelab.register_penalty("mmd_multiscale", prior="standard_normal", check=check,
                        config={"mmd_multiscale_scales": (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)})
def mmd_multiscale(ctx) -> jax.Array:
    """MMD(q(z), N(0, I)) of the batch's codes against as many prior draws (batch-level)."""
    code = ctx.forward.code
    weights = jnp.ones(code.shape[0], code.dtype) if ctx.mask is None else ctx.mask.astype(code.dtype)
    prior = jax.random.normal(ctx.key("myext.prior"), code.shape)
    return mmd(code, prior, weights, tuple(ctx.config.penalty.mmd_multiscale_scales))


@aelab.register_metric("code_moment_gap", level="batch")
def code_moment_gap(ctx) -> jax.Array | None:
    """|mean|^2 + |cov - I|_F^2 / D of the batch's codes (None for a model without one code a layer)."""
    code = ctx.forward.code
    if code is None:
        return None
    mean = ctx.batch_mean(code)
    centred = code - mean
    covariance = ctx.batch_mean(centred[:, :, None] * centred[:, None, :])
    return jnp.sum(jnp.square(mean)) + jnp.sum(jnp.square(covariance - jnp.eye(code.shape[-1]))) / code.shape[-1]
