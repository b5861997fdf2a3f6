"""U-Net vs the same encoder–decoder without skip connections, on MNIST scenes and ISBI 2012 membranes.

    python experiments/segmentation/run.py --workdir=runs/segmentation [--only=scenes|isbi]
        [--models unet noskip] [--seeds 0 1 2]

Trains configs/seg_mnist_scenes.py and configs/seg_isbi.py with skips=True and
skips=False (same steps, batch and optimizer: the same budget) and each seed
(WORKDIR/NAME for seed 0, WORKDIR/NAME-seedS for the others), resuming or
skipping finished runs, and writes experiments/segmentation/results.json: test
and validation pixel accuracy, mean IoU and Dice (one seed: the figures; several:
mean and standard deviation over them) beside the majority-class baseline, the
split sizes, the wall clock and the provenance (command, commit, versions,
machine). Rows not rerun this time (`--only=isbi`) keep their earlier values.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from aelab import provenance, train
from aelab.config import from_file

REPO = pathlib.Path(__file__).resolve().parents[2]
RESULTS = pathlib.Path(__file__).with_name("results.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/segmentation")
    parser.add_argument("--mnist", default="idx:../shared/data/mnist", help="the digits of the scenes")
    parser.add_argument("--isbi", default="segfolder:../shared/data/isbi2012_membrane")
    parser.add_argument("--steps", type=int, default=0, help="override every run's steps (smoke tests)")
    parser.add_argument("--only", choices=("scenes", "isbi"), action="append", help="run only these data sets")
    parser.add_argument("--models", choices=("unet", "noskip"), nargs="+", default=["unet", "noskip"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    runs = [("MNIST scenes (11 classes)", "seg_mnist_scenes.py", f"scenes:{args.mnist}", "scenes"),
            ("ISBI 2012 membranes", "seg_isbi.py", args.isbi, "isbi")]
    metrics = ("pixel_accuracy", "mean_iou", "dice")
    rows = {}
    for title, config_name, data_name, short in runs:
        if args.only and short not in args.only:
            continue
        for skips in (model == "unet" for model in args.models):
            name = f"{short}_{'unet' if skips else 'noskip'}"
            begun = provenance.start()
            summaries = []
            for seed in args.seeds:
                config = from_file(REPO / "configs" / config_name, f"skips={skips}")
                config.data.name, config.seed, config.train.progress = data_name, seed, False
                if args.steps:
                    config.train.num_steps = args.steps
                workdir = os.path.join(args.workdir, name if seed == 0 else f"{name}-seed{seed}")
                summaries.append(train.train_and_evaluate(config, workdir))

            def figure(split: str, key: str):
                values = [summary[split][key] for summary in summaries]
                return values[0] if len(values) == 1 else provenance.over_seeds(values)

            first = summaries[0]
            rows[name] = {"data": title, "model": "U-Net" if skips else "no skips",
                          "config": f"configs/{config_name}:skips={skips}", "step": first["step"],
                          "test": {k: figure("eval", k) for k in metrics},
                          "val": {k: figure("val", k) for k in metrics},
                          "majority": first["baselines"]["majority"], "data_sizes": first["data"],
                          "seeds": args.seeds, "split_seed": config.data.split_seed, **provenance.record(begun)}
            print(json.dumps({k: v for k, v in rows[name].items() if k != "versions"}), flush=True)
    if args.steps:  # a smoke test publishes nothing
        return
    for name, row in provenance.update_results(str(RESULTS), rows).items():
        print(f"{name}: test {row['test']} (validation {row['val']}), commit {row['commit']}")

if __name__ == "__main__":
    main()
