"""Config helpers: the base config every experiment overrides, `parse_arg`, resolution, validation.

Configs live in `configs/*.py` as `get_config(arg) -> ConfigDict`; they start
from `base_config()`, which holds every task's keys, so any override is
type-checked (ml-collections rejects unknown keys and wrong types). A run
keeps only what its task reads (`resolve`): `config.json` holds the common
keys (`common_config`) and those its task contributes (`Task.config_defaults`).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import ml_collections

from aelab.data.splits import SPLIT_BY
from aelab.errors import UsageError, choose


def common_config() -> ml_collections.ConfigDict:
    """The keys every task reads, with defaults; each task adds its own (`Task.config_defaults`)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "autoencoder"
    config.loss = ""  # each task's default: bce (autoencoders), cross_entropy (the others)

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"  # digits | idx:DIR | npz:FILE | csv:FILE | images:DIR | a TFDS name | ...
    config.data.data_dir = ""  # TFDS data_dir; "" = TFDS's default
    config.data.download = True  # TFDS: download and prepare if missing
    config.data.label_column = ""  # csv: header name or 0-based index of the labels; "" = none
    config.data.image_key = "image"  # TFDS feature names
    config.data.label_key = "label"
    config.data.val_fraction = 0.1  # carved from train when the data set has no validation split
    config.data.test_fraction = 0.2  # carved from train when it has no test split
    config.data.split_seed = 0  # fixes the carved splits independently of `seed`
    # What a carved split may not share with train: example | block (one contiguous run: slices of
    # a stack) | source (sentence pairs grouped by source sentence); "" = source for sentence pairs,
    # example for the rest.
    config.data.split_by = ""

    config.model = ml_collections.ConfigDict()
    config.model.arch = ""  # each task's default and choices

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"  # adam | adamw | sgd
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"  # constant | cosine | warmup_cosine
    config.optimizer.warmup_steps = 0
    config.optimizer.end_lr_factor = 0.0  # cosine: final lr = factor * learning_rate
    config.optimizer.weight_decay = 1e-4  # adamw only
    config.optimizer.momentum = 0.9  # sgd only; 0 = plain SGD
    config.optimizer.grad_clip_norm = 0.0  # 0 = no clipping

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 1000
    config.train.batch_size = 128
    config.train.eval_batch_size = 1000
    config.train.log_every = 50
    config.train.eval_every = 500  # on the validation split
    config.train.checkpoint_every = 500
    config.train.keep_checkpoints = 3
    config.train.progress = True  # tqdm progress bar on stderr
    config.train.tensorboard = True
    config.train.early_stopping_patience = 0  # validation evaluations without improvement; 0 = off
    config.train.early_stopping_metric = "loss"  # a validation metric, lower is better
    config.train.early_stopping_min_delta = 0.0  # an improvement must beat the best by more than this
    config.train.skip_nonfinite = False  # True: drop updates with non-finite gradients, count them
    config.train.max_consecutive_nonfinite = 10  # ...and stop after this many in a row
    config.train.compile_cache = "~/.cache/aelab/jax"  # persistent compilation cache; "" = off
    config.train.device_data_mb = 2048  # a training split up to this size stays on the device(s); 0 = never
    config.train.steps_per_dispatch = 10  # with the split on the device, steps run per call (a loop there)
    config.train.input_threads = 4  # otherwise, threads making batches ahead of the step (decoding streamed images)
    config.train.input_processes = 0  # streamed images: >0 decodes them in that many worker processes instead
    config.train.prefetch_batches = 8  # ...and the batches they may hold ready
    # CPU matmul library (aelab/compiler.py). None: XLA's default YNNPACK for the train steps and
    # decoders of models without convolutions, XLA's Eigen everywhere else; True / False: YNNPACK
    # everywhere / nowhere.
    config.train.cpu_ynn_dots = ml_collections.config_dict.placeholder(bool)
    config.train.compute_dtype = "float32"  # float32 | bfloat16 (mixed: parameters, optimizer state stay float32)

    # Data parallel: parameters replicated, each batch sharded over the `data` axis of a device
    # mesh; train.batch_size stays the global batch and must divide by the device count.
    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1  # devices on the data axis; -1 = all (every device of every host)
    return config


