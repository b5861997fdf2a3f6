"""aelab.compiler: the one compile policy. On CPU its tricks give the same numbers as XLA's defaults;
on any other backend it applies none of them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aelab import bench, compiler, losses, optim, steps, tasks
from aelab.compiler import CompilePolicy


def test_cpu_options_turn_ynn_dots_off_unless_asked():
    policy = CompilePolicy("cpu")
    assert policy.options("evaluate") == compiler.NO_YNN_DOTS
    assert CompilePolicy("cpu", cpu_ynn_dots=True).options("evaluate") is None
    if jax.default_backend() != "cpu":
        pytest.skip(f"compiled code is checked on CPU; this backend is {jax.default_backend()}")
    x = jnp.ones((64, 32))
    hlo = policy.jit(lambda a: a @ a.T, program="evaluate").lower(x).compile().as_text()
    hlo_ynn = policy.jit(lambda a: a @ a.T, program="train").lower(x).compile().as_text()
    assert "__ynn_fusion" not in hlo
    assert "__ynn_fusion" in hlo_ynn  # the option is what changes the compiled code


def test_ynn_dots_only_in_train_steps_and_decoders_of_models_without_convolutions_unless_asked():
    dense, conv = CompilePolicy("cpu"), CompilePolicy("cpu", convolutions=True)
    assert dense.ynn_dots("train") and dense.ynn_dots("decode")
    assert not conv.ynn_dots("train") and not conv.ynn_dots("decode")
    assert not dense.ynn_dots("evaluate") and not dense.ynn_dots("other")
    for requested in (True, False):
        for program in compiler.PROGRAMS:
            for convolutions in (False, True):
                assert CompilePolicy("cpu", requested, convolutions).ynn_dots(program) is requested
    with pytest.raises(ValueError, match="program='training'; known: train, evaluate, decode"):
        dense.ynn_dots("training")
    mlp, conv_model = (bench.workload_state(w)[2] for w in ("mlp_vae", "conv_ae"))
    assert not mlp.convolutions and conv_model.convolutions


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_no_cpu_trick_is_applied_on_another_backend(backend, monkeypatch):
    """The policy of a (faked) GPU/TPU run: XLA's options everywhere, steps per dispatch as asked,
    no update ordering, the native transposed convolution and jax's softplus; a conv decoder
    built under it holds no sub-pixel form."""
    for policy in (CompilePolicy(backend), CompilePolicy(backend, convolutions=True)):
        assert all(policy.options(program) is None for program in compiler.PROGRAMS)
        assert policy.steps_per_dispatch(10) == 10
        assert not policy.order_updates and not policy.subpixel_upsampling
        assert policy.softplus is jax.nn.softplus
    config = bench.workload_config("conv_ae")
    task = tasks.get_task(config, CompilePolicy(backend))
    assert task.loss.per_example.keywords["softplus"] is jax.nn.softplus
    model = task.build_model((28, 28, 1), nnx.Rngs(params=0))
    z = jnp.zeros((2, 16))
    # Both transposed convolutions native (input dilated by 2); on CPU the 64 -> 32 one is sub-pixel.
    assert str(jax.make_jaxpr(model.decoder)(z)).count("lhs_dilation=(2, 2)") == 2
    cpu_model = tasks.get_task(config, CompilePolicy("cpu")).build_model((28, 28, 1), nnx.Rngs(params=0))
    assert str(jax.make_jaxpr(cpu_model.decoder)(z)).count("lhs_dilation=(2, 2)") == 1
    # The train step orders updates after the whole backward pass on CPU only.
    graphdef, state = nnx.split((model, nnx.Optimizer(model, optim.make_optimizer(config.optimizer, 10),
                                                      wrt=nnx.Param)))
    batch = {"image": jnp.zeros((4, 28, 28, 1))}
    ordered = []
    monkeypatch.setattr(optim, "after_whole_backward", lambda grads: ordered.append(1) or grads)
    for policy in (CompilePolicy(backend), CompilePolicy("cpu")):
        jax.make_jaxpr(steps.train_step_fn(graphdef, task, policy))(state, batch, jax.random.key(0))
        assert len(ordered) == (policy.backend == "cpu")


def test_cpu_policy_and_xla_defaults_give_the_same_numbers():
    """Every CPU trick (Eigen matmuls, ordering, sub-pixel convolutions, the softplus series)
    against a policy with none of them, compiled on this backend: equal to float tolerance."""
    def train(workload: str, policy: CompilePolicy, count: int = 3):
        config = bench.workload_config(workload)
        task = tasks.get_task(config, policy)
        model = task.build_model((28, 28, 1), nnx.Rngs(params=jax.random.key(0)))
        policy = policy.with_model(model)
        optimizer = nnx.Optimizer(model, optim.make_optimizer(config.optimizer, 100), wrt=nnx.Param)
        graphdef, state = nnx.split((model, optimizer))
        images = bench.synthetic_images(2 * 32, 0)
        step = steps.make_train_step(graphdef, task, policy)
        history = []
        for i in range(count):
            state, metrics = step(state, {"image": images[32 * (i % 2):32 * (i % 2 + 1)]}, jax.random.key(1))
            history.append(float(metrics["loss"]))
        batch = {"image": images, "mask": jnp.ones(len(images))}
        evaluated = steps.make_eval_step(graphdef, task, policy)(state, batch, jax.random.key(2))
        return np.array(history), float(evaluated["recon_sse"])

    cpu = CompilePolicy("cpu")
    plain = CompilePolicy("gpu")  # none of the tricks, compiled here all the same
    for workload in ("mlp_vae", "conv_ae"):
        for other in (plain, CompilePolicy("cpu", cpu_ynn_dots=True)):
            history, evaluated = train(workload, cpu)
            other_history, other_evaluated = train(workload, other)
            np.testing.assert_allclose(history, other_history, rtol=1e-4)
            np.testing.assert_allclose(evaluated, other_evaluated, rtol=1e-4)
            assert history[-1] < history[0]  # it trains


def test_softplus_series_matches_jax():
    z = jnp.linspace(-30.0, 30.0, 601)
    np.testing.assert_allclose(losses.softplus_series(z), jax.nn.softplus(z), rtol=2e-6, atol=1e-7)


def test_jit_model_calls_the_model_as_one_compiled_program():
    model = nnx.merge(*bench.workload_state("mlp_ae")[3:5])[0]
    x = jnp.asarray(np.random.default_rng(0).random((4, 28, 28, 1)), jnp.float32)
    encode = CompilePolicy.for_config().jit_model(lambda m, images: m.encode(images), model)
    np.testing.assert_allclose(encode(x), model.encode(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode(x[:2]), model.encode(x[:2]), rtol=1e-5, atol=1e-6)  # another shape


@pytest.mark.slow
def test_a_repeated_run_compiles_nothing(tmp_path):
    """The persistent compilation cache (train.compile_cache): a second run of the same config is
    served every program the first one stored and stores nothing new. (With the minimum compile
    time at 0 every program is stored; aelab's 0.2 s would make the count depend on the machine.)
    summary.json counts each."""
    import json
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    counts = []
    for name in ("first", "second"):
        workdir = tmp_path / name
        subprocess.run([sys.executable, "-m", "aelab.main", "train", f"--config={REPO / 'configs' / 'digits_ae.py'}",
                        f"--workdir={workdir}", f"--config.train.compile_cache={tmp_path / 'cache'}",
                        "--config.model.mlp.hidden=(16,)", "--config.train.num_steps=20",
                        "--config.train.eval_every=10", "--config.train.progress=False"],
                       env=env, check=True, capture_output=True)
        counts.append(json.loads((workdir / "summary.json").read_text())["compile_cache"])
    first, second = counts
    assert first["requests"] >= 3 and first["hits"] == 0 and first["writes"] >= 3  # a fresh cache
    assert first["writes"] == first["requests"]
    assert second == {"requests": first["requests"], "hits": first["requests"], "writes": 0}
