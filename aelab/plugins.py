"""Plugin modules: the user's own code that registers models, objectives, readers, tasks and
metrics (aelab.register_*), named in `config.imports` and imported by every command that opens
the run.

A plugin is an importable module name, resolved in the user's environment (installed packages,
PYTHONPATH and, as for `python -m`, the working directory): never a path, and never a file inside
the workdir a command reads, which is data, not code.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from typing import Sequence

from aelab.errors import UsageError

MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def check_names(modules: Sequence[str], named_by: str) -> None:
    """Refuses (UsageError) anything that is not a dotted module name (a path, say)."""
    if isinstance(modules, str):
        raise UsageError(f"{named_by}={modules!r} must be a tuple of module names, e.g. ({modules!r},)")
    for name in modules:
        if not isinstance(name, str) or not MODULE.match(name):
            raise UsageError(f"{named_by} names {name!r}, which is not a module name; plugins are importable "
                             "module names (mypackage.vit), never file paths")


def import_modules(modules: Sequence[str], named_by: str, workdir: str | None = None,
                   announce: bool = False) -> None:
    """Imports each plugin module of `modules` (named by `named_by`, for messages); one UsageError
    names the module that fails. With `workdir`, a module whose file lies inside it is refused.
    `announce`: says on stderr which modules are imported (the uses of a run do)."""
    check_names(modules, named_by)
    todo = [name for name in modules if name not in sys.modules]
    if not todo:
        return
    if announce:
        print(f"aelab: importing plugin modules {', '.join(todo)} (named by {named_by})", file=sys.stderr)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)  # as `python -m` has it: the user's own modules beside them
    for name in todo:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError) as e:
            spec, error = None, e
        else:
            error = None
        if spec is None:
            reason = f"{type(error).__name__}: {error}" if error else f"no module named {name!r}"
            raise UsageError(f"cannot import plugin module {name!r} (named by {named_by}): {reason}; install the "
                             "package that provides it, or run from the folder that holds it")
        if workdir is not None and spec.origin and _inside(spec.origin, workdir):
            raise UsageError(f"plugin module {name!r} (named by {named_by}) is {spec.origin}, inside the workdir "
                             f"{workdir}: a workdir is data, never code; install the plugin elsewhere")
        try:
            importlib.import_module(name)
        except UsageError as e:
            raise UsageError(f"plugin module {name!r} (named by {named_by}): {e}") from None
        except Exception as e:  # the plugin's own code failed
            message = f"{type(e).__name__}: {e}".splitlines()[0]
            raise UsageError(f"cannot import plugin module {name!r} (named by {named_by}): {message}") from None


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder
