"""Every number README publishes comes from a results file: its rows equal experiments/tables.py's."""

import importlib.util
import json

from conftest import REPO


def tables():
    spec = importlib.util.spec_from_file_location("tables", REPO / "experiments" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_result_rows() -> dict[str, list[str]]:
    """{first cell: cells} of README's results table."""
    lines = (REPO / "README.md").read_text().split("## Results", 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("| ")]
    return {cells[0].rstrip(" †"): cells for cells in rows[1:] if not set(cells[0]) <= {"-"}}


def test_readme_result_rows_equal_their_results_files():
    module, rows = tables(), readme_result_rows()
    generated = module.generated()
    assert generated, "no experiment has a results.json"
    for name, (result, baseline) in generated.items():
        assert name in rows, f"README has no result row {name!r}"
        assert rows[name][2] == result and rows[name][3] == baseline, (name, rows[name][2:4], (result, baseline))


def test_every_readme_result_row_has_a_results_file_or_is_marked_pending():
    module, rows = tables(), readme_result_rows()
    generated = set(module.generated())
    for name, cells in rows.items():
        assert name in generated or name in module.PENDING, f"README row {name!r} has no results file"
        assert cells[0].endswith("†") == (name not in generated), f"row {name!r}: † marks exactly the pending rows"


def test_results_files_record_their_provenance():
    for path in (REPO / "experiments").glob("*/results.json"):
        record = json.loads(path.read_text())
        for row in record.get("rows", {}).values():
            assert {"command", "commit", "versions", "machine", "wall_s"} <= set(row), path
            assert len(row["commit"].split("+")[0]) == 40, (path, row["commit"])
