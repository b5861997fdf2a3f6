"""One-class anomaly detection on MNIST: train on one digit, flag every other digit at test time.

    aelab train --config=configs/mnist_anomaly.py:digit=3 --config.data.name=idx:../shared/data/mnist --workdir=runs/anomaly3
    aelab anomaly --workdir=runs/anomaly3

experiments/anomaly_mnist/run.py runs all ten digits and writes the table.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, digit=0, latent=16, steps=10000)
    config = preset("mnist")
    config.data.normal_classes = (args.digit,)
    config.loss = "mse"  # squared error: see experiments/anomaly_mnist for bce and other variants
    config.model.mlp.hidden = (512, 256)
    config.model.latent_dim = args.latent
    config.optimizer.name = "adamw"
    config.optimizer.weight_decay = 0.1
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 100
    config.train.num_steps = args.steps  # ~240 epochs of one digit's ~5,400 training images
    config.train.batch_size = 128
    config.train.log_every = 100
    config.train.eval_every = config.train.checkpoint_every = 500
    return config
