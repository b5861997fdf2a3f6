"""aelab: encoder-decoder models and autoencoders in JAX/Flax NNX.

The public API: `load` (a trained run, read-only), `save` (a model trained in your own loop, as a
workdir every command reads) and the registration functions through which the built-ins and your
plugins add architectures, tasks, data readers, objectives, penalties and metrics
(docs/extending.md).
"""

from aelab.registry import (register_architecture, register_metric, register_objective, register_penalty,
                            register_reader, register_task)

__version__ = "0.1.0"
__all__ = ["load", "register_architecture", "register_metric", "register_objective", "register_penalty",
           "register_reader", "register_task", "save"]


def load(workdir: str):
    """A trained run's model, without its data, for arrays you hold: `run = aelab.load("runs/digits_ae")`,
    then `run.encode(images)`, `run.decode(codes)`, `run.reconstruct(images)`, `run.sample(n)`,
    `run.translate(sentences)`, `run.caption(images)`, `run.segment(images)` as its model can
    (`run.can("sample")`), and `run.config`, `run.model`, `run.step` (aelab.restore.Trained). Read-only."""
    from aelab.restore import load as load_run  # start-up: `import aelab` (every config file) stays light

    return load_run(workdir)
