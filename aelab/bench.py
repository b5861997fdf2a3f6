"""`aelab bench`: the speed of the project's own train and eval steps on fixed workloads.

The workloads are those of ../shared/bench/README.md (and its PyTorch
reference, torch_ref.py): `mlp_ae` (784-1000-500-250-30, mirrored, BCE,
batch 256), `conv_ae` (configs/mnist_conv_ae.py: two stride-2 3x3 convs
32/64, Dense 16, mirrored with transposed convs, BCE, batch 128), `mlp_vae`
(784-512-256, 20-d Gaussian latent, Bernoulli negative ELBO, batch 128) and
`resnet_vae` (model.arch=resnet, stages 32/64/128 of one residual block, 64-d
latent, Bernoulli negative ELBO on 32x32x3, batch 64, eval batch 500) and
`transformer_mt` (the translation task's pre-norm Transformer, 2+2 layers,
width 256, 4 heads, feed-forward 1024, dropout 0.1, sinusoidal positions,
separate embeddings and output projection, vocabulary 4,000, 24 source and 24
target tokens, label smoothing 0.1, AdamW 1e-3 with weight decay 1e-4, batch
64 pairs, eval batch 250). Adam 1e-3 (but transformer_mt), float32, image
losses summed over pixels and averaged over the batch, synthetic data (uint8
-> [0, 1], MNIST-shaped or CIFAR-shaped; token ids for transformer_mt; 4,096
training examples where the reference draws that many) already in device
memory, as the reference has it in memory.

What runs is aelab's own task, model and compiled steps, not a copy. Training
is timed the way `aelab train` runs it on a split that fits the device
(`make_indexed_train_steps`: `train.steps_per_dispatch` steps a call, batches
gathered on the device by row indices), and also one `make_train_step` call a
step on ready batches. After compilation and a warm-up, calls run in chunks
of about 0.5 s until `min_seconds` have passed; a chunk ends when its last
result is ready. Figures: examples per second (train; eval = forward + loss
at batch 1000, as the reference measures it; and the trainer's evaluation
step, which computes all of the task's metrics), compile seconds, one train
step's FLOPs (XLA's cost analysis) and the fraction of the machine's measured
float32 matmul peak they reach."""

from __future__ import annotations

import json
import statistics
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aelab import config as config_lib, optim, steps, tasks
from aelab.compiler import CompilePolicy
from aelab.errors import choose

WORKLOADS = ("mlp_ae", "conv_ae", "mlp_vae", "resnet_vae", "transformer_mt")
N_TRAIN, N_EVAL, EVAL_BATCH = 60000, 10000, 1000
IMAGE_SHAPE = {"resnet_vae": (32, 32, 3), "transformer_mt": (24,)}  # the others: (28, 28, 1)
SMALL_TRAIN = {"resnet_vae": 4096, "transformer_mt": 4096}  # examples drawn, where the reference draws fewer
EVAL_BATCHES = {"resnet_vae": 500, "transformer_mt": 250}
VOCAB, SEQ_LEN = 4000, 24
NUM_STEPS = 10 ** 6  # a run's length, for the schedule and the last logged step


def workload_config(name: str, cpu_ynn_dots: bool | None = None):
    """The resolved config of a workload, built like any experiment's (conv_ae = configs/mnist_conv_ae.py);
    `cpu_ynn_dots` as train.cpu_ynn_dots."""
    choose("--workload", name, WORKLOADS)
    if name == "transformer_mt":
        config = config_lib.base_config("translation")
        config.model.arch, m = "transformer", config.model.transformer
        m.embed_dim, m.num_layers, m.num_heads, m.mlp_dim, m.dropout = 256, 2, 4, 1024, 0.1
        m.positions, m.share_embeddings = "sinusoidal", False
        config.text.vocab_size, config.text.max_length, config.text.label_smoothing = VOCAB, SEQ_LEN, 0.1
        config.optimizer.name, config.optimizer.learning_rate, config.optimizer.schedule = "adamw", 1e-3, "constant"
        config.optimizer.weight_decay, config.train.batch_size = 1e-4, 64
        config.train.cpu_ynn_dots = cpu_ynn_dots
        return config_lib.resolve(config)
    config = config_lib.base_config("vae" if name in ("mlp_vae", "resnet_vae") else "autoencoder")
    config.loss = "bce"
    config.optimizer.name, config.optimizer.learning_rate, config.optimizer.schedule = "adam", 1e-3, "constant"
    m = config.model
    if name == "mlp_ae":
        m.mlp.hidden, m.latent_dim, config.train.batch_size = (1000, 500, 250), 30, 256
    elif name == "conv_ae":
        m.arch, m.conv.channels, m.conv.strides = "conv", (32, 64), (2, 2)
        m.conv.kernel_size, m.latent_dim, m.conv.upsample = 3, 16, "transpose"
        config.train.batch_size = 128
    elif name == "resnet_vae":
        m.arch, m.resnet.channels, m.resnet.blocks, m.resnet.groups = "resnet", (32, 64, 128), 1, 8
        m.latent_dim, m.resnet.upsample, config.train.batch_size = 64, "resize", 64
    else:
        m.mlp.hidden, m.latent_dim, config.train.batch_size = (512, 256), 20, 128
    config.train.cpu_ynn_dots = cpu_ynn_dots
    return config_lib.resolve(config)


