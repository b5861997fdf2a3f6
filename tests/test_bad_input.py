"""Every bad-data case through the CLI: one line naming the file and problem, exit 2, workdir untouched."""

import re

import numpy as np
import pytest

from aelab.main import main
from conftest import REPO
from test_data import _save_png, make_idx_dir, write_idx

CONFIG = str(REPO / "configs" / "digits_ae.py")
FAST = ["--config.train.num_steps=20", "--config.train.log_every=10", "--config.train.eval_every=10",
        "--config.train.checkpoint_every=10", "--config.train.progress=False",
        "--config.model.mlp.hidden=(16,)"]


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def bad_idx(tmp_path, problem):
    (tmp_path / "idx").mkdir()
    directory = make_idx_dir(tmp_path / "idx")
    if problem == "magic":
        write_idx(directory / "t10k-images-idx3-ubyte", np.zeros((20, 6, 5)), magic=2049)
    elif problem == "gzip":
        path = directory / "train-images-idx3-ubyte.gz"
        path.write_bytes(path.read_bytes()[:30])
    elif problem == "counts":
        write_idx(directory / "train-labels-idx1-ubyte", np.zeros(51))
    return f"idx:{directory}"


def bad_file(tmp_path, problem):
    if problem == "shapes":
        _save_png(tmp_path / "imgs" / "a.png", np.zeros((5, 4)))
        _save_png(tmp_path / "imgs" / "b.png", np.zeros((4, 4)))
        return f"images:{tmp_path / 'imgs'}"
    if problem == "csv":
        (tmp_path / "t.csv").write_text("a,b\n1,2\n3,oops\n")
        return f"csv:{tmp_path / 't.csv'}"
    np.savez(tmp_path / "empty.npz", x_train=np.zeros((0, 4, 4), np.uint8))
    return f"npz:{tmp_path / 'empty.npz'}"


@pytest.mark.parametrize("make,problem,message", [
    (bad_idx, "magic", "t10k-images-idx3-ubyte.gz: IDX magic number 2049; expected 2051"),
    (bad_idx, "gzip", "train-images-idx3-ubyte.gz: cannot read"),
    (bad_idx, "counts", "50 images but 51 labels; the counts must match"),
    (bad_file, "shapes", "b.png: image of shape (4, 4, 1), but"),
    (bad_file, "csv", "t.csv: line 3, column 'b': 'oops' is not a number"),
    (bad_file, "empty", "empty.npz[x_train]: the data set is empty"),
])
def test_bad_data_exits_2_and_leaves_an_earlier_run_untouched(tmp_path, capsys, make, problem, message):
    workdir = tmp_path / "run"
    assert main(["aelab", "train", f"--config={CONFIG}", f"--workdir={workdir}", *FAST]) == 0
    before = snapshot(workdir)
    capsys.readouterr()
    name = make(tmp_path, problem)
    code = main(["aelab", "train", f"--config={CONFIG}", f"--workdir={workdir}", *FAST,
                 f"--config.data.name={name}", "--config.train.num_steps=40"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("aelab: error: ") and len(err.splitlines()) == 1
    assert message in err
    assert snapshot(workdir) == before  # config, metrics and checkpoints as they were


def test_resume_with_another_model_exits_2_naming_the_keys(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["aelab", "train", f"--config={CONFIG}", f"--workdir={workdir}", *FAST]) == 0
    before = snapshot(workdir)
    capsys.readouterr()
    code = main(["aelab", "train", f"--config={CONFIG}", f"--workdir={workdir}", *FAST,
                 "--config.model.latent_dim=3", "--config.task=vae"])
    err = capsys.readouterr().err
    assert code == 2 and "model.latent_dim: 8 -> 3" in err and "task: 'autoencoder' -> 'vae'" in err
    assert snapshot(workdir) == before


def test_a_config_arg_typo_names_the_arg(tmp_path, capsys):
    """Regression: `--config=...:latnt=3` said "Error whilst parsing config file:" and no reason."""
    assert main(["aelab", "train", f"--config={CONFIG}:latnt=3", f"--workdir={tmp_path / 'w'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("unknown config arg 'latnt'; known: arch, latent") and len(err.splitlines()) == 1
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("flag", ["--config.optimizer.learning_rate=nan", "--config.vae.beta=inf",
                                  "--config.data.val_fraction=nan"])
def test_non_finite_numbers_are_refused(tmp_path, capsys, flag):
    assert main(["aelab", "train", f"--config={CONFIG}", f"--workdir={tmp_path / 'w'}", *FAST, flag]) == 2
    err = capsys.readouterr().err.strip()
    assert "must be a finite number" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_npz_of_random_bytes_and_of_nan_pixels(tmp_path, capsys, recwarn):
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(4000))
    nans = tmp_path / "nan.npz"
    np.savez(nans, x_train=np.full((10, 4, 4), np.nan, np.float32))
    for path, message in ((noise, "not an .npz archive"), (nans, "160 pixel values are NaN or infinite")):
        code = main(["aelab", "train", f"--config={CONFIG}", f"--workdir={tmp_path / 'w'}", *FAST,
                     f"--config.data.name=npz:{path}"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # no numpy warning first
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("entry", ["../outside.png", "/etc/hostname", "images/../../outside.png"])
def test_caption_entries_cannot_leave_their_folder(tmp_path, entry):
    """Regression: `captions:DIR` read images named by ../ and absolute paths."""
    from aelab import data
    from aelab.config import base_config
    from aelab.errors import UsageError
    from test_captioning import flickr_folder

    (tmp_path / "set").mkdir()
    folder = flickr_folder(tmp_path / "set")
    _save_png(tmp_path / "outside.png", np.zeros((12, 10)))
    with open(folder / "captions.txt", "a") as f:
        f.write(f"{entry}#0\tA stray picture .\n")
    config = base_config()
    config.data.name = f"captions:{folder}"
    with pytest.raises(UsageError, match=rf"captions.txt line 13: entry '{re.escape(entry)}' points outside the data folder"):
        data.load(config.data)
    (folder / "captions.txt").write_text("a.png#0\tA dog .\nb.png#0\tA cat .\n")
    (folder / "train.txt").write_text(f"a.png\n{entry}\n")
    with pytest.raises(UsageError, match=rf"train.txt: entry '{re.escape(entry)}' points outside the data folder"):
        data.load(config.data)


def test_a_segmentation_class_id_error_names_the_mask_file(tmp_path, capsys):
    from test_segmentation import make_segfolder

    make_segfolder(tmp_path / "seg", n=6, values=(0, 1))
    from PIL import Image
    Image.fromarray(np.full((10, 12), 7, np.uint8)).save(tmp_path / "seg" / "masks" / "4.png")
    seg = str(REPO / "configs" / "seg_mnist_scenes.py")
    code = main(["aelab", "train", f"--config={seg}", f"--workdir={tmp_path / 'w'}", *FAST[:-1],
                 f"--config.data.name=segfolder:{tmp_path / 'seg'}", "--config.model.num_classes=2",
                 "--config.train.batch_size=2", "--config.data.val_fraction=0.2",
                 "--config.data.test_fraction=0.2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"{tmp_path / 'seg' / 'masks' / '4.png'}: mask holds class id 7, outside 0..1" in err
