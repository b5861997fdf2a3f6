"""All of Orbax in one file: save, restore against an abstract target, load for inference.

A checkpoint holds the train state (model parameters and optimizer state,
which includes the step) as a plain nested dict of arrays. Data order and
randomness are functions of (seed, step), so the step is all a resume needs
beyond the state. Restoring always passes an abstract target, so arrays come
back with the target's shapes, dtypes and shardings.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import sys
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from aelab.errors import UsageError

log = logging.getLogger("aelab")


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
    """An Orbax CheckpointManager over `workdir/checkpoints` keeping the newest `keep`.

    Orbax writes each step into a temporary directory and renames it when
    complete, so a hard kill never leaves a half checkpoint that looks whole;
    leftovers of interrupted saves are cleaned up on the next start.
    """

    def __init__(self, directory: str, keep: int):
        self.directory = os.path.abspath(directory)
        self.manager = _manager(self.directory, ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True))

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

    def restore_latest(self, state: nnx.State) -> tuple[int, nnx.State]:
        """The newest checkpoint that restores, as (step, state); (0, state) when there is none.

        A checkpoint that fails to read is moved aside (never deleted) with a
        warning, and the next older one is tried. One whose shapes differ from
        `state` is a different model, not damage: that raises a UsageError.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                shapes = _shapes(self.manager.item_metadata(step)["state"])
            except Exception as e:  # unreadable metadata: damaged
                self._quarantine(step, e)
                continue
            if shapes != _shapes(_pure(state)):
                raise UsageError(
                    f"checkpoint {self.directory}/{step} holds a model of other shapes than this "
                    "config builds; use a new --workdir or the config it was trained with")
            try:
                with _abandoned_reads_quiet():
                    return step, self.restore(step, state)
            except Exception as e:  # truncated or corrupted array data
                self._quarantine(step, e)
        return 0, state

    def _quarantine(self, step: int, error: Exception) -> None:
        """Moves a damaged checkpoint to `checkpoints.corrupt/` so new saves cannot collide with it."""
        target_dir = self.directory.rstrip("/") + ".corrupt"
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(os.path.join(self.directory, str(step)), target)
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        log.warning("checkpoint step %d cannot be restored (%s); moved to %s, trying an older one",
                    step, reason, target)
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


@contextlib.contextmanager
def _abandoned_reads_quiet():
    """Sends the leftovers of a failed Orbax read to the debug log instead of stderr.

    When one array of a checkpoint fails to read, Orbax abandons the other reads in flight.
    They then fail as they complete (Orbax has closed their event loop) or are collected,
    which Python prints as "Exception ignored" tracebacks, up to hundreds of lines, during
    the restore and at random later moments: a handled, already reported damage would look
    like a crash. Inside this block, and after it if it failed, sys.unraisablehook drops those
    two kinds of leftovers with one debug line each and passes anything else to the hook it
    replaced; after a success the previous hook is back.
    """
    previous = sys.unraisablehook
    if getattr(previous, "aelab_quiets_abandoned_reads", False):
        yield
        return

    def hook(unraisable):
        if _is_abandoned_read(unraisable):
            log.debug("after a failed checkpoint read, ignored: %r", unraisable.exc_value)
        else:
            previous(unraisable)

    hook.aelab_quiets_abandoned_reads = True
    sys.unraisablehook = hook
    try:
        yield
    except BaseException:
        gc.collect()  # the abandoned coroutines, now rather than inside some later, unrelated code
        raise  # and the hook stays for reads that complete later
    sys.unraisablehook = previous


def _is_abandoned_read(unraisable) -> bool:
    code = getattr(unraisable.object, "cr_code", None)  # a coroutine being closed
    if code is not None:
        return f"{os.sep}orbax{os.sep}" in code.co_filename
    # A read finishing after Orbax closed its event loop, which then refuses the callback.
    return (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed")


def read_state(workdir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
    """The raw saved state of a workdir (latest step by default), as numpy arrays, for inspection."""
    manager = _manager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                       ocp.CheckpointManagerOptions(read_only=True))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    return step, jax.tree.map(jax.device_get, restored["state"])


def _manager(directory: str, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
    # A handler for "state" lets item_metadata read shapes without restoring arrays.
    return ocp.CheckpointManager(directory, options=options,
                                 item_handlers={"state": ocp.StandardCheckpointHandler()})


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """{'a/b/c': shape} of a nested mapping of arrays or array metadata."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        flat["/".join(str(getattr(k, "key", k)) for k in path)] = tuple(leaf.shape)
    return flat
