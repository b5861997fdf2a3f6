"""Data sources, deterministic splits and batches, and bad-data errors."""

import gzip
import hashlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aelab import data
from aelab.data import sources
from aelab.config import base_config
from aelab.data.pipeline import TrainBatches, eval_batches
from aelab.data.splits import Split, shown_rows
from aelab.errors import UsageError


def data_config(name, **kw):
    config = base_config().data
    config.name = name
    for k, v in kw.items():
        config[k] = v
    return config


def write_idx(path, array, magic=None, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_idx_dir(tmp_path, n_train=50, n_test=20, compress=True):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 6, 5)), compress=compress)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), compress=compress)
    return tmp_path


def test_digits_is_embedded_scaled_and_split_deterministically():
    a = data.load(data_config("digits"))
    b = data.load(data_config("digits"))
    assert a.image_shape == (8, 8, 1)
    assert (len(a.train), len(a.val), len(a.test)) == (1294, 144, 359)
    assert a.train.images.dtype == np.float32
    assert 0.0 == a.train.images.min() and a.train.images.max() == 1.0
    np.testing.assert_array_equal(a.test.images, b.test.images)
    np.testing.assert_array_equal(a.val.labels, b.val.labels)
    other = data.load(data_config("digits", split_seed=1))
    assert not np.array_equal(a.test.labels, other.test.labels)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_reader(tmp_path, compress):
    ds = data.load(data_config(f"idx:{make_idx_dir(tmp_path, compress=compress)}"))
    assert ds.image_shape == (6, 5, 1)
    assert len(ds.test) == 20 and len(ds.train) + len(ds.val) == 50
    assert ds.train.images.max() <= 1.0


@pytest.mark.parametrize("corrupt,message", [
    ("magic", "IDX magic number 2049; expected 2051"),
    ("truncate", "header says"),
    ("count", "50 images but 49 labels"),
    ("gzip", "cannot read"),
    ("missing", "missing t10k-labels-idx1-ubyte"),
])
def test_idx_bad_files_name_the_file_and_problem(tmp_path, corrupt, message):
    make_idx_dir(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    if corrupt == "magic":
        write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((50, 6, 5)), magic=2049)
    elif corrupt == "truncate":
        with gzip.open(images) as f:
            payload = f.read()
        with gzip.open(images, "wb") as f:
            f.write(payload[:-7])
    elif corrupt == "count":
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(49))
    elif corrupt == "gzip":
        images.write_bytes(images.read_bytes()[:40])
    elif corrupt == "missing":
        (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UsageError, match=message):
        data.load(data_config(f"idx:{tmp_path}"))


def test_npz_reader_scales_and_checks(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 4, 4), dtype=np.uint8),
             y_train=np.arange(40) % 3, x_test=rng.random((10, 4, 4, 1), dtype=np.float32))
    ds = data.load(data_config(f"npz:{path}"))
    assert ds.image_shape == (4, 4, 1) and len(ds.test) == 10 and ds.test.labels is None
    np.savez(path, x_train=rng.random((40, 4, 4)) * 5)
    with pytest.raises(UsageError, match=r"pixel values span \[.*\]; expected uint8 or floats in \[0, 1\]"):
        data.load(data_config(f"npz:{path}"))
    np.savez(path, images=np.zeros((4, 4, 4)))
    with pytest.raises(UsageError, match="no 'x_train' array; found \\['images'\\]"):
        data.load(data_config(f"npz:{path}"))
    np.savez(path, x_train=np.zeros((0, 4, 4), np.uint8))
    with pytest.raises(UsageError, match="empty"):
        data.load(data_config(f"npz:{path}"))
    np.savez(path, x_train=np.zeros((10, 4, 4), np.uint8), x_test=np.zeros((10, 5, 4), np.uint8))
    with pytest.raises(UsageError, match="all splits must share one shape"):
        data.load(data_config(f"npz:{path}"))


