"""Disentanglement metrics of codes against known factors of variation: MIG and DCI.

Written as disentanglement_lib computes them (Locatello et al. 2019), on numpy arrays:
codes (N, D) and factor indices (N, F).

- MIG (Chen et al. 2018): each code dimension is discretized into `bins` equal-width bins;
  for every factor, the gap between the two largest mutual informations I(z_j; v_k) over
  the code dimensions, divided by the factor's entropy H(v_k); averaged over the factors.
- DCI (Eastwood & Williams 2018): one gradient-boosted tree classifier per factor predicts it
  from the codes; their feature importances form R (D, F). Disentanglement is 1 minus each
  code's entropy over the factors (base F), weighted by the code's share of the importance;
  completeness 1 minus each factor's entropy over the codes (base D), averaged;
  informativeness the classifiers' test accuracy, averaged.
"""

from __future__ import annotations

import numpy as np

BINS = 20


def discretize(codes: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each column's values as bin indices of `bins` equal-width bins over its range."""
    out = np.zeros(codes.shape, np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def mutual_information(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(z_j; v_k) in nats between discrete codes (N, D) and factors (N, F): (D, F)."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factors[:, k], codes[:, j]) for k in range(factors.shape[1])]
                     for j in range(codes.shape[1])])


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> dict:
    """The mutual information gap, and its value per factor (factors of one value are left out)."""
    if codes.shape[1] < 2:
        raise ValueError("MIG compares the two most informative code dimensions; the code has one")
    info = mutual_information(discretize(codes, bins), factors)
    entropy = np.diag(mutual_information(factors, factors))
    top = np.sort(info, axis=0)[::-1]
    varies = entropy > 0
    gaps = (top[0, varies] - top[1, varies]) / entropy[varies]
    return {"mig": float(np.mean(gaps)), "mig_per_factor": gaps.tolist()}


def _entropy(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy (in `base`) of each column of a non-negative matrix, normalized to sum 1."""
    p = p / np.maximum(p.sum(axis=0, keepdims=True), 1e-12)
    return -np.sum(p * np.log(p + 1e-11), axis=0) / np.log(base)


def dci_from_importance(importance: np.ndarray) -> dict:
    """Disentanglement and completeness from an importance matrix R (D codes, F factors)."""
    d, f = importance.shape
    per_code = 1.0 - _entropy(importance.T, f)  # over the factors, for each code
    weights = importance.sum(axis=1) / max(importance.sum(), 1e-12)
    per_factor = 1.0 - _entropy(importance, d)  # over the codes, for each factor
    return {"disentanglement": float(np.sum(weights * per_code)), "completeness": float(np.mean(per_factor))}


def dci(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray,
        factors_test: np.ndarray, seed: int = 0) -> dict:
    """DCI with gradient-boosted trees (disentanglement_lib's), fit on train, scored on test."""
    from sklearn.ensemble import GradientBoostingClassifier

    importance = np.zeros((codes_train.shape[1], factors_train.shape[1]))
    accuracy = []
    for k in range(factors_train.shape[1]):
        if len(np.unique(factors_train[:, k])) < 2:
            continue  # a constant factor says nothing
        model = GradientBoostingClassifier(random_state=seed).fit(codes_train, factors_train[:, k])
        importance[:, k] = np.abs(model.feature_importances_)
        accuracy.append(model.score(codes_test, factors_test[:, k]))
    return {**dci_from_importance(importance), "informativeness": float(np.mean(accuracy)),
            "importance": importance.tolist()}
