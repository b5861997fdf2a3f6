"""The exception types the CLI turns into one line on stderr and an exit code.

`UsageError` is bad input (config, data, paths): exit code 2, raised before
anything is written to a workdir. `WriteError` is a run that could not write
its files (a full disk, a read-only file system), `NonFiniteError` training
that diverged: exit code 1, with the last good checkpoint named and nothing
half-written left behind.
"""

from __future__ import annotations

import errno


class UsageError(ValueError):
    """Bad input from the user: a config value, a data file, a path."""


class WriteError(RuntimeError):
    """The run could not write a file of its workdir; what was written before is intact."""


class NonFiniteError(RuntimeError):
    """Training produced a non-finite metric; the checkpoints written before it are kept."""

    def __init__(self, step: int, metric: str, value: float):
        super().__init__(step, metric, value)
        self.step, self.metric, self.value = step, metric, value
        self.last_checkpoint: int | None = None  # set by the loop, which knows its checkpoints

    def __str__(self) -> str:
        kept = (f"the last good checkpoint (step {self.last_checkpoint}) is kept"
                if self.last_checkpoint else "no checkpoint had been written")
        return (f"non-finite {self.metric}={self.value} at step {self.step}; training stopped and {kept}. "
                "Lower optimizer.learning_rate or set optimizer.grad_clip_norm, or start a new --workdir "
                "with train.skip_nonfinite=True to skip such steps")


def choose(kind: str, name: str, known) -> None:
    """Raises a UsageError unless `name` is one of `known`."""
    if name not in known:
        raise UsageError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def describe_os_error(error: BaseException) -> str:
    """A short reason for a failed write: "no space left on device", "read-only file system", ...

    Orbax and TensorStore report a full disk as a ValueError whose text holds the errno,
    so the text is read too.
    """
    text = str(error)
    code = getattr(error, "errno", None)
    if code in NO_SPACE or "No space left" in text or "os_error_code='28'" in text:
        return "no space left on device"
    if code == errno.EROFS or "Read-only file system" in text:
        return "read-only file system"
    if code == errno.EACCES or "Permission denied" in text:
        return "permission denied"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return text.strip().splitlines()[0][:200] if text.strip() else type(error).__name__
