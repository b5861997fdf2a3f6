"""ISBI 2012 EM membranes: 30 grey 512x512 images with binary masks (membrane 0, cell 1), U-Net
trained on random 128x128 crops with flips, evaluated on whole held-out images at full size.

    aelab train --config=configs/seg_isbi.py --workdir=runs/seg_isbi
    aelab train --config=configs/seg_isbi.py:skips=False --workdir=runs/seg_isbi_noskip
    aelab predict --workdir=runs/seg_isbi --input=../shared/data/isbi2012_membrane/image --out=masks/

The data path defaults to ../shared/data/isbi2012_membrane (the challenge's `image/` and
`label/` folders); any `segfolder:DIR` of images/ and masks/ works the same way. Of the 30
images, 6 are held out for test and 2 for validation (data.split_seed fixes which). The 30 are
consecutive slices of one stack, so neighbours look alike: each held-out split is one contiguous
block of slices (data.split_by=block), and only its two edge slices have a training neighbour.
"""

from aelab.config import base_config, parse_arg


def get_config(arg=None):
    args = parse_arg(arg, skips=True, width=8, steps=3000)
    config = base_config()
    config.task = "segmentation"
    config.loss = "cross_entropy"
    config.data.name = "segfolder:../shared/data/isbi2012_membrane"
    config.data.test_fraction = 0.2  # 6 test images
    config.data.val_fraction = 0.1  # 2 validation images of the remaining 24
    config.data.split_by = "block"
    config.augment.crop = 128
    config.augment.hflip = config.augment.vflip = True
    config.model.arch = "unet"
    config.model.num_classes = 2
    config.model.unet.depth = 4
    config.model.unet.width = args.width  # 8-16-32-64-128 channels
    config.model.unet.skips = args.skips
    config.model.unet.upsample = "depth_to_space"
    config.model.unet.norm = "group"  # GroupNorm: val accuracy 0.909 vs 0.881 without, 600 steps in
    config.optimizer.learning_rate = 2e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 100
    config.train.num_steps = args.steps
    config.train.batch_size = 8
    config.train.eval_batch_size = 2
    config.train.log_every = 100
    config.train.eval_every = config.train.checkpoint_every = 500
    return config
