"""Runs that build on runs: train.init_from loads another run's parameters (never its optimizer),
train.trainable freezes the rest, a killed fine-tuning run resumes bitwise, and aelab.save turns
a model trained in a plain optax loop into a workdir every command reads."""

import json
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import aelab
from aelab import checkpoint, data, finetune, optim, restore, train
from aelab.config import preset, resolve
from aelab.errors import UsageError
from aelab.main import main
from conftest import REPO, bitwise, tiny_config
from test_fault_injection import environment, logged_step


def params(workdir) -> dict[str, np.ndarray]:
    return {path: np.asarray(v) for path, v in
            optim.param_paths(nnx.state(restore.load(str(workdir)).model, nnx.Param)).items()}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained digits autoencoder (latent 4) to start from."""
    workdir = tmp_path_factory.mktemp("finetune") / "source"
    train.train_and_evaluate(tiny_config(), str(workdir))
    return workdir


@bitwise
def test_init_from_loads_what_it_reports_and_frozen_parameters_stay_bitwise(source, tmp_path):
    # A code of 3 instead of 4: the encoder's last layer and the decoder's first change shape.
    config = tiny_config(**{"train.init_from": str(source), "train.trainable": "^decoder/", "model.latent_dim": 3})
    tuned = tmp_path / "tuned"
    train.train_and_evaluate(config, str(tuned))
    report = json.loads((tuned / finetune.INIT_REPORT).read_text())
    theirs, ours = params(source), params(tuned)
    run = train.build(config)  # the tuned run before it loads anything: its fresh parameters
    fresh = optim.param_paths(nnx.state(nnx.merge(run.graphdef, run.state)[0], nnx.Param))
    assert {r["path"] for r in report["mismatched"]} == {
        "encoder/mlp/layers/1/kernel", "encoder/mlp/layers/1/bias", "decoder/mlp/layers/0/kernel"}
    assert report["new"] == [] and report["unused"] == [] and report["step"] == 40
    loaded = {r["path"] for r in report["loaded"]}
    assert loaded | {r["path"] for r in report["mismatched"]} == set(ours)
    for path in ours:
        if path.startswith("encoder/"):  # frozen: exactly as loaded, or as initialized where mismatched
            expected = theirs[path] if path in loaded else np.asarray(fresh[path])
            assert np.array_equal(ours[path].view(np.uint32), expected.view(np.uint32)), path
        else:  # trained
            assert not np.array_equal(ours[path], theirs.get(path, np.asarray(fresh[path]))), path
    # The loaded decoder parameters were the source's when training started (its step 0).
    model = nnx.merge(run.graphdef, run.state)[0]
    finetune.initialize(model, str(source))
    start = optim.param_paths(nnx.state(model, nnx.Param))
    for path in loaded:
        assert np.array_equal(np.asarray(start[path]), theirs[path]), path


def test_init_from_a_step_and_bad_sources_before_anything_is_written(source, tmp_path):
    steps = restore.checkpoint_steps(str(source))
    tuned = tmp_path / "at_step"
    train.train_and_evaluate(tiny_config(**{"train.init_from": f"{source}@{steps[0]}", "train.num_steps": 10,
                                            "train.checkpoint_every": 10}), str(tuned))
    assert json.loads((tuned / finetune.INIT_REPORT).read_text())["step"] == steps[0]
    for value, message in [(str(tmp_path / "nothing"), "no config.json"),
                           (f"{source}@7", f"has no checkpoint at step 7; its steps: {', '.join(map(str, steps))}"),
                           (str(tmp_path / "self"), "is this run's own workdir")]:
        workdir = tmp_path / "self"
        with pytest.raises(UsageError, match=message):
            train.train_and_evaluate(tiny_config(**{"train.init_from": value}), str(workdir))
        assert not workdir.exists()
    for pattern, message in [("^nothing_matches", "matches no parameter; the parameters: decoder/mlp/layers/0/bias"),
                             ("(", "is not a regular expression")]:
        with pytest.raises(UsageError, match=message):
            train.train_and_evaluate(tiny_config(**{"train.trainable": pattern}), str(tmp_path / "w"))
        assert not (tmp_path / "w").exists()


FLAGS = ["--config.model.mlp.hidden=(32,)", "--config.model.latent_dim=4", "--config.train.num_steps=4000",
         "--config.train.batch_size=32", "--config.train.checkpoint_every=100", "--config.train.log_every=50",
         "--config.train.eval_every=1000", "--config.train.progress=False", "--config.train.trainable=^decoder/"]


@bitwise
@pytest.mark.slow
def test_a_killed_fine_tuning_run_resumes_to_the_bits_of_an_unbroken_one(source, tmp_path):
    def command(workdir):
        return [sys.executable, "-m", "aelab.main", "train", f"--config={REPO / 'configs' / 'digits_ae.py'}",
                f"--workdir={workdir}", f"--config.train.init_from={source}", *FLAGS]

    env = environment(tmp_path)
    subprocess.run(command(tmp_path / "straight"), env=env, check=True, capture_output=True)
    broken = tmp_path / "broken"
    process = subprocess.Popen(command(broken), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while logged_step(broken) < 700 and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = subprocess.run(command(broken), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "init_from" not in resumed.stderr  # a resumed run continues from its own checkpoint
    straight, again = checkpoint.read_state(str(tmp_path / "straight")), checkpoint.read_state(str(broken))
    assert straight[0] == again[0] == 4000
    for a, b in zip(jax.tree.leaves(straight[1]), jax.tree.leaves(again[1])):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_model_trained_in_a_plain_optax_loop_saves_as_a_workdir_every_command_reads(tmp_path, capsys):
    config = preset("digits")
    config.model.latent_dim = 4
    config.model.mlp.hidden = (32,)
    dataset = data.load(resolve(config).data)
    model = aelab.build_model(config, dataset.image_shape)
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    images = jnp.asarray(dataset.train.images[:512])

    @nnx.jit
    def step(model, optimizer):
        def loss(m):
            return optax.sigmoid_binary_cross_entropy(m(images), images).sum((1, 2, 3)).mean()
        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    first = float(step(model, optimizer))
    for _ in range(100):
        last = float(step(model, optimizer))
    assert last < first
    workdir = tmp_path / "mine"
    assert aelab.save(model, config, str(workdir), dataset.image_shape, step=101) == str(workdir)
    run = aelab.load(str(workdir))
    test = np.asarray(dataset.test.images[:16])
    assert run.step == 101
    np.testing.assert_allclose(run.encode(test), np.asarray(model.encode(jnp.asarray(test))), rtol=1e-6, atol=1e-6)
    assert main(["aelab", "embed", f"--workdir={workdir}", f"--out={tmp_path / 'codes.npz'}"]) == 0
    assert np.load(tmp_path / "codes.npz")["codes"].shape == (len(dataset.test), 4)
    with pytest.raises(UsageError, match="exists and is not an empty folder"):
        aelab.save(model, config, str(workdir), dataset.image_shape)
    other = preset("digits")  # another latent size: another model
    with pytest.raises(UsageError, match="the model is not the one the config describes"):
        aelab.save(model, other, str(tmp_path / "other"), dataset.image_shape)
    assert not (tmp_path / "other").exists()
