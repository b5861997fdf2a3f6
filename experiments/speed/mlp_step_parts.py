"""Where an MLP workload's train step time goes: the step with the gradient norm (aelab's log
steps), without it (aelab's other steps), without its other metrics, and without the optimizer
update (gradient only).

    python experiments/speed/mlp_step_parts.py [mlp_ae|mlp_vae]
"""
import sys, time, jax, jax.numpy as jnp
from flax import nnx
from aelab import bench, optim

workload = sys.argv[1] if len(sys.argv) > 1 else "mlp_ae"
config = bench.workload_config(workload)
batch_size = config.train.batch_size
x = {"image": jnp.asarray(bench.synthetic_images(batch_size, 0))}
rng = jax.random.key(0)


def make(grad_norm=True, metrics=True, update=True):
    _, task, policy, graphdef, state = bench.workload_state(workload)

    @policy.jit(program="train", donate_argnums=0)  # as aelab trains MLPs
    def step(state, batch, rng):
        model, optimizer = nnx.merge(graphdef, state)
        def loss_fn(m):
            loss, mets = task.loss_fn(m, batch, jax.random.fold_in(rng, 0), 0)
            return loss, (mets if metrics else {"loss": loss})
        (_, mets), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        if update:
            optimizer.update(model, optim.after_whole_backward(grads))
        else:  # keep the gradients alive without applying them
            mets["grads"] = grads
        if grad_norm:
            mets["grad_norm"] = optim.global_norm(grads)
        return nnx.state((model, optimizer)), mets
    holder = [state]

    def run():
        holder[0], mets = step(holder[0], x, rng)
        return mets["loss"]
    return run


variants = {"with grad_norm (log steps)": {}, "no grad_norm (other steps)": {"grad_norm": False},
            "loss only (no metrics)": {"grad_norm": False, "metrics": False},
            "gradient only (no update)": {"grad_norm": False, "metrics": False, "update": False}}
runs = {name: make(**kw) for name, kw in variants.items()}
times = {name: [] for name in runs}
for _ in range(3):  # alternated rounds: the machine is noisy
    for name, run in runs.items():
        for _ in range(10): out = run()
        jax.block_until_ready(out); start = time.perf_counter()
        for _ in range(100): out = run()
        jax.block_until_ready(out); times[name].append((time.perf_counter() - start) / 100 * 1e3)
for name, ms in times.items():
    ms = sorted(ms)[1]
    print(f"{workload} {name:28s} {ms:6.2f} ms/step  {batch_size / ms * 1e3:8.0f} examples/s")
