"""Every bad-data case through the CLI: one line naming the file and problem, exit 2, workdir untouched."""

import numpy as np
import pytest

from aelab.main import main
from conftest import REPO
from test_data import _save_png, make_idx_dir, write_idx

CONFIG = str(REPO / "configs" / "digits_ae.py")
FAST = ["--config.train.num_steps=20", "--config.train.log_every=10", "--config.train.eval_every=10",
        "--config.train.checkpoint_every=10", "--config.train.progress=False",
        "--config.model.hidden=(16,)"]


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
    (bad_file, "shapes", "b.png: image of shape (4, 4), but"),
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
