"""Shared test fixtures: tiny configs, the shared data folder, a persistent compile cache."""

import os
import pathlib

import jax
import pytest

from aelab.config import base_config, set_value

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("AELAB_SHARED_DATA", REPO.parent / "shared" / "data"))

# Repeated test runs reuse compiled steps (the suite compiles many tiny models).
jax.config.update("jax_compilation_cache_dir", os.environ.get(
    "AELAB_TEST_COMPILE_CACHE", str(pathlib.Path.home() / ".cache" / "aelab-test-jax")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def tiny_config(**overrides):
    """A digits MLP autoencoder that trains in a second or two."""
    config = base_config()
    config.model.latent_dim = 4
    config.model.hidden = (32,)
    config.train.num_steps = 40
    config.train.batch_size = 32
    config.train.eval_batch_size = 256
    config.train.log_every = 10
    config.train.eval_every = 20
    config.train.checkpoint_every = 20
    config.train.progress = False
    config.train.tensorboard = False
    for key, value in overrides.items():
        set_value(config, key, value)
    return config


@pytest.fixture
def shared_mnist():
    path = SHARED_DATA / "mnist"
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {path} (set AELAB_SHARED_DATA to the shared/data folder)")
    return path
