"""What streaming costs a training run: the streaming path against the on-device one, and the
share of a streamed run's time spent waiting for input.

    python experiments/speed/streaming.py [--mnist=../shared/data/mnist] [--folder=../shared/data/cifar10]
        [--steps=1000] [--record]

1. configs/mnist_ae.py on `idx:MNIST` twice, one after the other: with the training split on
   the device (the default for a split this size) and streamed (`train.device_data_mb=0`: the
   IDX file memory-mapped, batches made by grain threads). Prints the median steps/s of the
   log windows after the first (which holds the compile) and their ratio.
2. The colour folder `images:FOLDER`, streamed (the JPEG files decoded as batches need them),
   under each of FOLDER_RUNS: the small configs/mnist_conv_ae.py with the batches made by grain
   threads (the default) and by worker processes, and the residual VAE of configs/cifar10_vae.py.
   Prints `input_wait_fraction` from summary.json (the share of the training loop's time spent
   waiting for the next batch) and the time to the first step.
`--record` appends the figures, with the commit, to experiments/speed/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
# name -> (config file, overrides, steps as a share of --steps). PIL parses a JPEG's headers in
# Python, under the GIL the training loop also needs: processes decode beside it, threads take
# turns with it. The residual VAE skips its importance-sampled bound (k = 100 costs minutes).
FOLDER_RUNS = {
    "conv_ae, threads": ("mnist_conv_ae.py", {}, 1 / 3),
    "conv_ae, 2 processes": ("mnist_conv_ae.py", {"train.input_processes": 2}, 1 / 3),
    "resnet_vae, threads": ("cifar10_vae.py", {"vae.iw_samples": 1, "vae.iw_chunk": 1}, 3 / 10),
}


def trained(config_file: str, data: str, steps: int, workdir: str, **overrides) -> tuple[dict, float]:
    """(summary, median steps/s of the log windows after the first) of a fresh run."""
    from aelab import sweep, train
    from aelab.config import from_file
    from aelab.writer import read_metrics

    config = from_file(REPO / "configs" / config_file)
    config.data.name = data
    config.train.num_steps, config.train.log_every, config.train.progress = steps, 100, False
    config.train.eval_every = config.train.checkpoint_every = steps
    config = sweep.with_overrides(config, [f"{k}={v}" for k, v in overrides.items()])
    summary = train.train_and_evaluate(config, workdir)
    rates = [r["steps_per_s"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if r["split"] == "train"]
    return summary, statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--folder", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        rates = {}
        for path, overrides in (("on device", {}), ("streamed", {"train.device_data_mb": 0})):
            summary, rates[path] = trained("mnist_ae.py", f"idx:{args.mnist}", args.steps,
                                           os.path.join(scratch, path.replace(" ", "_")), **overrides)
            lines.append({"workload": "mnist_ae_input", "path": path, "batches": summary["batches"],
                          "steps_per_s": rates[path], "input_wait_fraction": summary["input_wait_fraction"]})
        print(f"mnist_ae: on device {rates['on device']:.1f} steps/s, streamed {rates['streamed']:.1f} "
              f"steps/s: streamed / on device {rates['streamed'] / rates['on device']:.2f}")
        for name, (config_file, overrides, share) in FOLDER_RUNS.items():
            summary, rate = trained(config_file, f"images:{args.folder}", int(args.steps * share),
                                    os.path.join(scratch, f"folder{len(lines)}"),
                                    **{"train.device_data_mb": 0, **overrides})
            lines.append({"workload": "folder_input", "run": name, "config": config_file, "overrides": overrides,
                          "data": f"images:{args.folder}", "files": sum(summary["data"][f"num_{split}"]
                                                                       for split in ("train", "val", "test")),
                          "steps_per_s": rate, "input_wait_fraction": summary["input_wait_fraction"],
                          "time_to_first_step_s": summary["time_to_first_step_s"]})
            print(f"{name} on images:{args.folder}, streamed: {rate:.1f} steps/s; waiting for input "
                  f"{100 * summary['input_wait_fraction']:.1f}% of the loop (in the step "
                  f"{100 * (1 - summary['input_wait_fraction']):.1f}%); first step after "
                  f"{summary['time_to_first_step_s']:.1f} s")
    if args.record:
        sys.path.insert(0, str(REPO / "experiments" / "speed"))
        from compare import record  # noqa: E402

        record(lines, " ".join(["python", *sys.argv]))
    print(json.dumps(lines))


if __name__ == "__main__":
    main()
