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
made on it and the test AUROC read once, for the choice.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from aelab import baselines, data, plots
from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import batched, uses_dir
from aelab.workdir import write_json


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
        return {k: v for k, v in out.items() if v.ndim == 1}
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
