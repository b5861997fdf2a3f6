"""The MLP autoencoder on a folder of .npy files read by myext's reader (make it with
`python make_npydir.py npy_digits`: the 8x8 digits, values 0..16, one file each).

    aelab train --config=configs/npy_digits.py --workdir=runs/npy
    aelab train --config=configs/npy_digits.py:folder=elsewhere --workdir=runs/npy2
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, folder="npy_digits", steps=3000)
    config = preset("digits", imports=("myext.npydir",))
    config.data.name = f"npydir:{args.folder}"
    config.data.npydir.scale = 16.0  # the digits' values are 0..16
    config.train.num_steps = args.steps
    return config