def _task_defaults(task: str) -> dict:
    # The registry lives with the tasks, which contribute their keys; imported here, on use.
    from aelab.tasks import TASKS

    choose("task", task, TASKS)
    return TASKS[task].config_defaults()


def _merge(config: ml_collections.ConfigDict, defaults: dict) -> None:
    """Adds `defaults` (a nested dict) to `config`, replacing values it already holds."""
    for key, value in defaults.items():
        if isinstance(value, dict):
            if key not in config:
                config[key] = ml_collections.ConfigDict()
            _merge(config[key], value)
        else:
            config[key] = value


def base_config(task: str = "autoencoder") -> ml_collections.ConfigDict:
    """Every key of every task, with `task`'s defaults where tasks share a key (loss, model.arch):
    experiments start from it, and an override may set any key. A run keeps only the keys its
    task reads (`resolve`)."""
    from aelab.tasks import TASKS

    config = common_config()
    for name in TASKS:
        if name != task:
            _merge(config, _task_defaults(name))
    _merge(config, _task_defaults(task))
    config.task = task
    return config


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config a run of `config.task` reads: the common keys and its task's, with `config`'s
    values (its task's defaults where `config` lacks a key), without other tasks' keys."""
    return resolve_values(config.task, config.to_dict())


def resolve_values(task: str, values: dict) -> ml_collections.ConfigDict:
    """The resolved config of `task` holding `values` (a nested dict) where it has their keys."""
    resolved = common_config()
    _merge(resolved, _task_defaults(task))
    _copy_known(resolved, values)
    resolved.task = task
    return resolved


def _copy_known(config: ml_collections.ConfigDict, values: dict) -> None:
    """Sets the keys of `values` that `config` has (recursively); the others are ignored."""
    for key, value in values.items():
        if key not in config:
            continue
        if isinstance(config[key], ml_collections.ConfigDict):
            if isinstance(value, dict):
                _copy_known(config[key], value)
        else:
            config[key] = tuple(value) if isinstance(value, list) else value


def lookup(config: ml_collections.ConfigDict, key: str, label: str):
    """The value at dotted `key`; a UsageError starting with `label` lists the keys where it fails."""
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "config"
        if not hasattr(node, "keys"):
            raise UsageError(f"{label}: config.{where} is a value, not a group of keys")
        if part not in node:
            raise UsageError(f"{label}; keys under {where}: " + ", ".join(sorted(node.keys())))
        node = node[part]
    return node


def set_value(config: ml_collections.ConfigDict, key: str, value) -> None:
    """Sets the dotted `key` (e.g. "model.latent_dim") of `config`, type-checked by ml-collections."""
    *groups, leaf = key.split(".")
    node = config
    for group in groups:
        node = node[group]
    node[leaf] = value


def from_file(path, arg: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of the config file at `path` (what `--config=path:arg` loads)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("aelab_config_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


# Keys added since runs were first saved, whose default now does something else than what those
# runs did: a saved config without the key gets the value that reproduces what its run did.
OLDER_RUNS = {("data", "split_by"): "example"}


def from_saved(saved: dict) -> ml_collections.ConfigDict:
    """A config.json written by any aelab version, resolved: keys added since take their
    defaults (or, for `OLDER_RUNS`, what that version did), keys its task does not read (older
    versions wrote every task's) are dropped."""
    resolved = resolve_values(saved.get("task", "autoencoder"), saved)
    for (group, key), value in OLDER_RUNS.items():
        if key not in saved.get(group, {}):
            resolved[group][key] = value
    return resolved


# Sizes that suit each shipped data set; experiment configs start from one.
PRESETS = {
    "digits": dict(name="digits", hidden=(256, 128), latent_dim=8, num_steps=3000, batch_size=64,
                   log_every=100, eval_every=1000),
    "mnist": dict(name="mnist", hidden=(1000, 500, 250), latent_dim=30, num_steps=20000,
                  batch_size=256, log_every=200, eval_every=2000),
}


def preset(name: str) -> ml_collections.ConfigDict:
    """`base_config()` sized for a shipped data set ("digits" or "mnist")."""
    choose("preset", name, PRESETS)
    p = PRESETS[name]
    config = base_config("autoencoder")
    config.data.name = p["name"]
    config.model.hidden = p["hidden"]
    config.model.latent_dim = p["latent_dim"]
    config.train.num_steps = p["num_steps"]
    config.train.batch_size = p["batch_size"]
    config.train.log_every = p["log_every"]
    config.train.eval_every = config.train.checkpoint_every = p["eval_every"]
    return config


TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def cast_like(default, value: str, label: str):
    """`value` (text) as the type of `default`; a UsageError "{label}={value!r} is not a T" if it isn't one."""
    kind = type(default)
    try:
        if kind is bool:
            if value.lower() not in TRUE + FALSE:
                raise ValueError
            return value.lower() in TRUE
        return kind(value)
    except ValueError:
        raise UsageError(f"{label}={value!r} is not a {kind.__name__}") from None


def parse_arg(arg: str | None, **defaults):
    """Parses a config arg like "latent=32,arch=conv,runlocal" (big_vision style).

    Values are cast to the type of their default; a bare name means True.
    Unknown names raise a UsageError listing the accepted ones.
    """
    parsed = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        choose("config arg", key, defaults)
        default = defaults[key]
        parsed[key] = cast_like(default, value, f"config arg {key}") if sep else True
    return parsed


def flatten(tree: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """('a.b.c', value) for every leaf of a nested dict."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


SCHEDULES = ("constant", "cosine", "warmup_cosine")
OPTIMIZERS = ("adam", "adamw", "sgd")


def positive(key: str, value) -> None:
    """Raises a UsageError unless `value` > 0."""
    if value <= 0:
        raise UsageError(f"{key}={value} must be > 0")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the common keys' values that types alone cannot, and that no number is NaN or
    infinite; raises a one-line UsageError. Each task checks its own keys when constructed,
    registries their names, still before anything is written."""
    for key, value in flatten(config.to_dict()):
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise UsageError(f"{key}={value} must be a finite number")
    train, opt = config.train, config.optimizer
    for key in ("num_steps", "batch_size", "eval_batch_size", "log_every", "eval_every",
                "checkpoint_every", "keep_checkpoints", "max_consecutive_nonfinite", "steps_per_dispatch",
                "prefetch_batches"):
        positive(f"train.{key}", train[key])
    positive("optimizer.learning_rate", opt.learning_rate)
    choose("optimizer.name", opt.name, OPTIMIZERS)
    choose("optimizer.schedule", opt.schedule, SCHEDULES)
    choose("train.compute_dtype", train.compute_dtype, ("float32", "bfloat16"))
    if train.input_threads < 0:
        raise UsageError(f"train.input_threads={train.input_threads} must be >= 0 (0: batches made on the "
                         "training thread)")
    if train.input_processes < 0:
        raise UsageError(f"train.input_processes={train.input_processes} must be >= 0 (0: threads, "
                         "train.input_threads, make the batches)")
    if train.early_stopping_patience < 0 or train.early_stopping_min_delta < 0:
        raise UsageError("train.early_stopping_patience and train.early_stopping_min_delta must be >= 0")
    if opt.warmup_steps < 0 or opt.grad_clip_norm < 0:
        raise UsageError("optimizer.warmup_steps and optimizer.grad_clip_norm must be >= 0")
    choose("data.split_by", config.data.split_by, ("",) + SPLIT_BY)
    for key in ("val_fraction", "test_fraction"):
        if not 0.0 < config.data[key] < 1.0:
            raise UsageError(f"data.{key}={config.data[key]} must lie strictly between 0 and 1")
    if not config.data.name:
        raise UsageError("data.name is empty; accepted: digits, idx:DIR, npz:FILE, csv:FILE, "
                         "images:DIR or a TFDS name")
