"""A folder larger than memory trains through the streaming path in bounded memory, and resumes exactly.

    python experiments/streaming_scale/run.py [--images=200000] [--scratch=/tmp/aelab_scale] [--steps=300]

1. Generates `--images` 64x64 colour PNG files (seeded smooth random images, in folders of
   10,000) under --scratch, and a folder ten times smaller the same way. They are never
   committed; --scratch is deleted at the end unless --keep.
2. Trains a convolutional autoencoder (configs/mnist_conv_ae.py's model on 64x64x3) on each
   folder as `images:DIR`, streamed (the decoded training split is larger than
   train.device_data_mb), as a child process under `/usr/bin/time -v`: its peak resident
   memory, the wall clock and time to the first step.
3. On the large folder, a second run killed with SIGKILL after its first checkpoint and
   rerun: its final parameters against the unbroken run's, bit for bit.
Writes experiments/streaming_scale/results.json with every figure and its provenance.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
RESULTS = pathlib.Path(__file__).with_name("results.json")
PER_FOLDER = 10_000


def generate(root: pathlib.Path, count: int, seed: int) -> None:
    """`count` 64x64 RGB PNGs: 8x8 random colours upsampled smoothly (they compress like photos,
    not like noise), written by threads (zlib releases the GIL)."""
    from PIL import Image

    def write(start: int) -> None:
        rng = np.random.default_rng([seed, start])
        folder = root / f"part{start // PER_FOLDER:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(start, min(start + 1000, count)):
            small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            small.resize((64, 64), Image.BILINEAR).save(folder / f"{i:07d}.png", compress_level=1)

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write, range(0, count, 1000)))


def train_command(folder: pathlib.Path, workdir: pathlib.Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "aelab.main", "train", "--config=configs/mnist_conv_ae.py",
            f"--config.data.name=images:{folder}", f"--workdir={workdir}", "--config.loss=mse",
            "--config.model.latent_dim=64", "--config.train.device_data_mb=256",
            f"--config.train.num_steps={steps}", "--config.train.log_every=50",
            f"--config.train.eval_every={steps}", f"--config.train.checkpoint_every={steps // 3}",
            "--config.train.eval_batch_size=250", "--config.train.progress=False"]


def run_measured(folder: pathlib.Path, workdir: pathlib.Path, steps: int) -> dict:
    """Trains under /usr/bin/time -v: peak RSS (MB), wall clock and what summary.json says."""
    import json

    start = time.time()
    done = subprocess.run(["/usr/bin/time", "-v", *train_command(folder, workdir, steps)], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"training on {folder} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    summary = json.loads((workdir / "summary.json").read_text())
    return {"peak_rss_mb": round(rss / 1024, 1), "wall_s": round(time.time() - start, 1),
            "examples": sum(summary["data"][f"num_{s}"] for s in ("train", "val", "test")),
            "input": summary["data"]["input"], "batches": summary["batches"],
            "time_to_first_step_s": round(summary["time_to_first_step_s"], 1),
            "input_wait_fraction": summary["input_wait_fraction"], "eval_recon_sse": summary["eval"]["recon_sse"]}


def killed_and_resumed(folder, workdir, steps) -> None:
    """Starts the run, SIGKILLs it once its first checkpoint is on disk, and reruns it to the end."""
    child = subprocess.Popen(train_command(folder, workdir, steps), cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    checkpoints = workdir / "checkpoints"
    while child.poll() is None and not (checkpoints.exists() and any(p.name.isdigit() for p in checkpoints.iterdir())):
        time.sleep(0.5)
    time.sleep(2.0)  # into the steps after it
    child.send_signal(signal.SIGKILL)
    child.wait()
    subprocess.run(train_command(folder, workdir, steps), cwd=REPO, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--scratch", default="/tmp/aelab_scale")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import jax

    from aelab import checkpoint, provenance

    begun = provenance.start()
    scratch = pathlib.Path(args.scratch)
    big, small = scratch / "large", scratch / "small"
    rows = {}
    try:
        for folder, count in ((small, args.images // 10), (big, args.images)):
            if not folder.exists():  # generated beside it, then renamed: never a partial folder
                t0 = time.time()
                partial = folder.with_name(folder.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                generate(partial, count, seed=0)
                partial.rename(folder)
                print(f"generated {count:,} files in {folder} in {time.time() - t0:.0f} s", flush=True)
        for old_run in scratch.glob("run_*"):  # every run is measured from its start
            shutil.rmtree(old_run)
        rows["decoded_gb"] = round(args.images * 64 * 64 * 3 / 1e9, 2)
        for name, folder in (("small", small), ("large", big)):
            rows[name] = run_measured(folder, scratch / f"run_{name}", args.steps)
            print(name, rows[name], flush=True)
        killed_and_resumed(big, scratch / "run_killed", args.steps)
        unbroken = jax.tree.leaves(checkpoint.read_state(str(scratch / "run_large"))[1])
        resumed = jax.tree.leaves(checkpoint.read_state(str(scratch / "run_killed"))[1])
        rows["killed_and_resumed_bitwise_equal"] = all(np.array_equal(a, b) for a, b in zip(unbroken, resumed,
                                                                                            strict=True))
        rows["rss_large_over_small"] = round(rows["large"]["peak_rss_mb"] / rows["small"]["peak_rss_mb"], 3)
        print(rows, flush=True)
        if args.images >= 200_000:  # a smaller smoke test publishes nothing
            provenance.update_results(str(RESULTS), {"streaming_scale": {
                "images": args.images, "steps": args.steps, **rows, **provenance.record(begun)}})
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
