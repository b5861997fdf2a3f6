"""Input corruptions for denoising (applied to the input only; the target stays clean).

Every corruption is a pure function of (x, rng): seeded and reproducible.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aelab.errors import UsageError, choose


def gaussian(x: jax.Array, rng: jax.Array, sigma: float) -> jax.Array:
    """Additive N(0, sigma^2) noise, clipped back to [0, 1]."""
    return jnp.clip(x + sigma * jax.random.normal(rng, x.shape, x.dtype), 0.0, 1.0)


def mask(x: jax.Array, rng: jax.Array, fraction: float) -> jax.Array:
    """Sets a random `fraction` of the pixels to 0 (masking noise, Vincent et al. 2008)."""
    return jnp.where(jax.random.uniform(rng, x.shape) < fraction, 0.0, x)


def salt_and_pepper(x: jax.Array, rng: jax.Array, fraction: float) -> jax.Array:
    """Sets a random `fraction` of the pixels to 0 or 1, with equal odds."""
    hit_rng, value_rng = jax.random.split(rng)
    hit = jax.random.uniform(hit_rng, x.shape) < fraction
    salt = jax.random.bernoulli(value_rng, 0.5, x.shape).astype(x.dtype)
    return jnp.where(hit, salt, x)


CORRUPTIONS = {"gaussian": gaussian, "mask": mask, "salt_and_pepper": salt_and_pepper}


def check(kind: str, level: float) -> None:
    """Raises a UsageError for an unknown corruption or a level outside its range."""
    if kind == "none":
        return
    choose("corruption.kind", kind, [*CORRUPTIONS, "none"])
    if kind == "gaussian" and level <= 0:
        raise UsageError(f"corruption.level={level} must be > 0 (the noise sigma)")
    if kind != "gaussian" and not 0 < level < 1:
        raise UsageError(f"corruption.level={level} must lie strictly between 0 and 1 "
                         f"(the fraction of pixels {kind} touches)")


def corrupt(x: jax.Array, rng: jax.Array, kind: str, level: float) -> jax.Array:
    return x if kind == "none" else CORRUPTIONS[kind](x, rng, level)


def parse(spec: str) -> tuple[str, float]:
    """'gaussian:0.3' -> ('gaussian', 0.3), checked."""
    kind, _, level = spec.partition(":")
    try:
        value = float(level)
    except ValueError:
        raise UsageError(f"noise {spec!r} is not KIND:LEVEL, e.g. gaussian:0.3, mask:0.5, "
                         "salt_and_pepper:0.2") from None
    check(kind, value)
    return kind, value

