"""Data parallelism and multi-host through JAX itself: a mesh with one `data` axis.

Parameters and optimizer state are replicated on every device of the mesh;
each batch is sharded along its first axis, so the configured
`train.batch_size` stays the global batch whatever the device count, and XLA
inserts the gradient all-reduce. Every process computes the same global
batch indices (a pure function of (seed, step)) and puts only its own rows on
its own devices (`jax.make_array_from_process_local_data`); only process 0
writes logs, figures and the summary (Orbax coordinates checkpoints).

Multi-host starts with `jax.distributed.initialize()`: automatic on SLURM and
Cloud TPU (see `initialize_distributed`), or from explicit settings.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from aelab.errors import UsageError

DATA = "data"


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
    """The `data` mesh of `mesh.data` devices (-1: all), checked against the batch size."""
    available = jax.device_count()
    count = available if config.mesh.data == -1 else config.mesh.data
    if not 1 <= count <= available:
        raise UsageError(f"mesh.data={config.mesh.data}: this machine has {available} device(s); use -1 "
                         f"(all) or a count from 1 to {available}")
    if jax.process_count() > 1 and count != available:
        raise UsageError(f"mesh.data={config.mesh.data}: a multi-host run uses every device (-1 or {available})")
    batch = config.train.batch_size
    if batch % count:
        raise UsageError(f"train.batch_size={batch} is not divisible by the {count} devices of the data axis "
                         f"(mesh.data={config.mesh.data}); use a multiple of {count}")
    # Auto axes: XLA propagates the shardings (explicit axes would ask every op to state its own).
    return jax.make_mesh((count,), (DATA,), axis_types=(AxisType.Auto,), devices=jax.devices()[:count])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def put_replicated(tree, mesh: Mesh):
    """A copy of `tree` (the same on every process) on every device of the mesh."""
    if jax.process_count() > 1:  # device_put reaches only this process's devices
        return jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)
    return jax.device_put(tree, replicated(mesh))


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """The global batch (the same on every process) as arrays sharded along the data axis;
    each process puts only its own rows. A batch whose rows do not divide among the devices
    (a small evaluation split) is replicated instead."""
    processes, index = jax.process_count(), jax.process_index()

    def put(x: np.ndarray) -> jax.Array:
        if len(x) % mesh.size:  # every process holds all the rows
            return jax.make_array_from_process_local_data(replicated(mesh), x)
        rows = len(x) // processes
        return jax.make_array_from_process_local_data(NamedSharding(mesh, PartitionSpec(DATA)),
                                                      x[index * rows:(index + 1) * rows], x.shape)

    return {k: put(v) for k, v in batch.items()}


def put_local_batch(rows: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """A global batch from this process's rows of it (`TrainBatches(step, process, processes)`),
    sharded along the data axis: no process holds the rows of another."""
    processes = jax.process_count()
    sharding = NamedSharding(mesh, PartitionSpec(DATA))
    return {k: jax.make_array_from_process_local_data(sharding, x, (len(x) * processes, *x.shape[1:]))
            for k, x in rows.items()}


# Environment variables that announce a multi-process launch.
CLUSTER_VARIABLES = ("SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """Starts JAX's distributed runtime when this is one process of several; returns whether it did.

    Explicit settings (flags or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID)
    win; otherwise a SLURM job with more than one task, or a Cloud TPU pod slice, is detected
    by JAX itself. A single process (the default) starts nothing.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes or _int_env("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _int_env("JAX_PROCESS_ID")
    explicit = coordinator_address is not None or num_processes is not None
    slurm_tasks = _int_env("SLURM_NTASKS") or 1
    detected = slurm_tasks > 1 or any(os.environ.get(v) for v in CLUSTER_VARIABLES[1:])
    if not explicit and not detected:
        return False
    if explicit and (coordinator_address is None or num_processes is None or process_id is None):
        raise UsageError("multi-host needs all three of --coordinator_address, --num_processes and "
                         "--process_id (or none of them, to detect SLURM/TPU)")
    # CPU devices of several processes talk through gloo (XLA's default there has no collectives);
    # accelerators ignore the setting.
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    else:
        jax.distributed.initialize()
    return True


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment {name}={value!r} is not an integer") from None
