"""aelab: encoder-decoder models and autoencoders in JAX/Flax NNX.

The public API: `load` (a trained run, read-only), `save` (a model trained in your own loop, as a
workdir every command reads) and the registration functions through which the built-ins and your
plugins add architectures, tasks, data readers, objectives, penalties and metrics
(docs/extending.md).
"""

from aelab.registry import (register_architecture, register_metric, register_objective, register_penalty,
                            register_reader, register_task)

__version__ = "0.1.0"
__all__ = ["build_model", "load", "register_architecture", "register_metric", "register_objective",
           "register_penalty", "register_reader", "register_task", "save"]


def load(workdir: str):
    """A trained run's model, without its data, for arrays you hold: `run = aelab.load("runs/digits_ae")`,
    then `run.encode(images)`, `run.decode(codes)`, `run.reconstruct(images)`, `run.sample(n)`,
    `run.translate(sentences)`, `run.caption(images)`, `run.segment(images)` as its model can
    (`run.can("sample")`), and `run.config`, `run.model`, `run.step` (aelab.restore.Trained). Read-only."""
    from aelab.restore import load as load_run  # start-up: `import aelab` (every config file) stays light

    return load_run(workdir)


def build_model(config, example_shape, seed=None):
    """The model `config` describes, for examples of `example_shape`, as `aelab train` starts it:
    what to train in your own loop and give to `save` (aelab.export.build_model)."""
    from aelab.export import build_model as build  # start-up: `import aelab` stays light

    return build(config, example_shape, seed)


def save(model, config, workdir: str, example_shape=None, step: int = 1) -> str:
    """Writes a model trained in your own loop as a run in `workdir`, which `aelab.load` and every
    use command read (aelab.export.save)."""
    from aelab.export import save as save_run  # start-up: `import aelab` stays light

    return save_run(model, config, workdir, example_shape, step)