@pytest.mark.parametrize("name,message", [
    ("idx:/nonexistent/dir", "no such directory"),
    ("npz:/nonexistent/file.npz", "no such file"),
    ("csvx:foo", "unknown data prefix 'csvx'"),
    ("not_a_tfds_dataset_xyz", "unknown data name 'not_a_tfds_dataset_xyz'"),
])
def test_bad_data_names(name, message):
    with pytest.raises(UsageError, match=message):
        data.load(data_config(name))


def test_tfds_path_on_mock_data():
    with tfds.testing.mock_data(num_examples=30):
        ds = data.load(data_config("mnist"))
    assert ds.image_shape == (28, 28, 1)
    assert len(ds.test) == 30 and len(ds.train) + len(ds.val) == 30
    assert ds.train.labels is not None and ds.train.images.dtype == np.float32


def test_train_batches_are_a_pure_function_of_seed_and_step():
    split = Split(np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1), np.arange(10))
    a, b = TrainBatches(split, 3, seed=7), TrainBatches(split, 3, seed=7)
    assert a.steps_per_epoch == 3
    epoch0 = np.concatenate([a.indices(s) for s in range(3)])
    assert len(set(epoch0)) == 9  # no repeats within an epoch; the remainder is dropped
    # Random access in any order gives the same batches (what resume relies on).
    for step in (5, 0, 4, 9, 1):
        np.testing.assert_array_equal(a(step)["image"], b(step)["image"])
    assert not np.array_equal(np.concatenate([a.indices(s) for s in range(3, 6)]), epoch0)
    with pytest.raises(UsageError, match="train.batch_size=11 is larger than the training split"):
        TrainBatches(split, 11, seed=0)


def test_eval_batches_pad_to_a_fixed_shape_with_a_mask():
    split = Split(np.ones((7, 2, 2, 1), np.float32), np.arange(7))
    batches = list(eval_batches(split, 3))
    assert [b["image"].shape for b in batches] == [(3, 2, 2, 1)] * 3
    np.testing.assert_array_equal(batches[-1]["mask"], [1, 0, 0])
    assert sum(b["mask"].sum() for b in batches) == 7


@pytest.mark.shared_data
def test_real_mnist_through_idx(shared_mnist):
    ds = data.load(data_config(f"idx:{shared_mnist}"))
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (60000, 10000)
    assert len(ds.val) == 6000
    with gzip.open(shared_mnist / "t10k-images-idx3-ubyte.gz") as f:
        payload = f.read()
    assert hashlib.md5(payload).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    pixels = np.round(ds.test.images[..., 0] * 255).astype(np.uint8)
    assert pixels.tobytes() == payload[16:]
    labels = np.concatenate([ds.train.labels, ds.val.labels])
    np.testing.assert_array_equal(np.bincount(labels),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])


def test_csv_reader_with_header_labels_and_scaling(tmp_path):
    path = tmp_path / "t.csv"
    rows = ["a,b,label,c"] + [f"{i},{2 * i + 1},{i % 3},5" for i in range(30)]
    path.write_text("\n".join(rows) + "\n")
    ds = data.load(data_config(f"csv:{path}", label_column="label"))
    assert ds.image_shape == (1, 3, 1)
    everything = np.concatenate([ds.train.images, ds.val.images, ds.test.images])
    assert everything.min() == 0.0 and everything.max() == 1.0
    assert np.all(everything[:, 0, 2, 0] == 0.0)  # a constant column maps to 0
    assert sorted(np.concatenate([ds.train.labels, ds.val.labels, ds.test.labels])) == sorted(
        i % 3 for i in range(30))


