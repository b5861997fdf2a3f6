"""The resume check: a run resumed on a workdir may change how it is logged or how long it runs,
never what its checkpoints mean."""

from __future__ import annotations

import json
import os

from aelab.config import flatten, from_saved
from aelab.errors import UsageError
from aelab.workdir import CHECKPOINTS, CONFIG, read_record

# Keys whose change would make a checkpoint mean something else: a resume that
# changes one of them is refused. Everything else (num_steps, logging) may change.
RESUME_LOCKED = ("seed", "task", "loss", "model", "data", "optimizer", "corruption", "penalty",
                 "vae.beta", "vae.kl_warmup_steps", "vae.free_bits", "vae.sigma", "vae.binarize",
                 "vq", "train.batch_size", "train.skip_nonfinite", "train.init_from", "train.trainable", "text")


def config_changes(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """(locked, allowed) differences between two config dicts, each as 'key: a -> b'."""
    def canon(value):
        return list(value) if isinstance(value, (list, tuple)) else value
    old_flat, new_flat = dict(flatten(old)), dict(flatten(new))
    locked, allowed = [], []
    for key in sorted(set(old_flat) | set(new_flat)):
        a, b = canon(old_flat.get(key)), canon(new_flat.get(key))
        if a != b:
            is_locked = any(key == k or key.startswith(k + ".") for k in RESUME_LOCKED)
            (locked if is_locked else allowed).append(f"{key}: {a!r} -> {b!r}")
    return locked, allowed


def check_resume(workdir: str, config: dict, saved: dict | None = None) -> list[str]:
    """Refuses (UsageError) a resume that changes a locked key; returns the allowed changes.

    `saved` is the config stored with the newest checkpoint; without one (runs of older
    versions) config.json is compared.
    """
    path = os.path.join(workdir, CONFIG)
    if saved is None:
        if not (os.path.exists(os.path.join(workdir, CHECKPOINTS)) and os.path.exists(path)):
            return []
        saved = read_record(workdir, CONFIG)
    # Keys added since that run compare as their defaults.
    old = json.loads(json.dumps(from_saved(saved).to_dict()))
    locked, allowed = config_changes(old, json.loads(json.dumps(config)))
    if locked:
        raise UsageError(f"{workdir} holds a run with a different config ({'; '.join(locked)}); "
                         "use a new --workdir or restore those values")
    return allowed
