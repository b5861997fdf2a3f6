"""`aelab sweep` and `aelab report`: a grid of runs, each in its own workdir, then a table and plots.

    aelab sweep --config=configs/digits_ae.py --workdir=DIR --sweep=model.latent_dim=2,4,8 --sweep=seed=0,1

Every point trains in DIR/points/<name> through `train_and_evaluate`, so a
rerun skips finished points and resumes unfinished ones from their
checkpoints; a changed grid adds only the new points. A failing point is
recorded in DIR/sweep.json and the others go on.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import itertools
import os
import re
import traceback
from typing import Any, Callable

import ml_collections

from aelab import config as config_lib
from aelab import plots, plugins, train
from aelab import workdir as wd
from aelab.errors import UsageError, WriteError

SWEEP = "sweep.json"
POINTS = "points"


def parse_axes(specs: list[str], config: ml_collections.ConfigDict) -> list[tuple[str, list[Any]]]:
    """['model.latent_dim=2,4'] -> [('model.latent_dim', [2, 4])], typed like the config's value."""
    axes, seen = [], set()
    for spec in specs:
        key, sep, raw = spec.partition("=")
        if not sep or not key:
            raise UsageError(f"--sweep={spec!r} is not KEY=V1,V2,...")
        if key in seen:
            raise UsageError(f"--sweep axis {key!r} is given twice; give each key once")
        seen.add(key)
        default = _lookup(config, key)
        values = [v for v in raw.split(",") if v != ""]
        if not values:
            raise UsageError(f"--sweep={spec!r} has no values; give KEY=V1,V2,...")
        typed = [config_lib.cast_like(default, v, f"sweep value {key}") for v in values]
        repeated = next((v for i, v in enumerate(typed) if v in typed[:i]), None)
        if repeated is not None:
            raise UsageError(f"--sweep={spec!r} gives the value {repeated!r} twice; give each value once")
        axes.append((key, typed))
    return axes


def _lookup(config, key: str):
    node = config_lib.lookup(config, key, f"unknown sweep key {key!r}")
    if hasattr(node, "keys") or isinstance(node, (tuple, list)):
        raise UsageError(f"sweep key {key!r} is not a single value; sweep one number or name at a time")
    return node


UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]")
MAX_NAME = 120


def point_name(values: dict[str, Any]) -> str:
    """The folder name of a point under DIR/points: "latent_dim=4,seed=0". A name that would
    need other characters (a path separator in a value, say) or is very long has them
    replaced by "_" and a hash of the real name appended, so it stays one folder inside DIR."""
    name = ",".join(f"{key.split('.')[-1]}={value}" for key, value in values.items())
    safe = UNSAFE.sub("_", name)
    if safe == name and len(name) <= MAX_NAME:
        return name
    return f"{safe[:MAX_NAME]}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"


def grid(axes) -> list[dict[str, Any]]:
    keys = [key for key, _ in axes]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values for _, values in axes))]


def point_config(config: ml_collections.ConfigDict, values: dict[str, Any]) -> ml_collections.ConfigDict:
    config = copy.deepcopy(config)
    for key, value in values.items():
        config_lib.set_value(config, key, value)
    return config


def with_overrides(config: ml_collections.ConfigDict, specs: list[str]) -> ml_collections.ConfigDict:
    """A copy of `config` with each "KEY=VALUE" of `specs` set, typed and checked like a sweep axis."""
    axes = parse_axes(specs, config)
    for key, values in axes:
        if len(values) != 1:
            raise UsageError(f"{key} takes one value here, got {values}")
    return point_config(config, {key: values[0] for key, values in axes})


def check_points(config: ml_collections.ConfigDict, points: list[dict[str, Any]]) -> None:
    """Refuses (UsageError) a grid with an invalid point, before anything runs; the message names
    the point. Only the data itself is left to run time (a batch larger than a split, say)."""
    names = [point_name(values) for values in points]
    if len(set(names)) < len(names):
        raise UsageError("two sweep points would share a folder name; give axes whose last key parts differ")
    for name, values in zip(names, points):
        try:
            train.check_config(point_config(config, values))
        except UsageError as e:
            raise UsageError(f"sweep point {name}: {e}") from None


def run_sweep(config: ml_collections.ConfigDict, workdir: str, specs: list[str],
              should_stop: Callable[[int], bool] | None = None) -> dict:
    """Trains every point of the grid (skipping finished ones), then writes the report.

    `should_stop` (signals) is passed to each point's training: when it asks, the running point
    checkpoints, the record says which point stopped (`record["stopped"]`) and no further point
    starts; a rerun continues from there.
    """
    axes = parse_axes(specs, config)
    points = grid(axes)
    check_points(config, points)
    wd.check_workdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    with wd.exclusive(workdir):  # a second sweep on DIR is refused at once, as a second train is
        return _run_points(config, workdir, axes, points, should_stop)