@pytest.mark.parametrize("text,message", [
    ("1,2\n3,x\n", "line 2, column '1': 'x' is not a number"),
    ("a,b\n1,2\n3\n", "line 3 has 1 cells; expected 2"),
    ("a,b\n", "empty"),
    ("1,nan\n", "'nan' is not finite"),
])
def test_csv_bad_cells(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        data.load(data_config(f"csv:{path}"))


def test_csv_unknown_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6\n7,8\n9,10\n")
    with pytest.raises(UsageError, match="no label column 'y'; columns: a, b"):
        data.load(data_config(f"csv:{path}", label_column="y"))


def _save_png(path, array):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_image_folder_with_classes_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for label in ("cat", "dog"):
            for i in range(n):
                _save_png(tmp_path / split / label / f"{i}.png", rng.integers(0, 256, (5, 4)))
    ds = data.load(data_config(f"images:{tmp_path}"))
    assert ds.image_shape == (5, 4, 1) and len(ds.test) == 4
    assert sorted(ds.test.labels) == [0, 0, 1, 1]


def test_image_folder_errors(tmp_path):
    _save_png(tmp_path / "a.png", np.zeros((5, 4)))
    _save_png(tmp_path / "b.png", np.zeros((6, 4)))
    with pytest.raises(UsageError, match="b.png: image of shape \\(6, 4, 1\\), but .*a.png has \\(5, 4, 1\\)"):
        data.load(data_config(f"images:{tmp_path}"))
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="b.png: cannot read image"):
        data.load(data_config(f"images:{tmp_path}"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="empty"):
        data.load(data_config(f"images:{empty}"))


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, x_train=np.array([{"a": 1}] * 4, dtype=object))
    with pytest.raises(UsageError, match="cannot read"):
        data.load(data_config(f"npz:{path}"))


def _digits_placed(images: np.ndarray, digits: np.ndarray) -> set[int]:
    """Indices of the digit images (K, s, s) that stand whole somewhere in `images` (N, H, W)."""
    s = digits.shape[1]
    known = {digit.tobytes(): k for k, digit in enumerate(digits)}
    windows = np.lib.stride_tricks.sliding_window_view(images, (s, s), axis=(1, 2))
    return {known[w.tobytes()] for w in np.ascontiguousarray(windows).reshape(-1, s, s) if w.tobytes() in known}


@pytest.mark.parametrize("prefix", ["scenes", "digitcaptions"])
def test_generated_test_scenes_share_no_digit_with_training_scenes(prefix):
    """Regression: from a data set without a test split (`digits`), test scenes were built from the
    training digits. Now a test pool of digits is carved first; no digit image is in both."""
    config = base_config("segmentation" if prefix == "scenes" else "captioning")
    config.data.name = f"{prefix}:digits"
    config.data.scenes.canvas, config.data.scenes.num_train, config.data.scenes.num_test = 16, 400, 150
    config.data.scenes.min_digits, config.data.scenes.max_digits = 1, 2
    splits = data.read_splits(config.data)
    digits = sources.read_digits()["train"].images[..., 0]
    used = {name: _digits_placed(splits[name].images[..., 0], digits) for name in ("train", "test")}
    assert len(used["train"]) > 300 and len(used["test"]) > 100  # the scenes really are made of digits
    assert not used["train"] & used["test"]


def test_figures_show_rows_drawn_across_the_classes():
    """On a class-sorted split (CIFAR-10's folder order) the first 16 rows are one class; the
    figure's rows take one of each class in turn, seeded, and stay inside the split."""
    labels = np.repeat(np.arange(10), 50)
    rows = shown_rows(len(labels), 16, labels, seed=0)
    assert len(set(rows.tolist())) == 16 and set(labels[rows[:10]].tolist()) == set(range(10))
    np.testing.assert_array_equal(rows, shown_rows(len(labels), 16, labels, seed=0))
    assert not np.array_equal(rows, shown_rows(len(labels), 16, labels, seed=1))
    unlabelled = shown_rows(500, 16, None, seed=0)
    assert len(set(unlabelled.tolist())) == 16 and unlabelled.max() < 500 and unlabelled.max() > 16
    assert len(shown_rows(5, 16, np.arange(5))) == 5  # a split smaller than the figure: all of it
