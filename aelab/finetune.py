"""Runs that build on runs: `train.init_from=WORKDIR[@STEP]` starts a new run from another run's
parameters (never its optimizer state), and `train.trainable` (aelab.optim) trains only some of them.

Every parameter of the new model whose path and shape the source's has is loaded; the report
(DIR/init_from.json, and a table on stderr) lists each parameter as loaded, new (the source has
no such path) or mismatched (another shape), and the source's unused ones. Only a run's first
start loads: a resumed run continues from its own checkpoints, so it does not need the source.
"""

from __future__ import annotations

import os

import jax
from flax import nnx

from aelab import optim, restore
from aelab.errors import UsageError

INIT_REPORT = "init_from.json"


def parse(value: str) -> tuple[str, int | None]:
    """("WORKDIR", STEP or None) of a train.init_from value."""
    workdir, at, step = value.rpartition("@")
    if at and step.isdigit():
        return workdir, int(step)
    return value, None


def check(value: str, workdir: str | None = None) -> None:
    """Refuses (UsageError) an init_from that names no trained run (or a step it lacks), or the
    run's own workdir; imports the plugins the source names."""
    source, step = parse(value)
    if workdir is not None and os.path.realpath(source) == os.path.realpath(workdir):
        raise UsageError(f"train.init_from={value} is this run's own workdir; rerun to resume it instead")
    restore.saved_config(source, None, "train.init_from")
    steps = restore.checkpoint_steps(source)
    if not steps or (step is not None and step not in steps):
        where = f" at step {step}; its steps: {', '.join(map(str, steps))}" if steps else "; train it first"
        raise UsageError(f"train.init_from={value}: {source} has no checkpoint{where}")


def initialize(model: nnx.Module, value: str) -> dict:
    """Loads into `model` (in place) every parameter of the source run that has the same path and
    shape; returns the report."""
    source_workdir, step = parse(value)
    source = restore.load(source_workdir, step=step)
    theirs = optim.param_paths(nnx.state(source.model, nnx.Param))
    ours = optim.param_paths(nnx.state(model, nnx.Param))
    loaded, new, mismatched = [], [], []
    updates = {}
    for path, value_here in ours.items():
        if path not in theirs:
            new.append({"path": path, "shape": list(value_here.shape)})
        elif theirs[path].shape != value_here.shape or theirs[path].dtype != value_here.dtype:
            mismatched.append({"path": path, "shape": list(value_here.shape), "source_shape": list(theirs[path].shape)})
        else:
            loaded.append({"path": path, "shape": list(value_here.shape)})
            updates[path] = theirs[path]
    params = nnx.state(model, nnx.Param)
    replaced = jax.tree_util.tree_map_with_path(
        lambda keys, leaf: updates.get(optim.param_path(keys), leaf), params)
    nnx.update(model, replaced)
    return {"source": os.path.abspath(source_workdir), "step": source.step, "loaded": loaded, "new": new,
            "mismatched": mismatched, "unused": sorted(set(theirs) - set(ours))}


def table(report: dict) -> str:
    """The report as lines: one per parameter of the new model, then the source's unused ones."""
    rows = [(r["path"], "loaded", r["shape"]) for r in report["loaded"]]
    rows += [(r["path"], "new", r["shape"]) for r in report["new"]]
    rows += [(r["path"], f"mismatched (source {tuple(r['source_shape'])})", r["shape"]) for r in report["mismatched"]]
    width = max([len(p) for p, _, _ in rows] + [9])
    lines = [f"aelab: init_from {report['source']} step {report['step']}: {len(report['loaded'])} loaded, "
             f"{len(report['new'])} new, {len(report['mismatched'])} mismatched, {len(report['unused'])} unused",
             f"  {'parameter':<{width}}  shape            status"]
    lines += [f"  {path:<{width}}  {str(tuple(shape)):<15}  {status}" for path, status, shape in sorted(rows)]
    lines += [f"  {path:<{width}}  {'':<15}  unused (only in the source)" for path in report["unused"]]
    return "\n".join(lines)
