"""examples/myext, copied to a folder outside the repository and run from there as a researcher runs
their own package: an architecture, a penalty, a metric and a reader registered by a plugin
that aelab never names, trained, swept, used and loaded in fresh processes."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from test_fault_injection import environment


@pytest.mark.slow
def test_the_example_plugin_package_end_to_end_from_outside_the_repository(tmp_path):
    assert not [path for path in (REPO / "aelab").rglob("*.py") if "myext" in path.read_text()]
    home = tmp_path / "myext"
    shutil.copytree(REPO / "examples" / "myext", home, ignore=shutil.ignore_patterns("runs", "npy_digits"))
    env = environment(tmp_path)
    aelab = shutil.which("aelab", path=os.pathsep.join([os.path.join(sys.prefix, "bin"), os.environ["PATH"]]))
    assert aelab, "the aelab command is not installed (pip install -e .)"

    def run(*args):
        done = subprocess.run(list(args), cwd=home, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    quiet = "--config.train.progress=False"
    run(sys.executable, "make_npydir.py", "npy_digits")
    run(aelab, "train", "--config=configs/patch_digits.py:steps=300", "--workdir=runs/patch", quiet)
    summary = json.loads((home / "runs" / "patch" / "summary.json").read_text())
    assert summary["eval"]["recon_sse"] < summary["baselines"]["pca"]["recon_sse"]  # the patch encoder beats PCA
    run(aelab, "sweep", "--config=configs/patch_digits.py:steps=100", "--workdir=runs/arch",
        "--sweep=model.arch=mlp,patch", quiet)
    report = (home / "runs" / "arch" / "report.md").read_text()
    assert "| mlp | done |" in report and "| patch | done |" in report
    probed = run(aelab, "probe", "--workdir=runs/patch")
    assert "importing plugin modules myext.patch" in probed.stderr
    assert json.loads((home / "runs" / "patch" / "uses" / "representation.json").read_text())["codes"]
    run(aelab, "embed", "--workdir=runs/patch", "--out=codes.npz")
    assert np.load(home / "codes.npz")["codes"].shape[1] == 8
    run(aelab, "train", "--config=configs/wae_digits.py:steps=150", "--workdir=runs/wae", quiet)
    wae = json.loads((home / "runs" / "wae" / "summary.json").read_text())["eval"]
    assert {"mmd_multiscale", "code_moment_gap"} <= set(wae)  # the plugin's penalty and batch-level metric
    run(aelab, "sample", "--workdir=runs/wae", "--num_samples=16")
    assert (home / "runs" / "wae" / "uses" / "samples.png").exists()
    run(aelab, "train", "--config=configs/npy_digits.py:steps=100", "--workdir=runs/npy", quiet)
    npy = json.loads((home / "runs" / "npy" / "summary.json").read_text())
    assert npy["data"]["name"] == "npydir:npy_digits" and npy["data"]["num_test"] == 360  # its own test folder
    run(aelab, "embed", "--workdir=runs/npy", "--out=npy_codes.npz")  # the reader is registered again
    assert len(np.load(home / "npy_codes.npz")["codes"]) == 360
    tuned = run(aelab, "train", "--config=configs/finetune.py:run=runs/patch,steps=100", "--workdir=runs/finetune",
                quiet)
    assert "0 new, 0 mismatched" in tuned.stderr
    loaded = run(sys.executable, "-c", "import aelab, numpy as np; run = aelab.load('runs/patch'); "
                                       "print(run.encode(np.zeros((2, 8, 8, 1), np.float32)).shape)")
    assert loaded.stdout.strip() == "(2, 8)"
