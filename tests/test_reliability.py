"""Damaged checkpoints, diverging training, concurrent runs: nothing is lost, errors are clear."""

import gc
import json
import logging
import os
import pathlib
import shutil
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import checkpoint, restore, steps, train
from aelab import workdir as wd
from aelab.errors import UsageError, WriteError
from aelab.main import main
from aelab.tasks.autoencoder import AutoencoderTask
from aelab.writer import read_metrics
from conftest import REPO, bitwise, tiny_config


def truncate_largest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "ocdbt.process" in str(p)]
    victim = max(files, key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return victim


def leaves(workdir):
    return jax.tree.leaves(checkpoint.read_state(str(workdir))[1])


@bitwise
def test_truncated_latest_checkpoint_falls_back_and_is_kept(tmp_path, caplog, monkeypatch):
    reference = tmp_path / "reference"
    train.train_and_evaluate(tiny_config(), str(reference))
    run = tmp_path / "run"
    train.train_and_evaluate(tiny_config(), str(run), should_stop=lambda s: s == 30)
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == ["20", "30"]
    truncate_largest_array_file(run / "checkpoints" / "30")
    unraisable = []  # what Python would print as "Exception ignored ..." tracebacks
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with caplog.at_level(logging.WARNING, logger="aelab"):
        train.train_and_evaluate(tiny_config(), str(run))
    gc.collect()
    # One warning line; Orbax's abandoned reads of the damaged step go to the debug log.
    assert [u.exc_value for u in unraisable] == []
    assert "checkpoint step 30 cannot be restored" in caplog.text
    quarantined = list((tmp_path / "run" / "checkpoints.corrupt").iterdir())
    assert len(quarantined) == 1 and quarantined[0].name.startswith("30-")  # kept, not deleted
    for a, b in zip(leaves(reference), leaves(run)):
        assert np.array_equal(a, b)
    resumes = (run / wd.RESUMES).read_text().splitlines()
    assert len(resumes) == 1 and '"step": 20' in resumes[0]


def test_checkpoint_of_another_model_is_refused_not_quarantined(tmp_path):
    train.train_and_evaluate(tiny_config(), str(tmp_path))
    # No config to compare (config.json gone, checkpoints of a version that did not store one):
    # the shapes still protect.
    (tmp_path / "config.json").unlink()
    for item in (tmp_path / "checkpoints").glob("*/config"):
        shutil.rmtree(item)
    with pytest.raises(UsageError, match="holds a model of other shapes"):
        train.train_and_evaluate(tiny_config(**{"model.latent_dim": 7}), str(tmp_path))
    assert not (tmp_path / "checkpoints.corrupt").exists()


def test_allowed_changes_are_recorded(tmp_path):
    train.train_and_evaluate(tiny_config(), str(tmp_path), should_stop=lambda s: s == 10)
    train.train_and_evaluate(tiny_config(**{"train.log_every": 5}), str(tmp_path))
    record = (tmp_path / wd.RESUMES).read_text()
    assert '"step": 10' in record and "train.log_every: 10 -> 5" in record


def test_divergence_stops_with_the_step_and_keeps_good_checkpoints(tmp_path, monkeypatch):
    import optax

    train.train_and_evaluate(tiny_config(), str(tmp_path), should_stop=lambda s: s == 10)
    # Same config, but the optimizer now blows up: the run must stop, not save garbage.
    monkeypatch.setattr(steps.optim, "make_optimizer", lambda opt, n: optax.adam(optax.constant_schedule(1e12)))
    with pytest.raises(train.NonFiniteError, match=r"non-finite \w+=(nan|inf) at step (\d+)") as info:
        train.train_and_evaluate(tiny_config(**{"train.log_every": 1}), str(tmp_path))
    assert info.value.step > 10
    step, state = checkpoint.read_state(str(tmp_path))
    assert 10 <= step < info.value.step
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state))


def test_divergence_exit_code(tmp_path, capsys):
    code = main(["aelab", "train", f"--config={REPO / 'configs' / 'digits_ae.py'}",
                 f"--workdir={tmp_path}", "--config.optimizer.name=sgd",
                 "--config.optimizer.learning_rate=1e12", "--config.optimizer.momentum=0.0",
                 "--config.train.progress=False", "--config.train.num_steps=50"])
    assert code == 1
    assert "aelab: error: non-finite" in capsys.readouterr().err


