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


def launch(out, workdir, folder, steps, processes=2):
    """The processes of one multi-process run (a single plain process when processes=1)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}", "XLA_FLAGS": ""}
    command = [sys.executable, str(CHILD), str(out), "train", "--config=configs/digits_ae.py",
               f"--workdir={workdir}", *overrides(folder, steps)]
    if processes == 1:
        return [subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)]
    port = free_port()
    return [subprocess.Popen(command + [f"--coordinator_address=localhost:{port}", f"--num_processes={processes}",
                                        f"--process_id={i}"], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(processes)]


def finish(processes, timeout=240):
    results = [p.communicate(timeout=timeout) for p in processes]
    return [(p.returncode, out, err) for p, (out, err) in zip(processes, results)]


@pytest.mark.slow
def test_two_processes_read_disjoint_halves_and_train_like_one(tmp_path):
    folder = colour_folder(tmp_path / "f", count=128)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    single = launch(one, tmp_path / "w1", folder, 20, processes=1)
    ([(code, _, err)]) = finish(single)
    assert code == 0, err
    results = finish(launch(two, tmp_path / "w2", folder, 20))
    assert [code for code, _, _ in results] == [0, 0], results
    # Each process decoded only its own half of every global batch.
    config = from_file(REPO / "configs" / "digits_ae.py")
    config.data.name = f"images:{folder}"
    dataset = load(config.data, stream_above_mb=0)
    batches = TrainBatches(dataset.train, 16, config.seed)
    source_rows = dataset.train.images._index  # view row -> file row
    reads = [json.loads((two / f"reads{i}.json").read_text()) for i in (0, 1)]
    assert sorted(int(s) for s in reads[0]) == list(range(20))
    for step in range(20):
        halves = [sorted(r[str(step)]) for r in reads]
        assert not set(halves[0]) & set(halves[1])
        expected = source_rows[batches.indices(step)]
        assert halves == [sorted(expected[:8]), sorted(expected[8:])]
    # ...and the two together trained the model one process trains, to float tolerance.
    a = jax.tree.leaves(checkpoint.read_state(str(tmp_path / "w1"))[1])
    b = jax.tree.leaves(checkpoint.read_state(str(tmp_path / "w2"))[1])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step_and_the_rerun_resumes(tmp_path):
    folder = colour_folder(tmp_path / "f", count=128)
    workdir = tmp_path / "w"
    processes = launch(tmp_path, workdir, folder, 1_000_000)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 180
    while not (metrics.exists() and metrics.read_text().count('"train"') >= 2):
        assert time.time() < deadline and all(p.poll() is None for p in processes), finish(processes)
        time.sleep(0.2)
    processes[1].send_signal(signal.SIGTERM)  # not the chief
    results = finish(processes)
    assert [code for code, _, _ in results] == [0, 0], results
    stopped = [int(err.split("stopped at step ")[1].split(";")[0]) for _, _, err in results]
    assert stopped[0] == stopped[1], stopped
    assert sorted(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit()) == [stopped[0]]
    results = finish(launch(tmp_path, workdir, folder, stopped[0] + 10))
    assert [code for code, _, _ in results] == [0, 0], results
    assert f"aelab: step {stopped[0] + 10}: eval" in results[0][1]
