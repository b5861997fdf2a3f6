"""Generation from a trained workdir: samples from the prior and interpolations (`aelab sample`)."""

from __future__ import annotations

import os

import jax
import numpy as np

from aelab import plots
from aelab.models import VAE
from aelab.tasks import CodePriorTask
from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import uses_dir


def sample(workdir: str, num_samples: int, seed: int, out_dir: str | None = None) -> list[str]:
    """Writes DIR/uses/samples.png (prior samples) and DIR/uses/interpolation.png; returns their
    paths. The run's own figures are left as training wrote them.

    Needs a generative model: a VAE, or a code prior (task=vqprior), whose samples its VQ-VAE
    decodes (no interpolation: the prior's codes are discrete).
    """
    run = load(workdir)
    model, step = run.model, run.step
    if isinstance(run.task, CodePriorTask):
        path = os.path.join(uses_dir(workdir, out_dir), "samples.png")
        plots.sample_grid(run.sample(num_samples, seed), path, title=f"{num_samples} samples: code prior at "
                          f"step {step}, decoded by its VQ-VAE")
        return [path]
    if not isinstance(model, VAE):
        raise UsageError(f"{workdir} holds task={run.config.task}, which has no prior to sample; "
                         "train with --config.task=vae, or a prior over a VQ-VAE's codes (task=vqprior)")
    figures = uses_dir(workdir, out_dir)
    samples = np.asarray(run.policy.jit_model(lambda m, key: m.sample(num_samples, key), model)(jax.random.key(seed)))
    paths = [os.path.join(figures, "samples.png"), os.path.join(figures, "interpolation.png")]
    plots.sample_grid(samples, paths[0], title=f"{num_samples} samples from the prior, step {step}")
    plots.interpolation(model, run.dataset.test.images, paths[1], run.policy)
    return paths
