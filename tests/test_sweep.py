"""`aelab sweep` and `aelab report`: grids, resumability, failures, and bad specs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from aelab.main import main
from conftest import REPO

CONFIG = str(REPO / "configs" / "digits_ae.py")
FAST = ["--config.train.num_steps=60", "--config.train.log_every=20", "--config.train.eval_every=60",
        "--config.train.checkpoint_every=20", "--config.train.progress=False",
        "--config.model.mlp.hidden=(16,)", "--config.train.tensorboard=False"]


def sweep(workdir, *flags):
    return main(["aelab", "sweep", f"--config={CONFIG}", f"--workdir={workdir}", *FAST, *flags])


def test_grid_table_and_plots(tmp_path, capsys):
    assert sweep(tmp_path, "--sweep=model.latent_dim=2,4", "--sweep=seed=0,1") == 0
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert sorted(record["points"]) == ["latent_dim=2,seed=0", "latent_dim=2,seed=1",
                                        "latent_dim=4,seed=0", "latent_dim=4,seed=1"]
    assert all(p["status"] == "done" for p in record["points"].values())
    table = (tmp_path / "report.md").read_text().splitlines()
    assert len(table) == 2 + 4 and "eval_recon_sse" in table[0] and "pca_recon_sse" in table[0]
    assert (tmp_path / "figures" / "sweep_recon_sse.png").exists()
    csv_header = (tmp_path / "report.csv").read_text().splitlines()[0]
    assert csv_header.startswith("model.latent_dim,seed,status")
    (tmp_path / "report.md").unlink()
    assert main(["aelab", "report", f"--workdir={tmp_path}"]) == 0  # on demand
    assert (tmp_path / "report.md").exists()


def test_a_failing_point_is_recorded_and_the_others_go_on(tmp_path, capsys):
    assert sweep(tmp_path, "--sweep=train.batch_size=32,5000") == 1
    points = json.loads((tmp_path / "sweep.json").read_text())["points"]
    assert points["batch_size=32"]["status"] == "done"
    assert points["batch_size=5000"]["status"] == "failed"
    assert "larger than the training split" in points["batch_size=5000"]["error"]
    assert "1 points done, 1 failed" in capsys.readouterr().out


def test_killed_sweep_resumes_without_retraining_finished_points(tmp_path):
    command = [sys.executable, "-m", "aelab.main", "sweep", f"--config={CONFIG}", f"--workdir={tmp_path}",
               *FAST, "--config.train.num_steps=400", "--sweep=model.latent_dim=2,3,4"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = tmp_path / "points" / "latent_dim=2" / "summary.json"
    deadline = time.time() + 180
    while not first.exists():
        assert time.time() < deadline and process.poll() is None, "the first point never finished"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_at = os.stat(first).st_mtime_ns
    assert not (tmp_path / "points" / "latent_dim=4" / "summary.json").exists()
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.stat(first).st_mtime_ns == finished_at  # not retrained, not even re-evaluated
    points = json.loads((tmp_path / "sweep.json").read_text())["points"]
    assert [p["status"] for p in points.values()] == ["done"] * 3


@pytest.mark.parametrize("flags,message", [
    (["--sweep=model.latent_dimx=2,4"], "unknown sweep key 'model.latent_dimx'; keys under model:"),
    (["--sweep=model.latent_dim="], "has no values"),
    (["--sweep=model.latent_dim=2,four"], "sweep value model.latent_dim='four' is not a int"),
    (["--sweep=seed=0,1", "--sweep=seed=2"], "axis 'seed' is given twice"),
    (["--sweep=model.mlp.hidden=1,2"], "is not a single value"),
    (["--sweep=model.latent_dim=2,0"], "model.latent_dim=0 must be > 0"),
    ([], "--sweep is required; usage: aelab sweep"),
])
def test_bad_sweep_specs_exit_2_before_anything_runs(tmp_path, capsys, flags, message):
    workdir = tmp_path / "sweep"
    assert sweep(workdir, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not workdir.exists()


def test_report_orders_points_by_value_not_by_name(tmp_path):
    record = {"axes": [["model.latent_dim", [16, 4]]],
              "points": {"latent_dim=16": {"values": {"model.latent_dim": 16}, "status": "failed"},
                         "latent_dim=4": {"values": {"model.latent_dim": 4}, "status": "failed"}}}
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    assert main(["aelab", "report", f"--workdir={tmp_path}"]) == 0
    rows = (tmp_path / "report.csv").read_text().splitlines()
    assert rows == ["model.latent_dim,status", "4,failed", "16,failed"]


def test_with_overrides_sets_typed_values_on_a_copy():
    from aelab.config import base_config, from_file
    from aelab.errors import UsageError
    from aelab.sweep import with_overrides
    from conftest import REPO

    config = from_file(REPO / "configs" / "mnist_ae.py", "latent=3")
    assert config.model.latent_dim == 3
    changed = with_overrides(config, ["optimizer.weight_decay=0.3", "seed=2"])
    assert (changed.optimizer.weight_decay, changed.seed) == (0.3, 2)
    assert config.optimizer.weight_decay == 0.1 and config.seed == 0  # the original is untouched
    with pytest.raises(UsageError, match=r"seed takes one value here, got \[1, 2\]"):
        with_overrides(base_config(), ["seed=1,2"])
    with pytest.raises(UsageError, match="seed='x' is not a int"):
        with_overrides(base_config(), ["seed=x"])


def test_point_names_stay_one_folder_inside_the_sweep(tmp_path):
    """Regression: a value with path separators put a point's workdir outside DIR."""
    from aelab.sweep import point_name

    name = point_name({"data.name": "idx:../../../../x"})
    assert os.sep not in name and name.startswith("name=idx_.._.._.._.._x-")
    assert point_name({"model.latent_dim": 4, "seed": 0}) == "latent_dim=4,seed=0"  # unchanged
    assert point_name({"data.name": "a/b"}) != point_name({"data.name": "a_b"})
    assert len(point_name({"data.name": "x" * 400})) < 140
    npz = tmp_path / "data" / "digits.npz"
    npz.parent.mkdir()
    from sklearn.datasets import load_digits
    import numpy as np
    np.savez(npz, x_train=(load_digits().images / 16).astype(np.float32))
    out = tmp_path / "sweep"
    assert sweep(out, f"--sweep=data.name=digits,npz:{npz}", "--config.train.num_steps=20",
                 "--config.train.eval_every=20") == 0
    points = sorted(p.name for p in (out / "points").iterdir())
    assert len(points) == 2 and all((out / "points" / p / "summary.json").exists() for p in points)
    assert sorted(p.name for p in npz.parent.iterdir()) == ["digits.npz"]  # nothing written beside the data


