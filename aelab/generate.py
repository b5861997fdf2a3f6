"""Generation from a trained workdir: samples from the prior and interpolations (`aelab sample`)."""

from __future__ import annotations

import os

import jax
import numpy as np

from aelab import compiler, plots
from aelab import workdir as wd
from aelab.errors import UsageError
from aelab.train import load_trained


def sample(workdir: str, num_samples: int, seed: int) -> list[str]:
    """Writes figures/samples.png (prior samples) and figures/interpolation.png; returns their paths.

    Needs a generative model (task=vae): other autoencoders have no prior to sample.
    """
    run, model, step = load_trained(workdir)
    if not hasattr(model, "sample"):
        raise UsageError(f"{workdir} holds task={run.config.task}, which has no prior to sample; "
                         "train with --config.task=vae")
    figures = os.path.join(workdir, wd.FIGURES)
    samples = np.asarray(compiler.jit_model(lambda m, key: m.sample(num_samples, key), model)(jax.random.key(seed)))
    paths = [os.path.join(figures, "samples.png"), os.path.join(figures, "interpolation.png")]
    plots.sample_grid(samples, paths[0], title=f"{num_samples} samples from the prior, step {step}")
    plots.interpolation(model, run.dataset.test.images, paths[1])
    return paths
