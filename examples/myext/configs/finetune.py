"""Fine-tuning: starts from a trained patch autoencoder (configs/patch_digits.py) and trains only
its decoder, as a denoiser of Gaussian noise, its encoder frozen.

    aelab train --config=configs/patch_digits.py --workdir=runs/patch
    aelab train --config=configs/finetune.py:run=runs/patch --workdir=runs/finetune

Every parameter of runs/patch's newest checkpoint (`:run=DIR@STEP`: that step's) is loaded,
its optimizer state is not; `train.trainable` (a regular expression over parameter paths)
leaves the encoder's parameters as they were loaded.
"""

from aelab.config import parse_arg

from patch_digits import get_config as patch_config  # the config folder is importable while a config loads


def get_config(arg=None):
    args = parse_arg(arg, run="runs/patch", steps=1000, noise=0.2)
    config = patch_config()
    config.train.init_from = args.run
    config.train.trainable = "^decoder/"
    config.corruption.kind, config.corruption.level = "gaussian", args.noise
    config.train.num_steps = args.steps
    return config
