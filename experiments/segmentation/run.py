"""U-Net vs the same encoder–decoder without skip connections, on MNIST scenes and ISBI 2012 membranes.

    python experiments/segmentation/run.py --workdir=runs/segmentation

Trains configs/seg_mnist_scenes.py and configs/seg_isbi.py with skips=True and
skips=False (same steps, batch and optimizer: the same budget), resuming or
skipping finished runs, and writes results.json and results.md: test pixel
accuracy, mean IoU and Dice beside the majority-class baseline, with the wall
clock of each training run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

from aelab import train
from aelab.config import from_file

REPO = pathlib.Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/segmentation")
    parser.add_argument("--mnist", default="idx:../shared/data/mnist", help="the digits of the scenes")
    parser.add_argument("--isbi", default="segfolder:../shared/data/isbi2012_membrane")
    parser.add_argument("--steps", type=int, default=0, help="override every run's steps (smoke tests)")
    args = parser.parse_args()
    runs = [("MNIST scenes (11 classes)", "seg_mnist_scenes.py", f"scenes:{args.mnist}", "scenes"),
            ("ISBI 2012 membranes", "seg_isbi.py", args.isbi, "isbi")]
    rows = []
    for title, config_name, data_name, short in runs:
        for skips in (True, False):
            config = from_file(REPO / "configs" / config_name, f"skips={skips}")
            config.data.name = data_name
            config.train.progress = False
            if args.steps:
                config.train.num_steps = args.steps
            workdir = os.path.join(args.workdir, f"{short}_{'unet' if skips else 'noskip'}")
            start = time.time()
            summary = train.train_and_evaluate(config, workdir)
            ev, majority = summary["eval"], summary["baselines"]["majority"]
            rows.append({"data": title, "model": "U-Net" if skips else "no skips", "workdir": workdir,
                         "seconds_this_invocation": round(time.time() - start, 1),
                         **{k: ev[k] for k in ("pixel_accuracy", "mean_iou", "dice")},
                         "majority_pixel_accuracy": majority["pixel_accuracy"],
                         "majority_mean_iou": majority["mean_iou"]})
            print(json.dumps(rows[-1]), flush=True)
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    lines = ["| data | model | pixel accuracy | mean IoU | Dice | majority class: accuracy / mean IoU | seconds |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['data']} | {r['model']} | {r['pixel_accuracy']:.4f} | {r['mean_iou']:.4f} | "
              f"{r['dice']:.4f} | {r['majority_pixel_accuracy']:.4f} / {r['majority_mean_iou']:.4f} | "
              f"{r['seconds_this_invocation']} |" for r in rows]
    with open(os.path.join(args.workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
