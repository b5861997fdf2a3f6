"""aelab's streaming input against the PyTorch DataLoader reference, on one image folder.

    python experiments/speed/loader.py --dir=../shared/data/cifar10/train --torch_python=PYTHON [--workers=2]
        [--images=20000] [--repeats=3] [--record]

aelab's side is what a streamed training run does before its step: `images:DIR` listed
lazily, the batches of `TrainBatches` (a seeded shuffle, batch 256: decode with PIL, scale to
[0, 1]) made ahead and placed on the device, twice: by `--workers` grain threads
(`train.input_threads`) and by as many grain worker processes (`train.input_processes`).
The random flip runs inside the compiled step on the device (aelab.data.augment), so it is not
part of this pipeline. PyTorch's side is ../shared/bench/torch_loader_ref.py with as many
worker processes. Every file is read once first, so that every side finds the folder in the
page cache (otherwise whichever runs first pays for the disk, about 100 us a file here); each
side then runs `--repeats` times as separate processes, alternated (the order reverses every
round), after a warm-up batch; prints the medians of images/s and their ratios to torch.
`--record` appends the raw lines, with the commit, to experiments/speed/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
TORCH_REF = REPO.parent / "shared" / "bench" / "torch_loader_ref.py"


def aelab_loader(directory: str, workers: int, batch: int, images: int, processes: bool) -> dict:
    """images/s of aelab's streaming input over `directory` (run in a process of its own), with
    `workers` threads or (`processes`) worker processes."""
    import functools

    import jax
    import numpy as np

    from aelab import config as config_lib, data, parallel

    t0 = time.perf_counter()
    config = config_lib.base_config()
    config.data.name = f"images:{directory}"
    config.data.val_fraction = 0.0
    config.data.test_fraction = 0.0
    split = data.read_splits(config.data, stream=True)["train"]
    index_s = time.perf_counter() - t0
    batches = data.TrainBatches(split, batch, seed=0)
    mesh = jax.make_mesh((1,), (parallel.DATA,))
    if processes:  # as train.input_processes does
        rows = data.in_processes(functools.partial(batches, part=0, parts=1), 0, 10**9, workers, 8)
        stream = (parallel.put_local_batch({k: np.array(v) for k, v in r.items()}, mesh) for r in rows)
    else:  # as train.input_threads does
        stream = data.prefetched(lambda s: parallel.put_local_batch(batches(s), mesh), 0, 10**9, workers, 8)
    jax.block_until_ready(next(stream))  # warm-up: threads started, first batch decoded
    n, t0 = 0, time.perf_counter()
    while n < images:
        jax.block_until_ready(next(stream)["image"])
        n += batch
    seconds = time.perf_counter() - t0
    if processes:
        rows.close()
    return {"framework": "aelab", "pipeline": f"grain {'processes' if processes else 'threads'} + PIL, device_put",
            "dir": directory,
            "files": len(split), "workers": workers, "batch": batch, "images": n, "seconds": seconds,
            "images_per_s": n / seconds, "index_seconds": index_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def warm_page_cache(directory: str) -> None:
    """Reads every file under `directory` once (and throws the bytes away)."""
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                while f.read(1 << 20):
                    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(REPO.parent / "shared" / "data" / "cifar10" / "train"))
    parser.add_argument("--torch_python", default="", help="a Python with torch (empty: aelab only)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: aelab's side once
    parser.add_argument("--processes", action="store_true", help=argparse.SUPPRESS)  # ...with worker processes
    args = parser.parse_args()
    if args.one:
        print(json.dumps(aelab_loader(args.dir, args.workers, args.batch, args.images, args.processes)))
        return
    sys.path.insert(0, str(REPO / "experiments" / "speed"))
    from compare import record  # noqa: E402

    aelab = [sys.executable, __file__, "--one", f"--dir={args.dir}", f"--workers={args.workers}",
             f"--batch={args.batch}", f"--images={args.images}"]
    sides = {"aelab threads": aelab, "aelab processes": aelab + ["--processes"]}
    if args.torch_python:
        sides["torch"] = [args.torch_python, str(TORCH_REF), "--dir", args.dir, "--workers", str(args.workers),
                          "--batch", str(args.batch), "--images", str(args.images), "--json"]
    warm_page_cache(args.dir)
    lines = {name: [] for name in sides}
    for round_ in range(args.repeats):
        for name, command in sorted(sides.items(), reverse=round_ % 2 == 1):
            done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
            lines[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    medians = {name: statistics.median(r["images_per_s"] for r in rows) for name, rows in lines.items()}
    for name, value in medians.items():
        print(f"{name}: {value:,.0f} images/s (median of {args.repeats}; {args.workers} workers, batch {args.batch})")
    if "torch" in medians:
        for name in ("aelab threads", "aelab processes"):
            print(f"{name} / torch: {medians[name] / medians['torch']:.2f}x")
    if args.record:
        record([dict(r, workload="loader") for rows in lines.values() for r in rows], " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
