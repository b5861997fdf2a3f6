"""Config helpers: the base config every experiment overrides, `parse_arg`, and validation.

Configs live in `configs/*.py` as `get_config(arg) -> ConfigDict`; they start
from `base_config()` so every key exists (ml-collections rejects overrides of
unknown keys and of the wrong type).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import ml_collections

from aelab.errors import UsageError, choose


def base_config() -> ml_collections.ConfigDict:
    """Every key aelab reads, with defaults. Experiments override what they need."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "autoencoder"
    config.loss = "bce"  # reconstruction: bce (on logits) | mse | l1; segmentation: see below

    config.data = ml_collections.ConfigDict()
    config.data.name = "digits"  # digits | idx:DIR | npz:FILE | csv:FILE | images:DIR | a TFDS name
    # (segmentation: segfolder:DIR | scenes:NAME | a TFDS name with data.mask_key)
    config.data.data_dir = ""  # TFDS data_dir; "" = TFDS's default
    config.data.download = True  # TFDS: download and prepare if missing
    config.data.label_column = ""  # csv: header name or 0-based index of the labels; "" = none
    config.data.image_key = "image"  # TFDS feature names
    config.data.label_key = "label"
    config.data.val_fraction = 0.1  # carved from train when the data set has no validation split
    config.data.test_fraction = 0.2  # carved from train when it has no test split
    config.data.split_seed = 0  # fixes the carved splits independently of `seed`
    config.data.normal_classes = ()  # one-class protocol: train/val keep only these labels
    # Segmentation data.
    config.data.image_size = 0  # resize images (bilinear) and masks (nearest) to this square; 0 = keep
    config.data.mask_key = ""  # TFDS feature of the per-pixel masks ("segmentation_mask"); "" = none
    config.data.mask_offset = 0  # subtracted from TFDS mask values (oxford_iiit_pet's start at 1)
    config.data.reverse = False  # textpairs: translate the second column into the first
    config.data.source_key = ""  # TFDS translation sets: the source and target features ("es", "en")
    config.data.target_key = ""
    config.data.captions_key = ""  # TFDS captioning sets: the feature whose "text" holds the captions
    config.data.scenes = ml_collections.ConfigDict()  # scenes:NAME, generated from NAME's digits
    config.data.scenes.canvas = 64  # canvas side in pixels
    config.data.scenes.min_digits = 1
    config.data.scenes.max_digits = 3
    config.data.scenes.num_train = 10000  # scenes from train digits (validation is carved from them)
    config.data.scenes.num_test = 2000  # scenes from test digits
    config.data.scenes.ink_threshold = 0.5  # a digit's pixels at least this bright carry its class
    config.data.scenes.language = "en"  # digitcaptions: en | es

    config.model = ml_collections.ConfigDict()
    config.model.arch = "mlp"  # mlp | conv
    config.model.latent_dim = 16
    config.model.activation = "relu"
    config.model.hidden = (256, 128)  # mlp: encoder widths, mirrored in the decoder
    config.model.channels = (32, 64)  # conv: channels per layer
    config.model.strides = (2, 2)  # conv: one stride per layer
    config.model.kernel_size = 3
    config.model.upsample = "transpose"  # conv decoder: transpose | resize
    config.model.code_activation = "none"  # autoencoder code: none | sigmoid | relu
    # Segmentation (arch unet): a U-Net, or with skips=False the same encoder-decoder without skips.
    config.model.num_classes = 2
    config.model.depth = 3  # poolings; level i has width * 2**i channels
    config.model.width = 16
    config.model.skips = True
    config.model.norm = "none"  # none | group (GroupNorm after every convolution)
    # Translation (arch rnn | transformer).
    config.model.embed_dim = 256  # token embeddings; the Transformer's model width
    config.model.hidden_dim = 512  # rnn: GRU/LSTM state size
    config.model.num_layers = 3  # transformer: layers of encoder and of decoder; rnn: encoder layers
    config.model.num_heads = 4  # transformer
    config.model.mlp_dim = 1024  # transformer: feed-forward width
    config.model.dropout = 0.1
    config.model.cell = "gru"  # rnn: gru | lstm
    config.model.attention = "additive"  # rnn: additive (Bahdanau) | dot (Luong, scaled)
    config.model.positions = "sinusoidal"  # transformer: sinusoidal | learned
    config.model.share_embeddings = True  # one embedding for source, target (and the transformer's output)

    # Denoising: corrupt the input only, reconstruct the clean image (any task).
    config.corruption = ml_collections.ConfigDict()
    config.corruption.kind = "none"  # none | gaussian | mask | salt_and_pepper
    config.corruption.level = 0.0  # gaussian: sigma; mask, salt_and_pepper: fraction of pixels
    config.corruption.train_only = False  # True: noise as a regularizer; evaluation sees clean inputs

    # Penalties of the plain autoencoder (weights; 0 = off).
    config.penalty = ml_collections.ConfigDict()
    config.penalty.l1 = 0.0  # sparse AE: l1 * sum|z| per example
    config.penalty.kl_sparsity = 0.0  # sparse AE: weight of sum_j KL(rho || mean activation_j)
    config.penalty.rho = 0.05  # target mean activation (needs model.code_activation=sigmoid)
    config.penalty.contractive = 0.0  # contractive AE: weight of ||d code / d x||_F^2

    # Segmentation: loss is cross_entropy | dice | cross_entropy+dice.
    config.segmentation = ml_collections.ConfigDict()
    config.segmentation.ignore_index = -1  # mask value of unlabelled pixels (out of loss and metrics)
    config.segmentation.class_weights = ()  # one positive weight per class; () = all 1
    # Training-time augmentation, identical for an image and its mask (segmentation).
    config.augment = ml_collections.ConfigDict()
    config.augment.hflip = False
    config.augment.vflip = False
    config.augment.crop = 0  # random crop x crop windows; 0 = whole images

    # Text (task=translation).
    config.text = ml_collections.ConfigDict()
    config.text.vocab_size = 8000  # SentencePiece vocabulary, shared by both languages
    config.text.tokenizer = "unigram"  # unigram | bpe
    config.text.max_length = 48  # tokens per side, EOS included; longer pairs are skipped and counted
    config.text.buckets = (12, 24)  # training batches cut to these lengths (and max_length); () = none
    config.text.label_smoothing = 0.1
    config.decode = ml_collections.ConfigDict()
    config.decode.beam_size = 4  # final test translations; 1 = greedy
    config.decode.length_penalty = 0.6  # alpha of ((5 + length) / 6) ** alpha
    config.decode.eval_examples = 500  # validation pairs decoded (greedy) at each evaluation; 0 = none

    config.vae = ml_collections.ConfigDict()
    config.vae.beta = 1.0  # weight of the KL term (beta-VAE)
    config.vae.kl_warmup_steps = 0  # linear KL annealing from 0 to beta over these steps
    config.vae.free_bits = 0.0  # nats per latent dimension below which KL is not penalized
    config.vae.sigma = 0.1  # loss=mse: the Gaussian likelihood's fixed pixel standard deviation
    config.vae.binarize = False  # dynamic binarization of training inputs; eval splits fixed once
    config.vae.iw_samples = 1000  # k of the importance-sampled NLL bound (final evaluation)
    config.vae.iw_chunk = 100  # samples per chunk, so memory stays bounded

    config.vq = ml_collections.ConfigDict()
    config.vq.codebook_size = 64
    config.vq.embedding_dim = 4  # the code is split into latent_dim / embedding_dim tokens
    config.vq.commitment = 0.25  # beta of the commitment loss

    # `aelab anomaly`: which per-example score flags anomalies, and the false-positive
    # rate on (normal) validation data that sets the threshold.
    config.anomaly = ml_collections.ConfigDict()
    config.anomaly.score = ""  # "" = neg_elbo for a VAE, else the reconstruction loss
    config.anomaly.target_fpr = 0.05

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"  # adam | adamw | sgd
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "constant"  # constant | cosine | warmup_cosine
    config.optimizer.warmup_steps = 0
    config.optimizer.end_lr_factor = 0.0  # cosine: final lr = factor * learning_rate
    config.optimizer.weight_decay = 1e-4  # adamw only
    config.optimizer.momentum = 0.9  # sgd only; 0 = plain SGD
    config.optimizer.grad_clip_norm = 0.0  # 0 = no clipping

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 1000
    config.train.batch_size = 128
    config.train.eval_batch_size = 1000
    config.train.log_every = 50
    config.train.eval_every = 500  # on the validation split
    config.train.checkpoint_every = 500
    config.train.keep_checkpoints = 3
    config.train.progress = True  # tqdm progress bar on stderr
    config.train.tensorboard = True
    config.train.early_stopping_patience = 0  # validation evaluations without improvement; 0 = off
    config.train.early_stopping_metric = "loss"  # a validation metric, lower is better
    config.train.early_stopping_min_delta = 0.0  # an improvement must beat the best by more than this
    config.train.skip_nonfinite = False  # True: drop updates with non-finite gradients, count them
    config.train.max_consecutive_nonfinite = 10  # ...and stop after this many in a row
    config.train.compile_cache = "~/.cache/aelab/jax"  # persistent compilation cache; "" = off
    config.train.device_data_mb = 2048  # a training split up to this size stays on the device(s); 0 = never
    config.train.steps_per_dispatch = 10  # with the split on the device, steps run per call (a loop there)
    # CPU matmul library (aelab/compiler.py). None: XLA's default YNNPACK for the train steps and
    # decoders of models without convolutions, XLA's Eigen everywhere else; True / False: YNNPACK
    # everywhere / nowhere.
    config.train.cpu_ynn_dots = ml_collections.config_dict.placeholder(bool)
    config.train.compute_dtype = "float32"  # float32 | bfloat16 (mixed: parameters, optimizer state stay float32)

    # Data parallel: parameters replicated, each batch sharded over the `data` axis of a device
    # mesh; train.batch_size stays the global batch and must divide by the device count.
    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1  # devices on the data axis; -1 = all (every device of every host)
    return config


