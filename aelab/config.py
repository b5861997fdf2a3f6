"""The config of a run: the keys every run reads, the keys its components declare, and how a
launch (a config file, its plugins, command-line overrides) becomes one resolved, checked config.

Configs live in `configs/*.py` as `get_config(arg) -> ConfigDict`, usually started from
`base_config(task)`: every key that anything registered declares, so that a file or an
override may set any of them, type-checked. A run keeps only what it reads (`resolve`): the
common keys (`common_config`), its task's (`Task.config_defaults`), its architecture's
(`config.model.<arch>`) and its data reader's (`config.data.<prefix>`, where the reader declares
keys). A key that nothing declares is an error, never dropped; a key that another task or
architecture declares is left out of the run's config.json.

Plugins (`config.imports`: module names) are imported before anything is resolved, so that
what they register declares its keys too.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib.util
import math
import os
import re
import sys
from typing import Any, Iterator, Sequence

import ml_collections

from aelab import compiler, data, models, plugins, tasks  # noqa: F401  (data, models, tasks register the built-ins)
from aelab.configtree import (cast_like, closest, flatten, get_path, lookup, merge, parse_arg, positive,
                              set_value)
from aelab.data.splits import SPLIT_BY
from aelab.errors import UsageError, choose
from aelab.registry import ARCHITECTURES, READERS, TASKS

__all__ = ["base_config", "cast_like", "check_declared", "common_config", "flatten", "from_file", "from_saved",
           "load", "lookup", "parse_arg", "positive", "preset", "resolve", "run_keys", "set_value", "validate"]


def common_config() -> ml_collections.ConfigDict:
    """The keys every task reads, with defaults; each task adds its own (`Task.config_defaults`)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "autoencoder"
    config.loss = ""  # each task's default: bce (autoencoders), cross_entropy (the others)
    # Plugin modules (importable names, never paths) imported before the config is resolved, and
    # again by every command that opens the run: what they register (aelab.register_*) is usable.
    config.imports = ()

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
    # Fine-tuning: a first run starts from the parameters of WORKDIR's newest checkpoint (WORKDIR@STEP:
    # that step's), never its optimizer; every parameter of the same path and shape is loaded.
    config.train.init_from = ""
    # A regular expression over parameter paths ("encoder/mlp/layers/0/kernel"): only the matching
    # parameters train, the others stay as they are (frozen). "" = every parameter trains.
    config.train.trainable = ""
    # A resume checks that the data is what the checkpoint was trained on (each split's rows: files
    # added or removed, a split carved anew); True continues on the changed data on purpose.
    config.train.accept_changed_data = False
    # Persistent compilation cache of this training run ("" = off); the uses of a run compile into
    # the user's (compiler.USER_CACHE, or JAX_COMPILATION_CACHE_DIR), never where a run's config says.
    config.train.compile_cache = compiler.USER_CACHE
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


# --- what a run reads --------------------------------------------------------------------------

def run_keys(task: str, arch: str = "", data_name: str = "") -> ml_collections.ConfigDict:
    """The keys, with their defaults, of a run of `task` whose model is architecture `arch` (""
    = the task's default) and whose data is `data_name`: the common keys, the task's, and those
    the architecture and the data reader declare (in config.model.<arch>, config.data.<prefix>)."""
    config = common_config()
    task_cls = tasks.task_class(task)
    merge(config, task_cls.config_defaults())
    config.task = task
    if task_cls.family:
        arch = arch or config.model.arch
        entry = ARCHITECTURES.find(arch, task_cls.family)
        if entry is None:
            raise UsageError(f"unknown model.arch {arch!r} for task {task} ({task_cls.family} models); known: "
                             + ", ".join(sorted(ARCHITECTURES.names(task_cls.family)))
                             + " (a plugin's architecture is known once config.imports names its module)")
        config.model.arch = arch
        merge(config, {"model": {arch: dict(entry.config)}})
    reader, _ = data.reader_of(data_name) if data_name else (None, "")
    if reader is not None and reader.config:
        merge(config, {"data": {reader.name: dict(reader.config)}})
    return config