@pytest.mark.parametrize("flags,message", [
    (["--sweep=model.latent_dim=2,2"], "gives the value 2 twice"),
    (["--sweep=model.arch=mlp,transformer"], "sweep point arch=transformer: unknown model.arch 'transformer'"),
    (["--sweep=loss=bce,huber"], "sweep point loss=huber: unknown loss 'huber'"),
    (["--sweep=optimizer.learning_rate=0.001,nan"], "optimizer.learning_rate=nan must be a finite number"),
    (["--sweep=data.name=digits,idx:/no/such/dir"], "idx:/no/such/dir: no such directory"),
])
def test_every_point_is_checked_before_anything_runs(tmp_path, capsys, flags, message):
    workdir = tmp_path / "sweep"
    assert sweep(workdir, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not workdir.exists()


def test_sigterm_stops_the_sweep_with_a_checkpoint_and_the_rerun_continues(tmp_path):
    """Regression: SIGTERM killed `aelab sweep` at once (exit 143), losing the running point's steps."""
    command = [sys.executable, "-m", "aelab.main", "sweep", f"--config={CONFIG}", f"--workdir={tmp_path}",
               *FAST, "--config.train.num_steps=1000000", "--config.train.checkpoint_every=1000000",
               "--sweep=model.latent_dim=2,3"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "points" / "latent_dim=2" / "metrics.jsonl"
    deadline = time.time() + 180
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert time.time() < deadline and process.poll() is None, "the first point never trained"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "sweep stopped during point latent_dim=2" in err and "Traceback" not in err
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["stopped"] == "latent_dim=2" and record["points"]["latent_dim=2"]["status"] == "stopped"
    assert "latent_dim=3" not in record["points"]  # no further point started
    saved = [p.name for p in (tmp_path / "points" / "latent_dim=2" / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(saved) == 1 and int(saved[0]) >= 60
