"""Losses and metrics against hand-computed values, in the contract's units."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import losses


def test_bce_with_logits_is_nats_summed_per_example():
    logits = jnp.array([[[[0.0]], [[2.0]]], [[[-1.0]], [[0.5]]]])  # (2, 2, 1, 1)
    target = jnp.array([[[[1.0]], [[0.0]]], [[[0.25]], [[1.0]]]])
    # -[t log s(l) + (1-t) log(1-s(l))] per pixel, summed per example.
    def bce(l, t):
        s = 1 / (1 + math.exp(-l))
        return -(t * math.log(s) + (1 - t) * math.log(1 - s))
    expected = [bce(0, 1) + bce(2, 0), bce(-1, 0.25) + bce(0.5, 1)]
    np.testing.assert_allclose(losses.bce_with_logits(logits, target), expected, rtol=1e-6)
    assert expected[0] == pytest.approx(math.log(2) + 2 + math.log(1 + math.exp(-2)))


def test_bce_with_logits_is_stable_at_extreme_logits_and_its_gradient_is_sigmoid_minus_target():
    logits = jnp.array([[-100.0, -20.0, 0.0, 20.0, 100.0]])
    target = jnp.array([[0.0, 1.0, 0.5, 0.0, 1.0]])
    # softplus(z) - t z per pixel: ~0 at -100 with t=0, 20 at -20 with t=1, log 2 at 0, 20, ~0.
    expected = 0.0 + (20.0 + math.log1p(math.exp(-20))) + math.log(2) + (20.0 + math.log1p(math.exp(-20))) + 0.0
    np.testing.assert_allclose(losses.bce_with_logits(logits, target), [expected], rtol=1e-6)
    grad = jax.grad(lambda z: losses.bce_with_logits(z, target).sum())(logits)
    np.testing.assert_allclose(grad, jax.nn.sigmoid(logits) - target, atol=1e-7)
    assert np.all(np.isfinite(grad))


def test_softplus_matches_float64_and_its_derivative_is_the_sigmoid():
    z = np.concatenate([np.linspace(-80, 80, 16001), [0.0, -1e-6, 1e-6, -88.0, 88.0]]).astype(np.float32)
    exact = np.logaddexp(0.0, z.astype(np.float64))
    value = np.asarray(losses.softplus_series(jnp.asarray(z)), np.float64)
    # Within a few float32 ulps everywhere e^z is a normal float, the tail below -16.6 included
    # (where log(1 + e) would read 0): relative, not just absolute, accuracy.
    normal = z > -80.5
    np.testing.assert_allclose(value[normal], exact[normal], rtol=5e-7, atol=0)
    assert 0 <= value[z == -88.0][0] < 1e-37  # e^-88 is below float32's normal range
    grad = jax.vmap(jax.grad(losses.softplus_series))(jnp.asarray(z))
    np.testing.assert_allclose(grad, 1 / (1 + np.exp(-z.astype(np.float64))), atol=1e-38, rtol=5e-7)
    assert float(jax.grad(losses.softplus_series)(0.0)) == 0.5
    assert np.isnan(losses.softplus_series(jnp.array(np.nan)))
    assert float(losses.softplus_series(jnp.array(np.inf))) == np.inf
    assert float(losses.softplus_series(jnp.array(-np.inf))) == 0.0
    assert float(jax.grad(losses.softplus_series)(-np.inf)) == 0.0 and float(jax.grad(losses.softplus_series)(np.inf)) == 1.0
    half = losses.softplus_series(jnp.asarray(z, jnp.bfloat16))
    assert half.dtype == jnp.bfloat16  # computed in float32 inside: bfloat16's 1 + e would drop e
    np.testing.assert_allclose(np.asarray(half, np.float64), exact, rtol=1e-2, atol=1e-3)


def test_sse_and_l1_sum_over_pixels():
    prediction = jnp.array([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]])
    target = jnp.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.5]])
    np.testing.assert_allclose(losses.sse(prediction, target), [0.25 + 0 + 1, 1 + 0 + 0.25])
    np.testing.assert_allclose(losses.l1(prediction, target), [0.5 + 0 + 1, 1 + 0 + 0.5])


def test_per_example_sums_match_float64_sums_keep_the_dtype_and_differentiate():
    # The sums are a matrix-vector product (for XLA:CPU's speed); they must still be plain sums.
    values = np.random.default_rng(0).normal(size=(3, 28, 28, 1)).astype(np.float32)
    target = np.zeros_like(values)
    np.testing.assert_allclose(losses.sse(values, target), np.square(values.astype(np.float64)).sum(axis=(1, 2, 3)),
                               rtol=1e-6)
    np.testing.assert_allclose(losses.l1(values, target), np.abs(values.astype(np.float64)).sum(axis=(1, 2, 3)),
                               rtol=1e-6)
    half = losses.sse(jnp.asarray(values, jnp.bfloat16), jnp.asarray(target, jnp.bfloat16))
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), losses.sse(values, target), rtol=1e-2)
    grad = jax.grad(lambda p: losses.sse(p, target).mean())(values)
    np.testing.assert_allclose(grad, 2 * values / 3, rtol=1e-6)


def test_recon_metrics_use_the_link_and_report_mse_per_element():
    raw = jnp.zeros((2, 2, 2, 1))  # logits 0 -> prediction 0.5 everywhere
    target = jnp.ones((2, 2, 2, 1))
    metrics = losses.recon_metrics(raw, target, losses.recon_loss("bce"))
    np.testing.assert_allclose(metrics["recon_sse"], [4 * 0.25] * 2)
    np.testing.assert_allclose(metrics["mse"], [0.25] * 2)
    np.testing.assert_allclose(metrics["l1"], [2.0] * 2)
    np.testing.assert_allclose(metrics["psnr"], [10 * math.log10(1 / 0.25)] * 2, rtol=1e-6)  # 6.02 dB
    np.testing.assert_allclose(metrics["bce"], [4 * math.log(2)] * 2, rtol=1e-6)
    identity = losses.recon_metrics(raw, target, losses.recon_loss("mse"))
    np.testing.assert_allclose(identity["recon_sse"], [4.0, 4.0])
    assert "bce" not in identity


def test_pca_baseline_psnr_is_the_mean_of_each_images_psnr():
    from aelab.baselines import fit_pca, pca_baseline
    from aelab.data.splits import Split

    rng = np.random.default_rng(0)
    train = Split(rng.random((50, 4, 4, 1), dtype=np.float32))
    test = Split(np.stack([np.full((4, 4, 1), 0.5, np.float32), rng.random((4, 4, 1), dtype=np.float32)]))
    pca = fit_pca(train, 3)
    scores = pca_baseline(pca, test)
    per_image = np.square(pca.inverse_transform(pca.transform(test.images.reshape(2, -1)))
                          - test.images.reshape(2, -1)).mean(axis=1)
    assert scores["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / per_image)), rel=1e-5)
    assert scores["mse"] == pytest.approx(per_image.mean(), rel=1e-5)


def test_ppca_bits_per_dim_is_the_gaussian_density_of_tipping_and_bishop():
    from aelab.baselines import fit_pca, ppca_bits_per_dim
    from aelab.data.splits import Split

    rng = np.random.default_rng(1)
    train = rng.normal(0.5, 0.1, (400, 2, 3, 1)).astype(np.float32)
    test = rng.normal(0.5, 0.1, (20, 2, 3, 1)).astype(np.float32)
    pca = fit_pca(Split(train), 2)
    # The model's covariance: W W^T + sigma^2 I, the discarded components' mean variance as sigma^2.
    w = pca.components_.T * np.sqrt(pca.explained_variance_ - pca.noise_variance_)
    cov = w @ w.T + pca.noise_variance_ * np.eye(6)
    x = test.reshape(20, 6) - pca.mean_
    nats = 0.5 * (np.einsum("ij,jk,ik->i", x, np.linalg.inv(cov), x) + np.linalg.slogdet(cov)[1]
                  + 6 * math.log(2 * math.pi))
    assert ppca_bits_per_dim(pca, test) == pytest.approx(nats.mean() / (6 * math.log(2)) + 8, rel=1e-4)
    # As many components as the centred data's rank leave no noise variance: no density, refused.
    with pytest.raises(ValueError, match="3 components of 4 training examples leaves no variance"):
        ppca_bits_per_dim(fit_pca(Split(train[:4]), 3), test)


def test_unknown_loss_lists_known_ones():
    with pytest.raises(ValueError, match="unknown loss 'huber'; known: bce, dlogistic, l1, mse"):
        losses.recon_loss("huber")


# --- the discretized logistic mixture over 8-bit pixels -----------------------------------------

def _logistic_cdf(x, mean, scale):
    return 1.0 / (1.0 + np.exp(-(x - mean) / scale))


def test_discretized_logistic_probabilities_of_the_256_values_sum_to_one():
    """A proper distribution over the 8-bit values: for any parameters, a pixel's 256
    probabilities sum to 1 (edge bins take the tails), for one component and for a mixture."""
    rng = np.random.default_rng(0)
    x = (jnp.arange(256, dtype=jnp.float32) / 255.0).reshape(256, 1, 1, 1)
    for mixtures in (1, 3):
        raw = rng.normal(0.0, 1.5, (1, 1, 1, 3 * mixtures)).astype(np.float32)
        log_p = -losses.discretized_logistic_nll(jnp.broadcast_to(raw, (256, 1, 1, 3 * mixtures)), x, mixtures)
        assert float(jnp.exp(jax.scipy.special.logsumexp(log_p))) == pytest.approx(1.0, abs=1e-5)


def test_discretized_logistic_one_component_equals_the_logistic_cdf_by_hand():
    """One component, one channel: P(k/255) = F((x + 1/255 - mu)/s) - F((x - 1/255 - mu)/s) on the
    [-1, 1] scale, the first value F(upper), the last 1 - F(lower); nats summed over pixels."""
    mean, log_scale = 0.2, -2.0
    raw = jnp.array([[[[0.0, mean, log_scale]], [[0.0, mean, log_scale]]]], jnp.float32)  # (1, 2, 1, 3)
    for k0, k1 in ((0, 140), (255, 128), (3, 77)):
        x = jnp.array([[[[k0 / 255.0]], [[k1 / 255.0]]]], jnp.float32)
        expected = 0.0
        for k in (k0, k1):
            v, s = 2 * k / 255.0 - 1.0, math.exp(log_scale)
            upper = 1.0 if k == 255 else _logistic_cdf(v + 1 / 255.0, mean, s)
            lower = 0.0 if k == 0 else _logistic_cdf(v - 1 / 255.0, mean, s)
            expected -= math.log(upper - lower)
        got = float(losses.discretized_logistic_nll(raw, x, 1)[0])
        assert got == pytest.approx(expected, rel=1e-4), (k0, k1)


def test_discretized_logistic_mixture_weights_and_mean():
    """Two components: P = w1 P1 + w2 P2 with softmax weights; the decoded mean is the weighted
    mean of the components' means, back on the [0, 1] scale."""
    logits, means, log_scales = np.array([0.3, -0.4]), np.array([-0.5, 0.6]), np.array([-1.5, -2.5])
    raw = jnp.asarray(np.concatenate([logits, means, log_scales]), jnp.float32).reshape(1, 1, 1, 6)
    x, k = jnp.full((1, 1, 1, 1), 90 / 255.0), 90
    weights = np.exp(logits) / np.exp(logits).sum()
    v = 2 * k / 255.0 - 1.0
    p = sum(w * (_logistic_cdf(v + 1 / 255.0, m, math.exp(ls)) - _logistic_cdf(v - 1 / 255.0, m, math.exp(ls)))
            for w, m, ls in zip(weights, means, log_scales))
    assert float(losses.discretized_logistic_nll(raw, x, 2)[0]) == pytest.approx(-math.log(p), rel=1e-4)
    mean = float(losses.discretized_logistic_mean(raw, 2)[0, 0, 0, 0])
    assert mean == pytest.approx((float(weights @ means) + 1) / 2, rel=1e-5)
    assert losses.recon_loss("dlogistic", mixtures=2).out_channels(3) == 14


