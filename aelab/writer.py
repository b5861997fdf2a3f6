"""Metrics out: one JSON object a line in `metrics.jsonl`, mirrored to TensorBoard.

On resume the log is rewound to the restored step, so no step appears twice,
and a line torn by a hard kill is dropped instead of breaking readers.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterator, Mapping

from aelab import workdir as wd


def read_metrics(path: str) -> Iterator[dict[str, Any]]:
    """The complete records of a metrics.jsonl; a torn last line is skipped."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                return
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def training_seconds(path: str) -> float:
    """Seconds spent inside training steps (compilation included, evaluations not), from a
    metrics.jsonl: each logged window's steps divided by its steps/s."""
    seconds, last = 0.0, 0
    for record in read_metrics(path):
        if record["split"] == "train" and record.get("steps_per_s"):
            seconds += (record["step"] - last) / record["steps_per_s"]
            last = record["step"]
    return seconds


def _jsonable(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _before(record: Mapping, resume_step: int, final_step: int) -> bool:
    """Whether a record precedes a resume at `resume_step` (final evaluations are redone)."""
    step = record.get("step", 0)
    if step == resume_step >= final_step:
        return record.get("split") == "train"
    return step <= resume_step


class MetricWriter:
    """Appends records for `split` at `step`; only one process (index 0) writes."""

    def __init__(self, workdir: str, resume_step: int, final_step: int, tensorboard: bool,
                 enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, wd.METRICS)
        self._tb = None
        if not enabled:
            return
        kept = [r for r in read_metrics(self.path) if _before(r, resume_step, final_step)]
        wd.atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._file = open(self.path, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            # purge_step drops events past the restored step from TensorBoard's view too.
            self._tb = SummaryWriter(os.path.join(workdir, wd.TENSORBOARD),
                                     purge_step=resume_step + 1 if resume_step else None)

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({k: _jsonable(v) for k, v in sorted(metrics.items())})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(f"{split}/{key}", float(value), step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()