def base_config(task: str = "autoencoder", imports: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Every key that anything registered declares, with `task`'s defaults where tasks (or the
    architectures of two families) share a key: experiments start from it, and an override may set
    any key. `imports` are plugin modules to import first (and to record in config.imports), so
    that their keys are there to set. A run keeps only the keys it reads (`resolve`)."""
    plugins.import_modules(imports, "base_config(imports=...)")
    config = common_config()
    chosen = tasks.task_class(task)
    for entry in TASKS:
        if entry.target is not chosen:
            merge(config, entry.target.config_defaults())
    merge(config, chosen.config_defaults())
    families = [e for e in ARCHITECTURES if e.family != chosen.family] + ARCHITECTURES.entries(chosen.family)
    for entry in families:  # the task's own family last: its defaults win a shared name
        merge(config, {"model": {entry.name: dict(entry.config)}})
    for entry in READERS:
        if entry.config:
            merge(config, {"data": {entry.name: dict(entry.config)}})
    config.task = task
    config.imports = tuple(imports)
    return config


def declared_keys() -> dict[str, Any]:
    """Every dotted key that anything registered declares, with a default (the last one met)."""
    return dict(flatten(base_config().to_dict()))


def check_declared(config: ml_collections.ConfigDict, source: str) -> None:
    """Refuses (UsageError) a config that sets a key nothing declares, naming the key, `source`
    (where it was set) and the closest keys that exist."""
    known = declared_keys()
    groups = {key.rsplit(".", i)[0] for key in known for i in range(1, key.count(".") + 1)}
    for key, _ in flatten(config.to_dict()):
        if key in known:
            continue
        if key in groups:
            raise UsageError(f"{source} sets config.{key} to a value, but it is a group of keys")
        near = closest(key, known)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        arch = key.split(".")[1] if key.startswith("model.") and key.count(".") >= 2 else None
        if arch and arch not in ARCHITECTURES:
            hint += f" (no architecture {arch!r} is registered; is its plugin in config.imports?)"
        raise UsageError(f"{source} sets config.{key}, which nothing declares{hint}")


def resolve(config: ml_collections.ConfigDict, source: str = "the config") -> ml_collections.ConfigDict:
    """The config a run of `config` reads: its plugins imported, every key it sets checked to be
    declared (`source` names where it comes from), its values (type-checked) in the keys of its
    task, architecture and data reader (`run_keys`), without the keys it does not read."""
    plugins.import_modules(tuple(config.get("imports", ())), f"config.imports of {source}")
    check_declared(config, source)
    return resolve_values(config.get("task", "autoencoder"), config.to_dict(), source)


def resolve_values(task: str, values: dict, source: str = "the config") -> ml_collections.ConfigDict:
    """The resolved config of `task` holding `values` (a nested dict) where it has their keys."""
    resolved = run_keys(task, get_path(values, "model.arch", ""), get_path(values, "data.name", ""))
    _copy_known(resolved, values, source)
    resolved.task = task
    return resolved


def _copy_known(config: ml_collections.ConfigDict, values: dict, source: str, prefix: str = "") -> None:
    """Sets the keys of `values` that `config` has (recursively, type-checked); the others are left out."""
    for key, value in values.items():
        if key not in config:
            continue
        if isinstance(config[key], ml_collections.ConfigDict):
            if isinstance(value, dict):
                _copy_known(config[key], value, source, f"{prefix}{key}.")
            continue
        try:
            config[key] = tuple(value) if isinstance(value, list) else value
        except TypeError as e:
            raise UsageError(f"{source} sets config.{prefix}{key}={value!r}: {e}".splitlines()[0]) from None


# Keys added since runs were first saved, whose default now does something else than what those
# runs did: a saved config without the key gets the value that reproduces what its run did.
OLDER_RUNS = {("data", "split_by"): "example"}


def from_saved(saved: dict, source: str = "config.json") -> ml_collections.ConfigDict:
    """A config.json written by any aelab version, resolved: keys added since take their
    defaults (or, for `OLDER_RUNS`, what that version did), keys its run does not read (older
    versions wrote every task's, and every architecture's keys flat in config.model) are
    dropped or moved where they now live. The plugins it names must be imported first."""
    task = saved.get("task", "autoencoder")
    values = _moved_to_sections(task, saved)
    resolved = resolve_values(task, values, source)
    for (group, key), value in OLDER_RUNS.items():
        if key not in saved.get(group, {}):
            resolved[group][key] = value
    return resolved


def _moved_to_sections(task: str, saved: dict) -> dict:
    """Before architectures had their own keys, they read theirs from config.model (and a
    hierarchical VAE its layers' activation from model.activation): moved where they now live."""
    values = {**saved, "model": dict(saved.get("model", {}))}
    model, task_cls = values["model"], tasks.task_class(task)
    arch = model.get("arch") or task_cls.config_defaults().get("model", {}).get("arch", "")
    entry = ARCHITECTURES.find(arch, task_cls.family) if task_cls.family else None
    if entry is not None and not isinstance(model.get(arch), dict):
        task_model = task_cls.config_defaults().get("model", {})
        model[arch] = {k: model[k] for k in entry.config if k in model and k not in task_model}
    vae = saved.get("vae")
    flat_activation = saved["model"].get("activation")
    if isinstance(vae, dict) and vae.get("latents") and "layer_activation" not in vae and flat_activation:
        values["vae"] = {**vae, "layer_activation": flat_activation}
    return values


# --- a launch: file, plugins, overrides --------------------------------------------------------

@contextlib.contextmanager
def _importable(*folders: str) -> Iterator[None]:
    """`folders` on sys.path while a config file loads: its own modules import beside it."""
    added = [f for f in dict.fromkeys(os.path.abspath(f) for f in folders) if f not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)


def from_file(path, arg: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of the config file at `path` (what `--config=path:arg` loads), run once,
    with the file's folder and the working directory importable."""
    path = os.fspath(path)
    spec = importlib.util.spec_from_file_location("aelab_config_file", path)
    if spec is None or not os.path.isfile(path):
        raise UsageError(f"cannot load --config: {path}: no such file")
    module = importlib.util.module_from_spec(spec)
    with _importable(os.path.dirname(path) or ".", os.getcwd()):
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise UsageError(f"cannot load --config: {path} has no get_config(arg) function")
        config = module.get_config(arg)
    if not isinstance(config, ml_collections.ConfigDict):
        raise UsageError(f"--config: get_config returned {type(config).__name__}; expected a ConfigDict")
    return config


@dataclasses.dataclass
class Launch:
    """A config file with its overrides applied: `keys`, every declared key (what a sweep varies),
    and `config`, the run's resolved config; `ignored` lists overrides the run does not read."""

    keys: ml_collections.ConfigDict
    config: ml_collections.ConfigDict
    source: str
    ignored: list[str]


def load(path_arg: str, overrides: Sequence[str], strict: bool = True) -> Launch:
    """The launch of `--config=PATH[:ARG]` with `--config.KEY=VALUE` overrides (each "KEY=VALUE"):
    the file's get_config runs once, its plugins (config.imports, or an override of it) are
    imported, every key it sets must be declared, and the overrides are applied, typed like
    their keys. `strict`: an override of a key the run does not read (another task's or
    architecture's) is refused too; a sweep's points may read it. Raises UsageError with one line."""
    path, _, arg = path_arg.partition(":")
    loaded = _load_file(path, arg or None)
    pairs = [_split_override(o) for o in overrides]
    imports = next((_literal(v, "imports") for k, v in pairs if k == "imports"), loaded.get("imports", ()))
    plugins.import_modules(tuple(imports), f"config.imports of {path}")
    check_declared(loaded, path)
    given = dict(pairs)
    task = given.get("task", loaded.get("task", "autoencoder"))
    tasks.task_class(task)
    keys = base_config(task)
    _copy_known(keys, loaded.to_dict(), path)
    for key, value in pairs:
        _override(keys, key, value)
    check_finite(keys)  # in the keys this run does not read too: a bad number is a mistake anywhere
    resolved = resolve(keys, path)
    ignored = [f"--config.{key}" for key, _ in pairs if get_path(resolved, key, _MISSING) is _MISSING]
    if strict and ignored:
        arch = resolved.model.arch or "-"
        raise UsageError(f"{ignored[0]} is not read by this run (task {resolved.task}, model.arch {arch}); set the "
                         f"keys of its task and config.model.{arch}")
    return Launch(keys, resolved, path, ignored)


_MISSING = object()


def _load_file(path: str, arg: str | None) -> ml_collections.ConfigDict:
    if not path:
        raise UsageError("--config needs a file: --config=configs/X.py[:ARG]")
    try:
        return from_file(path, arg)
    except UsageError as e:
        message = str(e)
        raise UsageError(message if message.startswith(("cannot load --config", "--config")) else
                         f"--config={path}{':' + arg if arg else ''}: {message}") from None
    except Exception as e:  # raised by the config file's own code
        raise UsageError(f"cannot load --config: {type(e).__name__}: {e}".splitlines()[0]) from None


def _split_override(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--config.{item}: give --config.KEY=VALUE")
    return key, value


def _literal(text: str, key: str):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise UsageError(f"--config.{key}={text}: not a Python literal (a tuple of module names: "
                         "'(\"mypackage.vit\",)')") from None
    return (value,) if isinstance(value, str) else tuple(value)


def _override(keys: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets `key` of `keys` from the text `text`, typed like the key: a string as is, a bool from
    true/false, None as None, numbers and tuples as Python literals (a lone value: a 1-tuple)."""
    if get_path(keys, key, _MISSING) is _MISSING:
        _unknown(keys, key)
    current = get_path(keys, key)
    if isinstance(current, ml_collections.ConfigDict):
        raise UsageError(f"--config.{key} is a group of keys; set one of them: " + ", ".join(sorted(current.keys())))
    *groups, leaf = key.split(".")
    field_type = (get_path(keys, ".".join(groups)) if groups else keys).get_type(leaf)
    label = f"--config.{key}"
    if text == "None":
        value = None
    elif field_type is str:
        value = text
    elif field_type is bool:
        value = cast_like(True, text, label)
    elif field_type in (int, float):
        try:
            value = field_type(text)
        except ValueError as e:
            raise UsageError(f"{label}={text}: {e}") from None
    else:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UsageError(f"{label}={text}: not a Python literal, e.g. (1, 2)") from None
        if field_type is tuple and not isinstance(value, (tuple, list)):
            value = (value,)
    try:
        set_value(keys, key, tuple(value) if isinstance(value, list) else value)
    except (TypeError, ValueError) as e:
        raise UsageError(f"{label}={text}: {e}".splitlines()[0]) from None


def _unknown(keys: ml_collections.ConfigDict, key: str):
    """Raises the UsageError of an override key that nothing declares."""
    parts = key.split(".")
    node = keys
    for i, part in enumerate(parts):
        if not hasattr(node, "keys"):
            raise UsageError(f"unknown config key --config.{key}: config.{'.'.join(parts[:i])} is a value, "
                             "not a group of keys")
        if part not in node:
            break
        node = node[part]
    near = closest(key, dict(flatten(keys.to_dict())))
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise UsageError(f"unknown config key --config.{key}{hint}")


# --- the common keys' values -------------------------------------------------------------------

SCHEDULES = ("constant", "cosine", "warmup_cosine")
OPTIMIZERS = ("adam", "adamw", "sgd")


def check_finite(config: ml_collections.ConfigDict) -> None:
    """Refuses (UsageError) a NaN or infinite number in any key."""
    for key, value in flatten(config.to_dict()):
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise UsageError(f"{key}={value} must be a finite number")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the common keys' values that types alone cannot, and that no number is NaN or
    infinite; raises a one-line UsageError. Each task checks its own keys when constructed,
    registries their names, still before anything is written."""
    check_finite(config)
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
    plugins.check_names(tuple(config.imports), "config.imports")
    try:
        re.compile(train.trainable)
    except re.error as e:
        raise UsageError(f"train.trainable={train.trainable!r} is not a regular expression ({e})") from None


# Sizes that suit each shipped data set; experiment configs start from one.
PRESETS = {
    "digits": dict(name="digits", hidden=(256, 128), latent_dim=8, num_steps=3000, batch_size=64,
                   log_every=100, eval_every=1000),
    "mnist": dict(name="mnist", hidden=(1000, 500, 250), latent_dim=30, num_steps=20000,
                  batch_size=256, log_every=200, eval_every=2000),
}


def preset(name: str, imports: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`base_config("autoencoder", imports)` sized for a shipped data set ("digits" or "mnist")."""
    choose("preset", name, PRESETS)
    p = PRESETS[name]
    config = base_config("autoencoder", imports)
    config.data.name = p["name"]
    config.model.mlp.hidden = p["hidden"]
    config.model.latent_dim = p["latent_dim"]
    config.train.num_steps = p["num_steps"]
    config.train.batch_size = p["batch_size"]
    config.train.log_every = p["log_every"]
    config.train.eval_every = config.train.checkpoint_every = p["eval_every"]
    return config
