"""`aelab denoise`: PSNR and SSIM of corrupted and of reconstructed test images against the clean ones."""

from __future__ import annotations

import os

import jax
import numpy as np
from skimage.metrics import structural_similarity

from aelab import corruption, losses, plots
from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import batched, uses_dir
from aelab.workdir import write_json


def parse_spec(spec: str) -> tuple[str, list[float]]:
    """'gaussian:0.1,0.3' -> ('gaussian', [0.1, 0.3]); each level checked."""
    kind, _, levels = spec.partition(":")
    parsed = [corruption.parse(f"{kind}:{level}") for level in levels.split(",")] if levels else []
    if not parsed:
        raise UsageError(f"noise {spec!r} has no level; use KIND:LEVEL[,LEVEL...], e.g. gaussian:0.1,0.3")
    return kind, [level for _, level in parsed]


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity (Wang et al. 2004) per image pair, pixels in [0, 1]."""
    h, w, c = a.shape[1:]
    window = min(7, h - (1 - h % 2), w - (1 - w % 2))  # odd, at most the image side
    return np.array([structural_similarity(x.squeeze(-1) if c == 1 else x, y.squeeze(-1) if c == 1 else y,
                                           data_range=1.0, win_size=window,
                                           channel_axis=None if c == 1 else -1)
                     for x, y in zip(a, b)])


def denoise(workdir: str, specs: list[str], seed: int = 0, out_dir: str | None = None) -> list[str]:
    """Corrupts the test split at every level of every spec and reconstructs it.

    Writes DIR/uses/denoise.json (mean PSNR in dB and SSIM, noisy and denoised) and
    DIR/uses/denoise.png (clean / noisy / denoised rows).
    """
    settings = [(kind, level) for spec in specs for kind, levels in [parse_spec(spec)] for level in levels]
    run = load(workdir)
    model, step = run.model, run.step
    clean = run.split("test").in_memory()
    shown = clean.figure_rows(10, seed)
    results, rows, names = [], [clean.images[shown]], ["clean"]
    for kind, level in settings:
        def fn(m, batch, key, kind=kind, level=level):
            noisy = corruption.corrupt(batch["image"], key, kind, level)
            denoised = m.reconstruct(noisy)
            return {"noisy": noisy, "denoised": denoised,
                    "psnr_noisy": losses.psnr(noisy, batch["image"]),
                    "psnr_denoised": losses.psnr(denoised, batch["image"])}
        out = batched(model, fn, clean, run.policy, rng=jax.random.key(seed))
        record = {"noise": kind, "level": level,
                  "psnr_noisy": float(out["psnr_noisy"].mean()),
                  "psnr_denoised": float(out["psnr_denoised"].mean()),
                  "ssim_noisy": float(ssim(out["noisy"], clean.images).mean()),
                  "ssim_denoised": float(ssim(np.clip(out["denoised"], 0, 1), clean.images).mean())}
        record["psnr_gain_db"] = record["psnr_denoised"] - record["psnr_noisy"]
        results.append(record)
        rows += [out["noisy"][shown], out["denoised"][shown]]
        names += [f"{kind} {level:g}", "denoised"]
    directory = uses_dir(workdir, out_dir)
    paths = [os.path.join(directory, "denoise.json"), os.path.join(directory, "denoise.png")]
    write_json(paths[0], {"step": step, "split": "test", "units": {"psnr": "dB"}, "results": results})
    plots.image_rows(rows, names, paths[1], title="test images: clean, corrupted, denoised")
    return paths
