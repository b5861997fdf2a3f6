"""How much of `aelab train`'s wall time, after compilation, is spent inside the train step (MNIST).

    python experiments/speed/loop_fraction.py [--steps=3000] [--data=../shared/data/mnist]

Trains configs/mnist_ae.py for --steps steps (evaluation only at the end,
checkpoints every 1000 steps, a log line every 500) and reads the loop's
steps/s from metrics.jsonl, leaving out the first window (it holds the
compilation). Then it times the very same compiled step program alone, back to
back on the device-resident split, for 5 s. The fraction is loop rate / bare
rate: the share of the loop's time that the step itself takes.
"""

import argparse
import pathlib
import statistics
import tempfile
import time

import jax

from aelab import steps as aelab_steps, train
from aelab.config import from_file, set_value
from aelab.writer import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    args = parser.parse_args()
    config = from_file(REPO / "configs" / "mnist_ae.py")
    for key, value in {"data.name": f"idx:{args.data}", "train.num_steps": args.steps,
                       "train.eval_every": args.steps, "train.checkpoint_every": 1000,
                       "train.log_every": 500, "train.progress": False}.items():
        set_value(config, key, value)
    with tempfile.TemporaryDirectory() as workdir:
        train.train_and_evaluate(config, workdir)
        rates = [r["steps_per_s"] for r in read_metrics(f"{workdir}/metrics.jsonl") if r["split"] == "train"]
    loop = statistics.mean(rates[1:])

    run = train.build(config)
    per_dispatch = run.policy.steps_per_dispatch(config.train.steps_per_dispatch)
    batches = train.device_batches(run, per_dispatch)
    # Compiled as the trainer's loop compiles it (matmul library, grad_norm on log steps only).
    steps = aelab_steps.make_indexed_train_steps(run.graphdef, run.task, run.policy, per_dispatch,
                                                 **aelab_steps.train_step_options(run.config.train))
    state, calls = run.state, 0
    inputs = [batches(i * per_dispatch, per_dispatch) for i in range(20)]
    for i in range(3):
        state, metrics = steps(state, *inputs[i], per_dispatch, run.train_key)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    while time.perf_counter() - start < 5.0:
        state, metrics = steps(state, *inputs[calls % len(inputs)], per_dispatch, run.train_key)
        calls += 1
        if calls % 10 == 0:
            jax.block_until_ready(metrics)
    jax.block_until_ready(metrics)
    bare = calls * per_dispatch / (time.perf_counter() - start)
    print(f"loop {loop:.1f} steps/s (windows: {', '.join(f'{r:.1f}' for r in rates[1:])}); "
          f"bare step {bare:.1f} steps/s; inside the step: {100 * loop / bare:.1f}% "
          f"({per_dispatch} steps per dispatch)")


if __name__ == "__main__":
    main()
