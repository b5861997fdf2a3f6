"""`aelab disentangle`: MIG and DCI of a run's codes against its data set's known factors, and
latent traversals."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from aelab import disentanglement, plots
from aelab.data.factors import FACTORS
from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import encode, uses_dir
from aelab.workdir import write_json

TRAVERSAL = np.linspace(-2.5, 2.5, 9)  # the values a traversed code dimension takes, around 0


def disentangle(workdir: str, examples: int = 10000, out_dir: str | None = None) -> list[str]:
    """Scores (at most `examples` of) the training split's codes, MIG on them all and DCI fit on
    80% and scored on 20%, as disentanglement_lib does: the factors are what is measured, not
    a held-out task. Writes DIR/uses/disentanglement.json and DIR/uses/traversals.png."""
    run = load(workdir)
    split = run.dataset.train
    if split.factors is None:
        raise UsageError(f"{workdir}: data set {run.dataset.name} has no known factors of variation; "
                         "disentanglement is measured on generated sets such as dsprites or dsprites:small")
    rng = np.random.default_rng(run.config.seed)
    index = np.sort(rng.permutation(len(split))[:examples])
    split = split.take(index)
    codes = encode(run.model, split, run.policy)
    cut = int(0.8 * len(codes))
    order = rng.permutation(len(codes))
    train, test = order[:cut], order[cut:]
    result = {"step": run.step, "examples": len(codes), "factors": list(FACTORS),
              **disentanglement.mig(codes, split.factors),
              **disentanglement.dci(codes[train], split.factors[train], codes[test], split.factors[test],
                                    run.config.seed)}
    directory = uses_dir(workdir, out_dir)
    paths = [os.path.join(directory, "disentanglement.json"), os.path.join(directory, "traversals.png")]
    write_json(paths[0], result)
    traversals(run, codes[0], paths[1])
    return paths


def traversals(run, code: np.ndarray, path: str) -> None:
    """One row per code dimension: the code of one training image with that dimension set to
    each value of TRAVERSAL, decoded."""
    decode = run.policy.jit_model(lambda m, z: m.decode(z), run.model)
    rows = []
    for j in range(len(code)):
        z = np.repeat(code[None], len(TRAVERSAL), axis=0)
        z[:, j] = TRAVERSAL
        rows.append(np.asarray(decode(jnp.asarray(z))))
    plots.image_rows(rows, [f"z{j}" for j in range(len(code))], path,
                     title=f"latent traversals: each code dimension from {TRAVERSAL[0]} to {TRAVERSAL[-1]}")
