"""Learning-rate schedules from config, and the gradient norm the train step logs."""

import jax.numpy as jnp
import optax
import pytest

from aelab import optim
from aelab.config import base_config
from aelab.optim import learning_rate_schedule


def opt(**kw):
    o = base_config().optimizer
    for k, v in kw.items():
        o[k] = v
    return o


def test_constant_with_and_without_warmup():
    assert float(learning_rate_schedule(opt(learning_rate=0.1), 100)(50)) == pytest.approx(0.1)
    warm = learning_rate_schedule(opt(learning_rate=0.1, warmup_steps=10), 100)
    assert float(warm(0)) == 0.0 and float(warm(5)) == pytest.approx(0.05)
    assert float(warm(10)) == pytest.approx(0.1) and float(warm(99)) == pytest.approx(0.1)


def test_cosine_and_warmup_cosine_reach_the_end_value():
    cos = learning_rate_schedule(opt(learning_rate=0.1, schedule="cosine", end_lr_factor=0.1), 100)
    assert float(cos(0)) == pytest.approx(0.1)
    assert float(cos(50)) == pytest.approx(0.01 + 0.09 * 0.5)
    assert float(cos(100)) == pytest.approx(0.01)
    wc = learning_rate_schedule(opt(learning_rate=0.1, schedule="warmup_cosine", warmup_steps=10), 110)
    assert float(wc(0)) == 0.0 and float(wc(10)) == pytest.approx(0.1)
    assert float(wc(110)) == pytest.approx(0.0, abs=1e-9)


def test_global_norm_is_the_l2_norm_of_all_leaves():
    tree = {"w": jnp.array([[3.0, 0.0], [0.0, 4.0]]), "b": jnp.array([12.0]), "s": jnp.array(0.0)}
    assert float(optim.global_norm(tree)) == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    assert float(optim.global_norm(tree)) == pytest.approx(float(optax.tree.norm(tree)))
