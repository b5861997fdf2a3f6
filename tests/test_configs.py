"""Every shipped config loads, validates and builds its task; its docstring shows the launch."""

import importlib.util
import json

import ml_collections
import pytest

from aelab import config as config_lib
from aelab import models, restore, tasks
from conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.py"))


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_arg(path, tmp_path):
    """The arg a config needs to build: a code prior names a VQ-VAE run (its config.json and a
    checkpoints folder suffice)."""
    if path.stem != "mnist_vq_prior":
        return None
    vqvae = load(REPO / "configs" / "mnist_vqvae.py").get_config("ema")
    vqvae.data.split_seed = 7  # the prior must take the VQ-VAE's data keys
    (tmp_path / "config.json").write_text(json.dumps(vqvae.to_dict()))
    (tmp_path / "checkpoints").mkdir()
    return f"vqvae={tmp_path}"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_valid_and_documents_its_launch(path, tmp_path):
    module = load(path)
    config = module.get_config(config_arg(path, tmp_path))
    assert isinstance(config, ml_collections.ConfigDict)
    resolved = config_lib.resolve(config, path.name)  # every key it sets is declared
    config_lib.validate(resolved)
    task = tasks.get_task(resolved, runs=restore.RUNS)
    models.check(task.family, resolved.model)
    assert f"aelab train --config=configs/{path.name}" in module.__doc__
    assert config.model.latent_dim > 0


def test_config_args_are_typed_and_checked():
    args = config_lib.parse_arg("latent=3,beta=0.5,flag", latent=8, beta=1.0, flag=False)
    assert (args.latent, args.beta, args.flag) == (3, 0.5, True)
    with pytest.raises(ValueError, match="unknown config arg 'latnet'"):
        config_lib.parse_arg("latnet=3", latent=8)
    with pytest.raises(ValueError, match="config arg latent='x' is not a int"):
        config_lib.parse_arg("latent=x", latent=8)
    assert config_lib.parse_arg("flag=no", flag=True).flag is False
    with pytest.raises(ValueError, match="config arg flag='maybe' is not a bool"):
        config_lib.parse_arg("flag=maybe", flag=False)
