"""End to end: a tiny model learns, resumes bit-exactly, and writes the workdir contract."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from aelab import checkpoint, restore, train
from aelab.errors import UsageError
from aelab.writer import read_metrics
from conftest import bitwise, tiny_config

CONTRACT = ["config.json", "env.json", "metrics.jsonl", "checkpoints", "summary.json",
            "figures/reconstructions.png", "figures/loss.png", "figures/recon_sse.png"]


def params_of(workdir):
    step, state = checkpoint.read_state(str(workdir))
    return step, state


def test_tiny_autoencoder_learns_and_beats_pca(tmp_path):
    config = tiny_config(**{"train.num_steps": 800, "train.eval_every": 400,
                            "train.checkpoint_every": 400, "train.log_every": 100,
                            "optimizer.learning_rate": 3e-3,
                            "train.tensorboard": True, "model.mlp.hidden": (64,)})
    summary = train.train_and_evaluate(config, str(tmp_path))
    for name in CONTRACT:
        assert (tmp_path / name).exists(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tensorboard").iterdir())
    records = list(read_metrics(str(tmp_path / "metrics.jsonl")))
    train_loss = [r["loss"] for r in records if r["split"] == "train"]
    assert train_loss[-1] < 0.8 * train_loss[0]
    assert summary["eval"]["recon_sse"] < summary["baselines"]["pca"]["recon_sse"]
    assert summary["baselines"]["pca"]["n_components"] == 4
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["eval"] == pytest.approx(summary["eval"])
    assert {r["split"] for r in records} == {"train", "val", "eval"}
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["versions"]["jax"] == jax.__version__ and env["devices"]
    assert json.loads((tmp_path / "config.json").read_text())["model"]["latent_dim"] == 4


@bitwise
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_interrupted_and_resumed_run_is_bitwise_identical(tmp_path, arch):
    # mlp: 4 steps a dispatch, [0, 1), [1, 5), ... [24, 28); the resumed run groups them otherwise
    # ([28, 29), [29, 30), ...), which must change no number. conv: 1 a dispatch on CPU (as mlp
    # elsewhere).
    overrides = {"model.arch": arch, "model.conv.channels": (4, 8), "optimizer.schedule": "cosine",
                 "optimizer.grad_clip_norm": 1.0, "train.steps_per_dispatch": 4}
    straight = tmp_path / "straight"
    train.train_and_evaluate(tiny_config(**overrides), str(straight))
    resumed = tmp_path / "resumed"
    # Stop at the first poll at or after step 27 (4 a dispatch: 28; 1: 27): not a checkpoint or log
    # boundary, so the stop path saves it.
    one_per_dispatch = arch == "conv" and jax.default_backend() == "cpu"
    stop_at = 27 if one_per_dispatch else 28
    stopped = train.train_and_evaluate(tiny_config(**overrides), str(resumed),
                                       should_stop=lambda step: step >= 27)
    assert stopped == {"step": stop_at, "stopped": True}
    assert params_of(resumed)[0] == stop_at
    # A stop on a checkpoint step saves once (a second save of a step would fail).
    assert train.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "at20"),
                                    should_stop=lambda step: step >= 20)["step"] == 20
    assert not (resumed / "summary.json").exists()
    train.train_and_evaluate(tiny_config(**overrides), str(resumed))
    (step_a, a), (step_b, b) = params_of(straight), params_of(resumed)
    assert step_a == step_b == 40
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
        assert x.dtype == y.dtype and np.array_equal(x, y)  # bitwise, not approximately
    steps = [(r["step"], r["split"]) for r in read_metrics(str(resumed / "metrics.jsonl"))]
    assert len(steps) == len(set(steps)), "a resumed run must not log a step twice"
    assert steps == [(r["step"], r["split"]) for r in read_metrics(str(straight / "metrics.jsonl"))]


def test_rerunning_a_finished_run_changes_nothing(tmp_path):
    first = train.train_and_evaluate(tiny_config(), str(tmp_path))
    before = (tmp_path / "metrics.jsonl").read_text()
    again = train.train_and_evaluate(tiny_config(), str(tmp_path))
    assert again["eval"] == pytest.approx(first["eval"])
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_more_steps_continue_a_finished_run(tmp_path):
    train.train_and_evaluate(tiny_config(), str(tmp_path))
    summary = train.train_and_evaluate(tiny_config(**{"train.num_steps": 60}), str(tmp_path))
    assert summary["step"] == 60
    records = list(read_metrics(str(tmp_path / "metrics.jsonl")))
    # The first run's final evaluation stays in the history; no step is logged twice.
    assert [r["step"] for r in records if r["split"] == "eval"] == [40, 60]
    keys = [(r["step"], r["split"]) for r in records]
    assert len(keys) == len(set(keys))
    assert json.loads((tmp_path / "config.json").read_text())["train"]["num_steps"] == 60


def test_resume_with_a_different_model_is_refused_and_changes_nothing(tmp_path):
    train.train_and_evaluate(tiny_config(), str(tmp_path))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(UsageError, match=r"model.latent_dim: 4 -> 5"):
        train.train_and_evaluate(tiny_config(**{"model.latent_dim": 5}), str(tmp_path))
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after


def test_tfds_training_on_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        summary = train.train_and_evaluate(
            tiny_config(**{"data.name": "mnist", "train.num_steps": 10, "train.batch_size": 16}),
            str(tmp_path))
    assert summary["data"]["image_shape"] == [28, 28, 1]
    assert summary["data"]["num_test"] == 64
    assert np.isfinite(summary["eval"]["recon_sse"])


@pytest.mark.parametrize("name,schedule", [("adam", "constant"), ("adamw", "warmup_cosine"),
                                           ("sgd", "cosine")])
def test_every_optimizer_and_schedule_trains(tmp_path, name, schedule):
    config = tiny_config(**{"optimizer.name": name, "optimizer.schedule": schedule,
                            "optimizer.warmup_steps": 5, "train.num_steps": 20,
                            "optimizer.learning_rate": 1e-2 if name != "sgd" else 0.1})
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(summary["eval"]["loss"])


def test_workdir_files_get_the_usual_permissions(tmp_path):
    """Regression: atomic writes went through mkstemp and left files readable by the owner only."""
    train.train_and_evaluate(tiny_config(), str(tmp_path))
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.json", "env.json", "summary.json", "figures/loss.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_workdirs_from_before_a_config_key_existed_still_resume_and_load(tmp_path):
    """Regression: a config.json without keys added later (e.g. `anomaly`) broke loading and resume."""
    train.train_and_evaluate(tiny_config(), str(tmp_path), should_stop=lambda s: s == 20)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["anomaly"], saved["data"]["normal_classes"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    run, model, step = train.load_trained(str(tmp_path))
    assert step == 20 and run.config.anomaly.target_fpr == 0.05
    assert train.train_and_evaluate(tiny_config(), str(tmp_path))["step"] == 40


def test_config_json_holds_only_what_the_task_reads_and_old_full_configs_still_load(tmp_path):
    """Each task contributes its keys; a run's config.json holds the common ones and its task's.
    A config.json of an older version held every task's keys: it still resumes and loads."""
    from aelab.config import base_config, common_config

    for task, own, foreign in (("autoencoder", {"penalty", "corruption"}, {"vae", "text", "segmentation"}),
                               ("vae", {"vae", "corruption", "penalty"}, {"vq", "decode"})):
        workdir = tmp_path / task
        train.train_and_evaluate(tiny_config(task=task), str(workdir), should_stop=lambda s: s == 20)
        saved = json.loads((workdir / "config.json").read_text())
        assert own <= set(saved) and not foreign & set(saved)
        assert set(common_config()) <= set(saved)
        assert "mlp" in saved["model"] and not {"conv", "transformer"} & set(saved["model"])
    old = base_config().to_dict()  # every task's keys, as older versions wrote them
    saved = json.loads((tmp_path / "autoencoder" / "config.json").read_text())
    for group, values in saved.items():
        old[group] = {**old[group], **values} if isinstance(values, dict) else values
    (tmp_path / "autoencoder" / "config.json").write_text(json.dumps(old))
    for item in (tmp_path / "autoencoder" / "checkpoints").glob("*/config"):
        shutil.rmtree(item)  # checkpoints of a version that did not store the config
    run, model, step = train.load_trained(str(tmp_path / "autoencoder"))
    assert step == 20 and "text" not in run.config
    assert train.train_and_evaluate(tiny_config(), str(tmp_path / "autoencoder"))["step"] == 40