def lookup(config: ml_collections.ConfigDict, key: str, label: str):
    """The value at dotted `key`; a UsageError starting with `label` lists the keys where it fails."""
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "config"
        if not hasattr(node, "keys"):
            raise UsageError(f"{label}: config.{where} is a value, not a group of keys")
        if part not in node:
            raise UsageError(f"{label}; keys under {where}: " + ", ".join(sorted(node.keys())))
        node = node[part]
    return node


def set_value(config: ml_collections.ConfigDict, key: str, value) -> None:
    """Sets the dotted `key` (e.g. "model.latent_dim") of `config`, type-checked by ml-collections."""
    *groups, leaf = key.split(".")
    node = config
    for group in groups:
        node = node[group]
    node[leaf] = value


def from_file(path, arg: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(arg)` of the config file at `path` (what `--config=path:arg` loads)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("aelab_config_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def from_saved(saved: dict) -> ml_collections.ConfigDict:
    """A config.json written by any aelab version, completed with today's defaults for newer keys."""
    config = base_config()
    config.update(saved)
    return config


# Sizes that suit each shipped data set; experiment configs start from one.
PRESETS = {
    "digits": dict(name="digits", hidden=(256, 128), latent_dim=8, num_steps=3000, batch_size=64,
                   log_every=100, eval_every=1000),
    "mnist": dict(name="mnist", hidden=(1000, 500, 250), latent_dim=30, num_steps=20000,
                  batch_size=256, log_every=200, eval_every=2000),
}


def preset(name: str) -> ml_collections.ConfigDict:
    """`base_config()` sized for a shipped data set ("digits" or "mnist")."""
    choose("preset", name, PRESETS)
    p = PRESETS[name]
    config = base_config()
    config.data.name = p["name"]
    config.model.hidden = p["hidden"]
    config.model.latent_dim = p["latent_dim"]
    config.train.num_steps = p["num_steps"]
    config.train.batch_size = p["batch_size"]
    config.train.log_every = p["log_every"]
    config.train.eval_every = config.train.checkpoint_every = p["eval_every"]
    return config


TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def cast_like(default, value: str, label: str):
    """`value` (text) as the type of `default`; a UsageError "{label}={value!r} is not a T" if it isn't one."""
    kind = type(default)
    try:
        if kind is bool:
            if value.lower() not in TRUE + FALSE:
                raise ValueError
            return value.lower() in TRUE
        return kind(value)
    except ValueError:
        raise UsageError(f"{label}={value!r} is not a {kind.__name__}") from None


def parse_arg(arg: str | None, **defaults):
    """Parses a config arg like "latent=32,arch=conv,runlocal" (big_vision style).

    Values are cast to the type of their default; a bare name means True.
    Unknown names raise a UsageError listing the accepted ones.
    """
    parsed = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        choose("config arg", key, defaults)
        default = defaults[key]
        parsed[key] = cast_like(default, value, f"config arg {key}") if sep else True
    return parsed


def flatten(tree: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """('a.b.c', value) for every leaf of a nested dict."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


SCHEDULES = ("constant", "cosine", "warmup_cosine")
OPTIMIZERS = ("adam", "adamw", "sgd")


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks values that types alone cannot; raises a one-line UsageError.

    Names of registries (models, losses, activations, data) are checked by the
    registries themselves when the run is built, still before anything is written.
    """
    def positive(key: str, value) -> None:
        if value <= 0:
            raise UsageError(f"{key}={value} must be > 0")

    for key, value in flatten(config.to_dict()):
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise UsageError(f"{key}={value} must be a finite number")
    model, train, opt = config.model, config.train, config.optimizer
    positive("model.latent_dim", model.latent_dim)
    for key in ("num_steps", "batch_size", "eval_batch_size", "log_every", "eval_every",
                "checkpoint_every", "keep_checkpoints", "max_consecutive_nonfinite", "steps_per_dispatch"):
        positive(f"train.{key}", train[key])
    positive("optimizer.learning_rate", opt.learning_rate)
    positive("model.kernel_size", model.kernel_size)
    for key in ("hidden", "channels", "strides"):
        for v in model[key]:
            if not isinstance(v, int) or v <= 0:
                raise UsageError(f"model.{key}={tuple(model[key])} must hold positive integers")
    choose("optimizer.name", opt.name, OPTIMIZERS)
    choose("optimizer.schedule", opt.schedule, SCHEDULES)
    choose("train.compute_dtype", train.compute_dtype, ("float32", "bfloat16"))
    if train.early_stopping_patience < 0 or train.early_stopping_min_delta < 0:
        raise UsageError("train.early_stopping_patience and train.early_stopping_min_delta must be >= 0")
    if opt.warmup_steps < 0 or opt.grad_clip_norm < 0:
        raise UsageError("optimizer.warmup_steps and optimizer.grad_clip_norm must be >= 0")
    for key in ("val_fraction", "test_fraction"):
        if not 0.0 < config.data[key] < 1.0:
            raise UsageError(f"data.{key}={config.data[key]} must lie strictly between 0 and 1")
    if not 0.0 < config.anomaly.target_fpr < 1.0:
        raise UsageError(f"anomaly.target_fpr={config.anomaly.target_fpr} must lie strictly between 0 and 1")
    if config.data.image_size < 0:
        raise UsageError(f"data.image_size={config.data.image_size} must be >= 0 (0 = keep the size)")
    if not config.data.name:
        raise UsageError("data.name is empty; accepted: digits, idx:DIR, npz:FILE, csv:FILE, "
                         "images:DIR or a TFDS name")
