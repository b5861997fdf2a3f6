"""Processes that end with the one that started them: a SIGKILLed trainer leaves no input worker,
and a lost `aelab train` supervisor no training child, running on behind it."""

from __future__ import annotations

import os
import threading
import time

_watched: set[int] = set()


def end_with(parent: int, poll_s: float = 0.5) -> None:
    """Starts (once per process and parent) a thread that exits this process as soon as `parent`
    is no longer its parent (it died, and the process was handed to another)."""
    if parent in _watched:
        return
    _watched.add(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="aelab-end-with-parent", daemon=True).start()
