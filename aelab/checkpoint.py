"""All of Orbax in one file: save, verify, restore against an abstract target, read-only loads.

A checkpoint holds three items:
- `state`: the train state (model parameters and optimizer state, which
  includes the step) as a plain nested dict of arrays. Data order and
  randomness are functions of (seed, step), so the step is all a resume needs
  beyond the state.
- `integrity`: a CRC-32 of every array, computed at save time and checked at
  restore, so flipped bytes are caught like any other damage.
- `config`: the resolved config the state was trained with, so a resume that
  changes its meaning is refused even when `config.json` is gone.

Restoring always passes an abstract target, so arrays come back with the
target's shapes, dtypes and shardings. A trainer's `Checkpointer` moves a
damaged checkpoint aside; a read-only one (every command that uses a trained
run) never writes, deletes or cleans anything, and can read while training
goes on in the same folder.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import sys
import time
import traceback
import zlib
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from aelab.errors import UsageError, WriteError, describe_os_error

log = logging.getLogger("aelab")

ITEMS = ("state", "integrity", "config")


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


def _flat(tree) -> dict[str, Any]:
    """{'a/b/c': leaf} of a nested mapping."""
    return {"/".join(str(getattr(k, "key", k)) for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _host_value(leaf) -> np.ndarray | None:
    """A leaf's whole value on the host; None where this process does not hold all of it."""
    if isinstance(leaf, jax.Array):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_shards[0].data)
        if not leaf.is_fully_addressable:
            return None
    return np.asarray(leaf)


def checksums(pure: dict) -> dict[str, list]:
    """{'a/b/c': [dtype, crc32 of the array's bytes]} for every leaf this process holds whole."""
    out = {}
    for path, leaf in _flat(pure).items():
        value = _host_value(leaf)
        if value is not None:
            out[path] = [str(value.dtype), zlib.crc32(np.ascontiguousarray(value).view(np.uint8))]
    return out


def verify(pure: dict, expected: dict[str, list]) -> None:
    """Raises ValueError naming the first array whose bytes differ from their checksum at save time."""
    for path, leaf in _flat(pure).items():
        saved = expected.get(path)
        value = _host_value(leaf)
        if saved is None or value is None or str(value.dtype) != saved[0]:
            continue  # not recorded, not held whole here, or cast on restore: nothing to compare
        if zlib.crc32(np.ascontiguousarray(value).view(np.uint8)) != saved[1]:
            raise ValueError(f"array {path} does not match its checksum (the file was changed after saving)")


