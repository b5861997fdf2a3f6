"""One-class anomaly detection on CIFAR-10: train on one class, flag the other nine at test time.

    aelab train --config=configs/cifar10_anomaly.py:normal=3 --workdir=runs/cifar_anomaly3
    aelab anomaly --workdir=runs/cifar_anomaly3

A convolutional autoencoder (3x3 stride-2 convolutions of 32, 64 and 128 channels, a 64-d
Dense code, the mirror image back), squared-error loss, AdamW with cosine decay, on the
~4,500 training images of the normal class (classes in folder order: 0 airplane, 1
automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck).
experiments/anomaly_cifar10/run.py runs all ten classes and writes the table.
`:normal=K,latent=N,steps=N` change them.
"""

from aelab.config import base_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, normal=0, latent=64, steps=2000)
    config = base_config()
    config.data.name = "images:../shared/data/cifar10"
    config.data.normal_classes = (args.normal,)
    config.loss = "mse"
    config.model.arch = "conv"
    config.model.latent_dim = args.latent
    config.model.conv.channels = (32, 64, 128)
    config.model.conv.strides = (2, 2, 2)
    config.model.conv.kernel_size = 3
    config.optimizer.name = "adamw"
    config.optimizer.weight_decay = 0.1
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 100
    config.train.num_steps = args.steps  # ~57 epochs of one class's ~4,500 training images
    config.train.batch_size = 128
    config.train.log_every = 100
    config.train.eval_every = config.train.checkpoint_every = 500
    return config