def _run_points(config, workdir: str, axes, points, should_stop) -> dict:
    record_path = os.path.join(workdir, SWEEP)
    record = read_record(workdir) if os.path.lexists(record_path) else {"points": {}}
    record.pop("stopped", None)
    record["axes"] = [[key, values] for key, values in axes]
    record["base_config"] = config.to_dict()
    for values in points:
        name = point_name(values)
        if should_stop is not None and should_stop(0):
            record["stopped"] = name
            break
        entry = {"values": values, "status": "running"}
        record["points"][name] = entry
        wd.write_json(record_path, record)
        try:
            summary = train.train_and_evaluate(point_config(config, values),
                                               os.path.join(workdir, POINTS, name), should_stop)
            entry["status"] = "stopped" if summary.get("stopped") else "done"
        except WriteError:  # a full disk fails every point alike: stop here, the record as it was
            raise
        except Exception as e:  # a failing point is recorded; the others go on
            entry.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0],
                         traceback=traceback.format_exc(limit=5))
        if entry["status"] == "stopped":
            record["stopped"] = name
            break
        wd.write_json(record_path, record)
    wd.write_json(record_path, record)
    if "stopped" not in record:
        report(workdir)
    return record


def read_record(workdir: str) -> dict:
    """DIR/sweep.json, checked: a JSON object whose points are objects with values and a status."""
    record = wd.read_record(workdir, SWEEP)
    points = record.get("points")
    if not isinstance(points, dict) or any(
            not isinstance(e, dict) or not isinstance(e.get("values"), dict) or not isinstance(e.get("status"), str)
            for e in points.values()):
        raise UsageError(f"{wd.shown(os.path.join(workdir, SWEEP))} is damaged: its points are not "
                         "{NAME: {values, status}}")
    return record


SAFE_NAME = re.compile(r"^[A-Za-z0-9._,=+-]+$")


def point_folder(workdir: str, name: str) -> str:
    """DIR/points/NAME for a point name read from sweep.json: one folder inside DIR/points, never
    a way out of the sweep (`..`, a path, a symbolic link)."""
    if not SAFE_NAME.match(name) or name in (".", ".."):
        raise UsageError(f"{wd.shown(os.path.join(workdir, SWEEP))} names a point {wd.shown(name)!r} that is not "
                         "one folder inside the sweep's points/")
    return wd.confined(os.path.join(workdir, POINTS), name, "sweep point")


def report(workdir: str) -> list[str]:
    """Writes DIR/report.csv, DIR/report.md and DIR/figures/sweep_<metric>.png from finished points
    (the plugins the sweep's config names are imported first, as for every command on its runs)."""
    record_path = os.path.join(workdir, SWEEP)
    if not os.path.lexists(record_path):
        raise UsageError(f"{wd.shown(workdir)}: no {SWEEP}; pass the --workdir of an aelab sweep")
    record = read_record(workdir)
    if not isinstance(record.get("axes"), list) or not record["axes"] or any(
            not isinstance(a, list) or len(a) != 2 or not isinstance(a[0], str) for a in record["axes"]):
        raise UsageError(f"{wd.shown(record_path)} is damaged: no list of axes [KEY, VALUES]")
    plugins.import_modules(tuple(record.get("base_config", {}).get("imports", ())), record_path, workdir=workdir,
                           announce=True)
    axes = [key for key, _ in record["axes"]]
    rows = []
    by_values = sorted(record["points"].items(),
                       key=lambda item: [(isinstance(v, str), v) for v in item[1]["values"].values()])
    for name, entry in by_values:
        point = point_folder(workdir, name)
        row = {**entry["values"], "status": entry["status"]}
        if os.path.lexists(os.path.join(point, wd.SUMMARY)):
            summary = wd.read_record(point, wd.SUMMARY)
            row.update({f"eval_{k}": v for k, v in summary["eval"].items()})
            for baseline, metrics in summary.get("baselines", {}).items():
                row.update({f"{baseline}_{k}": v for k, v in metrics.items() if k != "n_components"})
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(rows)
    paths = [os.path.join(workdir, "report.csv"), os.path.join(workdir, "report.md")]
    wd.atomic_write(paths[0], buffer.getvalue().encode())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    wd.atomic_write(paths[1], ("\n".join(lines) + "\n").encode())
    metrics = sorted({c[len("eval_"):] for c in columns if c.startswith("eval_")})
    x_axis = next((a for a in axes if a != "seed"), axes[0])
    for metric in metrics:
        path = os.path.join(workdir, wd.FIGURES, f"sweep_{metric}.png")
        plots.sweep_curve(rows, x_axis, [a for a in axes if a not in (x_axis, "seed")], metric, path)
        paths.append(path)
    return paths


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