class Checkpointer:
    """An Orbax CheckpointManager over `workdir/checkpoints` keeping the newest `keep`.

    Orbax writes each step into a temporary directory and renames it when
    complete, so a hard kill never leaves a half checkpoint that looks whole;
    a trainer cleans up leftovers of interrupted saves on its next start.
    `read_only=True` opens the folder without creating, deleting, cleaning or
    moving anything: what every command that reads a run uses.
    """

    def __init__(self, directory: str, keep: int | None = None, read_only: bool = False):
        _quiet_orbax_leftovers()
        self.directory = os.path.abspath(directory)
        self.read_only = read_only
        if read_only:
            options = ocp.CheckpointManagerOptions(read_only=True)
        else:
            options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                   cleanup_tmp_directories=True)
        self.manager = _manager(self.directory, options)
        self._pending: int | None = None  # the step whose asynchronous save may still run

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: nnx.State, config: dict | None = None, data: dict | None = None) -> None:
        """Starts an asynchronous save of `state` (and the `config` it was trained with, and the
        fingerprint of the `data` it was trained on).

        Arrays are copied off the device before it returns. A save that fails (a full disk)
        raises WriteError, here or at the next save or `wait`, after removing its partial files.
        """
        self.wait()
        pure = _pure(state)
        items = {"state": ocp.args.StandardSave(pure),
                 "integrity": ocp.args.JsonSave({"crc32": checksums(pure)})}
        if config is not None:
            items["config"] = ocp.args.JsonSave(config)
        if data is not None:
            items["data"] = ocp.args.JsonSave(data)
        self._pending = step
        with self._writing(step):
            self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def wait(self) -> None:
        """Blocks until the pending save is committed; raises WriteError if it was not."""
        if self._pending is None:
            return
        step = self._pending
        with self._writing(step):
            self.manager.wait_until_finished()
        self._pending = None
        if not os.path.isdir(os.path.join(self.directory, str(step))):  # Orbax logged and skipped it
            self._failed(step, "the save did not complete")

    @contextlib.contextmanager
    def _writing(self, step: int) -> Iterator[None]:
        try:
            yield
        except Exception as e:  # Orbax and TensorStore raise ValueError for a failed write
            self._pending = None
            self._failed(step, describe_os_error(e))

    def _failed(self, step: int, reason: str) -> None:
        for partial in glob.glob(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")):
            shutil.rmtree(partial, ignore_errors=True)
        self.manager.reload()
        good = [s for s in self.manager.all_steps() if s != step]
        kept = f"the last good checkpoint is step {max(good)}" if good else "no earlier checkpoint exists"
        raise WriteError(f"cannot write checkpoint step {step} in {self.directory} ({reason}); "
                         f"{kept}; rerun to resume once the cause is fixed")

    def restore(self, step: int, state: nnx.State) -> nnx.State:
        """Restores `step` into a state shaped like `state` (which is not modified), checking
        every array against its checksum where the checkpoint has them."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _pure(state))
        items = {"state": ocp.args.StandardRestore(target)}
        if self._has_item(step, "integrity"):
            items["integrity"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        if "integrity" in items:
            verify(restored["state"], restored["integrity"]["crc32"])
        fresh = jax.tree.map(lambda x: x, state)
        return _unstringify_into(fresh, restored["state"])

    def _has_item(self, step: int, item: str) -> bool:
        return os.path.isdir(os.path.join(self.directory, str(step), item))

    def restore_latest(self, state: nnx.State) -> tuple[int, nnx.State]:
        """The newest checkpoint that restores, as (step, state); (0, state) when there is none.

        A checkpoint that fails to read, or whose arrays fail their checksum, is damaged:
        a trainer moves it aside (never deletes it) with a one-line warning and tries the
        next older one; a read-only reader warns and tries the next older one. One whose
        shapes differ from `state` is a different model, not damage: that raises UsageError.
        A step that a running trainer deletes while it is read is skipped quietly.
        """
        for _ in range(3):  # a read-only reader lists again if a trainer replaced what it listed
            self.manager.reload()
            vanished = False
            for step in sorted(self.manager.all_steps(), reverse=True):
                try:
                    shapes = _shapes(self.manager.item_metadata(step)["state"])
                except Exception as e:  # unreadable metadata: damaged, or deleted meanwhile
                    vanished |= self._damaged(step, e)
                    continue
                if shapes != _shapes(_pure(state)):
                    raise UsageError(
                        f"checkpoint {self.directory}/{step} holds a model of other shapes than this "
                        "config builds; use a new --workdir or the config it was trained with")
                try:
                    return step, self.restore(step, state)
                except Exception as e:  # truncated, corrupted or changed array data
                    vanished |= self._damaged(step, e)
            if not vanished:
                break
        return 0, state

    def _damaged(self, step: int, error: Exception) -> bool:
        """Reports (and, for a trainer, moves aside) a checkpoint that did not restore; True
        when it is simply gone, deleted by a trainer since it was listed."""
        path = os.path.join(self.directory, str(step))
        if not os.path.isdir(path):
            log.debug("checkpoint step %d vanished while being read (a trainer deleted it)", step)
            return True
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        if self.read_only:
            log.warning("checkpoint step %d cannot be restored (%s); using an older one", step, reason)
            return False
        target_dir = self.directory.rstrip("/") + ".corrupt"
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(path, target)
        self.manager.reload()  # so a new save of this step is not taken for a duplicate
        log.warning("checkpoint step %d cannot be restored (%s); moved to %s, trying an older one",
                    step, reason, target)
        return False

    def saved_config(self) -> dict | None:
        """The config stored with the newest checkpoint that has one (None for older runs)."""
        return self._saved_json("config")

    def saved_data(self, step: int) -> dict | None:
        """The data fingerprint stored with checkpoint `step` (None: a version that stored none)."""
        return self._saved_json("data", [step])

    def _saved_json(self, item: str, steps: list[int] | None = None) -> dict | None:
        for step in sorted(self.manager.all_steps() if steps is None else steps, reverse=True):
            if self._has_item(step, item):
                try:
                    return self.manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]
                except Exception as e:  # a damaged checkpoint: its restore reports it
                    log.debug("%s of checkpoint step %d unreadable: %s", item, step, e)
        return None

    def close(self) -> None:
        """Waits for the pending save (raising WriteError if it failed) and closes the manager."""
        try:
            self.wait()
        finally:
            self.manager.close()


def _from_orbax(record: logging.LogRecord) -> bool:
    """Whether a log record is Orbax's own, or asyncio's report of an Orbax future that failed
    (its traceback passes through Orbax, or its error names Orbax's temporary folders)."""
    if f"{os.sep}orbax{os.sep}" in record.pathname:
        return True
    if not record.exc_info:
        return False
    _, error, trace = record.exc_info
    frames = traceback.extract_tb(trace)
    return (any(f"{os.sep}orbax{os.sep}" in frame.filename or frame.name == "_wrap_awaitable" for frame in frames)
            or ".orbax-checkpoint-tmp" in str(error))


class _OrbaxToDebug(logging.Filter):
    """Orbax's log records go to aelab's debug log (AELAB_DEBUG=1 shows it): its errors reach
    the user as aelab's one-line messages instead of tracebacks from its threads."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _from_orbax(record):
            return True
        log.debug("orbax: %s", record.getMessage(), exc_info=record.exc_info)
        return False


def _is_abandoned_io(unraisable) -> bool:
    obj = unraisable.object
    code = getattr(obj, "cr_code", None) or getattr(obj, "gi_code", None)  # a coroutine being closed
    if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
        return True
    # asyncio's wrapper around a TensorStore future that Orbax awaited (only Orbax awaits those
    # here), closed with Orbax's event loop; or a traceback through Orbax.
    if code is not None and code.co_name == "_wrap_awaitable":
        return True
    if unraisable.exc_traceback is not None and any(
            f"{os.sep}orbax{os.sep}" in frame.filename for frame in traceback.extract_tb(unraisable.exc_traceback)):
        return True
    # An operation finishing after Orbax closed its event loop, which then refuses the callback.
    return (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed")


def _quiet_orbax_leftovers() -> None:
    """Sends what Orbax prints about a failed read or write to the debug log instead of stderr.

    When one array of a checkpoint fails to read or write, Orbax logs the error from its
    threads and abandons the other operations in flight; those fail as they complete (their
    event loop is closed) or are collected, which Python prints as "Exception ignored"
    tracebacks, up to hundreds of lines, at random later moments, even at exit. A handled,
    already reported damage (or full disk) would look like a crash. So, once a Checkpointer
    exists, for the rest of the process: Orbax's log records (absl's and asyncio's loggers)
    and those two kinds of leftovers (sys.unraisablehook) go to the debug log; anything else
    goes where it went before.
    """
    for name in ("absl", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OrbaxToDebug) for f in logger.filters):
            logger.addFilter(_OrbaxToDebug())
    previous = sys.unraisablehook
    if getattr(previous, "aelab_quiets_abandoned_io", False):
        return

    def hook(unraisable):
        if _is_abandoned_io(unraisable):
            log.debug("after a failed checkpoint read or write, ignored: %r", unraisable.exc_value)
        else:
            previous(unraisable)

    hook.aelab_quiets_abandoned_io = True
    sys.unraisablehook = hook


def read_state(workdir: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
    """The raw saved state of a workdir (latest step by default), as numpy arrays, for inspection."""
    _quiet_orbax_leftovers()
    manager = _manager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                       ocp.CheckpointManagerOptions(read_only=True))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {workdir}/checkpoints")
    # Onto this process's first device, whatever the topology that saved it (several processes).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          manager.item_metadata(step)["state"])
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    manager.close()
    return step, jax.tree.map(jax.device_get, restored["state"])


def _manager(directory: str, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
    # Handlers by item let item_metadata read shapes without restoring arrays, and a restore
    # ask for any subset of the items.
    return ocp.CheckpointManager(directory, options=options, item_handlers={
        "state": ocp.StandardCheckpointHandler(), "integrity": ocp.JsonCheckpointHandler(),
        "config": ocp.JsonCheckpointHandler(), "data": ocp.JsonCheckpointHandler()})


def _shapes(tree) -> dict[str, tuple[int, ...]]:
    """{'a/b/c': shape} of a nested mapping of arrays or array metadata."""
    return {path: tuple(leaf.shape) for path, leaf in _flat(tree).items()}