def test_discretized_logistic_channels_share_the_component():
    """Colour: one mixture weight per pixel, the channels independent within a component:
    P(r, g, b) = sum_j w_j P_j(r) P_j(g) P_j(b)."""
    rng = np.random.default_rng(1)
    logits, means, log_scales = rng.normal(size=2), rng.uniform(-0.8, 0.8, (2, 3)), rng.uniform(-3, -1, (2, 3))
    raw = jnp.asarray(np.concatenate([logits, means.ravel(), log_scales.ravel()]), jnp.float32).reshape(1, 1, 1, 14)
    ks = np.array([12, 200, 131])
    weights = np.exp(logits) / np.exp(logits).sum()
    v = 2 * ks / 255.0 - 1.0
    p = sum(w * np.prod(_logistic_cdf(v + 1 / 255.0, m, np.exp(ls)) - _logistic_cdf(v - 1 / 255.0, m, np.exp(ls)))
            for w, m, ls in zip(weights, means, log_scales))
    x = jnp.asarray(ks / 255.0, jnp.float32).reshape(1, 1, 1, 3)
    assert float(losses.discretized_logistic_nll(raw, x, 2)[0]) == pytest.approx(-math.log(p), rel=1e-4)


def test_bits_per_dim():
    assert losses.bits_per_dim(784 * math.log(2.0), 784) == pytest.approx(1.0)
    assert losses.bits_per_dim(0.0, 3072, continuous=True) == pytest.approx(8.0)  # 1/256-wide bins
