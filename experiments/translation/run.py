"""Spanish -> English on the Tatoeba corpus: the Transformer and the attention RNN, sacreBLEU on
a held-out test split of 3,568 pairs.

    python experiments/translation/run.py --workdir=runs/translation [--only=transformer|rnn] [--seeds 0 1 2]

Trains configs/mt_spa_eng_transformer.py and configs/mt_spa_eng_rnn.py with each seed
(WORKDIR/MODEL for seed 0, WORKDIR/MODEL-seedS for the others; resuming or skipping
finished runs) and writes experiments/translation/results.json: per model, validation and
test BLEU and chrF (test: beam search; validation: greedy on `decode.eval_examples` pairs),
mean and standard deviation over the seeds, the copy-the-source baseline, the split sizes
and overlaps, training seconds (inside training steps, from the logged steps/s) and wall
clock, sample translations (seed 0), and the provenance (command, commit, versions,
machine). Models not run this time keep their earlier rows.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from aelab import provenance, train
from aelab.config import from_file
from aelab.writer import training_seconds

REPO = pathlib.Path(__file__).resolve().parents[2]
RESULTS = pathlib.Path(__file__).with_name("results.json")
RUNS = {"transformer": ("Transformer (pre-norm, 2+2 layers, d=256)", "mt_spa_eng_transformer.py"),
        "rnn": ("attention RNN (bi-GRU encoder, GRU decoder, additive attention)", "mt_spa_eng_rnn.py")}


def samples(workdir: str, step: int, n: int = 8) -> list[str]:
    with open(os.path.join(workdir, "samples", f"test_{step}.txt"), encoding="utf-8") as f:
        return f.read().split("\n\n")[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/translation")
    parser.add_argument("--only", choices=sorted(RUNS), action="append", help="run only these models")
    parser.add_argument("--steps", type=int, default=0, help="override every run's steps (smoke tests)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    models = {}
    for short in args.only or list(RUNS):
        title, config_name = RUNS[short]
        begun = provenance.start()
        runs = []
        for seed in args.seeds:
            config = from_file(REPO / "configs" / config_name)
            config.seed, config.train.progress = seed, False
            if args.steps:
                config.train.num_steps = args.steps
            workdir = os.path.join(args.workdir, short if seed == 0 else f"{short}-seed{seed}")
            runs.append((workdir, train.train_and_evaluate(config, workdir)))
        summaries = [summary for _, summary in runs]
        (first_workdir, first), config = runs[0], from_file(REPO / "configs" / config_name)

        def over_seeds(split: str, key: str) -> dict:
            return provenance.over_seeds([summary[split][key] for summary in summaries])

        models[short] = {
            "model": title, "config": f"configs/{config_name}", "step": first["step"], "seeds": args.seeds,
            "test": {k: over_seeds("eval", k) for k in ("bleu", "chrf", "nll")},
            "val": {k: over_seeds("val", k) for k in ("bleu", "chrf", "nll") if k in first["val"]},
            "copy_source_bleu": first["baselines"]["copy_source"]["bleu"],
            "data": first["data"], "split_seed": config.data.split_seed,
            "training_seconds": [round(training_seconds(os.path.join(w, "metrics.jsonl")), 1) for w, _ in runs],
            "samples": samples(first_workdir, first["step"]),
            **provenance.record(begun)}
        print(json.dumps({k: v for k, v in models[short].items() if k not in ("samples", "versions")}),
              flush=True)
    if args.steps:  # a smoke test publishes nothing
        return
    for short, row in provenance.update_results(str(RESULTS), models).items():
        print(f"{short}: test BLEU {row['test']['bleu']} (validation {row['val'].get('bleu')}), commit {row['commit']}")

if __name__ == "__main__":
    main()
