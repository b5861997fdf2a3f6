"""Using a trained autoencoder: codes, latent maps, probes, denoising, anomaly detection.

Each use works on any trained workdir, writes its numbers to `DIR/uses/*.json`
and its pictures to `DIR/uses/*.png`, with a baseline beside every number.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import numpy as np
from flax import nnx

from aelab import compiler, data
from aelab.errors import UsageError

USES = "uses"

def check_beam_size(beam_size: int | None) -> None:
    """--beam_size of the decoding uses (translate, caption): None (the run's) or >= 1."""
    if beam_size is not None and beam_size < 1:
        raise UsageError(f"--beam_size={beam_size} must be >= 1 (1 = greedy)")


def uses_dir(workdir: str, out_dir: str | None = None) -> str:
    """Where a use writes its numbers and pictures: `out_dir` (--uses_dir), else DIR/uses."""
    return out_dir or os.path.join(workdir, USES)

def batched(model: nnx.Module, fn: Callable, split: data.Split, batch_size: int = 1000,
            rng: jax.Array | None = None) -> dict[str, np.ndarray]:
    """Applies `fn(model, batch, rng) -> {name: per-example array}` to a whole split, compiled once.

    Batch i gets fold_in(rng, i); padding is dropped, so every array has len(split) rows.
    """
    rng = jax.random.key(0) if rng is None else rng
    step = compiler.jit_model(fn, model)
    out: dict[str, list[np.ndarray]] = {}
    for i, batch in enumerate(data.eval_batches(split, batch_size)):
        n = int(batch["mask"].sum())
        for name, value in jax.device_get(step(batch, jax.random.fold_in(rng, i))).items():
            out.setdefault(name, []).append(np.asarray(value)[:n])
    return {name: np.concatenate(parts) for name, parts in out.items()}

def encode(model: nnx.Module, split: data.Split) -> np.ndarray:
    """The codes of a split (posterior means for a VAE, quantized codes for a VQ-VAE)."""
    return batched(model, lambda m, b, _: {"code": m.encode(b["image"])}, split)["code"]
