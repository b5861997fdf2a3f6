"""The patch encoder of myext/patch.py on scikit-learn's bundled 8x8 digits, beside PCA.

    aelab train --config=configs/patch_digits.py --workdir=runs/patch
    aelab train --config=configs/patch_digits.py:patch=4,latent=4 --workdir=runs/patch4
    aelab sweep --config=configs/patch_digits.py --workdir=runs/arch --sweep=model.arch=mlp,patch

`:patch=P,latent=D,steps=N` set the patch side, the code size and the training length; the
mlp keys of the preset stay, so that a sweep over model.arch compares both on the same data.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, patch=2, latent=8, steps=3000)
    config = preset("digits", imports=("myext.patch",))  # imported now: its keys are there to set
    config.model.arch = "patch"
    config.model.latent_dim = args.latent
    config.model.patch.patch_size = args.patch
    config.train.num_steps = args.steps
    return config
