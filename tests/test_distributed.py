"""Several processes for real: two `aelab train` processes on this machine (jax.distributed with a
localhost coordinator, CPU collectives through gloo), one CPU device each."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO
from test_streaming import colour_folder

from aelab import checkpoint
from aelab.config import from_file
from aelab.data import load
from aelab.data.pipeline import TrainBatches

CHILD = REPO / "tests" / "distributed_child.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def overrides(folder, steps):
    return [f"--config.data.name=images:{folder}", "--config.train.device_data_mb=0",
            "--config.train.batch_size=16", f"--config.train.num_steps={steps}", "--config.train.log_every=5",
            "--config.train.eval_every=1000", "--config.train.checkpoint_every=1000",
            "--config.train.progress=False", "--config.train.tensorboard=False"]


def launch(out, workdir, folder, steps, processes=2, extra=None, started=None):
    """The processes of one multi-process run (a single plain process when processes=1);
    `extra[i]`: more arguments of process i; `started`: which of them to start (default all)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}", "XLA_FLAGS": ""}
    command = [sys.executable, str(CHILD), str(out), "train", "--config=configs/digits_ae.py",
               f"--workdir={workdir}", *overrides(folder, steps)]
    if processes == 1:
        return [subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
    port, extra = free_port(), extra or [[] for _ in range(processes)]
    return [subprocess.Popen(command + [f"--coordinator_address=localhost:{port}", f"--num_processes={processes}",
                                        f"--process_id={i}", *extra[i]], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for i in (range(processes) if started is None else started)]


def one_error_line(err: str) -> str:
    """The one line a failed process printed (JAX's own log is kept in a file it names)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aelab: error: "), err
    return lines[0]


@pytest.mark.slow
def test_processes_that_disagree_refuse_at_start_and_a_missing_peer_ends_within_the_bounded_wait(tmp_path):
    """Run side by side: (1) a learning rate set on process 1 only: each process ends at once,
    exit 2, with the same line naming the process that differs, before the workdir is written;
    (2) process 0 of 2 alone: it waits --connect_timeout_s, then one line naming it and the
    coordinator, exit 1 (JAX's own ending is an abort with a C++ stack trace after 300 s)."""
    folder = colour_folder(tmp_path / "f", count=64)
    began = time.monotonic()
    alone = launch(tmp_path, tmp_path / "alone", folder, 20, extra=[["--connect_timeout_s=5"], []], started=[0])
    disagreeing = launch(tmp_path, tmp_path / "w", folder, 20,
                         extra=[[], ["--config.optimizer.learning_rate=0.01"]])
    results = finish(disagreeing, timeout=120)
    assert [code for code, _, _ in results] == [2, 2], results
    for _, _, err in results:
        assert "the config of process 1 differs from process 0's" in one_error_line(err)
    assert not (tmp_path / "w").exists()
    [(code, _, err)] = finish(alone, timeout=120)
    assert code == 1, err
    line = one_error_line(err)
    assert "process 0 of 2 (coordinator localhost:" in line and "not every process connected within 5 s" in line
    assert time.monotonic() - began < 60


@pytest.mark.slow
def test_a_lost_peer_ends_the_survivor_with_one_line_naming_the_last_checkpoint(tmp_path):
    """SIGKILL of process 1 mid-run: process 0 ends within the heartbeat timeout, exit 1, naming
    process 1 and the last good checkpoint; the killed process's trainer does not outlive it."""
    folder = colour_folder(tmp_path / "f", count=64)
    workdir = tmp_path / "w"
    processes = launch(tmp_path, workdir, folder, 1_000_000,
                       extra=[["--config.train.checkpoint_every=20", "--heartbeat_timeout_s=10"]] * 2)
    deadline = time.time() + 180
    while not (workdir / "checkpoints" / "20").exists():
        assert time.time() < deadline and all(p.poll() is None for p in processes), finish(processes)
        time.sleep(0.1)
    processes[1].kill()
    began = time.monotonic()
    (code, _, err), _ = finish(processes, timeout=120)
    assert code == 1, err
    assert time.monotonic() - began < 60  # a collective fails at once; a barrier waits out the heartbeat
    line = one_error_line(err)
    assert "process 0 of 2" in line and "lost process 1 mid-run" in line, line
    step = int(line.split("the last good checkpoint is step ")[1].split(":")[0])
    assert step >= 20 and (workdir / "checkpoints" / str(step)).is_dir()
    time.sleep(3)  # the killed supervisor's training child ends with it
    alive = subprocess.run(["pgrep", "-f", f"--workdir={workdir} "], capture_output=True, text=True).stdout
    assert not alive.strip(), alive


def finish(processes, timeout=240):
    results = [p.communicate(timeout=timeout) for p in processes]
    return [(p.returncode, out, err) for p, (out, err) in zip(processes, results)]


@pytest.mark.slow
def test_two_processes_read_disjoint_halves_stop_together_and_train_like_one(tmp_path):
    """Two processes: a SIGTERM to one (not the chief) stops both at one step with one
    checkpoint; rerun, they finish where one process ends, to float tolerance; and for every
    step each decoded only its own half of the global batch."""
    folder = colour_folder(tmp_path / "f", count=128)
    workdir, first, second = tmp_path / "w", tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    processes = launch(first, workdir, folder, 1_000_000)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 180
    while not (metrics.exists() and metrics.read_text().count('"train"') >= 2):
        assert time.time() < deadline and all(p.poll() is None for p in processes), finish(processes)
        time.sleep(0.1)
    processes[1].send_signal(signal.SIGTERM)
    results = finish(processes)
    assert [code for code, _, _ in results] == [0, 0], results
    stopped = [int(err.split("stopped at step ")[1].split(";")[0]) for _, _, err in results]
    assert stopped[0] == stopped[1], stopped
    assert sorted(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit()) == [stopped[0]]
    end = stopped[0] + 10
    results = finish(launch(second, workdir, folder, end))
    assert [code for code, _, _ in results] == [0, 0], results
    assert f"aelab: step {end}: eval" in results[0][1]
    [(code, _, err)] = finish(launch(tmp_path, tmp_path / "one", folder, end, processes=1))
    assert code == 0, err
    a = jax.tree.leaves(checkpoint.read_state(str(tmp_path / "one"))[1])
    b = jax.tree.leaves(checkpoint.read_state(str(workdir))[1])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
    config = from_file(REPO / "configs" / "digits_ae.py")
    config.data.name = f"images:{folder}"
    dataset = load(config.data, stream_above_mb=0)
    batches = TrainBatches(dataset.train, 16, config.seed)
    source_rows = dataset.train.images._index  # view row -> file row
    for run, steps in ((first, range(stopped[0])), (second, range(stopped[0], end))):
        reads = [json.loads((run / f"reads{i}.json").read_text()) for i in (0, 1)]
        for step in steps:
            halves = [sorted(r[str(step)]) for r in reads]
            expected = source_rows[batches.indices(step)]
            assert halves == [sorted(expected[:8]), sorted(expected[8:])], step
