"""The workdir contract: file names, atomic writes, and the run's environment record.

    DIR/config.json   DIR/model.json   DIR/env.json   DIR/metrics.jsonl   DIR/checkpoints/
    DIR/figures/*.png DIR/summary.json   (and DIR/tensorboard/ event files)
    text tasks also: DIR/tokenizer.model   DIR/samples/<split>_<step>.txt
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib import metadata
from typing import Any, Callable, Iterator

from aelab.errors import UsageError, WriteError, describe_os_error

CONFIG = "config.json"
ENV = "env.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
SUMMARY = "summary.json"
TENSORBOARD = "tensorboard"
RESUMES = "resumes.jsonl"
MODEL = "model.json"  # what rebuilding the model needs besides the config: the example shape
SAMPLES = "samples"  # decoded outputs of each evaluation (translation)
LOCK = ".lock"

def atomic_write(path: str, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, then renames: readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = path  # a failed write names no file; the caller's message should
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def inside(path: str, folder: str) -> bool:
    """Whether `path`, symbolic links resolved, lies in `folder` (itself included)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def confined(folder: str, name: str, what: str) -> str:
    """`folder/name`, refused (UsageError) where `name` or a symbolic link on the way leads out
    of `folder`: every path a workdir, sweep or manifest names stays in its folder."""
    path = os.path.join(folder, name)
    if os.path.isabs(name) or not inside(path, folder):
        raise UsageError(f"{what} {shown(name)} leads outside {shown(folder)}"
                         + (f" (to {shown(os.path.realpath(path))})" if os.path.lexists(path) else "")
                         + "; a run's files stay in its folder")
    return path


def read_record(folder: str, name: str, kind: type = dict) -> Any:
    """A JSON file of a workdir or sweep (config.json, model.json, sweep.json, ...), confined to
    `folder` and checked to hold a `kind`; damage is one UsageError naming the file."""
    path = confined(folder, name, "the file")
    try:
        value = read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{shown(path)}: no such file") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{shown(path)} is damaged: not JSON ({shown(str(e))})") from None
    if not isinstance(value, kind):
        raise UsageError(f"{shown(path)} is damaged: it holds a {type(value).__name__}, not a "
                         f"{'JSON object' if kind is dict else kind.__name__}")
    return value


def shown(text: str) -> str:
    """`text` (a path, a name read from a file) as one line: control characters escaped, so that a
    file name cannot forge another line of aelab's output."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def environment(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, devices and command line, so a result can be reproduced."""
    import jax

    versions = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
                    "ml-collections", "tensorflow-datasets", "grain", "scikit-learn", "aelab"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "command": list(sys.argv if argv is None else argv),
    }


def remove_stale_temporaries(workdir: str) -> None:
    """Deletes the temporary files of `atomic_write`s that a hard kill interrupted."""
    for folder in (workdir, os.path.join(workdir, FIGURES), os.path.join(workdir, SAMPLES)):
        for path in glob.glob(os.path.join(folder, ".*.tmp")):
            os.unlink(path)


def check_workdir(workdir: str) -> None:
    """Refuses (UsageError) a --workdir that is not, and cannot become, a folder."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UsageError(f"--workdir={workdir} is a file, not a folder; pass a folder (it is created if missing)")
    parent = os.path.dirname(os.path.abspath(workdir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--workdir={workdir}: {parent} is a file, not a folder")


@contextlib.contextmanager
def writes_reported(workdir: str, last_checkpoint: Callable[[], int | None]) -> Iterator[None]:
    """Turns a failed write of the run's files (a full disk, a read-only file system) into one
    WriteError that names the file, the reason and the last good checkpoint."""
    try:
        yield
    except OSError as e:
        step = last_checkpoint()
        kept = f"the last good checkpoint is step {step}" if step else "no checkpoint had been written"
        where = e.filename or workdir
        raise WriteError(f"cannot write {where} ({describe_os_error(e)}); {kept}; "
                         "rerun to resume once the cause is fixed") from None


@contextlib.contextmanager
def scratch(parent: str, prefix: str) -> Iterator[str]:
    """A new folder `parent/<prefix>XXXX` that this process holds (a lock inside it, dropped by the
    kernel whatever ends the process): what a command builds before renaming it into place. The
    scratch folders of the same prefix that no live process holds (a killed command's) are
    removed first. Call `release(path)` before renaming it."""
    os.makedirs(parent, exist_ok=True)
    remove_stale_scratch(parent, prefix)
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    fd = os.open(os.path.join(path, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # never half a result left beside `parent`'s files
        raise
    finally:
        os.close(fd)


def release(scratch_path: str) -> None:
    """Drops the lock file of a `scratch` folder about to be renamed into place (its lock is held
    until the `scratch` block ends; a folder without one is not taken for stale for a while)."""
    os.unlink(os.path.join(scratch_path, LOCK))


STALE_UNLOCKED_S = 600  # a scratch folder without a lock file, this old, is left over (an older version's)


def remove_stale_scratch(parent: str, prefix: str) -> None:
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if not name.startswith(prefix) or not os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            fd = os.open(os.path.join(path, LOCK), os.O_RDWR)
        except FileNotFoundError:
            if time.time() - os.path.getmtime(path) > STALE_UNLOCKED_S:
                shutil.rmtree(path, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live process holds it
            os.close(fd)
            continue
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


@contextlib.contextmanager
def exclusive(workdir: str) -> Iterator[None]:
    """Holds an advisory lock on `workdir` so a second process refuses at once.

    The kernel drops the lock when the process dies, even by SIGKILL, so a
    crashed run never leaves a stale lock behind.
    """
    path = os.path.join(workdir, LOCK)
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UsageError(f"--workdir={workdir} cannot be written ({describe_os_error(e)}); "
                         "pass a folder you can write to") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UsageError(f"workdir {workdir} is in use by another aelab process (pid {holder}); "
                             "wait for it to finish or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def record_start(workdir: str, config: dict, resumed_from: int, changes: list[str], model: dict) -> None:
    """Writes config.json, model.json (what rebuilding the model needs besides the config) and
    env.json; a resume is also appended to resumes.jsonl."""
    write_json(os.path.join(workdir, CONFIG), config)
    write_json(os.path.join(workdir, MODEL), model)
    env = environment()
    write_json(os.path.join(workdir, ENV), env)
    if resumed_from:
        record = {"step": resumed_from, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "config_changes": changes, "command": env["command"]}
        with open(os.path.join(workdir, RESUMES), "a") as f:
            f.write(json.dumps(record) + "\n")
