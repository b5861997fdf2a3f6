"""Run by test_distributed.py as one process of a multi-process `aelab train`: records the image
rows this process decodes for each training step (OUT/reads{process}.json), then runs the
command line it was given."""

import json
import os
import sys
import threading

from aelab import main
from aelab.data import lazy, pipeline

out, argv = sys.argv[1], ["aelab", *sys.argv[2:]]
process = next((a.split("=", 1)[1] for a in argv if a.startswith("--process_id=")), "0")
reads: dict[int, list[int]] = {}
current = threading.local()  # the step whose batch this thread is making

read_row, make_batch = lazy.LazyImages._row, pipeline.TrainBatches.__call__


def recording_row(self, source_row):
    step = getattr(current, "step", None)
    if step is not None:
        reads.setdefault(step, []).append(int(source_row))
    return read_row(self, source_row)


def recording_batch(self, step, part=0, parts=1):
    current.step = step
    try:
        return make_batch(self, step, part, parts)
    finally:
        current.step = None


lazy.LazyImages._row, pipeline.TrainBatches.__call__ = recording_row, recording_batch
try:
    code = main.main(argv)
finally:
    if not os.path.exists(f"{out}/reads{process}.json"):  # a supervisor's child has written its own
        with open(f"{out}/reads{process}.json", "w") as f:
            json.dump(reads, f)
sys.exit(code)