def early(**kw):
    # min_delta so large that nothing after the first evaluation counts as an improvement
    return tiny_config(**{"train.num_steps": 200, "train.eval_every": 10, "train.early_stopping_patience": 2,
                          "train.early_stopping_min_delta": 1e9, **kw})


def test_early_stopping_with_patience_survives_resume_and_is_final(tmp_path):
    summary = train.train_and_evaluate(early(), str(tmp_path / "straight"))
    assert summary["step"] == 30
    first_val = next(json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
                     if json.loads(line)["split"] == "val")
    assert first_val["step"] == 10  # the best is the first evaluation's validation loss
    assert summary["early_stopped"] == {"metric": "loss", "best": pytest.approx(first_val["loss"], rel=1e-6),
                                        "best_eval": 1, "evals_without_improvement": 2}
    # Interrupted between evaluations, the patience count continues from the log.
    # (3 steps a dispatch, so the first poll at or after step 25 is step 26, between evaluations.)
    three = early(**{"train.steps_per_dispatch": 3})
    assert train.train_and_evaluate(three, str(tmp_path / "resumed"), should_stop=lambda s: s >= 25) == {
        "step": 26, "stopped": True}
    assert train.train_and_evaluate(three, str(tmp_path / "resumed"))["step"] == 30
    # A finished early-stopped run is complete: rerunning trains nothing more.
    before = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert train.train_and_evaluate(early(), str(tmp_path / "straight"))["step"] == 30
    assert (tmp_path / "straight" / "metrics.jsonl").read_text() == before
    assert train.train_and_evaluate(tiny_config(), str(tmp_path / "off"))["early_stopped"] is None


