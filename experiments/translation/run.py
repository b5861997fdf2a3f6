"""Spanish -> English on the Tatoeba corpus: the Transformer and the attention RNN, sacreBLEU on
a held-out test split of 3,568 pairs.

    python experiments/translation/run.py --workdir=runs/translation [--only=transformer|rnn]

Trains configs/mt_spa_eng_transformer.py and configs/mt_spa_eng_rnn.py
(resuming or skipping finished runs) and writes results.json and results.md:
test BLEU and chrF (beam search), the copy-the-source baseline, training
seconds (inside training steps, from the logged steps/s) and the wall clock of
each invocation, plus a few sample translations.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

from aelab import train
from aelab.config import from_file
from aelab.writer import training_seconds

REPO = pathlib.Path(__file__).resolve().parents[2]
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
    args = parser.parse_args()
    rows = []
    for short in args.only or list(RUNS):
        title, config_name = RUNS[short]
        config = from_file(REPO / "configs" / config_name)
        config.train.progress = False
        if args.steps:
            config.train.num_steps = args.steps
        workdir = os.path.join(args.workdir, short)
        start = time.time()
        summary = train.train_and_evaluate(config, workdir)
        ev = summary["eval"]
        rows.append({"model": title, "workdir": workdir, "bleu": ev["bleu"], "chrf": ev["chrf"],
                     "nll": ev["nll"], "copy_source_bleu": summary["baselines"]["copy_source"]["bleu"],
                     "num_test": summary["data"]["num_test"],
                     "training_seconds": round(training_seconds(os.path.join(workdir, "metrics.jsonl")), 1),
                     "seconds_this_invocation": round(time.time() - start, 1),
                     "samples": samples(workdir, summary["step"])})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "samples"}), flush=True)
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2, ensure_ascii=False)
    lines = ["| model | test BLEU | test chrF | test nll (nats/token) | copy-source BLEU | training s | wall s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['bleu']:.1f} | {r['chrf']:.1f} | {r['nll']:.3f} | {r['copy_source_bleu']:.1f} | "
              f"{r['training_seconds']} | {r['seconds_this_invocation']} |" for r in rows]
    with open(os.path.join(args.workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
