"""Generation from a trained workdir: samples from the prior and interpolations (`aelab sample`)."""

from __future__ import annotations

import os

from aelab import plots
from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import uses_dir


def sample(workdir: str, num_samples: int, seed: int, out_dir: str | None = None) -> list[str]:
    """Writes DIR/uses/samples.png (prior samples) and, for a model with a continuous code,
    DIR/uses/interpolation.png; returns their paths. The run's own figures are left as training
    wrote them.

    Needs a model that samples (`Trained.can("sample")`): a VAE, an autoencoder trained with a
    prior-matching penalty (a Wasserstein autoencoder), or a code prior, whose samples its VQ-VAE
    decodes (no interpolation: the prior's codes are discrete).
    """
    run = load(workdir)
    if not run.can("sample"):
        raise UsageError(f"{workdir} holds task={run.config.task} (model {type(run.model).__name__}), which has no "
                         "prior to sample; train a VAE (task=vae), an autoencoder with a prior-matching penalty "
                         "(penalty.mmd), or a prior over a VQ-VAE's codes (task=vqprior)")
    figures = uses_dir(workdir, out_dir)
    paths = [os.path.join(figures, "samples.png")]
    plots.sample_grid(run.sample(num_samples, seed), paths[0],
                      title=f"{num_samples} samples from the prior, step {run.step}")
    if run.can("encode") and run.can("decode") and hasattr(run.model, "interpolate"):
        paths.append(os.path.join(figures, "interpolation.png"))
        plots.interpolation(run.model, run.split("test").images, paths[1], run.policy)
    return paths
