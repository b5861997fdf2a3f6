"""The `aelab` command: overrides, and every bad input gives one line, exit 2, and no workdir."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from aelab.main import main
from conftest import REPO

CONFIG = str(REPO / "configs" / "digits_ae.py")
FAST = ["--config.train.num_steps=30", "--config.train.log_every=10", "--config.train.eval_every=10",
        "--config.train.checkpoint_every=10", "--config.train.progress=False",
        "--config.model.mlp.hidden=(16,)"]


def run_main(workdir, *flags, config=CONFIG):
    return main(["aelab", "train", f"--config={config}", f"--workdir={workdir}", *flags])


def test_train_with_overrides_and_config_arg(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert run_main(workdir, *FAST, "--config.seed=3", config=CONFIG + ":latent=3") == 0
    config = json.loads((workdir / "config.json").read_text())
    assert config["seed"] == 3 and config["model"]["latent_dim"] == 3
    assert config["model"]["mlp"]["hidden"] == [16] and config["train"]["num_steps"] == 30
    out = capsys.readouterr().out
    assert "eval recon_sse" in out and "PCA-3" in out


@pytest.mark.parametrize("flags,message", [
    (["--config.model.latent_dimx=3"], "unknown config key --config.model.latent_dimx; did you mean model.latent_dim?"),
    (["--config.train.num_steps=ten"], "--config.train.num_steps=ten: invalid literal for int()"),
    (["--config.model.latent_dim=0"], "model.latent_dim=0 must be > 0"),
    (["--config.model.latent_dim=-4"], "model.latent_dim=-4 must be > 0"),
    (["--config.model.arch=transformer"], "unknown model.arch 'transformer' for task autoencoder (autoencoder models); known: conv, mlp, resnet"),
    (["--config.loss=huber"], "unknown loss 'huber'; known: bce, dlogistic, l1, mse"),
    (["--config.model.mlp.activation=swishy"], "unknown model.mlp.activation 'swishy'"),
    (["--config.optimizer.name=lion"], "unknown optimizer.name 'lion'; known: adam, adamw, sgd"),
    (["--config.data.name=idx:/no/such/dir"], "idx:/no/such/dir: no such directory"),
    (["--config.data.name=npz:/no/such/file.npz"], "npz:/no/such/file.npz: no such file"),
    (["--config.data.name=not_a_dataset_xyz"], "unknown data name 'not_a_dataset_xyz'"),
    (["--config.train.batch_size=5000"], "train.batch_size=5000 is larger than the training split (1294"),
    (["--config.seed.x=1"], "config.seed is a value, not a group"),
    (["--bogus=1"], "Unknown command line flag 'bogus'"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, flags, message):
    workdir = tmp_path / "run"
    assert run_main(workdir, *FAST, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aelab: error: ") and message in err
    assert len(err.splitlines()) == 1
    assert not workdir.exists()


def test_missing_flags_and_subcommand(tmp_path, capsys):
    assert main(["aelab", "train", f"--workdir={tmp_path}/w"]) == 2
    assert "--config is required" in capsys.readouterr().err
    assert main(["aelab", "train", f"--config={CONFIG}"]) == 2
    assert "--workdir is required" in capsys.readouterr().err
    assert main(["aelab", "fly", f"--config={CONFIG}", f"--workdir={tmp_path}/w"]) == 2
    assert "subcommand 'fly' not understood; accepted: train" in capsys.readouterr().err
    assert main(["aelab", "train", "--config=/no/such/config.py", f"--workdir={tmp_path}/w"]) == 2
    assert "cannot load --config" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_console_script_exit_code(tmp_path):
    """The installed entry point really exits 2 (not 1, not a traceback)."""
    result = subprocess.run(
        [sys.executable, "-m", "aelab.main", "train", f"--config={CONFIG}",
         f"--workdir={tmp_path}/w", "--config.model.latent_dim=0"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 2
    assert result.stderr.strip() == "aelab: error: model.latent_dim=0 must be > 0"
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("body,message", [
    ("def get_config(arg=None):\n    return 1 / 0\n", "cannot load --config: ZeroDivisionError: division by zero"),
    ("def get_config(arg=None):\n    return 1\n", "get_config returned int; expected a ConfigDict"),
])
def test_broken_config_files(tmp_path, capsys, body, message):
    path = tmp_path / "broken.py"
    path.write_text(body)
    assert main(["aelab", "train", f"--config={path}", f"--workdir={tmp_path}/w"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_sigterm_checkpoints_and_the_rerun_resumes(tmp_path):
    """SIGTERM: finish the step, checkpoint, exit 0 with a message; the same command resumes."""
    import signal
    import time

    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "aelab.main", "train", f"--config={CONFIG}",
               f"--workdir={workdir}", "--config.train.num_steps=1000000",
               "--config.train.log_every=20", "--config.train.checkpoint_every=1000000",
               "--config.train.eval_every=1000000", "--config.train.progress=False"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert time.time() < deadline and process.poll() is None, "training did not start"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "got SIGTERM" in err and "Rerun the same command to resume" in err
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert len(saved) == 1 and saved[0] >= 40
    assert not (workdir / "summary.json").exists()


def test_sample_writes_prior_samples_and_interpolations(tmp_path, capsys):
    workdir = tmp_path / "vae"
    vae = str(REPO / "configs" / "digits_vae.py")
    assert main(["aelab", "train", f"--config={vae}", f"--workdir={workdir}", *FAST,
                 "--config.vae.iw_samples=10", "--config.vae.iw_chunk=10"]) == 0
    figures = {p.name: p.read_bytes() for p in (workdir / "figures").iterdir()}
    assert main(["aelab", "sample", f"--workdir={workdir}", "--num_samples=16", "--seed=3"]) == 0
    assert (workdir / "uses" / "samples.png").exists()
    assert (workdir / "uses" / "interpolation.png").exists()
    assert {p.name: p.read_bytes() for p in (workdir / "figures").iterdir()} == figures  # the run's own
    assert "wrote" in capsys.readouterr().out


def test_sample_refuses_models_without_a_prior_and_missing_workdirs(tmp_path, capsys):
    workdir = tmp_path / "ae"
    assert run_main(workdir, *FAST) == 0
    assert main(["aelab", "sample", f"--workdir={workdir}"]) == 2
    assert "which has no prior to sample; train a VAE (task=vae)" in capsys.readouterr().err
    assert main(["aelab", "sample", f"--workdir={tmp_path}/nothing"]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_bench_prints_one_json_line_of_positive_figures(capsys):
    assert main(["aelab", "bench", "--workload=mlp_vae", "--json", "--min_seconds=0.2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["workload"] == "mlp_vae" and result["batch_size"] == 128
    for key in ("train_examples_per_s", "train_one_step_per_dispatch_examples_per_s", "eval_examples_per_s",
                "eval_all_metrics_examples_per_s", "compile_s", "train_step_gflop",
                "matmul_peak_gflops_per_s", "peak_fraction"):
        assert result[key] > 0, key
    assert result["steps_per_dispatch"] == 10  # the trainer's default for an MLP
    # The trainer's rule: YNNPACK matmuls (XLA's default, no options) in a dense model's train step
    # only, on CPU; other backends get XLA's defaults everywhere.
    from aelab.compiler import CompilePolicy
    assert result["compiler_options"] == {"train": None, "eval": CompilePolicy.for_config().options("evaluate")}
    assert (result["compiler_options"]["eval"] is None) == (jax.default_backend() != "cpu")
    # The step's FLOPs are the VAE's: 3 passes over 784-512-256-40 and 20-256-512-784 per example.
    macs = 784 * 512 + 512 * 256 + 256 * 40 + 20 * 256 + 256 * 512 + 512 * 784
    assert 0.8 < result["train_step_gflop"] / (3 * 2 * macs * 128 / 1e9) < 1.5
    assert main(["aelab", "bench", "--workload=resnet"]) == 2
    assert capsys.readouterr().err.strip() == (
        "aelab: error: unknown --workload 'resnet'; known: conv_ae, mlp_ae, mlp_vae, resnet_vae, transformer_mt")


@pytest.mark.parametrize("workload,parameters", [("resnet_vae", 2_544_387), ("transformer_mt", 6_763_424)])
def test_the_new_bench_workloads_are_the_references_models_and_train(workload, parameters):
    """W4 and W5 of ../shared/bench/torch_ref.py: the same parameter count as the PyTorch
    models (counted there), and one compiled train step on the workload's synthetic batch."""
    from flax import nnx

    from aelab import bench, steps

    config, task, policy, graphdef, state = bench.workload_state(workload)
    model = nnx.merge(graphdef, state)[0]
    assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == parameters
    batch = {k: v[:config.train.batch_size] for k, v in bench.synthetic_data(workload, 64, 0).items()}
    _, metrics = steps.make_train_step(graphdef, task, policy)(state, batch, jax.random.key(0))
    assert np.isfinite(float(metrics["loss"]))


