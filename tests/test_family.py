"""The autoencoder family: VAE math, corruptions, penalties, vector quantization, and that each learns."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aelab import baselines, corruption, data, losses, steps, train
from aelab.evaluate import evaluate_split
from aelab.errors import UsageError
from aelab.models.vq import VectorQuantizer
from aelab.tasks.terms import jacobian_frobenius_sq, kl_sparsity
from aelab.tasks.vae import importance_sampled_nll
from conftest import tiny_config


def test_gaussian_kl_against_the_closed_form_by_hand():
    # KL(N(1, 4) || N(0, 1)) = 0.5 * (mu^2 + s^2 - 1 - log s^2) = 0.5 * (1 + 4 - 1 - log 4)
    kl = losses.gaussian_kl(jnp.array([1.0, 0.0]), jnp.log(jnp.array([4.0, 1.0])))
    np.testing.assert_allclose(kl, [0.5 * (4 - math.log(4)), 0.0], rtol=1e-6)
    # log N(0; 0, 1) in 2-D = -log(2 pi)
    assert float(losses.log_normal(jnp.zeros(2))) == pytest.approx(-math.log(2 * math.pi))
    # Gaussian NLL of a perfect prediction with sigma=1 over 3 pixels = 1.5 log(2 pi)
    nll = losses.gaussian_nll(jnp.zeros((1, 3)), jnp.zeros((1, 3)), 1.0)
    assert float(nll[0]) == pytest.approx(1.5 * math.log(2 * math.pi), rel=1e-6)


def test_total_correlation_decomposition_by_hand():
    """beta-TCVAE's minibatch-weighted sampling, written out with loops (Chen et al. 2018):
    log q(z_i) = log sum_j q(z_i|x_j) - log(N B), per dimension likewise; MI + TC + dimension-wise
    KL = log q(z_i|x_i) - log p(z_i)."""
    rng = np.random.default_rng(0)
    z, mean, logvar = rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(-0.5, 0.3, (3, 2))
    n = 10

    def log_n(v, m, lv):
        return -0.5 * (math.log(2 * math.pi) + lv + (v - m) ** 2 / math.exp(lv))

    terms = losses.total_correlation_terms(jnp.asarray(z), jnp.asarray(mean), jnp.asarray(logvar), n)
    for i in range(3):
        log_qz = math.log(sum(math.exp(sum(log_n(z[i, d], mean[j, d], logvar[j, d]) for d in range(2)))
                              for j in range(3))) - math.log(n * 3)
        log_qz_dims = sum(math.log(sum(math.exp(log_n(z[i, d], mean[j, d], logvar[j, d])) for j in range(3)))
                          - math.log(n * 3) for d in range(2))
        log_qz_x = sum(log_n(z[i, d], mean[i, d], logvar[i, d]) for d in range(2))
        log_pz = sum(log_n(z[i, d], 0.0, 0.0) for d in range(2))
        assert float(terms["mutual_information"][i]) == pytest.approx(log_qz_x - log_qz, rel=1e-4)
        assert float(terms["total_correlation"][i]) == pytest.approx(log_qz - log_qz_dims, rel=1e-4, abs=1e-5)
        assert float(terms["dimension_kl"][i]) == pytest.approx(log_qz_dims - log_pz, rel=1e-4)


def test_vampprior_is_the_mean_of_the_pseudo_inputs_posteriors():
    """log p(z) = log (1/K) sum_k N(z; mu_k, sigma_k^2) with (mu_k, log sigma_k^2) the encoder's
    posterior of pseudo-input k, written out by hand; without pseudo-inputs, N(0, I)."""
    from aelab import models

    rngs = nnx.Rngs(0)
    encoder = nnx.Sequential(lambda x: x.reshape(x.shape[0], -1), nnx.Linear(4, 6, rngs=rngs))
    pseudo = jax.random.uniform(jax.random.key(1), (3, 2, 2, 1))
    vae = models.VAE(encoder, lambda z: z, lambda r: r, 3, pseudo)
    z = jax.random.normal(jax.random.key(2), (5, 3))
    means, logvars = (np.asarray(a, np.float64) for a in vae.posterior(pseudo))
    zs = np.asarray(z, np.float64)
    log_components = [-0.5 * np.sum(np.log(2 * np.pi) + logvars[k] + (zs - means[k]) ** 2 / np.exp(logvars[k]), -1)
                      for k in range(3)]
    expected = np.log(np.mean(np.exp(np.stack(log_components)), axis=0))
    np.testing.assert_allclose(vae.log_prior(z), expected, rtol=1e-5)
    standard = models.VAE(encoder, lambda z: z, lambda r: r, 3)
    np.testing.assert_allclose(standard.log_prior(z), losses.log_normal(z), rtol=1e-6)
    assert standard.sample(4, jax.random.key(0)).shape == vae.sample(4, jax.random.key(0)).shape == (4, 3)


def test_ema_codebook_update_by_hand_and_dead_codes_restart():
    """Decay 0.5 from codes (0, 10) used once each: outputs 1 and 2 go to code 0, 9 to code 1, so
    N = (1.5, 1.0), m = (1.5, 9.5) and e = m / N = (1.0, 9.5). A third code at 100, never used,
    falls to N = 0.5 < 0.6 and restarts at one of the batch's outputs."""
    vq = VectorQuantizer(2, 1, ema_decay=0.5, rngs=nnx.Rngs(0))
    vq.codebook[...] = vq.embed_sum[...] = jnp.array([[0.0], [10.0]])
    vq.ema_update(jnp.array([[1.0], [2.0], [9.0]]), jax.random.key(0))
    np.testing.assert_allclose(vq.cluster_size[...], [1.5, 1.0])
    np.testing.assert_allclose(vq.codebook[...][:, 0], [1.0, 9.5], rtol=1e-4)
    vq = VectorQuantizer(3, 1, ema_decay=0.5, rngs=nnx.Rngs(0))
    vq.codebook[...] = vq.embed_sum[...] = jnp.array([[0.0], [10.0], [100.0]])
    vq.ema_update(jnp.array([[1.0], [2.0], [9.0]]), jax.random.key(0), restart_below=0.6)
    assert float(vq.codebook[...][2, 0]) in (1.0, 2.0, 9.0) and float(vq.cluster_size[...][2]) == 1.0
    assert not isinstance(vq.codebook, nnx.Param)  # no gradient, no optimizer moves it


