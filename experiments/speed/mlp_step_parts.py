"""Where the mlp_ae train step's time goes: the step with and without its per-step metrics.

    python experiments/speed/mlp_step_parts.py
"""
import time, functools, jax, jax.numpy as jnp, optax
from flax import nnx
from aelab import bench, tasks, optim
config = bench.workload_config("mlp_ae"); task = tasks.get_task(config)
model = task.build_model((28,28,1), nnx.Rngs(params=jax.random.key(0)))
opt = nnx.Optimizer(model, optim.make_optimizer(config.optimizer, 10**6), wrt=nnx.Param)
graphdef, state = nnx.split((model, opt))
x = {"image": jnp.asarray(bench.synthetic_mnist(256, 0))}
rng = jax.random.key(0)
def make(grad_norm=True, metrics=True):
    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, batch, rng):
        model, optimizer = nnx.merge(graphdef, state)
        def loss_fn(m):
            l, mets = task.loss_fn(m, batch, rng, 0)
            return l, (mets if metrics else {"loss": l})
        (_, mets), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        if grad_norm: mets["grad_norm"] = optax.global_norm(grads)
        return nnx.state((model, optimizer)), mets
    return step
for name, kw in [("full", {}), ("no grad_norm", {"grad_norm": False}), ("no metrics", {"grad_norm": False, "metrics": False}), ("full again", {})]:
    step = make(**kw); s = jax.tree.map(jnp.copy, state)
    for _ in range(10): s, m = step(s, x, rng)
    jax.block_until_ready(m); t = time.perf_counter()
    for _ in range(150): s, m = step(s, x, rng)
    jax.block_until_ready(m); print(name, round(150*256/(time.perf_counter()-t)))