def test_help_lists_the_commands(capsys):
    from aelab.main import COMMANDS

    for argv in (["aelab", "--help"], ["aelab", "-h"], ["aelab", "help"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert all(f"  {name} " in out for name in COMMANDS)
    assert main(["aelab"]) == 2  # no command: the overview on stderr
    assert "commands:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "config", "sweep", "report", "sample", "embed", "probe", "denoise",
                                     "anomaly", "disentangle", "predict", "translate", "caption", "convert",
                                     "bench"])
def test_every_command_has_help_with_only_its_own_flags(command, capsys):
    from aelab.main import COMMANDS, _flags_of

    assert main(["aelab", command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: aelab {command} ")
    own = _flags_of(COMMANDS[command])
    assert own or COMMANDS[command].config
    for name in own:
        assert f"  --{name}: " in out
    listed = {line.split(":")[0].strip() for line in out.splitlines() if line.startswith("  --")}
    assert listed == {f"--{name}" for name in own} | ({"--config", "--config.KEY=VALUE"} if COMMANDS[command].config
                                                      else set())
    # A flag of another command is refused by this one.
    foreign = "--num_samples=3" if command != "sample" else "--beam_size=2"
    assert main(["aelab", command, foreign, "--workdir=/nonexistent", "--config=x.py"]) == 2
    assert "Unknown command line flag" in capsys.readouterr().err


def test_config_prints_the_resolved_config_and_refuses_bad_ones(tmp_path, capsys):
    assert main(["aelab", "config", f"--config={CONFIG}:latent=3", "--config.train.num_steps=7"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["latent_dim"] == 3 and printed["train"]["num_steps"] == 7
    assert "text" not in printed and "segmentation" not in printed  # only what an autoencoder reads
    mt = str(REPO / "configs" / "mt_spa_eng_transformer.py")
    assert main(["aelab", "config", f"--config={mt}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "translation" and "penalty" not in printed and "mlp" not in printed["model"]
    assert main(["aelab", "config", f"--config={CONFIG}", "--config.model.latent_dim=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "aelab: error: model.latent_dim=0 must be > 0"
    assert not list(tmp_path.iterdir())  # nothing written anywhere
