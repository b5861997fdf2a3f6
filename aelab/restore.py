"""Trained models back from a workdir, read-only: what every command that uses a run calls, and
`aelab.load(workdir)` for notebooks.

A model is rebuilt from `config.json`, `model.json` (the example shape, written
when the run started) and the task's assets (a tokenizer), never from the
data. Nothing in the workdir is created, cleaned, moved or locked, so a run can
be used while its trainer still writes checkpoints there (an unreadable
checkpoint is reported and an older one used). The plugin modules a run names
(`config.imports`) are imported first, and said so.

What a run can do is what its model can: `encode`, `decode`, `sample`,
`translate`, ... each checks the model has the method (`Trained.can`).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from aelab import checkpoint, compiler, config as config_lib, data, plugins, steps, tasks
from aelab import workdir as wd
from aelab.compiler import CompilePolicy
from aelab.errors import UsageError


@dataclasses.dataclass
class Trained:
    """A trained run's model, its resolved config, task and compile policy, and the step of the
    checkpoint it comes from. Its methods take and return numpy arrays, each computed by one
    compiled program; a method the model has no use for raises UsageError."""

    workdir: str
    config: ml_collections.ConfigDict
    task: tasks.Task
    policy: CompilePolicy
    model: nnx.Module
    step: int
    example_shape: tuple[int, ...]
    _dataset: data.Dataset | None = dataclasses.field(default=None, repr=False)
    _programs: dict = dataclasses.field(default_factory=dict, init=False, repr=False)
    _splits: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    @property
    def dataset(self) -> data.Dataset:
        """The run's data set, prepared as its task reads it; opened on first use (the uses that
        score a split need it, the model does not). Image folders and IDX files stay on disk
        (aelab.data.lazy): a use reads the rows of the splits it scores, no others."""
        if self._dataset is None:
            self._dataset = self.task.prepare(data.load(self.config.data, stream_above_mb=0, verify=False))
        return self._dataset

    def split(self, name: str):
        """One split of the run's data, prepared as its task reads it. Where the format keeps that
        split in files of its own (idx's t10k files, a records split, a TFDS split), only those
        are opened: `embed --split=test` works with the training files moved away."""
        if self._dataset is not None:
            return self._dataset.split(name)
        if name not in self._splits:
            self._splits[name] = self.task.prepare(data.load(self.config.data, stream_above_mb=0, verify=False,
                                                             only=name)).split(name)
        return self._splits[name]

    def can(self, capability: str) -> bool:
        """Whether the run's model (or, for generation and decoding, its task) has `capability`:
        encode, decode, reconstruct, sample, code_tokens, translate, caption, segment."""
        return capability in capabilities(self.model, self.task)

    def _call(self, name: str, fn, *args) -> np.ndarray:
        if name not in self._programs:
            self._programs[name] = self.policy.jit_model(fn, self.model, "evaluate")
        return np.asarray(self._programs[name](*args))

    def _needs(self, capability: str, what: str) -> None:
        if not self.can(capability):
            model = type(self.model).__name__
            raise UsageError(f"{self.workdir} holds task={self.config.task} (model {model}), which has no {what}")

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Codes (N, latent_dim) of images (N, H, W, C) in [0, 1] (a VAE's posterior means)."""
        self._needs("encode", "encoder to encode images with")
        return self._call("encode", lambda m, x: m.encode(x), jnp.asarray(images, jnp.float32))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Images (N, H, W, C) in [0, 1] decoded from codes (N, latent_dim)."""
        self._needs("decode", "decoder to decode codes with")
        return self._call("decode", lambda m, z: m.decode(z), jnp.asarray(codes, jnp.float32))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        self._needs("reconstruct", "reconstruction")
        return self._call("reconstruct", lambda m, x: m.reconstruct(x), jnp.asarray(images, jnp.float32))

    def code_tokens(self, images: np.ndarray) -> np.ndarray:
        """A VQ-VAE's code tokens (N, latent_dim / embedding_dim): each its codebook index."""
        self._needs("code_tokens", "codebook (train with --config.task=vqvae)")
        return self._call("code_tokens", lambda m, x: m.code_tokens(x), jnp.asarray(images, jnp.float32))

    def decode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Images (N, H, W, C) in [0, 1] that a VQ-VAE decodes from code tokens (N, T)."""
        self._needs("code_tokens", "codebook (train with --config.task=vqvae)")
        return self._call("decode_tokens", lambda m, t: m.decode_tokens(t), jnp.asarray(tokens, jnp.int32))

    def sample(self, num_samples: int, seed: int = 0) -> np.ndarray:
        """Images drawn from the model's prior (a VAE, a Wasserstein autoencoder), or from a code
        prior through its VQ-VAE's decoder."""
        self._needs("sample", "prior to sample (a VAE, an autoencoder with a prior-matching penalty such as "
                              "penalty.mmd, or a code prior over a VQ-VAE's codes: task=vqprior)")
        if hasattr(self.task, "sample_images"):
            return self.task.sample_images(self.model, num_samples, seed)
        return self._call(f"sample{num_samples}", lambda m, key: m.sample(num_samples, key), jax.random.key(seed))

    def translate(self, sentences: list[str], beam_size: int | None = None) -> list[str]:
        """Translations of sentences (one a string)."""
        self._needs("translate", "translator")
        return self.task.translate(self.model, sentences, beam_size)

    def caption(self, images: np.ndarray, beam_size: int | None = None) -> list[str]:
        """Captions of images (N, H, W, C) in [0, 1], of the size the model was trained on."""
        self._needs("caption", "captioner")
        return self.task.captions(self.model, np.asarray(images, np.float32), beam_size)

    def segment(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class ids (N, H, W) of images (N, H, W, C) in [0, 1]."""
        self._needs("segment", "segmenter")
        return self.task.predictor(self.model)(np.asarray(images, np.float32), batch_size)


# Capabilities that are a method of the model, and those that are a method of its task.
MODEL_CAPABILITIES = ("encode", "decode", "reconstruct", "sample", "code_tokens")
TASK_CAPABILITIES = {"translate": "translate", "caption": "captions", "segment": "predictor",
                     "sample": "sample_images"}


def capabilities(model: nnx.Module, task: tasks.Task) -> set[str]:
    """What a run can do: the model's methods among MODEL_CAPABILITIES (a model may withhold one by
    `can_<name>` being False: an autoencoder without a prior cannot sample), and its task's."""
    found = {name for name in MODEL_CAPABILITIES
             if callable(getattr(model, name, None)) and getattr(model, f"can_{name}", True)}
    found |= {name for name, method in TASK_CAPABILITIES.items() if callable(getattr(task, method, None))}
    return found


def load(workdir: str, task: str | None = None, use: str = "", step: int | None = None) -> Trained:
    """The model of a workdir's newest checkpoint that restores (or of checkpoint `step`),
    without its data.

    With `task`, a run of any other task is refused (naming `use`, the command) before
    anything is built. Runs of versions that wrote no model.json are rebuilt from their data.
    """
    config = saved_config(workdir, task, use)
    compiler.enable_compile_cache(compiler.USER_CACHE)  # the user's cache: a run never chooses where, or what, runs
    policy = CompilePolicy.for_config(config)
    trained_task = tasks.get_task(config, policy, RUNS)
    trained_task.load_assets(workdir)
    model_path, dataset = os.path.join(workdir, wd.MODEL), None
    if os.path.lexists(model_path):
        example_shape = _example_shape(wd.read_record(workdir, wd.MODEL), model_path)
    else:  # a run of an older version: its data gives the shape
        dataset = trained_task.prepare(data.load(config.data, stream_above_mb=0, verify=False))
        example_shape = tuple(dataset.image_shape)
    model, optimizer = steps.model_and_optimizer(config, trained_task, example_shape, jax.random.key(config.seed))
    graphdef, state = nnx.split((model, optimizer))
    step, state = restore_state(workdir, state, step)
    model, _ = nnx.merge(graphdef, state)
    return Trained(workdir, config, trained_task, policy.with_model(model), model, step, example_shape, dataset)


def saved_config(workdir: str, task: str | None, use: str) -> ml_collections.ConfigDict:
    """A trained workdir's resolved config, checked to hold checkpoints and (given) `task`; the
    plugin modules it names are imported first."""
    config_path = os.path.join(workdir, wd.CONFIG)
    if not os.path.lexists(config_path):
        raise UsageError(f"{wd.shown(workdir)}: no {wd.CONFIG}; pass the --workdir of an aelab training run")
    if not os.path.isdir(wd.confined(workdir, wd.CHECKPOINTS, "the checkpoints folder")):
        raise UsageError(f"{wd.shown(workdir)}: no checkpoints yet; train first")
    saved = wd.read_record(workdir, wd.CONFIG)
    plugins.import_modules(tuple(saved.get("imports", ())), config_path, workdir=workdir, announce=True)
    config = config_lib.from_saved(saved, config_path)
    if task is not None and config.task != task:
        raise UsageError(f"{workdir}: {use} needs a {task} run, but this one trained task={config.task!r}")
    config.mesh.data = 1  # using a model needs one device, whatever the run trained on
    return config


def _example_shape(model: dict, path: str) -> tuple[int, ...]:
    shape = model.get("example_shape")
    if not isinstance(shape, list) or not shape or any(not isinstance(d, int) or d < 1 for d in shape):
        raise UsageError(f"{wd.shown(path)} is damaged: example_shape={shape!r}, not a list of positive sizes")
    return tuple(shape)


class _Runs:
    """The run loader tasks are given (tasks.RunLoader): a code prior reaches its VQ-VAE through it."""

    def config(self, workdir: str, task: str | None, use: str) -> ml_collections.ConfigDict:
        return saved_config(workdir, task, use)

    def load(self, workdir: str, task: str | None, use: str) -> Trained:
        return load(workdir, task, use)


RUNS = _Runs()


def checkpoint_steps(workdir: str) -> list[int]:
    """The steps of the workdir's checkpoints, oldest first, read-only."""
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, wd.CHECKPOINTS), read_only=True)
    try:
        return sorted(ckpt.manager.all_steps())
    finally:
        ckpt.close()


def restore_state(workdir: str, state, step: int | None = None):
    """(step, state) of the workdir's newest checkpoint that restores onto `state` (or of `step`'s),
    read-only."""
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, wd.CHECKPOINTS), read_only=True)
    try:
        if step is None:
            step, state = ckpt.restore_latest(state)
        elif step in ckpt.manager.all_steps():
            state = ckpt.restore(step, state)
        else:
            steps = ", ".join(map(str, sorted(ckpt.manager.all_steps()))) or "none"
            raise UsageError(f"{workdir}: no checkpoint at step {step}; its steps: {steps}")
    finally:
        ckpt.close()
    if step == 0:
        raise UsageError(f"{workdir}: no checkpoint restores; train first")
    return step, state
