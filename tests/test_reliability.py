"""Damaged checkpoints, diverging training, concurrent runs: nothing is lost, errors are clear."""

import gc
import logging
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import checkpoint, train
from aelab import workdir as wd
from aelab.errors import UsageError
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
    (tmp_path / "config.json").unlink()  # no config to compare: the shapes still protect
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
    monkeypatch.setattr(train.optim, "make_optimizer", lambda opt, n: optax.adam(optax.constant_schedule(1e12)))
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
