"""aelab.compiler: on CPU aelab's steps compile without YNNPACK matmuls, to the same numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aelab import bench, compiler, optim, tasks
from aelab.train import make_eval_step, make_train_step


def test_cpu_options_turn_ynn_dots_off_unless_asked():
    if jax.default_backend() != "cpu":  # other backends compile with XLA's defaults
        assert compiler.compiler_options() is None and compiler.compiler_options(ynn_dots=True) is None
        pytest.skip(f"the YNNPACK option is XLA:CPU's; checked that {jax.default_backend()} gets none")
    assert compiler.compiler_options() == {"xla_cpu_experimental_ynn_fusion_type": ""}
    assert compiler.compiler_options(ynn_dots=True) is None
    x = jnp.ones((64, 32))
    hlo = compiler.jit(lambda a: a @ a.T).lower(x).compile().as_text()
    hlo_ynn = compiler.jit(lambda a: a @ a.T, ynn_dots=True).lower(x).compile().as_text()
    assert "__ynn_fusion" not in hlo
    assert "__ynn_fusion" in hlo_ynn  # the option is what changes the compiled code


def test_ynn_dots_only_in_train_steps_and_decoders_of_models_without_convolutions_unless_asked():
    assert compiler.ynn_dots_for(None, "train", has_convolutions=False)
    assert compiler.ynn_dots_for(None, "decode", has_convolutions=False)
    assert not compiler.ynn_dots_for(None, "train", has_convolutions=True)
    assert not compiler.ynn_dots_for(None, "decode", has_convolutions=True)
    assert not compiler.ynn_dots_for(None, "evaluate")
    for requested in (True, False):
        for program in compiler.PROGRAMS:
            for convolutions in (False, True):
                assert compiler.ynn_dots_for(requested, program, convolutions) is requested
    with pytest.raises(ValueError, match="program='training'; known: train, evaluate, decode"):
        compiler.ynn_dots_for(None, "training")
    mlp, conv = (bench.workload_state(w)[2] for w in ("mlp_vae", "conv_ae"))
    assert not compiler.has_convolutions(mlp) and compiler.has_convolutions(conv)


def _train(workload: str, ynn_dots: bool, steps: int = 3):
    config = bench.workload_config(workload)
    task = tasks.get_task(config)
    model = task.build_model((28, 28, 1), nnx.Rngs(params=jax.random.key(0)))
    optimizer = nnx.Optimizer(model, optim.make_optimizer(config.optimizer, 100), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    images = bench.synthetic_mnist(2 * 32, 0)
    step = make_train_step(graphdef, task, ynn_dots=ynn_dots)
    losses = []
    for i in range(steps):
        state, metrics = step(state, {"image": images[32 * (i % 2):32 * (i % 2 + 1)]}, jax.random.key(1))
        losses.append(float(metrics["loss"]))
    batch = {"image": images, "mask": jnp.ones(len(images))}
    evaluated = make_eval_step(graphdef, task, ynn_dots=ynn_dots)(state, batch, jax.random.key(2))
    return np.array(losses), float(evaluated["recon_sse"])


def test_train_and_eval_steps_give_the_same_numbers_with_either_matmul_library():
    for workload in ("mlp_vae", "conv_ae"):
        losses, evaluated = _train(workload, ynn_dots=False)
        losses_ynn, evaluated_ynn = _train(workload, ynn_dots=True)
        np.testing.assert_allclose(losses, losses_ynn, rtol=1e-4)
        np.testing.assert_allclose(evaluated, evaluated_ynn, rtol=1e-4)
        assert losses[-1] < losses[0]  # it trains


def test_jit_model_calls_the_model_as_one_compiled_program():
    model = bench.workload_state("mlp_ae")[2]
    x = jnp.asarray(np.random.default_rng(0).random((4, 28, 28, 1)), jnp.float32)
    encode = compiler.jit_model(lambda m, images: m.encode(images), model)
    np.testing.assert_allclose(encode(x), model.encode(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode(x[:2]), model.encode(x[:2]), rtol=1e-5, atol=1e-6)  # another shape
