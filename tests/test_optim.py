"""Learning-rate schedules from config, and the gradient norm the train step logs."""

import jax.numpy as jnp
import numpy as np
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


def test_after_whole_backward_keeps_the_numbers():
    grads = {"w": jnp.array([[1.5, -2.0], [0.25, 3.0]]), "v": jnp.arange(6.0).reshape(3, 2),
             "b": jnp.array([7.0, -1.0]), "conv": jnp.ones((3, 3, 1, 2)), "empty": jnp.zeros((0, 4))}
    ordered = optim.after_whole_backward(grads)
    for name in grads:
        assert ordered[name].dtype == grads[name].dtype and ordered[name].shape == grads[name].shape
        np.testing.assert_array_equal(ordered[name], grads[name])
    no_matrix = {"b": jnp.ones(3)}
    assert optim.after_whole_backward(no_matrix) is no_matrix
    # A non-finite matrix gradient reaches every matrix's update (the step is lost either way).
    bad = optim.after_whole_backward(dict(grads, v=grads["v"].at[0, 0].set(jnp.nan)))
    assert bool(jnp.isnan(bad["w"]).all()) and bool(jnp.isfinite(bad["b"]).all())


def test_train_step_updates_dense_kernels_in_place_without_copying_them():
    """Regression: XLA copied every donated kernel the backward pass reads again (7 of mlp_ae's
    8, 11 MB a step) because nothing ordered that read before the in-place update."""
    import jax
    from aelab import bench, steps

    config, task, policy, graphdef, state = bench.workload_state("mlp_ae")
    if not policy.order_updates:
        pytest.skip(f"the update ordering is XLA:CPU's (aelab.compiler); this backend is {policy.backend}")
    step = steps.make_train_step(graphdef, task, policy)
    hlo = step.lower(state, {"image": jnp.zeros((8, 28, 28, 1))}, jax.random.key(0)).compile().as_text()
    copied = [line for line in hlo.splitlines() if " copy(" in line and "kernel" in line]
    assert not copied, copied
