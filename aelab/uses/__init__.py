"""Using a trained model: codes, latent maps, probes, denoising, anomaly detection (autoencoders);
masks (segmentation); translations and captions (sequence tasks).

Each use opens a trained workdir read-only (aelab.restore) and writes its numbers to
`DIR/uses/*.json` and its pictures to `DIR/uses/*.png` (or `--uses_dir`), with a
baseline beside every number; text outputs go to stdout or `--out`.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import jax
import numpy as np
from flax import nnx

from aelab import data
from aelab.compiler import CompilePolicy
from aelab.errors import UsageError
from aelab import workdir as wd
from aelab.workdir import atomic_write

USES = "uses"

def check_beam_size(beam_size: int | None) -> None:
    """--beam_size of the decoding uses (translate, caption): None (the run's) or >= 1."""
    if beam_size is not None and beam_size < 1:
        raise UsageError(f"--beam_size={beam_size} must be >= 1 (1 = greedy)")


def check_outputs(workdir: str, **paths: str | None) -> None:
    """Refuses (UsageError) an output (`--out`, `--uses_dir`: flag name -> path) that lies in the
    run's folder but not under its uses/: a use never overwrites the run it reads."""
    for flag, path in paths.items():
        if path and wd.inside(path, workdir) and not wd.inside(path, os.path.join(workdir, USES)):
            raise UsageError(f"--{flag}={wd.shown(path)} is inside the run {wd.shown(workdir)}; a use writes under "
                             f"{wd.shown(os.path.join(workdir, USES))} or outside the run, never over its files")


def uses_dir(workdir: str, out_dir: str | None = None) -> str:
    """Where a use writes its numbers and pictures: `out_dir` (--uses_dir), else DIR/uses."""
    return out_dir or os.path.join(workdir, USES)

def write_text(text: str, out_path: str | None) -> list[str]:
    """A use's text output: atomically to `out_path`, else to stdout. Returns the files written."""
    if out_path:
        atomic_write(out_path, text.encode("utf-8"))
        return [out_path]
    sys.stdout.write(text)
    return []


def batched(model: nnx.Module, fn: Callable, split: data.Split, policy: CompilePolicy, batch_size: int = 1000,
            rng: jax.Array | None = None) -> dict[str, np.ndarray]:
    """Applies `fn(model, batch, rng) -> {name: per-example array}` to a whole split, compiled once
    by the run's `policy` as an evaluation program.

    Batch i gets fold_in(rng, i); padding is dropped, so every array has len(split) rows.
    """
    rng = jax.random.key(0) if rng is None else rng
    step = policy.jit_model(fn, model, "evaluate")
    out: dict[str, list[np.ndarray]] = {}
    for i, batch in enumerate(data.eval_batches(split, batch_size)):
        n = int(batch["mask"].sum())
        for name, value in jax.device_get(step(batch, jax.random.fold_in(rng, i))).items():
            out.setdefault(name, []).append(np.asarray(value)[:n])
    return {name: np.concatenate(parts) for name, parts in out.items()}

def encode(model: nnx.Module, split: data.Split, policy: CompilePolicy) -> np.ndarray:
    """The codes of a split (posterior means for a VAE, quantized codes for a VQ-VAE)."""
    return batched(model, lambda m, b, _: {"code": m.encode(b["image"])}, split, policy)["code"]
