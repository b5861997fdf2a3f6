"""The import structure shows the architecture: import-linter's contracts (pyproject.toml) hold,
and the only imports inside functions are start-up deferrals that say so."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO


def test_the_import_layer_contracts_hold():
    lint = shutil.which("lint-imports", path=os.pathsep.join([os.path.join(sys.prefix, "bin"), os.environ["PATH"]]))
    if lint is None:
        pytest.fail("lint-imports not found: install the test extra (pip install -e '.[test]')")
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_imports_inside_functions_are_start_up_deferrals_with_their_reason():
    deferred = re.compile(r"^\s+(from aelab|import aelab)")
    found = [(path.relative_to(REPO), number, line.strip())
             for path in sorted((REPO / "aelab").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if deferred.match(line)]
    assert found, "aelab defers some imports (the CLI's commands, aelab.load)"
    without_reason = [f"{p}:{n}: {line}" for p, n, line in found if "# start-up:" not in line]
    assert not without_reason, "\n".join(without_reason)
    assert {str(p) for p, _, _ in found} <= {"aelab/main.py", "aelab/__init__.py"}


def test_importing_aelab_stays_light():
    """`import aelab` (what every config file does) loads neither JAX nor the models."""
    code = "import sys, aelab, aelab.configtree; print(sorted(m for m in ('jax', 'aelab.models') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
