"""Run by test_parallel.py in a process that sees 4 CPU devices (XLA_FLAGS set by the parent
before jax is imported). Writes what it measured to OUT/report.json."""

import json
import pathlib
import sys

import jax
import numpy as np

from aelab import checkpoint, parallel, steps
from aelab.errors import UsageError
from aelab.train import build, train_and_evaluate
from conftest import tiny_config

out = pathlib.Path(sys.argv[1])
STEPS = {"train.num_steps": 30, "train.log_every": 5, "train.eval_every": 15, "train.checkpoint_every": 15}


def config(devices, **more):
    return tiny_config(**{**STEPS, "mesh.data": devices, **more})


def losses(workdir):
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


def params(workdir):
    return jax.tree.leaves(checkpoint.read_state(str(workdir))[1])


def difference(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(params(a), params(b)))


def error_of(cfg):
    try:
        build(cfg)
    except UsageError as e:
        return str(e)
    return None


report = {"device_count": jax.device_count()}
one, four = out / "one", out / "four"
train_and_evaluate(config(1), str(one))
train_and_evaluate(config(-1), str(four))
report["losses"] = {"1": losses(one), "4": losses(four)}
report["max_param_difference"] = difference(one, four)

run = build(config(-1))
report["mesh_sizes"] = [build(config(1)).mesh.size, run.mesh.size]
batch = parallel.put_batch(run.batches(0), run.mesh)
report["batch_sharded_on_data"] = batch["image"].sharding.spec == jax.sharding.PartitionSpec(parallel.DATA)
state, _ = steps.make_train_step(run.graphdef, run.task, run.policy)(run.state, batch, run.train_key)
report["state_fully_replicated"] = all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == 4
                                       for x in jax.tree.leaves(state))

# 1 -> 4: half the steps on one device, the rest on four; and the other way round.
for first, second, name in ((1, -1, "resumed_1_to_4"), (-1, 1, "resumed_4_to_1")):
    workdir = out / name
    train_and_evaluate(config(first, **{"train.num_steps": 15}), str(workdir))
    train_and_evaluate(config(second), str(workdir))
    report[f"{name}_difference"] = difference(one, workdir)
for devices, source, key in ((-1, one, "restored_on_4_devices"), (1, four, "restored_on_1_device")):
    target = build(config(devices)).state
    ckpt = checkpoint.Checkpointer(str(source / "checkpoints"), 3)
    _, restored = ckpt.restore_latest(target)
    ckpt.close()
    report[key] = len(jax.tree.leaves(restored)[0].sharding.device_set)

report["indivisible_error"] = error_of(config(-1, **{"train.batch_size": 30}))
report["too_many_devices_error"] = error_of(config(8))
(out / "report.json").write_text(json.dumps(report))
