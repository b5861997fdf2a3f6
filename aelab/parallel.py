"""Data parallelism and multi-host through JAX itself: a mesh with one `data` axis.

Parameters and optimizer state are replicated on every device of the mesh;
each batch is sharded along its first axis, so the configured
`train.batch_size` stays the global batch whatever the device count, and XLA
inserts the gradient all-reduce. Every process computes the same global
batch indices (a pure function of (seed, step)) and puts only its own rows on
its own devices (`jax.make_array_from_process_local_data`); only process 0
writes logs, figures and the summary (Orbax coordinates checkpoints).

Multi-host starts with `jax.distributed.initialize()`: automatic on SLURM and
Cloud TPU (see `distributed_launch`), or from explicit settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
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


@dataclasses.dataclass(frozen=True)
class Launch:
    """This process's place in a multi-process run (None where a cluster's detection decides)."""
    coordinator: str | None
    num_processes: int | None
    process_id: int | None

    def describe(self) -> tuple[int | str, int | str, str]:
        return (self.process_id if self.process_id is not None else _int_env("SLURM_PROCID") or "?",
                self.num_processes or _int_env("SLURM_NTASKS") or "?", self.coordinator or "detected by JAX")


def distributed_launch(coordinator_address: str | None = None, num_processes: int | None = None,
                       process_id: int | None = None) -> Launch | None:
    """This process's Launch when it is one process of several; None for a single process.

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
        return None
    if explicit and (coordinator_address is None or num_processes is None or process_id is None):
        raise UsageError("multi-host needs all three of --coordinator_address, --num_processes and "
                         "--process_id (or none of them, to detect SLURM/TPU)")
    return Launch(coordinator_address, num_processes, process_id)


def initialize_distributed(launch: Launch | None, connect_timeout_s: int = 300,
                           heartbeat_timeout_s: int = 100) -> bool:
    """Starts JAX's distributed runtime for `launch` (None: a single process, nothing to start),
    waiting at most `connect_timeout_s` for every process to connect, and counting a peer
    silent for `heartbeat_timeout_s` as lost; returns whether it did."""
    if launch is None:
        return False
    # CPU devices of several processes talk through gloo (XLA's default there has no collectives);
    # accelerators ignore the setting.
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(launch.coordinator, launch.num_processes, launch.process_id,
                               initialization_timeout=connect_timeout_s,
                               heartbeat_timeout_seconds=heartbeat_timeout_s)
    return True


def check_agreement(**values) -> None:
    """Refuses (UsageError, on every process alike) to go on when the processes of one run were
    given different `values` (the resolved config, the data's identity): each process's digest
    of each is gathered by all and compared with process 0's."""
    if jax.process_count() == 1:
        return
    digests = np.stack([np.frombuffer(hashlib.sha256(json.dumps(v, sort_keys=True, default=str).encode())
                                      .digest()[:8], np.uint8) for v in values.values()])
    everyone = np.asarray(multihost_utils.process_allgather(digests))  # (processes, len(values), 8)
    for i, name in enumerate(values):
        differ = [p for p in range(len(everyone)) if not np.array_equal(everyone[p, i], everyone[0, i])]
        if differ:
            raise UsageError(f"the processes of this run disagree: the {name} of process "
                             f"{', '.join(map(str, differ))} differs from process 0's; launch every process "
                             "with the same --config, overrides and data")


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment {name}={value!r} is not an integer") from None
