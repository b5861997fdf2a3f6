"""Fault injection: kill training at random moments, resume each time, end bitwise identical.

SIGKILL at 7 random moments (start-up, compile, mid-step, mid-checkpoint,
final evaluation) and SIGTERM at 3 more, each SIGTERM on a live training loop
(so each must be handled: a checkpoint and exit 0); before the last
interruption the newest checkpoint is truncated, and that relaunch must say
so. The final parameters must equal an uninterrupted run's bit for bit, and
metrics.jsonl must hold every step once.

The moments are placed by the run's progress, not by the clock alone: a few
kills land during start-up, the others a random instant after the run has
logged a random target step, targets spread over the whole run and the last
one at the final step. So every interruption lands on a live, unfinished run
however fast the machine is.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from aelab import checkpoint
from conftest import REPO
from test_reliability import truncate_largest_array_file

FLAGS = ["--config.model.mlp.hidden=(32,)", "--config.model.latent_dim=4",
         "--config.train.num_steps=6000", "--config.train.batch_size=32",
         "--config.train.checkpoint_every=100", "--config.train.log_every=50",
         "--config.train.eval_every=1000", "--config.train.keep_checkpoints=2",
         "--config.train.progress=False"]


def command(workdir):
    return [sys.executable, "-m", "aelab.main", "train",
            f"--config={REPO / 'configs' / 'digits_ae.py'}", f"--workdir={workdir}", *FLAGS]


def environment(tmp_path):
    cache = os.environ.get("AELAB_TEST_COMPILE_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "aelab-test-jax"))
    # CPU: the run is compared bitwise with an uninterrupted one, which aelab guarantees on CPU.
    return {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PLATFORMS": "cpu",
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def final_leaves(workdir):
    step, state = checkpoint.read_state(str(workdir))
    assert step == 6000
    return jax.tree.leaves(state)


def logged_step(workdir):
    """The newest train step in metrics.jsonl (whole lines only; 0 before any)."""
    try:
        lines = (workdir / "metrics.jsonl").read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # a line being written (or rewritten on resume)
            pass
    return max(steps, default=0)


def interruption_schedule(rng, num_steps=6000):
    """10 (signal, start-up delay or target step) pairs in run order."""
    # 2 kills during start-up (imports, config, compile), 8 at target steps at least
    # 300 apart so each relaunch has ground to cover, the last at the final step. SIGTERMs go
    # only to target steps before the last: a logged step proves the handler is installed, and
    # after the final step the handlers are already being put back.
    targets = sorted(rng.sample(range(300, num_steps - 300, 300), 7))
    signals = [signal.SIGTERM] * 3 + [signal.SIGKILL] * 4
    rng.shuffle(signals)
    moments = [(signal.SIGKILL, ("startup", rng.uniform(0.2, 2.5))) for _ in range(2)]
    moments += [(sig, ("step", t)) for sig, t in zip(signals, targets)]
    return moments + [(signal.SIGKILL, ("step", num_steps))]


@pytest.mark.slow
def test_random_kills_and_a_truncated_checkpoint_lose_nothing(tmp_path):
    env = environment(tmp_path)
    reference = tmp_path / "reference"
    subprocess.run(command(reference), env=env, check=True, capture_output=True)
    run = tmp_path / "run"
    rng = random.Random(2012)
    schedule = interruption_schedule(rng)
    landed, truncated = 0, None
    for i, (sig, (kind, value)) in enumerate(schedule):
        if i == len(schedule) - 1:  # the last relaunch starts from a damaged newest checkpoint
            steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
            truncated = steps[-1]
            assert truncated < 6000
            truncate_largest_array_file(run / "checkpoints" / str(truncated))
        process = subprocess.Popen(command(run), env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        if kind == "startup":
            deadline = time.time() + value
            while time.time() < deadline and process.poll() is None:
                time.sleep(0.01)
        else:
            while logged_step(run) < value and process.poll() is None:
                time.sleep(0.005)
            # A random instant past the target: mid-step, mid-checkpoint or, at the
            # final step, in the final evaluation.
            time.sleep(rng.uniform(0.0, 0.05))
        if process.poll() is None:
            process.send_signal(sig)
            landed += 1
        _, err = process.communicate(timeout=120)
        if sig == signal.SIGTERM:  # handled: checkpointed and exited cleanly
            assert "got SIGTERM" in err and process.returncode == 0, err
        else:
            assert process.returncode in (0, -signal.SIGKILL), err
        if truncated is not None:
            assert f"checkpoint step {truncated} cannot be restored" in err, err
        # Whatever the moment, the log stays readable: every line is whole JSON.
        if (run / "metrics.jsonl").exists():
            lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
            assert all(json.loads(line) for line in lines[:-1])
    assert landed == len(schedule), f"only {landed} of {len(schedule)} interruptions landed on a live run"
    assert list((run / "checkpoints.corrupt").glob(f"{truncated}-*"))
    done = subprocess.run(command(run), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for a, b in zip(final_leaves(reference), final_leaves(run), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    reference_records = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    key = lambda r: (r["step"], r["split"])  # noqa: E731
    assert [key(r) for r in records] == [key(r) for r in reference_records]
    # Evaluations see bitwise-equal parameters, so their numbers are equal too. (A train
    # record right after a resume between two log steps averages only the steps run since.)
    for r, q in zip(records, reference_records):
        if r["split"] != "train":
            assert r == q
