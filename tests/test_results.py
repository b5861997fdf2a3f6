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


def test_the_commit_is_marked_changed_by_code_not_by_results(tmp_path):
    """An experiment's results.json and figures are its outputs: writing them leaves the commit
    clean, so the next experiment run from the same tree records the bare commit."""
    import subprocess

    from aelab import provenance

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("aelab/x.py", "experiments/a/results.json", "experiments/a/fig.png", "experiments/a/run.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("0\n")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x", "--allow-empty")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "files")
    (tmp_path / "experiments/a/results.json").write_text("1\n")
    (tmp_path / "experiments/a/fig.png").write_text("1\n")
    assert "+" not in provenance.commit(str(tmp_path))
    (tmp_path / "experiments/a/run.py").write_text("1\n")
    assert provenance.commit(str(tmp_path)).endswith("+changes")


def test_experiment_config_applies_data_seed_steps_and_both_kinds_of_override():
    from aelab import provenance

    config = provenance.experiment_config(
        "cifar10_vae.py", "width=16", data="images:elsewhere", seed=3, steps=7,
        overrides=["optimizer.learning_rate=0.01"], values={"model.arch": "conv", "model.conv.strides": (2, 2, 2)})
    assert config.model.resnet.channels == (16, 32, 64)  # the config's own argument
    assert (config.data.name, config.seed, config.train.num_steps) == ("images:elsewhere", 3, 7)
    assert config.optimizer.learning_rate == 0.01 and not config.train.progress
    assert config.model.arch == "conv" and tuple(config.model.conv.strides) == (2, 2, 2)
    untouched = provenance.experiment_config("cifar10_vae.py")
    assert untouched.train.num_steps == 50000 and untouched.data.name == "images:../shared/data/cifar10"
