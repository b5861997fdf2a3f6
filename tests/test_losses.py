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
    np.testing.assert_allclose(metrics["bce"], [4 * math.log(2)] * 2, rtol=1e-6)
    identity = losses.recon_metrics(raw, target, losses.recon_loss("mse"))
    np.testing.assert_allclose(identity["recon_sse"], [4.0, 4.0])
    assert "bce" not in identity


def test_unknown_loss_lists_known_ones():
    with pytest.raises(ValueError, match="unknown loss 'huber'; known: bce, l1, mse"):
        losses.recon_loss("huber")
