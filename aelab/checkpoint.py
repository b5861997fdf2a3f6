"""All of Orbax in one file: save, restore against an abstract target, load for inference.

A checkpoint holds the train state (model parameters and optimizer state,
which includes the step) as a plain nested dict of arrays. Data order and
randomness are functions of (seed, step), so the step is all a resume needs
beyond the state. Restoring always passes an abstract target, so arrays come
back with the target's shapes, dtypes and shardings.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx


def _pure(state: nnx.State) -> dict:
    """nnx.State -> nested dict with string keys (Orbax stores keys as strings)."""
    def stringify(tree):
        if isinstance(tree, dict):
            return {str(k): stringify(v) for k, v in tree.items()}
        return tree
    return stringify(nnx.to_pure_dict(state))


def _unstringify_into(state: nnx.State, pure: dict) -> nnx.State:
    template = nnx.to_pure_dict(state)

    def restore_keys(template_tree, tree):
        if isinstance(template_tree, dict):
            return {k: restore_keys(v, tree[str(k)]) for k, v in template_tree.items()}
        return tree
    nnx.replace_by_pure_dict(state, restore_keys(template, pure))
    return state


class Checkpointer:
    """An Orbax CheckpointManager over `workdir/checkpoints` keeping the newest `keep`."""

    def __init__(self, directory: str, keep: int):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: nnx.State) -> None:
        """Starts an async save; arrays are copied off the device before it returns."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(_pure(state))),
                          force=True)

    def restore(self, step: int, state: nnx.State) -> nnx.State:
        """Restores `step` into a state shaped like `state` (which is not modified)."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _pure(state))
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        fresh = jax.tree.map(lambda x: x, state)
        return _unstringify_into(fresh, restored["state"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def read_state(workdir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
    """The raw saved state of a workdir (latest step by default), as numpy arrays, for inspection."""
    manager = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                    options=ocp.CheckpointManagerOptions(read_only=True))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    return step, jax.tree.map(jax.device_get, restored["state"])
