"""The workdir contract: file names, atomic writes, and the run's environment record.

    DIR/config.json   DIR/env.json   DIR/metrics.jsonl   DIR/checkpoints/
    DIR/figures/*.png DIR/summary.json   (and DIR/tensorboard/ event files)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from typing import Any

CONFIG = "config.json"
ENV = "env.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
FIGURES = "figures"
SUMMARY = "summary.json"
TENSORBOARD = "tensorboard"


def atomic_write(path: str, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, then renames: readers never see half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def environment(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, devices and command line, so a result can be reproduced."""
    import jax

    versions = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
                    "ml-collections", "tensorflow-datasets", "grain", "scikit-learn", "aelab"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "command": list(sys.argv if argv is None else argv),
    }
