"""One process of a multi-process run, watched from outside.

JAX's distributed runtime ends a process whose peers never connect, or are lost mid-run, with an
abort and a C++ stack trace (exit 134) after its own timeouts. `aelab train`, as one process of
several, therefore trains in a child process and turns those endings into one line naming the
process, the coordinator and (for a lost peer) the last good checkpoint, exit 1; JAX's own log of
the child is kept in a file the line names. The child ends itself when this process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from typing import Callable, Iterator

import jax

from aelab.workdir import shown

CHILD = "AELAB_SUPERVISED"  # set in the child: it trains instead of supervising again
PARENT = "AELAB_SUPERVISOR"  # the supervisor's process id, which the child ends with

# absl's log lines ("E1208 02:30:30.929936 30675 client.h:80] ...") and the C++ stack trace of an
# abort: the runtime's, never aelab's output.
RUNTIME_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|\*\*\* |\s+@\s+0x|aelab: runtime: )")
# What the runtime says when the processes lose each other (its fatal errors and gloo's).
LOST = re.compile(r"coordination service|distributed service|heartbeat|gloo|RegisterTask|"
                  r"Wait_for_all_tasks|Barrier|DEADLINE_EXCEEDED|UNAVAILABLE|Connection reset|"
                  r"Connection closed|Socket closed", re.IGNORECASE)
ABORTED = (-signal.SIGABRT, 128 + signal.SIGABRT)
LOST_PEER = 75  # the child's exit status when a collective lost its peers (EX_TEMPFAIL)


def is_child() -> bool:
    return os.environ.get(CHILD) == "1"


@contextlib.contextmanager
def peers_watched() -> Iterator[None]:
    """In the child: a runtime error from the peers (a collective whose peer is gone) ends this
    process at once, saying so to the supervisor; JAX's own shutdown would first wait out its
    heartbeat timeout, then abort."""
    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        if not LOST.search(str(e)):
            raise
        sys.stderr.write(f"aelab: runtime: {shown(str(e))}\n")
        sys.stderr.flush()
        os._exit(LOST_PEER)  # the checkpoints saved so far are whole (each is renamed into place)


def run(process_id: int | str, num_processes: int | str, coordinator: str, connect_timeout_s: int,
        last_checkpoint: Callable[[], int | None]) -> int:
    """Runs this command again as a child (the same interpreter and arguments) and waits for
    it, passing its output through and signals on; returns its exit status, or 1 with one line
    when the runtime ended it."""
    log = tempfile.NamedTemporaryFile("w", prefix=f"aelab-process{process_id}-", suffix=".log", delete=False)
    child = subprocess.Popen([sys.executable, *sys.orig_argv[1:]], stderr=subprocess.PIPE, text=True,
                             errors="replace", env={**os.environ, CHILD: "1", PARENT: str(os.getpid())})
    forwarded = {s: signal.signal(s, lambda number, _: child.send_signal(number))
                 for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    runtime_said, ending, continuing = [], False, False
    try:
        with log:
            for line in child.stderr:
                log.write(line)
                # The runtime's messages run over several lines: what follows one of its lines is
                # its own until aelab speaks again; after a fatal line, all of it is.
                continuing = RUNTIME_LINE.match(line) is not None or (continuing and not line.startswith("aelab: "))
                if continuing or ending:
                    runtime_said.append(line)
                    ending = ending or line.startswith(("F", "*** "))
                else:
                    sys.stderr.write(line)
                    sys.stderr.flush()
            status = child.wait()
    finally:
        for s, handler in forwarded.items():
            signal.signal(s, handler)
    said = "".join(runtime_said)
    if status not in ABORTED and status != LOST_PEER:
        os.unlink(log.name)
        return status
    where = f"process {process_id} of {num_processes} (coordinator {shown(coordinator)})"
    if not _connected(said):
        print(f"aelab: error: {where}: not every process connected within {connect_timeout_s} s "
              f"(--connect_timeout_s); start all {num_processes} with the same --coordinator_address and "
              f"--num_processes, each with its own --process_id. JAX's log: {log.name}", file=sys.stderr)
        return 1
    named = re.findall(r"Task (\d+) heartbeat timeout|/task:(\d+)", said)
    peers = sorted({int(a or b) for a, b in named} - {process_id})
    if not peers and num_processes == 2 and process_id in (0, 1):
        peers = [1 - process_id]  # the only other one
    lost = f"process {', '.join(map(str, peers))}" if peers else "a peer process"
    step = last_checkpoint()
    print(f"aelab: error: {where}: lost {lost} mid-run; the last good checkpoint is "
          f"{'step ' + str(step) if step is not None else 'none'}: rerun every process to resume. "
          f"JAX's log: {log.name}", file=sys.stderr)
    return 1


def _connected(said: str) -> bool:
    """Whether the runtime's log shows the processes met (a failure at start names registration)."""
    return not re.search(r"RegisterTask|Wait_for_all_tasks_to_register|cluster registration", said)
