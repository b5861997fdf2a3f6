"""Captioning generated MNIST scenes: BLEU-4 and exact match of the CoordConv + Transformer captioner.

    python experiments/captioning/run.py --data=digitcaptions:idx:../shared/data/mnist --workdir=runs/captioning

Trains configs/caption_mnist_scenes.py (resuming an interrupted run) and writes
experiments/captioning/results.json: test BLEU-4 and exact match (beam search)
beside validation's (greedy on `decode.eval_examples` scenes), the nearest-neighbour
baseline, the split sizes, training seconds and the provenance. One seed: the
run takes longer than 15 minutes. Nothing is chosen: the config is fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from aelab import provenance
from aelab.writer import training_seconds

RESULTS = pathlib.Path(__file__).with_name("results.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digitcaptions:idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/captioning")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=0, help="override the steps (smoke tests)")
    args = parser.parse_args()
    begun = provenance.start()
    [(workdir, summary)] = provenance.train_seeds("caption_mnist_scenes.py", [args.seed], args.workdir,
                                                  data=args.data, steps=args.steps)
    metrics = ("bleu", "exact_match")
    row = {"config": "configs/caption_mnist_scenes.py", "seed": args.seed, "step": summary["step"],
           "units": "bleu: sacreBLEU BLEU-4 against all references, 0-100; exact_match: fraction of images",
           "test": {k: summary["eval"][k] for k in metrics},
           "val": {k: summary["val"][k] for k in metrics if k in summary["val"]},
           "nearest_neighbour": {k: summary["baselines"]["nearest_neighbour"][k] for k in metrics},
           "data_sizes": summary["data"],
           "training_seconds": round(training_seconds(os.path.join(workdir, "metrics.jsonl")), 1),
           **provenance.record(begun)}
    print(json.dumps({k: row[k] for k in ("test", "val", "nearest_neighbour")}))
    if not args.steps:  # a smoke test publishes nothing
        provenance.update_results(str(RESULTS), {"captioning": row})


if __name__ == "__main__":
    main()