def workload_state(workload: str, seed: int = 0, cpu_ynn_dots: bool | None = None):
    """(config, task, policy, graphdef, state): a workload's model and Adam, split as the trainer
    splits them, and the compile policy the trainer would compile them with."""
    config = workload_config(workload, cpu_ynn_dots)
    task = tasks.get_task(config, CompilePolicy.for_config(config))
    if workload == "transformer_mt":  # what the model needs of a tokenizer: its size
        task.tokenizer = types.SimpleNamespace(vocab_size=VOCAB)
    tx = optim.make_optimizer(config.optimizer, NUM_STEPS)
    model, optimizer = steps.init_model_and_optimizer(task, IMAGE_SHAPE.get(workload, (28, 28, 1)), tx,
                                                      jax.random.key(seed))
    graphdef, state = nnx.split((model, optimizer))
    return config, task, task.policy.with_model(model), graphdef, state


def forward_and_loss_fn(graphdef: nnx.GraphDef, task):
    """The reference's evaluation, (state, batch, rng) -> the loss: forward and loss, no gradient."""
    def forward_and_loss(state, batch, rng):
        model, _ = nnx.merge(graphdef, state)
        return task.loss_fn(model, batch, rng, 0)[0]

    return forward_and_loss


def synthetic_data(workload: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """A workload's batch arrays for `n` examples, drawn as torch_ref.py draws them: images, or
    for transformer_mt source ids and the target ids after the first (the reference feeds
    target[:-1] and predicts target[1:]; aelab shifts right with BOS: the same 24 positions)."""
    if workload != "transformer_mt":
        return {"image": synthetic_images(n, seed, IMAGE_SHAPE.get(workload, (28, 28, 1)))}
    pairs = np.random.default_rng(seed).integers(3, VOCAB, size=(n, 2, SEQ_LEN + 1), dtype=np.int64)
    return {"source": pairs[:, 0, :SEQ_LEN].astype(np.int32), "target": pairs[:, 1, 1:].astype(np.int32)}


def synthetic_images(n: int, seed: int, shape=(28, 28, 1)) -> np.ndarray:
    """Deterministic images (n, *shape) in [0, 1] of uniform uint8 pixels, as torch_ref.py draws them."""
    rng = np.random.default_rng(seed)
    if shape[-1] == 1:
        return (rng.integers(0, 256, size=(n, *shape[:2]), dtype=np.uint8).astype(np.float32) / 255.0)[..., None]
    channels_first = rng.integers(0, 256, size=(n, shape[-1], *shape[:2]), dtype=np.uint8)  # the reference's NCHW
    return channels_first.transpose(0, 2, 3, 1).astype(np.float32) / 255.0


def timed(step, count: int, batch_size: int, warmup: int, min_seconds: float) -> dict:
    """Runs `step(i)` (returning arrays) after `warmup` calls, in ~0.5 s chunks until min_seconds."""
    out = None
    start = time.perf_counter()
    for i in range(warmup):
        out = step(i)
    jax.block_until_ready(out)
    per_step = max((time.perf_counter() - start) / max(warmup, 1), 1e-6)
    chunk = max(1, int(0.5 / per_step))
    rates, steps, total, i = [], 0, 0.0, warmup
    while total < min_seconds:
        start = time.perf_counter()
        for _ in range(chunk):
            out = step(i)
            i += 1
        jax.block_until_ready(out)
        seconds = time.perf_counter() - start
        total, steps = total + seconds, steps + chunk
        rates.append(chunk * batch_size / seconds)
    return {"examples_per_s": steps * batch_size / total, "median_chunk_examples_per_s": statistics.median(rates),
            "steps": steps, "seconds": total}


def seconds_per_call(f, min_seconds: float) -> float:
    """Seconds per call of a no-argument f (returning arrays), timed as `timed` times steps."""
    return 1.0 / timed(lambda i: f(), 1, 1, 3, min_seconds)["examples_per_s"]


def matmul_peak_gflops(policy: CompilePolicy, size: int = 2048, seconds: float = 2.0) -> float:
    """float32 matmul throughput of this machine's default device (GFLOP/s), with the matmul
    library of `policy`'s train programs."""
    a = jnp.ones((size, size), jnp.float32)
    f = policy.jit(lambda x: x @ a, program="train")
    result = timed(lambda i: f(a), 1, 1, 3, seconds)
    return 2.0 * size ** 3 * result["examples_per_s"] / 1e9


def bench(workload: str, min_seconds: float = 5.0, warmup: int = 20, seed: int = 0,
          ynn_dots: bool | None = None) -> dict:
    """`ynn_dots`: CPU matmul library, as `train.cpu_ynn_dots` (None: the trainer's rule)."""
    config, task, policy, graphdef, state = workload_state(workload, seed, ynn_dots)
    batch_size, per_dispatch = config.train.batch_size, policy.steps_per_dispatch(config.train.steps_per_dispatch)
    n_train, eval_batch = SMALL_TRAIN.get(workload, N_TRAIN), EVAL_BATCHES.get(workload, EVAL_BATCH)
    train_data = synthetic_data(workload, n_train, seed)

    def rows(arrays, start, size):
        return {k: v[start:start + size] for k, v in arrays.items()}

    batches = [jax.device_put(rows(train_data, i, batch_size)) for i in range(0, n_train - batch_size + 1, batch_size)]
    # The trainer's path: the split on the device, `per_dispatch` steps per call on row indices.
    device_data = jax.device_put(train_data)
    order = np.random.default_rng(seed).permutation(n_train)[:len(batches) * batch_size].reshape(-1, batch_size)
    index_blocks = [jax.device_put(order[i:i + per_dispatch].T)
                    for i in range(0, len(order) - per_dispatch + 1, per_dispatch)]
    eval_data = synthetic_data(workload, N_EVAL, seed + 1)
    mask = jnp.ones(eval_batch, jnp.float32)
    eval_batches = [jax.device_put(rows(eval_data, i, eval_batch)) | {"mask": mask}
                    for i in range(0, N_EVAL, eval_batch)]
    rng = jax.random.key(seed)

    start = time.perf_counter()
    logging = {"log_every": config.train.log_every, "num_steps": NUM_STEPS}  # the trainer's grad_norm cadence
    compiled = steps.make_indexed_train_steps(graphdef, task, policy, per_dispatch, **logging).lower(
        state, device_data, index_blocks[0], per_dispatch, rng).compile()
    compile_s = time.perf_counter() - start
    single = steps.make_train_step(graphdef, task, policy, **logging).lower(state, batches[0], rng).compile()
    cost = single.cost_analysis()  # one step's (a loop's count is unknown to the cost analysis)
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0

    holder = {"state": state}

    def train(i):
        holder["state"], metrics = compiled(holder["state"], device_data, index_blocks[i % len(index_blocks)],
                                            per_dispatch, rng)
        return metrics["loss"]

    def train_single(i):
        holder["state"], metrics = single(holder["state"], batches[i % len(batches)], rng)
        return metrics["loss"]

    train_result = timed(train, len(index_blocks), batch_size * per_dispatch, max(warmup // per_dispatch, 2),
                         min_seconds)
    single_result = timed(train_single, len(batches), batch_size, warmup, max(min_seconds * 0.6, 1.0))
    eval_state = holder["state"]

    forward_and_loss = policy.jit(forward_and_loss_fn(graphdef, task), program="evaluate")
    eval_seconds = max(min_seconds * 0.6, 1.0)
    eval_result = timed(lambda i: forward_and_loss(eval_state, eval_batches[i % len(eval_batches)], rng),
                        len(eval_batches), eval_batch, 3, eval_seconds)
    eval_step = steps.make_eval_step(graphdef, task, policy)
    metrics_result = timed(lambda i: eval_step(eval_state, eval_batches[i % len(eval_batches)], rng),
                           len(eval_batches), eval_batch, 3, eval_seconds)
    peak = matmul_peak_gflops(policy)  # with the train step's matmul library
    achieved = flops * train_result["examples_per_s"] / batch_size / 1e9
    return {"workload": workload, "framework": "aelab (jax " + jax.__version__ + ")",
            "backend": jax.default_backend(), "devices": jax.device_count(), "batch_size": batch_size,
            "compiler_options": {"train": policy.options("train"), "eval": policy.options("evaluate")},
            "train_examples_per_s": round(train_result["examples_per_s"], 1),
            "train_median_chunk_examples_per_s": round(train_result["median_chunk_examples_per_s"], 1),
            "steps_per_dispatch": per_dispatch,
            "train_one_step_per_dispatch_examples_per_s": round(single_result["examples_per_s"], 1),
            "eval_examples_per_s": round(eval_result["examples_per_s"], 1),
            "eval_all_metrics_examples_per_s": round(metrics_result["examples_per_s"], 1),
            "compile_s": round(compile_s, 3), "train_step_gflop": round(flops / 1e9, 4),
            "train_gflops_per_s": round(achieved, 2), "matmul_peak_gflops_per_s": round(peak, 1),
            "peak_fraction": round(achieved / peak, 4) if peak else None,
            "train_steps_timed": train_result["steps"] * per_dispatch}


def main(workload: str, as_json: bool, min_seconds: float = 5.0, ynn_dots: bool | None = None) -> dict:
    result = bench(workload, min_seconds, ynn_dots=ynn_dots)
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:>34}: {value}")
    return result
