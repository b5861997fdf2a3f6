"""Processes against real files: uses beside a live trainer, signals, damaged checkpoints, a full
disk and a read-only workdir. Each checks the whole of stderr: one line, never a traceback."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from aelab import checkpoint, config as config_lib, train
from aelab import workdir as wd
from conftest import REPO, tiny_config

CONFIG = str(REPO / "configs" / "digits_ae.py")
QUIET = ["--config.train.progress=False", "--config.train.tensorboard=False", "--config.model.mlp.hidden=(32,)"]
NOISE = ("Traceback", "Exception ignored", "Event loop is closed", "ERROR")


def environment():
    cache = os.environ.get("AELAB_TEST_COMPILE_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "aelab-test-jax"))
    return {**os.environ, "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PLATFORMS": "cpu",
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def aelab(*args, **kwargs):
    return [sys.executable, "-m", "aelab.main", *args]


def run(*args, timeout=300):
    return subprocess.run(aelab(*args), env=environment(), capture_output=True, text=True, timeout=timeout)


def wait_for(condition, process, what, timeout=180):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"the trainer ended before {what}: {process.communicate()[1][-2000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def steps(workdir):
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def test_uses_beside_a_live_run_leave_every_checkpoint_restorable(tmp_path):
    """Regression: `embed` / `anomaly` opened checkpoints read-write and removed the trainer's
    in-flight save, whose step was then lost on resume."""
    workdir = tmp_path / "run"
    trainer = subprocess.Popen(
        aelab("train", f"--config={CONFIG}", f"--workdir={workdir}", *QUIET,
              "--config.data.normal_classes=(3,)", "--config.train.num_steps=1000000",
              "--config.train.checkpoint_every=20", "--config.train.keep_checkpoints=100000",
              "--config.train.log_every=20", "--config.train.eval_every=1000000"),
        env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(steps(workdir)) >= 2, trainer, "two checkpoints")
        for use in (["embed", f"--out={tmp_path / 'codes.npz'}"], ["anomaly"]):
            done = run(use[0], f"--workdir={workdir}", *use[1:])
            assert done.returncode == 0, done.stderr
            assert not any(word in done.stderr for word in NOISE), done.stderr
        first = steps(workdir)[-1]
        wait_for(lambda: steps(workdir)[-1] >= first + 100, trainer, "more checkpoints after the uses")
    finally:
        trainer.send_signal(signal.SIGTERM)
        _, err = trainer.communicate(timeout=120)
    assert trainer.returncode == 0, err
    assert not (workdir / "checkpoints.corrupt").exists()
    assert not list((workdir / "checkpoints").glob("*tmp*"))
    built = train.build(config_lib.from_saved(wd.read_json(workdir / "config.json")))
    reader = checkpoint.Checkpointer(str(workdir / "checkpoints"), read_only=True)
    try:
        for step in steps(workdir):  # every one restores and passes its checksums
            reader.restore(step, built.state)
    finally:
        reader.close()
    assert len(steps(workdir)) > 100


def test_two_signals_stop_at_once_with_one_line_each(tmp_path):
    workdir = tmp_path / "run"
    command = aelab("train", f"--config={CONFIG}", f"--workdir={workdir}", *QUIET,
                    "--config.train.num_steps=1000000", "--config.train.log_every=20",
                    "--config.train.checkpoint_every=200", "--config.train.eval_every=1000000")
    process = subprocess.Popen(command, env=environment(), stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(steps(workdir)) >= 1, process, "a checkpoint")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert not any(word in err for word in NOISE), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("aelab: second SIGTERM; stopped at once") and len(lines) <= 2, err
    # The workdir is whole: the same command resumes from a checkpoint.
    process = subprocess.Popen(command, env=environment(), stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (workdir / wd.RESUMES).exists(), process, "the resume")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0 and "got SIGINT" in err, err
    assert json.loads((workdir / wd.RESUMES).read_text().splitlines()[0])["step"] >= 200


def test_a_damaged_manifest_is_one_warning_line(tmp_path):
    """Regression: a damaged manifest.ocdbt printed ~230 lines of "Event loop is closed"."""
    workdir = tmp_path / "run"
    config = tiny_config(**{"train.num_steps": 200, "train.checkpoint_every": 100})
    train.train_and_evaluate(config, str(workdir), should_stop=lambda step: step == 150)
    flags = [f"--config={CONFIG}", f"--workdir={workdir}", *QUIET, "--config.train.num_steps=200",
             "--config.train.checkpoint_every=100", "--config.train.log_every=10",
             "--config.train.eval_every=20", "--config.model.latent_dim=4", "--config.train.batch_size=32"]
    manifest = workdir / "checkpoints" / "150" / "state" / "manifest.ocdbt"
    manifest.write_bytes(b"\x00garbage" * 20)
    done = run("train", *flags)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aelab: WARNING: checkpoint step 150 cannot be restored")
    assert (workdir / "checkpoints.corrupt").exists()


@contextlib.contextmanager
def small_disk(path, size):
    """A tmpfs of `size` at `path` (root only; skips with the reason elsewhere)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): "
                    "the full-disk and read-only checks need root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_a_full_disk_is_one_line_exit_1_and_the_run_resumes_with_room(tmp_path):
    with small_disk(tmp_path / "disk", "3m") as disk:
        workdir = disk / "run"
        flags = [f"--config={CONFIG}", f"--workdir={workdir}", "--config.train.progress=False",
                 "--config.train.num_steps=3000", "--config.train.checkpoint_every=100",
                 "--config.train.keep_checkpoints=100"]
        done = run("train", *flags)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "no space left on device" in lines[0], done.stderr
        assert "the last good checkpoint is step" in lines[0]
        assert not [p for p in workdir.rglob("*") if "tmp" in p.name]  # nothing half-written
        last = steps(workdir)[-1]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        config = config_lib.from_saved(wd.read_json(workdir / "config.json"))
        assert train.train_and_evaluate(config, str(workdir))["step"] == 3000
        assert json.loads((workdir / wd.RESUMES).read_text().splitlines()[0])["step"] == last


def test_a_read_only_workdir(tmp_path):
    with small_disk(tmp_path / "disk", "16m") as disk:
        workdir = disk / "run"
        train.train_and_evaluate(tiny_config(), str(workdir))
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        done = run("train", f"--config={CONFIG}", f"--workdir={workdir}", *QUIET, "--config.train.num_steps=200")
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
        assert "cannot be written (read-only file system)" in done.stderr
        done = run("embed", f"--workdir={workdir}", f"--out={tmp_path / 'codes.npz'}",
                   f"--uses_dir={tmp_path / 'maps'}")
        assert done.returncode == 0 and not done.stderr, done.stderr  # reading needs no write access
        assert (tmp_path / "maps" / "latent_pca.png").exists()
        done = run("probe", f"--workdir={workdir}")
        assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
        assert "read-only file system" in done.stderr


def test_a_workdir_that_is_a_file(tmp_path, capsys):
    from aelab.main import main

    path = tmp_path / "notes.txt"
    path.write_text("mine\n")
    assert main(["aelab", "train", f"--config={CONFIG}", f"--workdir={path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"aelab: error: --workdir={path} is a file, not a folder; pass a folder (it is created if missing)"
    assert path.read_text() == "mine\n"
