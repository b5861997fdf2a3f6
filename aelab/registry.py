"""aelab's extension points: one registry per kind of component, one way to register into it.

A plugin module (named in `config.imports`, imported by every command that opens its runs)
registers what it adds; the built-ins register through the same functions::

    @aelab.register_architecture("vit", family="autoencoder", config={"patch_size": 4}, check=check_vit)
    def build_vit(cfg, spec):
        ...                                      # -> (encoder, decoder)

Each entry has a name, the thing registered (a function or a class), the config keys it reads
(`config`: their defaults, whose types are the keys' types) and a `check` that refuses bad
values with a UsageError before anything is written. Where its keys live, and what `check`
receives, depends on the kind (docs/extending.md):

| kind | selected by | its keys | `check(...)` |
|---|---|---|---|
| architecture | `model.arch` (within the task's family) | `config.model.<name>` | `(cfg, example_shape or None)` |
| task | `task` | the class's `config_defaults()` | the class's `__init__` |
| reader | the prefix of `data.name` | `config.data.<prefix>` | `(path, data_cfg)` |
| objective | `vae.objective` | merged into `config.vae` | `(vae_cfg, config)` |
| penalty | `config.penalty.<name>` > 0 (its weight) | merged into `config.penalty` | `(penalty_cfg, config)` |
| metric | every evaluation of its family's runs | none | none |

Nothing here imports the rest of aelab: the registries sit below everything that fills them.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from typing import Any, Callable, Iterator, Mapping

from aelab.errors import UsageError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PATH_KINDS = ("file", "folder", "file_or_folder", "name", "variant", "none")
METRIC_LEVELS = ("example", "batch", "split")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered component."""

    kind: str  # architecture | task | reader | objective | penalty | metric
    name: str
    target: Any  # what builds or computes it: a function, or a class (tasks)
    config: Mapping[str, Any]  # the keys it reads, with their defaults (nested dicts for groups)
    check: Callable[..., None] | None
    module: str  # the module that registered it
    options: Mapping[str, Any]  # per kind: family (architectures, objectives, penalties, metrics), ...

    @property
    def family(self) -> str | None:
        return self.options.get("family")


class Registry:
    """The entries of one kind, by name (and, where entries belong to a family, by family and
    name: two families may each have a "transformer")."""

    def __init__(self, kind: str, selector: str, name_families: bool = False):
        self.kind, self.selector, self.name_families = kind, selector, name_families
        self._entries: dict[tuple[str | None, str], Entry] = {}

    def add(self, name: str, target: Any, *, config: Mapping[str, Any] | None = None,
            check: Callable[..., None] | None = None, replace: bool = False, **options: Any) -> Entry:
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be an identifier (letters, digits, _)")
        if check is not None and not callable(check):
            raise TypeError(f"{self.kind} {name!r}: check must be callable, got {type(check).__name__}")
        _check_declared(config or {}, f"{self.kind} {name!r} config")
        key = (options.get("family"), name)
        module = _caller_module()
        if key in self._entries and not replace and self._entries[key].target is not target:
            raise ValueError(f"{self.kind} {name!r}{_in(key[0])} is registered already (by "
                             f"{self._entries[key].module}); pass replace=True to replace it")
        entry = Entry(self.kind, name, target, dict(config or {}), check, module, dict(options))
        self._entries[key] = entry
        return entry

    def remove(self, name: str, family: str | None = None) -> None:
        """Drops an entry (tests; a plugin unloading)."""
        self._entries.pop((family, name), None)

    def get(self, name: str, family: str | None = None) -> Entry:
        """The entry; a UsageError naming the known ones where there is none."""
        entry = self._entries.get((family, name))
        if entry is None:
            known = ", ".join(sorted(self.names(family))) or "none"
            raise UsageError(f"unknown {self.selector} {name!r}{_in(family) if self.name_families else ''}; "
                             f"known: {known}")
        return entry

    def find(self, name: str, family: str | None = None) -> Entry | None:
        return self._entries.get((family, name))

    def entries(self, family: str | None = None, any_family: bool = False) -> list[Entry]:
        return [e for (f, _), e in self._entries.items() if any_family or f == family]

    def names(self, family: str | None = None) -> list[str]:
        return [e.name for e in self.entries(family)]

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __contains__(self, name: str) -> bool:
        return any(n == name for _, n in self._entries)