def test_skip_nonfinite_drops_bad_updates_and_counts_them(tmp_path, monkeypatch):
    original = AutoencoderTask.loss_fn

    def sometimes_nan(self, model, batch, rng, step):
        loss, metrics = original(self, model, batch, rng, step)
        poison = jnp.where(jax.random.uniform(rng) < 0.2, jnp.nan, 0.0)
        return loss + poison, {**metrics, "loss": loss + poison}

    monkeypatch.setattr(AutoencoderTask, "loss_fn", sometimes_nan)
    summary = train.train_and_evaluate(tiny_config(**{"train.skip_nonfinite": True}), str(tmp_path))
    records = [r for r in read_metrics(str(tmp_path / "metrics.jsonl")) if r["split"] == "train"]
    skipped = sum(r["skipped_steps"] for r in records)
    assert 0 < skipped < 40
    assert all(r["loss"] is not None for r in records)
    assert np.isfinite(summary["eval"]["loss"])
    assert all(np.all(np.isfinite(x)) for x in leaves(tmp_path))


def test_second_process_on_the_same_workdir_is_refused(tmp_path):
    with wd.exclusive(str(tmp_path)):
        with pytest.raises(UsageError, match=f"in use by another aelab process \\(pid {os.getpid()}\\)"):
            train.train_and_evaluate(tiny_config(), str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()
    train.train_and_evaluate(tiny_config(), str(tmp_path))  # free again once released


def test_checkpoint_checks_do_not_double_count_nonfinite_streaks(tmp_path, monkeypatch):
    """Regression: a checkpoint check inside a log window re-counted the window's bad steps, so a
    later scan of the same window saw a streak longer than the real one and stopped the run."""
    original = AutoencoderTask.loss_fn

    def bad_at_0_4_5(self, model, batch, rng, step):  # streaks of 1 and 2, never 3
        loss, metrics = original(self, model, batch, rng, step)
        poison = jnp.where(jnp.isin(step, jnp.array([0, 4, 5])), jnp.nan, 0.0)
        return loss + poison, {**metrics, "loss": loss + poison}

    monkeypatch.setattr(AutoencoderTask, "loss_fn", bad_at_0_4_5)
    config = tiny_config(**{"train.skip_nonfinite": True, "train.max_consecutive_nonfinite": 2,
                            "train.checkpoint_every": 3, "train.log_every": 10, "train.num_steps": 20})
    train.train_and_evaluate(config, str(tmp_path))
    records = [r for r in read_metrics(str(tmp_path / "metrics.jsonl")) if r["split"] == "train"]
    assert [r["skipped_steps"] for r in records] == [3, 0]


# --- integrity, meaning, writes: issue "Reliability, round two" ---------------------------------

def flip_bytes(step_dir: pathlib.Path) -> pathlib.Path:
    """Flips bits inside the largest compressed array file."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and f"{os.sep}d{os.sep}" in str(p)]
    victim = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    for position in (len(data) // 3, len(data) // 2, len(data) * 3 // 4):
        data[position] ^= 0x40
    victim.write_bytes(bytes(data))
    return victim


def change_one_number(workdir: pathlib.Path, step: int) -> None:
    """Rewrites a checkpoint's arrays, well-formed, with one number changed: what flipped bits that
    decompress without an error leave behind (zstd frames carry no checksum of their content)."""
    import orbax.checkpoint as ocp

    _, state = checkpoint.read_state(str(workdir), step)
    first = [True]

    def changed(x):
        if first[0] and np.issubdtype(x.dtype, np.floating) and x.size:
            first[0] = False
            x = x.copy()
            x.flat[0] += 0.5
        return x

    step_dir = workdir / "checkpoints" / str(step)
    saver = ocp.StandardCheckpointer()
    saver.save(step_dir / "state.changed", jax.tree.map(changed, state))
    saver.wait_until_finished()
    shutil.rmtree(step_dir / "state")
    (step_dir / "state.changed").rename(step_dir / "state")


@bitwise
@pytest.mark.parametrize("damage", ["number", "bits"])
def test_changed_array_data_is_caught_and_the_older_checkpoint_is_used(tmp_path, caplog, damage):
    """Regression: a checkpoint whose array data changed after saving restored silently."""
    reference = tmp_path / "reference"
    train.train_and_evaluate(tiny_config(), str(reference))
    run = tmp_path / "run"
    train.train_and_evaluate(tiny_config(), str(run), should_stop=lambda s: s == 30)
    if damage == "number":  # decodes: only the checksum can tell
        change_one_number(run, 30)
    else:  # may or may not decode: one way or the other it must not restore
        flip_bytes(run / "checkpoints" / "30")
    with caplog.at_level(logging.WARNING, logger="aelab"):
        train.train_and_evaluate(tiny_config(), str(run))
    assert "checkpoint step 30 cannot be restored" in caplog.text
    if damage == "number":
        assert "does not match its checksum" in caplog.text
    assert [p.name[:3] for p in (run / "checkpoints.corrupt").iterdir()] == ["30-"]
    for a, b in zip(leaves(reference), leaves(run), strict=True):
        assert np.array_equal(a, b)


def test_checksums_are_computed_on_the_bytes():
    pure = {"a": {"w": jnp.arange(6.0).reshape(2, 3)}, "b": jnp.array([1, 2], jnp.int32)}
    sums = checkpoint.checksums(pure)
    assert sums["a/w"] == ["float32", zlib.crc32(np.arange(6.0, dtype=np.float32).tobytes())]
    checkpoint.verify(pure, sums)
    changed = {"a": {"w": pure["a"]["w"].at[1, 2].set(5.0000005)}, "b": pure["b"]}
    with pytest.raises(ValueError, match="array a/w does not match its checksum"):
        checkpoint.verify(changed, sums)


def test_meaning_check_survives_a_deleted_config_json(tmp_path, capsys):
    train.train_and_evaluate(tiny_config(), str(tmp_path), should_stop=lambda s: s == 20)
    (tmp_path / "config.json").unlink()
    with pytest.raises(UsageError, match=r"optimizer.learning_rate: 0.001 -> 0.01"):
        train.train_and_evaluate(tiny_config(**{"optimizer.learning_rate": 0.01}), str(tmp_path))
    assert not (tmp_path / "config.json").exists()  # refused before anything was written
    train.train_and_evaluate(tiny_config(**{"train.log_every": 5}), str(tmp_path))  # allowed: recorded
    assert "train.log_every: 10 -> 5" in (tmp_path / wd.RESUMES).read_text()


def test_lowering_num_steps_below_the_checkpoint_is_refused(tmp_path):
    train.train_and_evaluate(tiny_config(), str(tmp_path), should_stop=lambda s: s == 30)
    with pytest.raises(UsageError, match=r"train.num_steps=20 is below the step this workdir's checkpoint "
                                         r"has reached \(30\)"):
        train.train_and_evaluate(tiny_config(**{"train.num_steps": 20}), str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["train"]["num_steps"] == 40


def test_divergence_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    import optax

    monkeypatch.setattr(steps.optim, "make_optimizer", lambda opt, n: optax.adam(optax.constant_schedule(1e12)))
    with pytest.raises(train.NonFiniteError) as info:
        train.train_and_evaluate(tiny_config(**{"train.log_every": 1}), str(tmp_path))
    assert "no checkpoint had been written" in str(info.value)
    assert "last good checkpoint" not in str(info.value)


def test_a_damaged_line_inside_metrics_jsonl_is_dropped_with_a_warning(tmp_path, caplog):
    train.train_and_evaluate(tiny_config(), str(tmp_path), should_stop=lambda s: s == 30)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"step": 20, "spl\n'
    (tmp_path / "metrics.jsonl").write_text("".join(lines))
    with caplog.at_level(logging.WARNING, logger="aelab"):
        train.train_and_evaluate(tiny_config(), str(tmp_path))
    assert "metrics.jsonl line 2 is not a JSON record" in caplog.text


def tensorboard_scalars(directory: pathlib.Path) -> list[tuple[str, int]]:
    """(tag, step) of every scalar in a folder's event files (TFRecord framing, Event protos)."""
    from tensorboardX.proto import event_pb2

    found = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            length = int.from_bytes(data[offset:offset + 8], "little")
            record = data[offset + 12:offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            found += [(v.tag, event.step) for v in event.summary.value]
    return found


def test_tensorboard_events_are_rewound_with_the_log_and_flushed_as_written(tmp_path):
    config = tiny_config(**{"train.tensorboard": True})
    train.train_and_evaluate(config, str(tmp_path), should_stop=lambda s: s == 30)
    train.train_and_evaluate(config, str(tmp_path))
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    assert len(scalars) == len(set(scalars))  # no (tag, step) twice
    assert {s for t, s in scalars if t == "train/loss"} == {10, 20, 30, 40}
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1
    # A record is on disk as soon as it is logged (a SIGKILL loses nothing logged).
    from aelab.writer import MetricWriter

    writer = MetricWriter(str(tmp_path / "live"), 0, 100, tensorboard=True)
    writer.write(10, "train", {"loss": 1.5})
    assert ("train/loss", 10) in tensorboard_scalars(tmp_path / "live" / "tensorboard")
    writer.close()


@pytest.mark.parametrize("when", ["save", "wait"])
def test_a_full_disk_while_checkpointing_is_one_error_naming_the_last_good_step(tmp_path, monkeypatch, when):
    """Orbax reports a full disk from its writer threads as a ValueError carrying errno 28, when the
    save starts or, asynchronously, when it is waited for; the run's final checkpoint is waited
    for before summary.json says the run is done."""
    train.train_and_evaluate(tiny_config(), str(tmp_path), should_stop=lambda s: s == 20)
    full = ValueError("RESOURCE_EXHAUSTED: Failed to write 127212 bytes to file 9: No space left on "
                      "device [os_error_code='28']")

    def partial_save(self, step, *args, **kwargs):  # what a full disk leaves: a temporary folder
        os.makedirs(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp-1"), exist_ok=True)
        if when == "save":
            raise full
        return True

    def failing_wait(self):
        if os.path.isdir(os.path.join(self.directory, "40.orbax-checkpoint-tmp-1")):
            raise full

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", partial_save)
    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "wait_until_finished", failing_wait)
    with pytest.raises(WriteError, match=r"cannot write checkpoint step 40 .*\(no space left on device\); "
                                         r"the last good checkpoint is step 20"):
        train.train_and_evaluate(tiny_config(**{"train.checkpoint_every": 40}), str(tmp_path))
    assert not list((tmp_path / "checkpoints").glob("*tmp*"))  # nothing half-written left
    assert not (tmp_path / "summary.json").exists()  # the run is not reported done


def test_a_full_disk_while_logging_leaves_no_torn_line(tmp_path, monkeypatch):
    import errno

    from aelab import writer

    train.train_and_evaluate(tiny_config(), str(tmp_path), should_stop=lambda s: s == 20)

    class FullAtStep30:
        """metrics.jsonl as a disk would take it that fills up in the middle of step 30's line."""

        def __init__(self, file):
            self.file = file

        def write(self, text):
            if '"step": 30' in text:
                self.file.write(text[:10])
                self.file.flush()
                raise OSError(errno.ENOSPC, "No space left on device", self.file.name)
            return self.file.write(text)

        def __getattr__(self, name):
            return getattr(self.file, name)

    def appending(path, mode="r"):
        return FullAtStep30(open(path, mode)) if mode == "a" else open(path, mode)

    monkeypatch.setattr(writer, "open", appending, raising=False)
    with pytest.raises(WriteError, match=r"metrics.jsonl \(no space left on device\); the last good "
                                         r"checkpoint is step 20"):
        train.train_and_evaluate(tiny_config(), str(tmp_path))
    text = (tmp_path / "metrics.jsonl").read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    assert max(json.loads(line)["step"] for line in text.splitlines()) == 20


def test_using_a_run_reads_it_without_writing(tmp_path):
    """A use command opens checkpoints read-only: an in-flight save's temporary folder (a trainer
    writing beside it) stays, nothing is locked, created or moved."""
    train.train_and_evaluate(tiny_config(), str(tmp_path))
    in_flight = tmp_path / "checkpoints" / "60.orbax-checkpoint-tmp-1234"
    (in_flight / "state").mkdir(parents=True)
    with wd.exclusive(str(tmp_path)):  # as if a trainer held the workdir
        before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
        run, model, step = train.load_trained(str(tmp_path))
        assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert step == 40 and in_flight.exists()


def test_asyncio_leftovers_of_a_failed_read_go_to_the_debug_log(monkeypatch):
    """Regression: once in a full suite run, a damaged manifest printed a 7-line traceback through
    asyncio's `_wrap_awaitable` (the wrapper of a TensorStore future Orbax awaited) after the
    one-line warning. Such leftovers, and tracebacks through Orbax, go to the debug log; others
    still reach the previous hook."""
    import asyncio
    import types

    reached = []
    monkeypatch.setattr(sys, "unraisablehook", reached.append)
    checkpoint._quiet_orbax_leftovers()
    loop = asyncio.new_event_loop()
    wrapper = asyncio.tasks._wrap_awaitable(loop.create_future())
    try:
        sys.unraisablehook(types.SimpleNamespace(object=wrapper, exc_value=ValueError("DATA_LOSS: zarr"),
                                                 exc_traceback=None, exc_type=ValueError, err_msg=None))
        assert reached == []
        other = types.SimpleNamespace(object=None, exc_value=ValueError("mine"), exc_traceback=None,
                                      exc_type=ValueError, err_msg=None)
        sys.unraisablehook(other)
        assert reached == [other]
    finally:
        wrapper.close()
        loop.close()