def test_early_stopping_metric_must_exist(tmp_path):
    with pytest.raises(UsageError, match="early_stopping_metric='ssim' is not a validation metric.*known: bce"):
        train.train_and_evaluate(early(**{"train.early_stopping_metric": "ssim"}), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


@bitwise
def test_data_on_the_device_trains_bitwise_like_host_batches_however_steps_are_grouped(tmp_path):
    """The split kept on the device and gathered there by row indices gives the very batches
    the host would have sent, and running several steps per dispatch (7 here: dispatches of
    1, 7, 2, 7, 3, ... steps between the log steps) changes no number: the same parameters
    and the same logged losses, bit for bit."""
    runs = {"host": {"train.device_data_mb": 0}, "device": {"train.steps_per_dispatch": 1},
            "device7": {"train.steps_per_dispatch": 7}}
    for name, overrides in runs.items():
        train.train_and_evaluate(tiny_config(**overrides), str(tmp_path / name))
    assert train.device_batches(train.build(tiny_config()), 10) is not None
    assert train.device_batches(train.build(tiny_config(**{"train.device_data_mb": 0})), 10) is None
    assert [train.dispatch_length(s, tiny_config().train, 7) for s in (1, 8, 10, 37)] == [7, 2, 7, 3]

    def logged(name):
        return [{k: v for k, v in r.items() if k != "steps_per_s"}
                for r in read_metrics(str(tmp_path / name / "metrics.jsonl"))]
    for name in ("device", "device7"):
        for a, b in zip(jax.tree.leaves(checkpoint.read_state(str(tmp_path / name))[1]),
                        jax.tree.leaves(checkpoint.read_state(str(tmp_path / "host"))[1]), strict=True):
            assert np.array_equal(a, b)
        assert logged(name) == logged("host")


def test_models_with_convolutions_run_one_step_per_dispatch_on_cpu():
    """Regression: a conv_ae trained 30x slower several steps per dispatch (XLA:CPU's
    convolution gradients inside a device loop)."""
    def per_dispatch(**overrides):
        return train.build(tiny_config(**overrides)).policy.steps_per_dispatch(10)
    on_cpu = jax.default_backend() == "cpu"  # GPU/TPU keep the loop
    assert per_dispatch(**{"model.arch": "conv", "model.conv.channels": (4, 8)}) == (1 if on_cpu else 10)
    assert per_dispatch() == 10


def test_grad_norm_is_logged_as_the_log_steps_own(tmp_path):
    """Only the step ending a log window computes the gradient norm; the log shows that value
    (a run logging every step computes it every step: same values at steps 10, 20, 30, 40)."""
    train.train_and_evaluate(tiny_config(**{"train.log_every": 1}), str(tmp_path / "every"))
    train.train_and_evaluate(tiny_config(**{"train.num_steps": 35}), str(tmp_path / "ten"))
    every = {r["step"]: r["grad_norm"] for r in read_metrics(str(tmp_path / "every" / "metrics.jsonl"))
             if r["split"] == "train"}
    ten = {r["step"]: r["grad_norm"] for r in read_metrics(str(tmp_path / "ten" / "metrics.jsonl"))
           if r["split"] == "train"}
    assert sorted(ten) == [10, 20, 30, 35]  # the last step ends a window too
    for step, value in ten.items():
        assert value > 0 and value == pytest.approx(every[step], rel=1e-5)


@pytest.mark.parametrize("workload", ["mlp_ae", "conv_ae", "mlp_vae"])
def test_model_and_optimizer_created_in_one_program_equal_eager_creation(workload):
    from aelab import bench, optim, steps, tasks

    config = bench.workload_config(workload)
    task = tasks.get_task(config)
    tx = optim.make_optimizer(config.optimizer, 100)
    key = jax.random.key(3)
    model = task.build_model((28, 28, 1), nnx.Rngs(params=key))
    eager_graphdef, eager_state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
    graphdef, state = nnx.split(steps.init_model_and_optimizer(task, (28, 28, 1), tx, key))
    assert graphdef == eager_graphdef
    assert jax.tree.structure(state) == jax.tree.structure(eager_state)
    for compiled, eager in zip(jax.tree.leaves(state), jax.tree.leaves(eager_state)):
        if jax.default_backend() == "cpu":
            assert np.array_equal(compiled, eager)  # bitwise: results and checkpoints stay as they were
        else:  # GPU kernels fuse the initializers' arithmetic differently from op by op: last bits
            np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-7)
