"""`aelab anomaly`: one-class anomaly detection scored properly.

The model was trained on `data.normal_classes` only; at test time every other
class is anomalous. The score is a per-example metric of the task (the
reconstruction loss, or neg_elbo for a VAE). AUROC and AUPRC need no
threshold; the threshold for a decision is set on normal validation data at
`anomaly.target_fpr`, and the test precision and recall are reported at it.
PCA's reconstruction error at the same size, fit on the same normal training
data, is the baseline.

Choosing among scores (or models) must not look at test: `val_auroc_by_score`
scores the validation split with every class kept (the same held-out examples
whose normal ones set the threshold, anomalies included), so a choice can be
made on it and the test AUROC read once, for the choice. `one_class_runs` and
`one_class_table` do that over every class and seed of a data set.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import ml_collections
import numpy as np
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from aelab import baselines, data, plots, train
from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import batched, uses_dir
from aelab.workdir import write_json


# Per-example metrics that rise as a reconstruction gets closer: not anomaly scores (PSNR orders
# the examples as mse does, reversed).
SIMILARITIES = ("psnr", "psnr_noisy")


def detection_scores(scores: np.ndarray, is_anomaly: np.ndarray) -> dict[str, float]:
    return {"auroc": float(roc_auc_score(is_anomaly, scores)),
            "auprc": float(average_precision_score(is_anomaly, scores))}


def threshold_for_fpr(normal_scores: np.ndarray, target_fpr: float) -> float:
    """The smallest threshold that flags at most `target_fpr` of the normal scores (score > t)."""
    return float(np.quantile(normal_scores, 1.0 - target_fpr, method="higher"))


def _every_class(data_config):
    """The data config without the one-class filter: the same splits, every class kept."""
    config = data_config.copy_and_resolve_references()
    config.normal_classes = ()
    return config


def anomaly(workdir: str, out_dir: str | None = None) -> list[str]:
    run = load(workdir)
    model, step, config = run.model, run.step, run.config
    normal_classes = tuple(config.data.normal_classes)
    if not normal_classes:
        raise UsageError(f"{workdir} was trained on every class; anomaly detection needs the one-class "
                         "protocol: train with --config.data.normal_classes='(3,)' (the normal labels)")
    if run.dataset.test.labels is None:
        raise UsageError(f"{workdir}: the test split has no labels to tell anomalies apart")

    def per_example(split):
        out = batched(model, lambda m, b, k: run.task.eval_metrics(m, b, k, False), split, run.policy)
        return {k: v for k, v in out.items() if v.ndim == 1 and k not in SIMILARITIES}
    # The same examples before the one-class filter (image files stay unread but for this split).
    labelled_val = data.load(_every_class(config.data), stream_above_mb=0, verify=False).val
    val_all, test = per_example(labelled_val), per_example(run.dataset.test)
    val_is_anomaly = ~np.isin(labelled_val.labels, normal_classes)
    val = {k: v[~val_is_anomaly] for k, v in val_all.items()}  # the run's validation split, in its order
    name = config.anomaly.score or ("neg_elbo" if config.task == "vae" else "loss")
    if name not in test:
        raise UsageError(f"anomaly.score={name!r} is not a per-example metric of task {config.task}; "
                         f"known: {', '.join(sorted(test))}")
    is_anomaly = ~np.isin(run.dataset.test.labels, normal_classes)
    scores = test[name]
    threshold = threshold_for_fpr(val[name], config.anomaly.target_fpr)
    flagged = scores > threshold
    pca = baselines.fit_pca(run.dataset.train, run.task.code_size, config.seed)
    pca_scores = baselines.pca_errors(pca, run.dataset.test.images)
    result = {
        "step": step, "normal_classes": list(normal_classes), "score": name,
        "test_normal": int((~is_anomaly).sum()), "test_anomalous": int(is_anomaly.sum()),
        **detection_scores(scores, is_anomaly),
        "threshold": threshold, "target_fpr": config.anomaly.target_fpr,
        "val_fpr": float(np.mean(val[name] > threshold)),
        "test_fpr": float(np.mean(flagged[~is_anomaly])),
        "test_precision": float(precision_score(is_anomaly, flagged, zero_division=0)),
        "test_recall": float(recall_score(is_anomaly, flagged, zero_division=0)),
        "auroc_by_score": {k: detection_scores(v, is_anomaly)["auroc"] for k, v in sorted(test.items())},
        "val_auroc_by_score": {k: detection_scores(v, val_is_anomaly)["auroc"] for k, v in sorted(val_all.items())},
        "val_normal": int((~val_is_anomaly).sum()), "val_anomalous": int(val_is_anomaly.sum()),
        "baselines": {"pca": {"n_components": int(pca.n_components_), "score": "recon_sse",
                              **detection_scores(pca_scores, is_anomaly)}},
    }
    directory = uses_dir(workdir, out_dir)
    paths = [os.path.join(directory, f) for f in ("anomaly.json", "anomaly_scores.png", "anomaly_examples.png")]
    write_json(paths[0], result)
    plots.histograms(scores[~is_anomaly], scores[is_anomaly], threshold, paths[1], f"score: {name}")
    order = np.argsort(scores)
    images = run.dataset.test.images
    plots.image_rows([images[order[::-1][:12]], images[order[:12]]], ["most anomalous", "least anomalous"],
                     paths[2], title=f"test examples ranked by {name}")
    return paths


def one_class_runs(config_for: Callable[[int, int], ml_collections.ConfigDict], classes: list[int],
                   seeds: list[int], workdir: str, name: str = "class") -> list[dict]:
    """Trains `config_for(normal_class, seed)` in workdir/seed{S}/{name}{K} for every class and
    seed (finished runs are read back, interrupted ones resume), runs `anomaly` on each, and
    returns a row per run: its validation and test AUROC by score and PCA's test AUROC."""
    rows = []
    for seed in seeds:
        for normal in classes:
            run_dir = os.path.join(workdir, f"seed{seed}", f"{name}{normal}")
            began = time.time()
            train.train_and_evaluate(config_for(normal, seed), run_dir)
            with open(anomaly(run_dir)[0]) as f:
                report = json.load(f)
            rows.append({name: normal, "seed": seed, "seconds": round(time.time() - began, 1),
                         "val_auroc_by_score": report["val_auroc_by_score"],
                         "auroc_by_score": report["auroc_by_score"],
                         "pca_auroc": report["baselines"]["pca"]["auroc"]})
            print(f"seed {seed} {name} {normal}: validation AUROC " + ", ".join(
                f"{k} {100 * v:.1f}" for k, v in report["val_auroc_by_score"].items()), flush=True)
    return rows


