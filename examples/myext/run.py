"""The example plugin's own figures, from a copy of this folder outside the repository (as a
researcher runs their package): the patch encoder and the WAE-MMD autoencoder trained at their
configs' default steps, each beside PCA with the same code size.

    python examples/myext/run.py [--workdir=/tmp/myext_runs]

Writes examples/myext/results.json: the test (and validation) figures of each run, the
command, the commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUNS = {"patch": "configs/patch_digits.py", "wae": "configs/wae_digits.py"}


def cpu() -> str:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                    platform.processor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/myext_runs")
    args = parser.parse_args()
    home = pathlib.Path(args.workdir) / "myext"
    shutil.rmtree(home.parent, ignore_errors=True)
    shutil.copytree(HERE, home, ignore=shutil.ignore_patterns("runs", "npy_digits", "results.json", "run.py"))
    aelab = os.path.join(os.path.dirname(sys.executable), "aelab")
    results = {}
    for name, config in RUNS.items():
        began = time.time()
        subprocess.run([aelab, "train", f"--config={config}", f"--workdir=runs/{name}",
                        "--config.train.progress=False"], cwd=home, check=True)
        summary = json.loads((home / "runs" / name / "summary.json").read_text())
        results[name] = {"config": f"examples/myext/{config}", "steps": summary["step"],
                         "test": summary["eval"], "val": summary["val"], "baselines": summary["baselines"],
                         "wall_s": round(time.time() - began, 1)}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    record = {"command": " ".join(["python", "examples/myext/run.py", *sys.argv[1:]]), "commit": commit,
              "machine": f"{cpu()}, {os.cpu_count()} cores", "runs": results}
    (HERE / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name}: test recon_sse {r['test']['recon_sse']:.4f} (val {r['val']['recon_sse']:.4f}), "
              f"PCA {r['baselines']['pca']['recon_sse']:.4f}, {r['wall_s']} s")


if __name__ == "__main__":
    main()
