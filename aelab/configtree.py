"""Nested config trees (ml-collections ConfigDicts and plain dicts): merge, walk, look up, set,
and cast text to a key's type. No aelab imports beyond errors: every layer may use it.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Iterator

import ml_collections

from aelab.errors import UsageError, choose


def merge(config: ml_collections.ConfigDict, defaults: dict) -> None:
    """Adds `defaults` (a nested dict) to `config`, replacing values it already holds."""
    for key, value in defaults.items():
        if isinstance(value, dict):
            if key not in config or not isinstance(config[key], ml_collections.ConfigDict):
                config[key] = ml_collections.ConfigDict()
            merge(config[key], value)
        else:
            config[key] = value


def flatten(tree: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """('a.b.c', value) for every leaf of a nested dict."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


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


def get_path(tree, key: str, default=None):
    """The value at dotted `key` of a nested dict or ConfigDict, or `default` where it has none."""
    node = tree
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return default
        node = node[part]
    return node


def set_value(config: ml_collections.ConfigDict, key: str, value) -> None:
    """Sets the dotted `key` (e.g. "model.latent_dim") of `config`, type-checked by ml-collections."""
    *groups, leaf = key.split(".")
    node = config
    for group in groups:
        node = node[group]
    node[leaf] = value


def closest(key: str, known: Iterable[str], count: int = 3) -> list[str]:
    """The known dotted keys most like `key`: those with its last part first (a key that moved
    into a group), then the nearest spellings."""
    known = sorted(set(known))
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf and k != key]
    spelled = difflib.get_close_matches(key, known, n=count, cutoff=0.8)
    return list(dict.fromkeys(same_leaf + spelled))[:count]


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


def positive(key: str, value) -> None:
    """Raises a UsageError unless `value` > 0."""
    if value <= 0:
        raise UsageError(f"{key}={value} must be > 0")