def choose_score(rows: list[dict]) -> tuple[str, dict[str, float]]:
    """The score with the best mean validation AUROC over `rows` (every class and seed), and
    each score's mean: the choice reads no test figure."""
    names = sorted(rows[0]["val_auroc_by_score"])
    means = {s: float(np.mean([r["val_auroc_by_score"][s] for r in rows])) for s in names}
    return max(means, key=means.get), means


def one_class_table(rows: list[dict], name: str = "class") -> dict:
    """The score chosen on validation (`choose_score`) and its AUROC in percent: test mean and
    standard deviation over the seeds (of each seed's mean over the classes), validation mean,
    test mean per class, and PCA's test mean."""
    chosen, val_means = choose_score(rows)
    seeds = sorted({r["seed"] for r in rows})
    classes = sorted({r[name] for r in rows})

    def mean_of(key: str, keep) -> float:
        return float(100 * np.mean([r[key][chosen] for r in rows if keep(r)]))

    per_seed = [mean_of("auroc_by_score", lambda r: r["seed"] == s) for s in seeds]
    return {"chosen_score": chosen, "chosen_on": "mean validation AUROC", "val_mean_auroc_by_score": val_means,
            "test_mean_auroc": float(np.mean(per_seed)),
            "test_std_auroc": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
            "val_mean_auroc": mean_of("val_auroc_by_score", lambda r: True), "seeds": seeds,
            f"test_auroc_by_{name}": {c: mean_of("auroc_by_score", lambda r: r[name] == c) for c in classes},
            "pca_mean_auroc": float(100 * np.mean([r["pca_auroc"] for r in rows]))}
