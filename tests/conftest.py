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

# The tests check math to float32 tolerances. On GPU/TPU, jax's default matmul and convolution
# precision is TF32/bfloat16 passes (errors ~1e-3); CPU always computes float32.
if jax.default_backend() != "cpu":
    jax.config.update("jax_default_matmul_precision", "highest")

# aelab's bitwise guarantees (exact resume, however steps are grouped) hold on CPU, and on GPU with
# XLA's deterministic kernels: without them the conv resume test failed on an H200 and the
# segmentation one failed once in two (README: Interruptions and resume).
DETERMINISTIC_GPU = "--xla_gpu_deterministic_ops=true"
bitwise = pytest.mark.skipif(
    jax.default_backend() != "cpu" and DETERMINISTIC_GPU not in os.environ.get("XLA_FLAGS", ""),
    reason=f"bitwise reproducibility on {jax.default_backend()} needs XLA_FLAGS={DETERMINISTIC_GPU}")


def tiny_config(**overrides):
    """A digits MLP autoencoder that trains in a second or two."""
    config = base_config()
    config.model.latent_dim = 4
    config.model.mlp.hidden = (32,)
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
