"""Semantic segmentation of generated MNIST scenes: 1-3 real digits on a 64x64 canvas, 11 classes
(background and the ten digits), U-Net with skip connections (or without: `:skips=False`).

    aelab train --config=configs/seg_mnist_scenes.py --config.data.name=scenes:idx:../shared/data/mnist --workdir=runs/seg_scenes
    aelab train --config=configs/seg_mnist_scenes.py:skips=False --config.data.name=scenes:idx:../shared/data/mnist --workdir=runs/seg_scenes_noskip
    aelab predict --workdir=runs/seg_scenes --input=DIR_OR_IMAGE --out=masks/

The default data name `scenes:mnist` builds the scenes from TFDS MNIST; `scenes:digits`
uses the embedded 8x8 digits (set data.scenes.canvas=24) and needs no files at all.
"""

from aelab.config import base_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, skips=True, width=8, steps=3000)
    config = base_config()
    config.task = "segmentation"
    config.loss = "cross_entropy+dice"
    config.data.name = "scenes:mnist"
    config.data.scenes.canvas = 64
    config.data.scenes.num_train = 10000  # 9,000 train + 1,000 validation (carved)
    config.data.scenes.num_test = 2000  # from MNIST's test digits: held out
    config.model.arch = "unet"
    config.model.num_classes = 11
    config.model.unet.depth = 3
    config.model.unet.width = args.width  # 8-16-32-64 channels
    config.model.unet.skips = args.skips
    config.model.unet.upsample = "depth_to_space"  # sub-pixel upsampling: the fast one on CPU
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 100
    config.train.num_steps = args.steps
    config.train.batch_size = 32
    config.train.eval_batch_size = 250
    config.train.log_every = 100
    config.train.eval_every = config.train.checkpoint_every = 500
    return config
