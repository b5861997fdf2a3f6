"""Fault injection for sweeps: SIGTERM and SIGKILL at random moments, rerun each time; the final
report equals an unbroken sweep's, bit for bit.

Moments are placed by the sweep's progress (steps logged over all points), not by the clock
alone, so every signal lands on a live, unfinished sweep however fast the machine is.
"""

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from test_fault_injection import environment

CONFIG = str(REPO / "configs" / "digits_ae.py")
STEPS = 300
FLAGS = ["--config.model.mlp.hidden=(16,)", f"--config.train.num_steps={STEPS}", "--config.train.batch_size=32",
         "--config.train.checkpoint_every=50", "--config.train.log_every=25", "--config.train.eval_every=150",
         "--config.train.progress=False", "--config.train.tensorboard=False",
         "--sweep=model.latent_dim=2,3"]


def command(workdir):
    return [sys.executable, "-m", "aelab.main", "sweep", f"--config={CONFIG}", f"--workdir={workdir}", *FLAGS]


def progress(workdir) -> int:
    """Steps logged over all points (whole lines only)."""
    total = 0
    for metrics in (workdir / "points").glob("*/metrics.jsonl") if (workdir / "points").exists() else []:
        logged = [0]
        for line in metrics.read_text().splitlines():
            try:
                logged.append(json.loads(line)["step"])
            except ValueError:  # a line being written
                pass
        total += max(logged)
    return total


@pytest.mark.slow
def test_random_signals_to_a_sweep_lose_nothing(tmp_path):
    env = environment(tmp_path)
    reference = tmp_path / "reference"
    done = subprocess.run(command(reference), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    rng = random.Random(2026)
    signals = [signal.SIGTERM] * 2 + [signal.SIGKILL] * 3
    rng.shuffle(signals)
    targets = sorted(rng.sample(range(25, 2 * STEPS - 50, 25), len(signals) - 1))
    moments = [("startup", rng.uniform(0.3, 2.0))] + [("progress", t) for t in targets]
    landed = 0
    for sig, (kind, value) in zip(signals, moments):
        process = subprocess.Popen(command(run), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        if kind == "startup":
            time.sleep(value)
        else:
            while progress(run) < value and process.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.05))
        if process.poll() is None:
            process.send_signal(sig)
            landed += 1
        _, err = process.communicate(timeout=180)
        if sig == signal.SIGTERM and "got SIGTERM" in err:
            assert process.returncode == 0 and "Traceback" not in err, err
            record = json.loads((run / "sweep.json").read_text())
            assert record.get("stopped") or all(p["status"] == "done" for p in record["points"].values())
        assert process.returncode in (0, -signal.SIGKILL, -signal.SIGTERM), err
    assert landed == len(signals), f"only {landed} of {len(signals)} signals landed on a live sweep"
    done = subprocess.run(command(run), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (run / "report.csv").read_text() == (reference / "report.csv").read_text()
    points = json.loads((run / "sweep.json").read_text())["points"]
    assert [p["status"] for p in points.values()] == ["done"] * 2
