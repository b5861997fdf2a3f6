"""aelab: encoder-decoder models and autoencoders in JAX/Flax NNX."""

__version__ = "0.1.0"


def load(workdir: str):
    """A trained run's model, without its data, for arrays you hold: `run = aelab.load("runs/digits_ae")`,
    then `run.encode(images)`, `run.decode(codes)`, `run.reconstruct(images)`, `run.sample(n)` (VAE),
    `run.translate(sentences)`, `run.caption(images)`, `run.segment(images)` as its task has them,
    and `run.config`, `run.model`, `run.step` (aelab.restore.Trained). Read-only."""
    from aelab.restore import load as load_run

    return load_run(workdir)