def test_hierarchical_vae_weights_and_kl_by_hand():
    """Top-down inference: an importance weight is log p(x|z_1) + sum over layers of
    log p(z_l | z_l+1) - log q(z_l | x, z_l+1), assembled here from the drawn layers; each
    layer's KL in the ELBO is the closed form between two Gaussians, checked by hand; the code
    is every layer's mean, and samples come from the top-down prior."""
    from aelab import tasks
    from aelab.models.hierarchical import gaussian_kl_between

    config = tiny_config(**{"task": "vae", "vae.latents": (6, 3, 2), "vae.layer_width": 16})
    task = tasks.get_task(config)
    model = task.build_model((8, 8, 1), nnx.Rngs(params=0))
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    key = jax.random.key(2)
    drawn = model.layers_of(x, jax.random.split(key, 1)[0])
    assert [z.shape[1] for z, *_ in drawn] == [6, 3, 2]
    by_hand = task.log_likelihood(model.decoder(drawn[0][0]), x) + sum(
        losses.log_normal(z, p_m, p_lv) - losses.log_normal(z, q_m, q_lv) for z, q_m, q_lv, p_m, p_lv in drawn)
    np.testing.assert_allclose(model.log_weights(x, key, 1, task.log_likelihood)[0], by_hand, rtol=1e-5)
    # KL(N(1, 4) || N(0.5, 2)) = log(sqrt(2) / 2) + (4 + 0.25) / (2 * 2) - 1/2
    kl = gaussian_kl_between(jnp.array(1.0), jnp.log(4.0), jnp.array(0.5), jnp.log(2.0))
    assert float(kl) == pytest.approx(math.log(math.sqrt(2) / 2) + 4.25 / 4 - 0.5, rel=1e-6)
    assert model.encode(x).shape == (4, 11) and model.sample(5, jax.random.key(0)).shape == (5, 8, 8, 1)


