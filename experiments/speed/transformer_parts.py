"""What the transformer_mt train step spends its time on, in aelab and in PyTorch, part by part.

    python experiments/speed/transformer_parts.py --torch_python=/tmp/torchvenv/bin/python [--record]

Times, on the workload of `aelab bench --workload=transformer_mt` (batch 64, 24 + 24 tokens,
vocabulary 4,000, 2 + 2 pre-norm layers of width 256), each side's whole train step and its
parts alone: forward + backward with and without dropout (no optimizer), the forward pass,
the output head (final norm, projection to the vocabulary, label-smoothed cross-entropy and
the step's logged metrics; forward + backward from the decoder's output), and the AdamW update.
aelab's parts are compiled as aelab compiles the step (its compile policy, "train" program);
PyTorch's run eager, in a `--torch_python` process with as many threads as cores, as
../shared/bench/torch_ref.py runs them. Prints milliseconds per call and each part's share of
its side's step; `--record` appends the figures to results.jsonl.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
from flax import nnx

from aelab import bench, provenance
from aelab.steps import train_step_fn
from aelab.tasks.seq2seq import token_losses

HERE = pathlib.Path(__file__).resolve().parent
REFERENCE = HERE.parents[1].parent / "shared" / "bench" / "torch_ref.py"

TORCH_PARTS = r"""
import importlib.util, json, statistics, sys, time, torch, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
spec = importlib.util.spec_from_file_location("torch_ref", sys.argv[1])
ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
model, loss_fn, shape = ref.make("transformer_mt")
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
pair = torch.from_numpy(ref.synthetic_data("transformer_mt", 64, 0))
def per_call(f):
    f(); f(); rates = []
    for _ in range(5):
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < 0.4: f(); n += 1
        rates.append((time.perf_counter() - t) / n)
    return statistics.median(rates) * 1e3
def step():
    opt.zero_grad(set_to_none=True); loss_fn(pair).backward(); opt.step()
def grad():
    model.zero_grad(set_to_none=True); loss_fn(pair).backward()
def forward():
    with torch.no_grad(): loss_fn(pair)
src, tgt = pair[:, 0, :ref.SEQ_LEN], pair[:, 1]
y = torch.randn(64, ref.SEQ_LEN, 256, requires_grad=True)
def head():
    h = model.core.decoder.norm(y)  # nn.Transformer's final decoder norm, then the projection
    loss = F.cross_entropy(model.out(h).reshape(-1, ref.VOCAB), tgt[:, 1:].reshape(-1), label_smoothing=0.1)
    loss.backward()
out = {"step": per_call(step)}
grad(); out["adamw"] = per_call(opt.step)
out["forward_backward"] = per_call(grad)
model.eval(); out["forward_backward_no_dropout"] = per_call(grad); model.train()
out["forward"] = per_call(forward)
out["head"] = per_call(head)
print(json.dumps(out))
"""


def per_call(f) -> float:
    """Milliseconds per call."""
    return 1e3 * bench.seconds_per_call(f, 2.0)


def aelab_parts() -> dict[str, float]:
    config, task, policy, graphdef, state = bench.workload_state("transformer_mt")
    jit = lambda f: policy.jit(f, program="train")
    batch = jax.tree.map(jnp.asarray, bench.synthetic_data("transformer_mt", config.train.batch_size, 0))
    rng = jax.random.key(0)
    model_graph, model_state = nnx.split(nnx.merge(graphdef, state)[0])

    def loss(model_state, rng):
        return task.loss_fn(nnx.merge(model_graph, model_state), batch, rng, 0)

    def grads(model_state, rng):
        return jax.grad(lambda s: loss(s, rng)[0])(model_state)

    def head(y, model_state):
        def of(y, model_state):
            logits = nnx.merge(model_graph, model_state)._logits(y)
            smoothed, nll, correct, real = token_losses(logits, batch["target"], config.text.label_smoothing)
            tokens = real.sum()
            return (smoothed * real).sum() / tokens, ((nll * real).sum() / tokens, (correct * real).sum() / tokens)
        return jax.grad(of, argnums=(0, 1), has_aux=True)(y, model_state)

    def adamw(state, model_grads):
        model, optimizer = nnx.merge(graphdef, state)
        optimizer.update(model, model_grads)
        return nnx.state((model, optimizer))

    step = jit(train_step_fn(graphdef, task, policy, log_every=100, num_steps=bench.NUM_STEPS))
    update, backward, forward, head = jit(adamw), jit(grads), jit(loss), jit(head)
    backward_no_dropout = jit(lambda s: grads(s, None))
    some_grads = backward(model_state, rng)
    y = jax.random.normal(rng, (*batch["target"].shape, config.model.transformer.embed_dim))
    return {"step": per_call(lambda: step(state, batch, rng)),
            "adamw": per_call(lambda: update(state, some_grads)),
            "forward_backward": per_call(lambda: backward(model_state, rng)),
            "forward_backward_no_dropout": per_call(lambda: backward_no_dropout(model_state)),
            "forward": per_call(lambda: forward(model_state, rng)),
            "head": per_call(lambda: head(y, model_state))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch_python", required=True)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    begun = provenance.start()
    threads = str(len(os.sched_getaffinity(0)))
    ours = aelab_parts()
    theirs = json.loads(subprocess.run([args.torch_python, "-c", TORCH_PARTS, str(REFERENCE), threads],
                                       capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    print("| part | aelab ms | share of aelab step | torch ms | share of torch step | aelab / torch time |")
    print("|---|---|---|---|---|---|")
    for part in ours:
        print(f"| {part} | {ours[part]:.1f} | {ours[part] / ours['step']:.0%} | {theirs[part]:.1f} | "
              f"{theirs[part] / theirs['step']:.0%} | {ours[part] / theirs[part]:.2f} |")
    if args.record:
        line = {"workload": "transformer_parts", "aelab_ms": ours, "torch_ms": theirs,
                **provenance.record(begun)}
        with open(HERE / "results.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    sys.exit(main())
