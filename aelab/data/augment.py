"""Random flips and crops applied identically to images and their masks, on device.

Pure functions of a key: under the trainer's `fold_in(seed, step)` keys the
augmentation of every step is reproducible, so resume stays exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def flip_and_crop(images: jax.Array, masks: jax.Array, rng: jax.Array, hflip: bool,
                  vflip: bool, crop: int) -> tuple[jax.Array, jax.Array]:
    """images (B, H, W, C), masks (B, H, W): each example flipped with probability 1/2 per
    enabled axis, then cut to a random crop x crop window (crop 0 = no crop)."""
    k_h, k_v, k_y, k_x = jax.random.split(rng, 4)
    b, h, w = masks.shape
    for enabled, key, axis in ((hflip, k_h, 2), (vflip, k_v, 1)):
        if enabled:
            flip = jax.random.bernoulli(key, 0.5, (b,))
            images = jnp.where(flip[:, None, None, None], jnp.flip(images, axis), images)
            masks = jnp.where(flip[:, None, None], jnp.flip(masks, axis), masks)
    if crop and (crop < h or crop < w):
        ys = jax.random.randint(k_y, (b,), 0, h - crop + 1)
        xs = jax.random.randint(k_x, (b,), 0, w - crop + 1)
        channels = images.shape[-1]

        def cut(image, mask, y, x):
            return (jax.lax.dynamic_slice(image, (y, x, 0), (crop, crop, channels)),
                    jax.lax.dynamic_slice(mask, (y, x), (crop, crop)))

        images, masks = jax.vmap(cut)(images, masks, ys, xs)
    return images, masks
