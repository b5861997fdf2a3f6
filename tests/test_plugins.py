"""A research codebase you extend without forking: plugins named in config.imports, one registration
API, strict configs, and workdirs of earlier versions that still load."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aelab
from aelab import config as config_lib, data, registry, restore, train
from aelab.errors import UsageError
from aelab.main import main
from conftest import REPO, tiny_config

FAST = ["--config.train.num_steps=20", "--config.train.log_every=10", "--config.train.eval_every=10",
        "--config.train.checkpoint_every=10", "--config.train.progress=False"]


@pytest.fixture
def registries():
    """Entries a test registers are removed afterwards (the registries are the process's)."""
    before = {name: list(r) for name, r in vars(registry).items() if isinstance(r, registry.Registry)}
    yield registry
    for name, entries in before.items():
        table = getattr(registry, name)
        for entry in list(table):
            if entry not in entries:
                table.remove(entry.name, entry.family)


def write_config(path, body: str) -> str:
    path.write_text(textwrap.dedent(body))
    return str(path)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("aelab: error: "), err
    return err


# --- strict configs -----------------------------------------------------------------------------

@pytest.mark.parametrize("line,key,hint", [
    ("config.train.num_stepz = 10", "config.train.num_stepz", "did you mean train.num_steps?"),
    ("config.model.patch_size = 4", "config.model.patch_size", ""),
    ("config.model.hidden = (16,)", "config.model.hidden", "did you mean model.mlp.hidden?"),
    ("config.model.vit = {'patch_size': 4}", "config.model.vit.patch_size", "no architecture 'vit' is registered"),
])
def test_a_key_nothing_declares_in_a_config_file_is_one_line_naming_it_and_the_file(tmp_path, capsys, line, key,
                                                                                     hint):
    path = write_config(tmp_path / "misspelt.py", f"""
        from aelab.config import preset

        def get_config(arg=None):
            config = preset("digits")
            {line}
            return config
        """)
    assert main(["aelab", "train", f"--config={path}", f"--workdir={tmp_path / 'w'}", *FAST]) == 2
    err = one_error_line(capsys)
    assert f"{path} sets {key}, which nothing declares" in err and hint in err
    assert not (tmp_path / "w").exists()
    assert main(["aelab", "config", f"--config={path}"]) == 2  # `aelab config` refuses it too
    assert key in one_error_line(capsys)


def test_the_library_path_is_strict_too(tmp_path):
    config = tiny_config()
    config.train.num_stepz = 10
    with pytest.raises(UsageError, match="the config sets config.train.num_stepz, which nothing declares"):
        train.train_and_evaluate(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("flag,message", [
    ("--config.model.mlp.hiden=(8,)", "unknown config key --config.model.mlp.hiden; did you mean model.mlp.hidden?"),
    ("--config.model.conv.channels=(4,8)", "--config.model.conv.channels is not read by this run (task "
                                           "autoencoder, model.arch mlp)"),
    ("--config.imports=('../evil.py',)", "names '../evil.py', which is not a module name"),
])
def test_bad_overrides_are_one_line(tmp_path, capsys, flag, message):
    config = str(REPO / "configs" / "digits_ae.py")
    assert main(["aelab", "train", f"--config={config}", f"--workdir={tmp_path / 'w'}", *FAST, flag]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "w").exists()


def test_an_override_may_switch_the_architecture_and_set_its_keys(tmp_path, capsys):
    config = str(REPO / "configs" / "digits_ae.py")
    assert main(["aelab", "config", f"--config={config}", "--config.model.arch=conv",
                 "--config.model.conv.channels=(4,8)"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["conv"]["channels"] == [4, 8] and "mlp" not in printed["model"]


def test_get_config_runs_once_per_launch_and_imports_modules_beside_it(tmp_path, capsys):
    (tmp_path / "shared_sizes.py").write_text("LATENT = 3\n")
    counter = tmp_path / "calls"
    path = write_config(tmp_path / "counted.py", f"""
        import pathlib

        from aelab.config import preset
        from shared_sizes import LATENT  # a module beside the config file

        def get_config(arg=None):
            calls = pathlib.Path({str(counter)!r})
            calls.write_text(str(int(calls.read_text() or 0) + 1) if calls.exists() else "1")
            config = preset("digits")
            config.model.latent_dim = LATENT
            return config
        """)
    assert main(["aelab", "config", f"--config={path}", "--config.seed=4", "--config.train.num_steps=9"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert counter.read_text() == "1"
    assert (printed["model"]["latent_dim"], printed["seed"], printed["train"]["num_steps"]) == (3, 4, 9)


# --- plugins ---------------------------------------------------------------------------------------

TINY_ARCH = '''
"""A test plugin: a one-layer architecture whose check needs the images' side to be even."""
import math

from flax import nnx

import aelab
from aelab.errors import UsageError


class Flat(nnx.Module):
    def __init__(self, n_in, n_out, shape=None, *, rngs):
        self.layer, self.shape = nnx.Linear(n_in, n_out, rngs=rngs), shape

    def __call__(self, x):
        y = self.layer(x.reshape(x.shape[0], -1))
        return y if self.shape is None else y.reshape(y.shape[0], *self.shape)


def check(cfg, example_shape):
    if cfg.width < 1:
        raise UsageError(f"model.tiny.width={cfg.width} must be >= 1")
    if example_shape is not None and example_shape[0] % cfg.side_multiple:
        raise UsageError(f"model.tiny.side_multiple={cfg.side_multiple} does not divide {example_shape[0]}")


@aelab.register_architecture("tiny", family="autoencoder", config={"width": 16, "side_multiple": 2}, check=check)
def build(cfg, spec):
    return (Flat(math.prod(spec.example_shape), spec.code_size, rngs=spec.rngs),
            Flat(spec.latent_dim, math.prod(spec.output_shape), spec.output_shape, rngs=spec.rngs))
'''

TINY_CONFIG = '''
from aelab.config import preset

def get_config(arg=None):
    config = preset("digits", imports=("tinyarch",))
    config.model.arch = "tiny"
    config.model.tiny.width = 8
    return config
'''


def aelab_command(*args, cwd):
    return subprocess.run([sys.executable, "-m", "aelab.main", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.mark.slow
def test_a_plugin_architecture_trains_and_every_later_command_imports_it_again(tmp_path):
    (tmp_path / "tinyarch.py").write_text(TINY_ARCH)
    (tmp_path / "tiny_digits.py").write_text(TINY_CONFIG)
    trained = aelab_command("train", "--config=tiny_digits.py", "--workdir=runs/tiny", *FAST, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    saved = json.loads((tmp_path / "runs" / "tiny" / "config.json").read_text())
    assert saved["imports"] == ["tinyarch"] and saved["model"]["tiny"] == {"width": 8, "side_multiple": 2}
    assert "mlp" not in saved["model"]  # another architecture's keys stay out of the run
    # A fresh process, from the folder that holds the plugin: it is imported again, and says so.
    embedded = aelab_command("embed", "--workdir=runs/tiny", "--out=codes.npz", cwd=tmp_path)
    assert embedded.returncode == 0, embedded.stderr
    assert "importing plugin modules tinyarch (named by runs/tiny/config.json)" in embedded.stderr
    assert np.load(tmp_path / "codes.npz")["codes"].shape[1] == 8
    # From elsewhere the plugin is not importable: one line naming it and the run, exit 2.
    elsewhere = aelab_command("embed", f"--workdir={tmp_path / 'runs' / 'tiny'}", "--out=c.npz", cwd=REPO)
    assert elsewhere.returncode == 2
    assert "cannot import plugin module 'tinyarch'" in elsewhere.stderr and "config.json" in elsewhere.stderr
    # The architecture's check sees the example shape: 8x8 digits, a multiple of 3 refused before writing.
    odd = aelab_command("train", "--config=tiny_digits.py", "--workdir=runs/odd", "--config.model.tiny.side_multiple=3",
                        *FAST, cwd=tmp_path)
    assert odd.returncode == 2 and "model.tiny.side_multiple=3 does not divide 8" in odd.stderr
    assert not (tmp_path / "runs" / "odd").exists()


def test_a_plugin_that_fails_to_import_is_one_line_naming_it_and_the_config(tmp_path, capsys):
    path = write_config(tmp_path / "missing.py", """
        from aelab.config import preset

        def get_config(arg=None):
            config = preset("digits")
            config.imports = ("no_such_plugin_xyz",)
            return config
        """)
    assert main(["aelab", "train", f"--config={path}", f"--workdir={tmp_path / 'w'}", *FAST]) == 2
    err = one_error_line(capsys)
    assert f"cannot import plugin module 'no_such_plugin_xyz' (named by config.imports of {path})" in err
    assert not (tmp_path / "w").exists()


def test_a_plugin_module_inside_the_workdir_is_never_imported(tmp_path, capsys, monkeypatch):
    """A workdir is data: a config.json naming a module that lies in the workdir does not run it."""
    workdir = tmp_path / "run"
    train.train_and_evaluate(tiny_config(), str(workdir))
    saved = json.loads((workdir / "config.json").read_text())
    (workdir / "config.json").write_text(json.dumps({**saved, "imports": ["planted"]}))
    marker = tmp_path / "planted_ran"
    (workdir / "planted.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(workdir)  # where the working directory would make it importable
    assert main(["aelab", "embed", f"--workdir={workdir}", f"--out={tmp_path / 'c.npz'}"]) == 2
    assert "is " + str(workdir / "planted.py") + ", inside the workdir" in capsys.readouterr().err
    assert not marker.exists() and "planted" not in sys.modules


def test_registering_twice_is_refused_unless_replaced(registries):
    def build(cfg, spec):
        raise AssertionError

    aelab.register_architecture("twice", build, family="autoencoder")
    with pytest.raises(ValueError, match="architecture 'twice' for autoencoder models is registered already"):
        aelab.register_architecture("twice", lambda cfg, spec: None, family="autoencoder")
    aelab.register_architecture("twice", build, family="autoencoder", replace=True)
    with pytest.raises(ValueError, match="must be an identifier"):
        aelab.register_reader("no-dash", lambda path, cfg: {}, path="file")
    with pytest.raises(ValueError, match="default None"):
        aelab.register_penalty("unset", lambda ctx: 0.0, config={"scale": None})
    with pytest.raises(ValueError, match="config.penalty.rho is declared by penalty 'kl_sparsity'"):
        aelab.register_penalty("clash", lambda ctx: 0.0, config={"rho": 0.1})


def test_help_lists_what_a_config_can_choose_with_each_ones_keys(tmp_path, capsys):
    assert main(["aelab", "train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "mlp (hidden=(256, 128), activation='relu')" in text and "infovae (info_alpha=0.0" in text
    assert "kl_sparsity (rho=0.05)" in text and "npz" in text


# --- objectives, penalties and metrics as registered functions ---------------------------------

def test_a_registered_objective_trains_a_vae(tmp_path, registries):
    @aelab.register_objective("half_kl", config={"kl_weight": 0.5})
    def half_kl(ctx):
        f = ctx.forward
        return f.recon.mean() + ctx.config.vae.kl_weight * f.kl.mean(), {"kl": f.kl.mean()}

    summary = train.train_and_evaluate(tiny_config(**{"task": "vae", "vae.objective": "half_kl",
                                                      "vae.iw_samples": 5, "vae.iw_chunk": 5}), str(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["vae"]["kl_weight"] == 0.5 and np.isfinite(summary["eval"]["neg_elbo"])
    with pytest.raises(UsageError, match="unknown vae.objective 'nope'; known: elbo, half_kl, infovae, iwae"):
        train.check_config(tiny_config(**{"task": "vae", "vae.objective": "nope"}))


def test_a_batch_level_metric_is_the_batches_mean_weighted_by_their_real_examples(tmp_path, registries):
    """eval_batch_size 300 over the carved 360 test digits: a full batch and a padded one of 60."""
    @aelab.register_metric("mean_pixel", level="batch")
    def mean_pixel(ctx):
        return ctx.batch_mean(ctx.x.mean(axis=(1, 2, 3)))

    summary = train.train_and_evaluate(tiny_config(**{"train.eval_batch_size": 300}), str(tmp_path))
    test = data.load(config_lib.resolve(tiny_config()).data).test
    assert summary["data"]["num_test"] % 300
    np.testing.assert_allclose(summary["eval"]["mean_pixel"], np.asarray(test.images).mean(), rtol=1e-5)


@pytest.mark.slow
def test_the_mmd_penalty_makes_a_wasserstein_autoencoder_that_samples(tmp_path, capsys):
    workdir = tmp_path / "wae"
    config = str(REPO / "configs" / "digits_ae.py")
    assert main(["aelab", "train", f"--config={config}", f"--workdir={workdir}", "--config.penalty.mmd=10.0",
                 "--config.train.num_steps=300", "--config.train.progress=False"]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert 0 <= summary["eval"]["mmd"] < 0.2  # reported unweighted, batch-level
    assert main(["aelab", "sample", f"--workdir={workdir}", "--num_samples=16"]) == 0
    run = restore.load(str(workdir))
    assert run.can("sample") and run.sample(4).shape == (4, 8, 8, 1)
    plain = tmp_path / "plain"
    train.train_and_evaluate(tiny_config(), str(plain))
    assert not restore.load(str(plain)).can("sample")


# --- workdirs of earlier versions -------------------------------------------------------------

def flat_model_keys(saved: dict) -> dict:
    """A config.json as versions before architecture sections wrote it: every architecture's keys
    flat in config.model, no imports, init_from, trainable or mmd penalty."""
    old = json.loads(json.dumps(saved))
    model = old["model"]
    model.update(model.pop("mlp"))
    model.update({"channels": [32, 64], "strides": [2, 2], "kernel_size": 3, "upsample": "transpose",
                  "blocks": 1, "groups": 8})
    del old["imports"], old["train"]["init_from"], old["train"]["trainable"], old["penalty"]["mmd"]
    return old


def test_a_workdir_with_flat_model_keys_still_loads_and_resumes(tmp_path):
    workdir = tmp_path / "old"
    train.train_and_evaluate(tiny_config(), str(workdir), should_stop=lambda step: step == 20)
    before = restore.load(str(workdir))
    images = np.asarray(before.dataset.test.images[:5])
    for path in [workdir / "config.json", *workdir.glob("checkpoints/*/config/metadata")]:
        path.write_text(json.dumps(flat_model_keys(json.loads(path.read_text()))))
    again = restore.load(str(workdir))
    assert tuple(again.config.model.mlp.hidden) == (32,) and "channels" not in again.config.model
    np.testing.assert_array_equal(again.encode(images), before.encode(images))
    assert train.train_and_evaluate(tiny_config(), str(workdir))["step"] == 40
