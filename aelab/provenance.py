"""Where a published number comes from: the command, the commit, the packages, the machine.

Experiments write `results.json` beside their README with `record(...)`, and README's result
tables are checked against those files (tests/test_results.py).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from aelab import sweep, train
from aelab.config import from_file
from aelab.workdir import atomic_write, environment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commit(repo: str = REPO) -> str:
    """The commit the code was at ("+changes" when aelab/, configs/ or experiments/ differ from it;
    the results and figures experiments write are outputs, not code)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    outputs = [f":(exclude,glob)experiments/**/{name}" for name in ("results.json", "results.jsonl", "*.png")]
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "aelab", "configs", "experiments", *outputs)
    return head + ("+changes" if dirty else "")


def machine() -> str:
    """The CPU model and the cores this process may use ("AMD EPYC ..., 2 cores")."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def start() -> dict[str, Any]:
    """What a results record needs from the start of a command: the time and the commit (taken
    now: the tree may change while a long experiment runs)."""
    return {"started": time.time(), "commit": commit()}


def record(begun: dict[str, Any], argv: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """The provenance of results computed since `begun` (`start()`) by the command `argv`."""
    env = environment(argv)
    return {"command": " ".join(["python", *(sys.argv if argv is None else argv)]), "commit": begun["commit"],
            "versions": env["versions"], "machine": machine(), "backend": env["backend"],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(begun["started"])),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_s": round(time.time() - begun["started"], 1), **fields}


def update_results(path: str, rows: dict[str, dict]) -> dict[str, dict]:
    """Writes `rows` (name -> row) into the results file at `path`, keeping the rows of earlier
    runs that this one did not redo; returns every row."""
    kept = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)["rows"]
    kept.update(rows)
    atomic_write(path, (json.dumps({"rows": kept}, indent=2, ensure_ascii=False) + "\n").encode())
    return kept


def over_seeds(values: list[float]) -> dict[str, Any]:
    """A figure over seeds: mean, sample standard deviation (0 for one seed) and every value."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def experiment_config(config_file: str, arg: str | None = None, *, data: str | None = None, seed: int = 0,
                      steps: int = 0, overrides: list[str] = (), values: dict[str, Any] | None = None):
    """configs/`config_file`[:arg] as an experiment runs it: `data` replaces data.name, `seed` the
    seed, `steps` (when not 0) the step count; `overrides` are command-line KEY=VALUE strings
    (type-checked) and `values` flattened keys set as they are (tuples included); no progress bar."""
    config = from_file(os.path.join(REPO, "configs", config_file), arg)
    config.seed = seed
    config.train.progress = False
    if data:
        config.data.name = data
    if steps:
        config.train.num_steps = steps
    config.update_from_flattened_dict(values or {})
    return sweep.with_overrides(config, list(overrides))


def train_seeds(config_file: str, seeds: list[int], workdir: str, arg: str | None = None,
                data: str | None = None, steps: int = 0) -> list[tuple[str, dict]]:
    """Trains `config_file[:arg]` once per seed in `workdir/seed{S}` (finished runs are read back,
    interrupted ones resume); `data` replaces data.name, `steps` (smoke tests) the step count.
    Returns each seed's (workdir, summary)."""
    runs = []
    for seed in seeds:
        path = os.path.join(workdir, f"seed{seed}")
        config = experiment_config(config_file, arg, data=data, seed=seed, steps=steps)
        runs.append((path, train.train_and_evaluate(config, path)))
    return runs
