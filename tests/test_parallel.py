"""Data parallel on 4 CPU devices (XLA_FLAGS set before jax is imported, in a subprocess), and
mixed precision.

The 4-device checks run in one child process (tests/parallel_child.py): the loss after N steps on
a 4-device mesh matches one device to float tolerance, checkpoints move between 1 and 4 devices
both ways, and the state stays replicated.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aelab.errors import UsageError
from aelab.train import train_and_evaluate
from conftest import REPO, tiny_config


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """The child's report (JSON) after its runs on 1 and 4 devices."""
    out = tmp_path_factory.mktemp("parallel")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(REPO / "tests" / "parallel_child.py"), str(out)],
                          env=env, capture_output=True, text=True, cwd=REPO / "tests")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_four_devices_train_like_one(four_devices):
    r = four_devices
    assert r["device_count"] == 4 and r["mesh_sizes"] == [1, 4]
    np.testing.assert_allclose(r["losses"]["4"], r["losses"]["1"], rtol=2e-4)
    assert r["max_param_difference"] < 1e-4
    assert r["state_fully_replicated"] and r["batch_sharded_on_data"]


@pytest.mark.slow
def test_checkpoints_move_between_one_and_four_devices(four_devices):
    r = four_devices
    # Trained 1 -> resumed on 4, and 4 -> resumed on 1: both end where the 1-device run ends.
    assert r["resumed_1_to_4_difference"] < 1e-4
    assert r["resumed_4_to_1_difference"] < 1e-4
    assert r["restored_on_4_devices"] == 4 and r["restored_on_1_device"] == 1


def test_batch_not_divisible_by_devices_is_one_line_error(four_devices):
    assert four_devices["indivisible_error"] == (
        "train.batch_size=30 is not divisible by the 4 devices of the data axis (mesh.data=-1); "
        "use a multiple of 4")
    assert four_devices["too_many_devices_error"].startswith("mesh.data=8: this machine has 4 device(s)")


def test_mesh_larger_than_the_machine_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"mesh.data=2: this machine has 1 device"):
        train_and_evaluate(tiny_config(**{"mesh.data": 2}), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_bfloat16_compute_stays_close_to_float32(tmp_path):
    full = train_and_evaluate(tiny_config(), str(tmp_path / "f32"))
    mixed = train_and_evaluate(tiny_config(**{"train.compute_dtype": "bfloat16"}), str(tmp_path / "bf16"))
    assert mixed["eval"]["loss"] == pytest.approx(full["eval"]["loss"], rel=0.02)
    assert mixed["eval"]["loss"] != full["eval"]["loss"]  # it really computed in bfloat16
    from aelab import checkpoint

    _, state = checkpoint.read_state(str(tmp_path / "bf16"))
    import jax

    assert {str(x.dtype) for x in jax.tree.leaves(state) if x.dtype.kind == "f"} == {"float32"}
