"""Metrics out: one JSON object a line in `metrics.jsonl`, mirrored to TensorBoard.

On resume the log is rewound to the restored step, so no step appears twice,
and a line torn by a hard kill is dropped instead of breaking readers. The
TensorBoard event files are a mirror of the log: on resume they are written
afresh from the rewound log, and every record is flushed as it is logged, so
a killed run's events are there too.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import time
from typing import Any, Iterator, Mapping

from aelab import workdir as wd

log = logging.getLogger("aelab")
EVENTS = "events.out.tfevents.*"


def read_metrics(path: str, warn: bool = False) -> Iterator[dict[str, Any]]:
    """The complete records of a metrics.jsonl. A torn last line (a hard kill) is skipped;
    so is a damaged line inside the file, with a warning when `warn` is set."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.endswith("\n"):
                return
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                if warn:
                    log.warning("%s line %d is not a JSON record (%r); it is dropped", path, number, line[:60])


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
        kept = [r for r in read_metrics(self.path, warn=True) if _before(r, resume_step, final_step)]
        wd.atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._file = open(self.path, "a")
        if tensorboard:
            self._tb = _mirror(os.path.join(workdir, wd.TENSORBOARD), kept)

    def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({k: _jsonable(v) for k, v in sorted(metrics.items())})
        end = self._file.tell()
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as e:  # a full disk: leave no torn line behind
            self._file.truncate(end)
            e.filename = e.filename or self.path
            raise
        if self._tb is not None:
            self._tb.add(record)
            self._tb.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


class _Events:
    """TensorBoard scalars appended synchronously to one event file (tensorboardX's
    SummaryWriter queues them for a thread that may not have written them when the
    process is killed)."""

    def __init__(self, directory: str):
        from tensorboardX.event_file_writer import EventsWriter

        os.makedirs(directory, exist_ok=True)
        self._file = EventsWriter(os.path.join(directory, "events"), f".{time.time_ns()}")

    def add(self, record: Mapping[str, Any]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        for key, value in record.items():
            if key not in ("step", "split"):
                summary = scalar(f"{record['split']}/{key}", float("nan") if value is None else value)
                self._file.write_event(Event(wall_time=time.time(), step=record["step"], summary=summary))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _mirror(directory: str, records: list[dict]) -> _Events:
    """An event file holding `records` (the rewound log); the event files of earlier runs
    are removed once it is written."""
    earlier = glob.glob(os.path.join(directory, EVENTS))
    events = _Events(directory)
    for record in records:
        events.add(record)
    events.flush()
    for path in earlier:
        os.unlink(path)
    return events