def _in(family: str | None) -> str:
    return f" for {family} models" if family else ""


def _caller_module() -> str:
    """The module that called a register_* function (the plugin, or aelab's own). Frames are
    walked directly: inspect.stack() reads every frame's source, seconds at start-up."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals.get("__name__", "?") if frame is not None else "?"


def _check_declared(config: Mapping[str, Any], where: str) -> None:
    """Declared keys are identifiers with a default of a config type (None has no type to check against)."""
    for key, value in config.items():
        if not isinstance(key, str) or not NAME.match(key):
            raise ValueError(f"{where}: key {key!r} must be an identifier")
        if isinstance(value, Mapping):
            _check_declared(value, f"{where}.{key}")
        elif value is None:
            raise ValueError(f"{where}: {key} has default None; give a default of the key's type "
                             "(\"\" or 0 for 'unset')")


ARCHITECTURES = Registry("architecture", "model.arch", name_families=True)
TASKS = Registry("task", "task")
READERS = Registry("reader", "data prefix")
OBJECTIVES = Registry("objective", "vae.objective")
PENALTIES = Registry("penalty", "penalty")
METRICS = Registry("metric", "metric")


def _merged(table: Registry, name: str, family: str, config: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    """`config`, checked against the keys other entries of the family merge into the same section."""
    for entry in table.entries(family):
        shared = set(entry.config) & set(config)
        if entry.name != name and shared:
            raise ValueError(f"{table.kind} {name!r}: config.{section}.{sorted(shared)[0]} is declared by "
                             f"{table.kind} {entry.name!r} (of {entry.module}) already; name your keys after it")
    return config


def _decorator(register: Callable[..., Entry], name: str, target, **kwargs):
    """`register(name, target, ...)` now, or, with no target, a decorator that registers what it decorates."""
    if target is not None:
        register(name, target, **kwargs)
        return target

    def decorate(obj):
        register(name, obj, **kwargs)
        return obj

    return decorate


def register_architecture(name: str, build: Callable | None = None, *, family: str,
                          config: Mapping[str, Any] | None = None, check: Callable | None = None,
                          replace: bool = False):
    """A model architecture, chosen by `model.arch=name` in runs of tasks whose models are of
    `family`. `build(cfg, spec)` makes it: `cfg` is the run's `config.model.<name>` (holding
    `config`'s keys), `spec` what the task asks for (aelab.models: AutoencoderSpec for the
    "autoencoder" family, SegmenterSpec, Seq2SeqSpec, CodePriorSpec). `check(cfg, example_shape)`
    runs when the config is checked (example_shape None: the data is not read yet) and again
    before the model is built."""
    return _decorator(lambda n, t, **kw: ARCHITECTURES.add(n, t, **kw), name, build, family=family,
                      config=config, check=check, replace=replace)


def register_task(name: str, cls: type | None = None, *, replace: bool = False):
    """A task, chosen by `task=name`: a subclass of aelab.tasks.Task, whose `config_defaults()`
    declares its keys and whose `__init__` checks them."""
    def add(n, t, **kw):
        if not inspect.isclass(t):
            raise TypeError(f"task {n!r}: register a Task subclass, got {type(t).__name__}")
        return TASKS.add(n, t, config=None, **kw)

    return _decorator(add, name, cls, replace=replace)


def register_reader(prefix: str, read: Callable | None = None, *, path: str,
                    config: Mapping[str, Any] | None = None, check: Callable | None = None,
                    replace: bool = False):
    """A data reader for `data.name="prefix:PATH"`: `read(path, data_cfg) -> {"train": Split, "val":
    Split | None, "test": Split | None}` (aelab.data.Split; a missing split is carved from train),
    or `(splits, info)` with counts to report. A split kept in files of its own may be given as
    a function that reads it: a use that needs that split alone then opens no other split's files.
    `path` says what follows the prefix, and the registry checks it before anything runs: "file",
    "folder", "file_or_folder" (must exist), "name" (a data set name, e.g. scenes:mnist), "variant"
    (`prefix` alone or `prefix:VARIANT`), "none" (`prefix` alone, e.g. digits). Its keys live in
    `config.data.<prefix>`."""
    if path not in PATH_KINDS:
        raise ValueError(f"reader {prefix!r}: path={path!r}; accepted: {', '.join(PATH_KINDS)}")
    return _decorator(lambda n, t, **kw: READERS.add(n, t, **kw), prefix, read, path=path, config=config,
                      check=check, replace=replace)


def register_objective(name: str, fn: Callable | None = None, *, family: str = "vae",
                       config: Mapping[str, Any] | None = None, check: Callable | None = None,
                       replace: bool = False):
    """What a VAE minimizes, chosen by `vae.objective=name`: `fn(ctx) -> (loss, metrics)`, where
    `ctx` (aelab.tasks.terms.Context) holds the model, the batch, the step, the named random
    streams and, computed once, the forward pass. Its keys join `config.vae`."""
    config = _merged(OBJECTIVES, name, family, config or {}, "vae")
    return _decorator(lambda n, t, **kw: OBJECTIVES.add(n, t, **kw), name, fn, family=family, config=config,
                      check=check, replace=replace)


def register_penalty(name: str, fn: Callable | None = None, *, family: str = "autoencoder",
                     config: Mapping[str, Any] | None = None, check: Callable | None = None,
                     prior: str | None = None, metric: str | None = None, replace: bool = False):
    """A term added to the loss of the image autoencoders (plain, VAE, VQ-VAE): `fn(ctx)` returns
    per-example values (B,) or one batch-level value, which training weighs by
    `config.penalty.<name>` (declared by the registration, default 0: off) and evaluation reports
    unweighted under `metric` (default: `name`). `config` adds its own keys to `config.penalty`;
    `check(penalty_cfg, config)` runs where the weight is not 0. `prior="standard_normal"`: the
    penalty pulls the codes toward N(0, I), so a run that uses it can `sample` by decoding
    draws from it (a Wasserstein autoencoder)."""
    if prior not in (None, "standard_normal"):
        raise ValueError(f"penalty {name!r}: prior={prior!r}; accepted: None, 'standard_normal'")
    declared = _merged(PENALTIES, name, family, {name: 0.0, **(config or {})}, "penalty")
    return _decorator(lambda n, t, **kw: PENALTIES.add(n, t, **kw), name, fn, family=family, config=declared,
                      check=check, prior=prior, metric=metric, replace=replace)


def register_metric(name: str, fn: Callable | None = None, *, family: str = "autoencoder",
                    level: str = "example", final: bool = False, replace: bool = False):
    """An evaluation metric of every run of `family`, reported on validation and test:
    `level="example"`: `fn(ctx)` gives a value per example (B,), averaged over the split;
    `"batch"`: one value over the batch's real examples (ctx.mask), averaged over batches weighted
    by their examples; `"split"`: `fn(run, split) -> float` once per split, on the host.
    `final=True`: only in the final evaluation (an expensive metric)."""
    if level not in METRIC_LEVELS:
        raise ValueError(f"metric {name!r}: level={level!r}; accepted: {', '.join(METRIC_LEVELS)}")
    return _decorator(lambda n, t, **kw: METRICS.add(n, t, **kw), name, fn, family=family, level=level,
                      final=final, replace=replace)
