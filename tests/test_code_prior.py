"""The code prior over a frozen VQ-VAE's tokens: its math, that it learns more than independent
codes, that `aelab sample` and `aelab.load` draw images through the VQ-VAE, and bad input."""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import aelab
from aelab import generate, train
from aelab.errors import UsageError
from aelab.models.prior import CodePrior
from conftest import tiny_config

VQVAE = {"task": "vqvae", "model.latent_dim": 8, "vq.codebook_size": 16, "vq.embedding_dim": 2,
         "train.num_steps": 150, "train.eval_every": 150, "train.checkpoint_every": 150,
         "optimizer.learning_rate": 3e-3}


def prior_config(vqvae: str, **overrides):
    return tiny_config(**{"task": "vqprior", "loss": "cross_entropy", "model.arch": "transformer", "prior.vqvae": vqvae,
                          "model.transformer.embed_dim": 32, "model.transformer.num_heads": 2,
                          "model.transformer.num_layers": 1, "model.transformer.mlp_dim": 64,
                          "model.transformer.dropout": 0.0,
                          "train.num_steps": 200, "train.eval_every": 100, "train.checkpoint_every": 100,
                          "optimizer.learning_rate": 3e-3, **overrides})


@pytest.fixture(scope="module")
def vqvae_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("vq") / "vqvae")
    train.train_and_evaluate(tiny_config(**VQVAE), workdir)
    return workdir


def test_the_prior_is_causal_and_its_loss_is_the_chain_rule_nll():
    """Changing code t changes no logit at positions <= t; the loss is -sum log p(c_t | c_<t)."""
    prior = CodePrior(5, 4, dim=8, heads=2, layers=1, hidden=16, dropout_rate=0.0, rngs=nnx.Rngs(0))
    codes = jnp.array([[1, 2, 3, 4]])
    changed = codes.at[0, 2].set(0)
    a, b = prior(codes), prior(changed)
    np.testing.assert_allclose(a[0, :3], b[0, :3], atol=1e-6)
    assert not np.allclose(a[0, 3], b[0, 3])
    log_p = jax.nn.log_softmax(a[0])
    by_hand = -sum(float(log_p[t, int(codes[0, t])]) for t in range(4))
    from aelab.tasks.code_prior import CodePriorTask

    metrics = CodePriorTask.eval_metrics(None, prior, {"image": codes}, jax.random.key(0), True)
    np.testing.assert_allclose(float(metrics["nll"][0]), by_hand, rtol=1e-5)
    samples = prior.sample(3, jax.random.key(1))
    assert samples.shape == (3, 4) and samples.dtype == jnp.int32 and int(samples.max()) < 5


def test_a_prior_learns_the_codes_of_a_frozen_vqvae_and_samples_images(tmp_path, vqvae_run):
    def vqvae_files():
        return {str(p): p.stat().st_mtime_ns for p in pathlib.Path(vqvae_run).rglob("*") if p.is_file()}

    before = vqvae_files()
    workdir = str(tmp_path / "prior")
    summary = train.train_and_evaluate(prior_config(vqvae_run), workdir)
    ev, base = summary["eval"], summary["baselines"]
    assert ev["bits_per_token"] < base["position_frequencies"]["bits_per_token"] < base["uniform"]["bits_per_token"]
    assert ev["bits_per_dim"] == pytest.approx(ev["nll"] / (math.log(2) * 64))
    assert summary["data"]["code_tokens"] == 4 and summary["data"]["vqvae_step"] == 150
    assert json.loads((tmp_path / "prior" / "vqvae.json").read_text())["step"] == 150
    assert (tmp_path / "prior" / "figures" / "samples.png").exists()
    # the VQ-VAE's files are read, never written
    assert vqvae_files() == before

    trained = aelab.load(workdir)
    images = trained.sample(6, seed=3)
    assert images.shape == (6, 8, 8, 1) and 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images, trained.sample(6, seed=3))
    # samples decode codes the VQ-VAE's codebook holds: re-encoding them gives codes back
    vq = aelab.load(vqvae_run)
    tokens = trained.task.sample_codes(trained.model, 6, 3)
    np.testing.assert_allclose(images, vq.decode_tokens(tokens), atol=1e-6)
    paths = generate.sample(workdir, 16, 0, str(tmp_path / "uses"))
    assert [p.split("/")[-1] for p in paths] == ["samples.png"]


def test_bad_prior_configs_are_one_line_before_anything_is_written(tmp_path, vqvae_run):
    cases = [({"prior.vqvae": ""}, "task=vqprior needs prior.vqvae"),
             ({"prior.vqvae": str(tmp_path / "nothing")}, "no config.json"),
             ({"data.split_seed": 3}, "trained on other data: data.split_seed=0"),
             ({"prior.temperature": 0.0}, "prior.temperature=0.0 must be > 0"),
             ({"model.transformer.num_heads": 3}, "must be divisible by model.transformer.num_heads=3")]
    for overrides, message in cases:
        with pytest.raises(UsageError, match=message):
            train.train_and_evaluate(prior_config(vqvae_run, **overrides), str(tmp_path / "w"))
        assert not (tmp_path / "w").exists()
    ae = str(tmp_path / "ae")
    train.train_and_evaluate(tiny_config(**{"train.num_steps": 2}), ae)
    with pytest.raises(UsageError, match="a code prior needs a vqvae run, but this one trained task='autoencoder'"):
        train.train_and_evaluate(prior_config(ae), str(tmp_path / "w"))
    with pytest.raises(UsageError, match="which has no prior to sample"):
        generate.sample(ae, 4, 0, str(tmp_path / "uses"))