def test_mmd_imq_by_hand_and_it_tells_distributions_apart():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    c = 6.0
    k = lambda x, y: c / (c + np.sum((x - y) ** 2))  # noqa: E731
    within = lambda s: sum(k(s[i], s[j]) for i in range(len(s)) for j in range(len(s)) if i != j) / (  # noqa: E731
        len(s) * (len(s) - 1))
    expected = within(a) + within(b) - 2 * np.mean([k(x, y) for x in a for y in b])
    assert float(losses.mmd_imq(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(expected, rel=1e-5)
    same = losses.mmd_imq(jnp.asarray(rng.normal(size=(200, 3))), jnp.asarray(rng.normal(size=(200, 3))))
    apart = losses.mmd_imq(jnp.asarray(rng.normal(3.0, 1.0, (200, 3))), jnp.asarray(rng.normal(size=(200, 3))))
    assert abs(float(same)) < 0.02 < float(apart)


def test_kl_sparsity_by_hand():
    rho, rho_hat = 0.1, jnp.array([0.1, 0.5])
    expected = 0.1 * math.log(0.1 / 0.5) + 0.9 * math.log(0.9 / 0.5)
    assert float(kl_sparsity(rho, rho_hat)) == pytest.approx(expected, rel=1e-5)


class TinyVAE(nnx.Module):
    """A 1-D latent VAE on 3 binary pixels: its exact marginal likelihood is a 1-D integral."""

    def __init__(self):
        rngs = nnx.Rngs(params=3)
        self.encoder = nnx.Linear(3, 2, rngs=rngs)
        self.decoder = nnx.Linear(1, 3, rngs=rngs)

    def posterior(self, x):
        mean, logvar = jnp.split(self.encoder(x), 2, axis=-1)
        return 0.5 * mean, 0.1 * logvar  # a broad proposal, so k = 2000 gets close to exact

    def log_prior(self, z):
        return losses.log_normal(z)


def exact_log_marginal(model, x):
    """log p(x) = log integral p(x|z) N(z; 0, 1) dz by quadrature on a fine grid."""
    z = jnp.linspace(-10, 10, 20001)[:, None]
    log_px_z = -losses.bce_with_logits(model.decoder(z), jnp.broadcast_to(x, (len(z), 3)))
    log_prior = losses.log_normal(z)
    dz = float(z[1, 0] - z[0, 0])
    return jax.scipy.special.logsumexp(log_px_z + log_prior) + math.log(dz)


def test_elbo_below_is_bound_below_true_likelihood_and_the_bound_tightens():
    model = TinyVAE()
    patterns = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    true_nll = -jnp.array([exact_log_marginal(model, xi) for xi in patterns])
    x = jnp.repeat(patterns, 250, axis=0)  # many draws per pattern: the estimators' noise averages out
    log_lik = lambda raw, target: -losses.bce_with_logits(raw, target)  # noqa: E731
    rng = jax.random.key(0)
    bound = {k: importance_sampled_nll(model, x, rng, k, min(k, 100), log_lik).mean()
             for k in (1, 10, 100, 2000)}
    # The negative ELBO, by Monte Carlo with many samples: E_q[-log p(x|z)] + KL(q || p).
    mean, logvar = model.posterior(x)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.key(1), (4000, *mean.shape))
    recon = jax.vmap(lambda zi: losses.bce_with_logits(model.decoder(zi), x))(z).mean(axis=0)
    elbo_samples = (recon + losses.gaussian_kl(mean, logvar).sum(-1)).mean()
    assert elbo_samples > bound[10] > bound[100] > bound[2000]
    assert float(bound[2000]) >= float(true_nll.mean()) - 1e-3
    assert float(bound[2000]) == pytest.approx(float(true_nll.mean()), abs=0.01)
    assert float(bound[1]) == pytest.approx(float(elbo_samples), abs=0.05)


def test_corruption_statistics():
    x = jnp.full((200, 20, 20, 1), 0.5)
    rng = jax.random.key(0)
    noisy = corruption.gaussian(x, rng, 0.1)
    assert float(jnp.std(noisy - x)) == pytest.approx(0.1, rel=0.02)
    masked = corruption.mask(x, rng, 0.3)
    assert float(jnp.mean(masked == 0)) == pytest.approx(0.3, abs=0.01)
    sp = corruption.salt_and_pepper(x, rng, 0.2)
    changed = sp != x
    assert float(jnp.mean(changed)) == pytest.approx(0.2, abs=0.01)
    assert float(jnp.mean(sp[changed] == 1.0)) == pytest.approx(0.5, abs=0.02)
    assert jnp.array_equal(corruption.mask(x, rng, 0.3), masked)  # seeded: reproducible
    assert not jnp.array_equal(corruption.mask(x, jax.random.key(1), 0.3), masked)
    assert float(losses.psnr(jnp.full((1, 4), 0.6), jnp.full((1, 4), 0.5))[0]) == pytest.approx(20.0)
    with pytest.raises(UsageError, match="corruption.level=1.5 must lie strictly between 0 and 1"):
        corruption.check("mask", 1.5)
    assert corruption.parse("gaussian:0.3") == ("gaussian", 0.3)


def test_contractive_penalty_matches_a_brute_force_jacobian():
    rngs = nnx.Rngs(params=0)
    layer1, layer2 = nnx.Linear(5, 7, rngs=rngs), nnx.Linear(7, 3, rngs=rngs)
    encode = lambda x: layer2(jnp.tanh(layer1(x)))  # noqa: E731
    x = jax.random.normal(jax.random.key(1), (4, 5))
    brute = np.zeros(4)
    for n in range(4):  # one directional derivative per input coordinate, example by example
        for i in range(5):
            basis = jnp.zeros(5).at[i].set(1.0)
            _, column = jax.jvp(lambda v: encode(v[None])[0], (x[n],), (basis,))
            brute[n] += float(jnp.sum(column ** 2))
    np.testing.assert_allclose(jacobian_frobenius_sq(encode, x), brute, rtol=1e-5)


def test_vector_quantizer_picks_the_nearest_code_and_passes_gradients_straight_through():
    vq = VectorQuantizer(4, 2, rngs=nnx.Rngs(params=0))
    vq.codebook[...] = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z_e = jnp.array([[0.9, 0.1, 0.2, 0.8], [0.1, 0.1, 0.9, 0.9]])  # two tokens per example
    np.testing.assert_array_equal(vq.indices(z_e), [[1, 2], [0, 3]])
    z_q, q = vq.quantize(z_e)
    np.testing.assert_allclose(z_q, [[1, 0, 0, 1], [0, 0, 1, 1]])
    weights = jnp.arange(8.0).reshape(2, 4)
    grad = jax.grad(lambda z: jnp.sum(vq.quantize(z)[0] * weights))(z_e)
    np.testing.assert_allclose(grad, weights)  # identity: straight through


FAMILY = {
    "autoencoder": {},
    "denoising": {"corruption.kind": "mask", "corruption.level": 0.3},
    "sparse": {"penalty.l1": 0.01, "penalty.kl_sparsity": 0.1, "model.code_activation": "sigmoid"},
    "contractive": {"penalty.contractive": 0.01},
    "vae": {"task": "vae", "vae.iw_samples": 10, "vae.iw_chunk": 5, "vae.kl_warmup_steps": 20,
            "vae.free_bits": 0.01},
    "beta_vae_binarized": {"task": "vae", "vae.beta": 4.0, "vae.binarize": True, "vae.iw_samples": 10},
    "gaussian_vae": {"task": "vae", "loss": "mse", "vae.iw_samples": 5, "vae.iw_chunk": 5},
    "vqvae": {"task": "vqvae", "model.latent_dim": 8, "vq.codebook_size": 16, "vq.embedding_dim": 2},
    "iwae": {"task": "vae", "vae.objective": "iwae", "vae.train_samples": 4, "vae.iw_samples": 10, "vae.iw_chunk": 5},
    "beta_tcvae": {"task": "vae", "vae.objective": "tcvae", "vae.beta": 6.0, "vae.iw_samples": 10, "vae.iw_chunk": 5},
    "resnet_vae": {"task": "vae", "model.arch": "resnet", "model.resnet.channels": (8, 16), "model.resnet.upsample": "resize",
                   "vae.iw_samples": 10, "vae.iw_chunk": 5},
    "vqvae_ema": {"task": "vqvae", "model.latent_dim": 8, "vq.codebook_size": 16, "vq.embedding_dim": 2,
                  "vq.ema_decay": 0.9, "vq.restart_below": 0.01},
    "hierarchical_vae": {"task": "vae", "vae.latents": (8, 4), "vae.layer_width": 32, "vae.iw_samples": 10,
                         "vae.iw_chunk": 5},
    "vampprior": {"task": "vae", "vae.prior": "vamp", "vae.pseudo_inputs": 10, "vae.iw_samples": 10,
                  "vae.iw_chunk": 5},
    "infovae": {"task": "vae", "vae.objective": "infovae", "vae.info_lambda": 100.0, "vae.iw_samples": 10,
                "vae.iw_chunk": 5},
}


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_every_model_learns(tmp_path, name):
    config = tiny_config(**{"train.num_steps": 150, "train.eval_every": 150,
                            "optimizer.learning_rate": 3e-3, **FAMILY[name]})
    run = train.build(config)
    metric = "neg_elbo" if config.task == "vae" else "loss"
    untrained = evaluate_split(steps.make_eval_step(run.graphdef, run.task, run.policy), run.state,
                               run.dataset.test, 256, run.eval_key, run.task)[metric]
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert summary["eval"][metric] < 0.8 * untrained
    assert (tmp_path / "figures" / "interpolation.png").exists()
    if config.task == "vae":
        assert summary["eval"]["nll"] <= summary["eval"]["neg_elbo"] + 0.5
        assert (tmp_path / "figures" / "samples.png").exists()
    if config.task == "vqvae":
        assert 1.0 <= summary["eval"]["perplexity"] <= 16 and 0 <= summary["eval"]["dead_codes"] < 16
    if name == "vqvae_ema":  # the averages moved inside the compiled step and were saved
        import aelab

        assert not np.allclose(aelab.load(str(tmp_path)).model.quantizer.cluster_size[...], 1.0)
    if name == "denoising":
        assert summary["eval"]["psnr"] > summary["eval"]["psnr_noisy"]
    if name == "sparse":
        assert 0 <= summary["eval"]["frac_near_zero"] <= 1


def test_a_discretized_logistic_vae_learns_8_bit_images_and_reports_bits_per_dim(tmp_path):
    """The embedded digits as 8-bit pixels: the VAE learns, and reports its bound and its IWAE
    bound in bits per dimension (nats / (64 ln 2)), below the 8 bits of a uniform guess."""
    digits = data.read_splits(tiny_config().data)["train"]
    np.savez(tmp_path / "digits8.npz", x_train=np.round(digits.images[..., 0] * 255).astype(np.uint8),
             y_train=digits.labels)
    config = tiny_config(**{"task": "vae", "loss": "dlogistic", "model.mixtures": 2,
                            "data.name": f"npz:{tmp_path / 'digits8.npz'}", "vae.iw_samples": 10,
                            "vae.iw_chunk": 5, "train.num_steps": 150, "train.eval_every": 150,
                            "optimizer.learning_rate": 3e-3})
    run = train.build(config)
    untrained = evaluate_split(steps.make_eval_step(run.graphdef, run.task, run.policy), run.state,
                               run.dataset.test, 256, run.eval_key, run.task)
    summary = train.train_and_evaluate(config, str(tmp_path / "w"))
    ev = summary["eval"]
    assert ev["neg_elbo"] < 0.8 * untrained["neg_elbo"]
    assert ev["bits_per_dim"] == pytest.approx(ev["neg_elbo"] / (64 * math.log(2)), rel=1e-6)
    assert ev["nll_bits_per_dim"] == pytest.approx(ev["nll"] / (64 * math.log(2)), rel=1e-6)
    assert ev["nll_bits_per_dim"] < 8.0 and summary["val"]["bits_per_dim"] > 0
    # probabilistic PCA at the code size, in the same bits: the likelihood baseline beside them
    pca = baselines.fit_pca(run.dataset.train, run.task.code_size, config.seed)
    assert summary["baselines"]["pca"]["bits_per_dim"] == pytest.approx(
        baselines.ppca_bits_per_dim(pca, run.dataset.test.images), rel=1e-6)
    assert summary["baselines"]["pca"]["val_bits_per_dim"] == pytest.approx(
        baselines.ppca_bits_per_dim(pca, run.dataset.val.images), rel=1e-6)
    # PSNR of the mean reconstruction, per image then averaged: at least that of the mean squared error
    assert 10 * math.log10(64 / ev["recon_sse"]) - 1e-4 <= ev["psnr"] < 60
    assert (tmp_path / "w" / "figures" / "samples.png").exists()


@pytest.mark.parametrize("overrides,message", [
    ({"task": "vae", "vae.beta": -1.0}, "vae.beta=-1.0 must be >= 0"),
    ({"task": "vae", "vae.iw_samples": 0}, "vae.iw_samples=0 and vae.iw_chunk=100 must be >= 1"),
    ({"task": "vae", "vae.iw_samples": 150}, "must be a multiple of vae.iw_chunk=100"),
    ({"task": "vae", "loss": "l1"}, "a VAE needs loss=bce"),
    ({"task": "vae", "vae.objective": "wake_sleep"}, "unknown vae.objective 'wake_sleep'; known: elbo, infovae, iwae, tcvae"),
    ({"task": "vae", "vae.objective": "iwae", "vae.beta": 4.0}, "vae.objective=iwae trains the importance-weighted bound"),
    ({"task": "vae", "vae.latents": (8, 4), "vae.objective": "tcvae"}, "vae.latents=\\(8, 4\\) \\(a hierarchy"),
    ({"task": "vae", "vae.prior": "vamp", "vae.objective": "tcvae"}, "vae.prior=vamp works with vae.objective elbo or iwae"),
    ({"task": "vae", "vae.objective": "infovae", "vae.info_alpha": 2.0}, "vae.info_alpha=2.0 must lie in \\[0, 1\\]"),
    ({"task": "vae", "loss": "dlogistic"}, "loss=dlogistic models 8-bit pixels \\(multiples of 1/255\\), but "
                                           "digits holds 0.5"),
    ({"task": "vae", "loss": "dlogistic", "model.mixtures": 0}, "model.mixtures=0 must be > 0"),
    ({"penalty.kl_sparsity": 0.1, "penalty.rho": 1.5, "model.code_activation": "sigmoid"},
     "penalty.rho=1.5 must lie strictly between 0 and 1"),
    ({"penalty.kl_sparsity": 0.1}, "needs codes in \\(0, 1\\)"),
    ({"task": "vqvae", "vq.codebook_size": 1}, "vq.codebook_size=1 must be >= 2"),
    ({"task": "vqvae", "vq.restart_below": 0.1}, "vq.restart_below restarts codes of a moving-average codebook"),
    ({"task": "vqvae", "model.latent_dim": 5, "vq.embedding_dim": 2}, "must be a multiple of vq.embedding_dim"),
    ({"corruption.kind": "blur"}, "unknown corruption.kind 'blur'"),
    ({"task": "gan"}, "unknown task 'gan'; known: autoencoder, captioning, segmentation, translation, vae, vqprior, vqvae"),
])
def test_bad_family_values_are_rejected(tmp_path, overrides, message):
    with pytest.raises(UsageError, match=message):
        train.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_tcvae_refuses_to_train_before_it_knows_the_training_set_size():
    """The minibatch-weighted estimate needs N: a task used from the library without `prepare` says so."""
    from aelab.tasks import get_task

    task = get_task(tiny_config(**FAMILY["beta_tcvae"]))
    model = task.build_model((8, 8, 1), nnx.Rngs(0))
    with pytest.raises(UsageError, match="vae.objective=tcvae needs the training split's size"):
        task.loss_fn(model, {"image": jnp.zeros((4, 8, 8, 1))}, jax.random.key(0), 0)


@pytest.mark.parametrize("task", ["autoencoder", "vae", "vqvae"])
def test_train_only_corruption_evaluates_on_clean_inputs(task):
    """corruption.train_only: noise regularizes training, and evaluation sees the clean input,
    so the eval metrics equal those of the same model with no corruption at all."""
    extra = {"vae.iw_samples": 2, "vae.iw_chunk": 2} if task == "vae" else {}
    if task == "vqvae":
        extra = {"model.latent_dim": 8, "vq.codebook_size": 16, "vq.embedding_dim": 2}
    noisy = tiny_config(**{"task": task, "corruption.kind": "mask", "corruption.level": 0.5,
                           "corruption.train_only": True, **extra})
    clean = tiny_config(**{"task": task, **extra})
    run_noisy, run_clean = train.build(noisy), train.build(clean)
    batch = next(iter(data.eval_batches(run_clean.dataset.test, 64)))
    rng = jax.random.key(0)
    metrics = lambda run: run.task.eval_metrics(nnx.merge(run_clean.graphdef, run_clean.state)[0],  # noqa: E731
                                                batch, rng, False)
    a, b = metrics(run_noisy), metrics(run_clean)
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, err_msg=name)
    # ...while training does see the noise: the training loss differs.
    model = nnx.merge(run_clean.graphdef, run_clean.state)[0]
    train_batch = {"image": batch["image"]}
    loss_noisy = run_noisy.task.loss_fn(model, train_batch, rng, 0)[0]
    loss_clean = run_clean.task.loss_fn(model, train_batch, rng, 0)[0]
    assert float(loss_noisy) != pytest.approx(float(loss_clean))
