"""Segmentation: losses and metrics by hand, data readers and generators, the U-Net, training, predict."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx
from PIL import Image

from aelab import baselines, data, evaluate, losses, train
from aelab.config import base_config, set_value
from aelab.data import segmentation
from aelab.data.augment import flip_and_crop
from aelab.errors import UsageError
from aelab.main import main
from aelab.models.unet import UNet, depth_to_space
from conftest import SHARED_DATA, bitwise


def seg_config(**overrides):
    """Scenes of the embedded 8x8 digits on a 24x24 canvas: trains in seconds."""
    config = base_config()
    config.task = "segmentation"
    config.loss = "cross_entropy+dice"
    config.model.arch = "unet"
    config.model.num_classes = 11
    config.model.unet.depth = 2
    config.model.unet.width = 8
    config.data.name = "scenes:digits"
    config.data.scenes.canvas = 24
    config.data.scenes.num_train = 600
    config.data.scenes.num_test = 100
    config.optimizer.learning_rate = 3e-3
    config.train.num_steps = 40
    config.train.batch_size = 32
    config.train.eval_batch_size = 64
    config.train.log_every = 10
    config.train.eval_every = config.train.checkpoint_every = 20
    config.train.progress = False
    config.train.tensorboard = False
    for key, value in overrides.items():
        set_value(config, key, value)
    return config


def write_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode=mode).save(path)


# --- math --------------------------------------------------------------------

def test_scores_from_a_hand_computed_confusion_matrix():
    # rows: true class, columns: predicted class
    confusion = np.array([[5, 1, 0],
                          [2, 3, 0],
                          [0, 0, 0]])  # class 2 never occurs and is never predicted
    scores = evaluate.segmentation_scores(confusion)
    assert scores["pixel_accuracy"] == pytest.approx(8 / 11)
    # IoU_0 = 5 / (6 + 7 - 5); IoU_1 = 3 / (5 + 4 - 3); class 2 is left out of the mean.
    assert scores["iou_0"] == pytest.approx(5 / 8)
    assert scores["iou_1"] == pytest.approx(3 / 6)
    assert "iou_2" not in scores
    assert scores["mean_iou"] == pytest.approx((5 / 8 + 3 / 6) / 2)
    assert scores["dice"] == pytest.approx((10 / 13 + 6 / 9) / 2)
    # A class that is predicted but never true has IoU 0 and counts.
    with_false_positive = np.array([[4, 0, 1], [0, 2, 0], [0, 0, 0]])
    assert evaluate.segmentation_scores(with_false_positive)["mean_iou"] == pytest.approx((4 / 5 + 1 + 0) / 3)


def test_confusion_and_losses_ignore_unlabelled_pixels():
    targets = jnp.array([[[0, 1], [255, 1]]])
    valid = (targets != 255).astype(jnp.float32)
    safe = jnp.where(targets == 255, 0, targets)
    predictions = jnp.array([[[0, 0], [1, 1]]])
    confusion = losses.confusion_matrices(predictions, safe, valid, 2)[0]
    np.testing.assert_array_equal(confusion, [[1, 0], [1, 1]])  # the ignored pixel counts nowhere
    logits = jax.random.normal(jax.random.key(0), (1, 2, 2, 2))
    changed = logits.at[0, 1, 0].set(jnp.array([9.0, -9.0]))  # only the ignored pixel changes
    weights = jnp.ones(2)
    for loss in (losses.pixel_cross_entropy, losses.soft_dice_loss):
        np.testing.assert_allclose(loss(logits, safe, valid, weights), loss(changed, safe, valid, weights))
    # Cross-entropy by hand: the mean over the three labelled pixels of -log softmax[true].
    log_p = jax.nn.log_softmax(logits)[0]
    by_hand = -(log_p[0, 0, 0] + log_p[0, 1, 1] + log_p[1, 1, 1]) / 3
    np.testing.assert_allclose(losses.pixel_cross_entropy(logits, safe, valid, weights)[0], by_hand, rtol=1e-6)


def test_soft_dice_by_hand_and_class_weights():
    # Confident, correct logits give Dice ~1 (loss ~0); the Dice of uniform predictions by hand.
    targets = jnp.array([[[0, 1, 1, 1]]])
    valid = jnp.ones((1, 1, 4))
    confident = 50.0 * jax.nn.one_hot(targets, 2)
    assert float(losses.soft_dice_loss(confident, targets, valid, jnp.ones(2))[0]) == pytest.approx(0, abs=1e-6)
    uniform = jnp.zeros((1, 1, 4, 2))
    # class 0: I = 0.5, sum p = 2, |true| = 1 -> (1 + 1) / (3 + 1); class 1: I = 1.5 -> (3 + 1) / (5 + 1)
    dice = np.array([2 / 4, 4 / 6])
    got = losses.soft_dice_loss(uniform, targets, valid, jnp.ones(2))[0]
    assert float(got) == pytest.approx(1 - dice.mean(), rel=1e-6)
    weighted = losses.soft_dice_loss(uniform, targets, valid, jnp.array([3.0, 1.0]))[0]
    assert float(weighted) == pytest.approx(1 - (3 * dice[0] + dice[1]) / 4, rel=1e-6)
    # Weighted cross-entropy: each pixel counts with its true class's weight.
    ce = losses.pixel_cross_entropy(uniform, targets, valid, jnp.array([3.0, 1.0]))[0]
    assert float(ce) == pytest.approx(np.log(2), rel=1e-6)  # uniform: log 2 at every pixel


def test_majority_baseline():
    train_masks = np.array([[[1, 1], [1, 0]]])
    test_masks = np.array([[[0, 1], [1, 255]]])
    scores = baselines.majority_baseline(train_masks, test_masks, 2, ignore_index=255)
    assert scores["class"] == 1
    assert scores["pixel_accuracy"] == pytest.approx(2 / 3)
    assert scores["mean_iou"] == pytest.approx((0 + 2 / 3) / 2)


# --- transforms --------------------------------------------------------------

def test_flips_and_crops_move_image_and_mask_together():
    masks = jnp.arange(4 * 10 * 12).reshape(4, 10, 12) % 7
    images = jnp.stack([masks / 10.0, masks / 20.0], axis=-1).astype(jnp.float32)
    for key in range(5):
        out_images, out_masks = flip_and_crop(images, masks, jax.random.key(key), True, True, 6)
        assert out_images.shape == (4, 6, 6, 2) and out_masks.shape == (4, 6, 6)
        np.testing.assert_allclose(out_images[..., 0], out_masks / 10.0, rtol=1e-6)
        np.testing.assert_allclose(out_images[..., 1], out_masks / 20.0, rtol=1e-6)
    # Flips really happen: some example differs from the unflipped crop-free input.
    flipped_images, flipped = flip_and_crop(images, masks, jax.random.key(1), True, False, 0)
    assert not np.array_equal(flipped, masks)
    np.testing.assert_allclose(flipped_images[..., 0], flipped / 10.0, rtol=1e-6)


def test_resizing_blends_images_but_never_class_ids():
    image = np.zeros((8, 8, 1), np.uint8)
    image[:, 4:] = 200
    mask = np.zeros((8, 8), np.int32)
    mask[:, 4:] = 3
    small_image, small_mask = segmentation.resize_pair(image, mask, 5)
    assert small_image.shape == (5, 5, 1) and small_mask.shape == (5, 5)
    assert set(np.unique(small_mask)) <= {0, 3}
    assert 0 < small_image[0, 2, 0] < 200  # the image is interpolated at the edge


# --- readers and generators --------------------------------------------------

def make_segfolder(root, n=4, size=(10, 12), values=(0, 255), splits=()):
    rng = np.random.default_rng(0)
    for split in splits or [""]:
        for i in range(n):
            write_png(root / split / "images" / f"{i}.png", rng.integers(0, 256, size))
            write_png(root / split / "masks" / f"{i}.png", rng.choice(values, size))


def test_segfolder_pairs_binary_masks_and_split_folders(tmp_path):
    make_segfolder(tmp_path / "flat")
    splits = segmentation.read_segfolder(str(tmp_path / "flat"), 0)
    train_split = splits["train"]
    assert train_split.images.shape == (4, 10, 12, 1) and train_split.masks.shape == (4, 10, 12)
    assert set(np.unique(train_split.masks)) == {0, 1}  # 0/255 masks read as binary
    assert splits["val"] is None and splits["test"] is None
    make_segfolder(tmp_path / "split", values=(0, 1, 2), splits=("train", "test"))
    splits = segmentation.read_segfolder(str(tmp_path / "split"), 6)
    assert splits["train"].images.shape == (4, 6, 6, 1) and splits["test"].masks.shape == (4, 6, 6)
    assert set(np.unique(splits["train"].masks)) <= {0, 1, 2}
    assert splits["val"] is None


def test_segfolder_errors(tmp_path):
    make_segfolder(tmp_path / "unpaired")
    (tmp_path / "unpaired" / "masks" / "3.png").unlink()
    with pytest.raises(UsageError, match="1 unpaired file.*3.png.*needs a mask of the same name"):
        segmentation.read_segfolder(str(tmp_path / "unpaired"), 0)
    make_segfolder(tmp_path / "size")
    write_png(tmp_path / "size" / "masks" / "2.png", np.zeros((9, 12)))
    with pytest.raises(UsageError, match=r"2.png: mask of size 12x9 but its image .*2.png is 12x10"):
        segmentation.read_segfolder(str(tmp_path / "size"), 0)["train"].verify()  # headers: before training
    make_segfolder(tmp_path / "rgb")
    write_png(tmp_path / "rgb" / "masks" / "2.png", np.zeros((10, 12, 3)))
    with pytest.raises(UsageError, match="2.png: mask has RGB pixels; masks must be single-channel"):
        segmentation.read_segfolder(str(tmp_path / "rgb"), 0)["train"].verify()
    make_segfolder(tmp_path / "sizes")
    write_png(tmp_path / "sizes" / "images" / "3.png", np.zeros((9, 12)))
    write_png(tmp_path / "sizes" / "masks" / "3.png", np.zeros((9, 12)))
    with pytest.raises(UsageError, match=r"3.png: image of shape \(9, 12, 1\).*set data.image_size to resize"):
        segmentation.read_segfolder(str(tmp_path / "sizes"), 0)["train"].verify()
    (tmp_path / "nomasks" / "images").mkdir(parents=True)
    with pytest.raises(UsageError, match="no mask folder; expected one of masks, mask, labels, label"):
        segmentation.read_segfolder(str(tmp_path / "nomasks"), 0)
    with pytest.raises(UsageError, match="no such directory"):
        segmentation.read_segfolder(str(tmp_path / "missing"), 0)


def test_class_ids_beyond_num_classes_are_refused(tmp_path):
    make_segfolder(tmp_path, n=6, values=(0, 1, 5))
    config = seg_config(**{"data.name": f"segfolder:{tmp_path}", "model.num_classes": 3,
                           "train.batch_size": 2, "data.val_fraction": 0.2, "data.test_fraction": 0.2})
    with pytest.raises(UsageError, match=r"masks/0.png: mask holds class id 5, outside 0..2 \(model.num_classes=3"):
        train.build(config)
    # Marked as unlabelled, the same ids are accepted.
    config.segmentation.ignore_index = 5
    assert train.build(config).dataset.train.masks.max() == 5


def test_scenes_masks_tell_the_truth_about_their_digits():
    digits = data.read_splits(ml_collections.ConfigDict({"name": "digits"}))["train"]
    one_per_class = digits.take(np.array([np.flatnonzero(digits.labels == d)[0] for d in range(10)]))
    scenes = segmentation.make_scenes(one_per_class, 30, canvas=24, min_digits=1, max_digits=3,
                                      ink_threshold=0.5, seed=0)
    again = segmentation.make_scenes(one_per_class, 30, canvas=24, min_digits=1, max_digits=3,
                                     ink_threshold=0.5, seed=0)
    np.testing.assert_array_equal(scenes.masks, again.masks)  # seeded
    assert scenes.images.shape == (30, 24, 24, 1) and scenes.masks.max() <= 10
    ink = scenes.images[..., 0]
    assert np.all(ink[scenes.masks > 0] >= 0.5) and np.all(scenes.masks[ink >= 0.5] > 0)
    counts = [len(set(np.unique(m)) - {0}) for m in scenes.masks]
    assert max(counts) >= 2 and min(counts) >= 1
    # Every class in a mask is the label of a digit that really sits there: some 8x8 window
    # holds exactly that digit's pixels, and the mask marks its ink with that class.
    for image, mask in zip(ink, scenes.masks):
        for cls in set(np.unique(mask).tolist()) - {0}:
            digit = one_per_class.images[cls - 1, ..., 0]
            found = [(y, x) for y in range(17) for x in range(17)
                     if np.array_equal(image[y:y + 8, x:x + 8], digit)
                     and np.array_equal(mask[y:y + 8, x:x + 8], np.where(digit >= 0.5, cls, 0))]
            assert found, f"class {cls} is in the mask but digit {cls - 1} is not in the image"


def test_scenes_use_test_digits_for_the_test_split():
    config = seg_config()
    splits = data.read_splits(config.data)
    assert len(splits["train"]) == 600 and len(splits["test"]) == 100 and splits["val"] is None
    loaded = data.load(config.data)
    assert len(loaded.train) + len(loaded.val) == 600 and loaded.image_shape == (24, 24, 1)
    with pytest.raises(UsageError, match="data.scenes.canvas=6 is smaller than the 8x8 digits"):
        data.load(seg_config(**{"data.scenes.canvas": 6}).data)
    with pytest.raises(UsageError, match="min_digits=3 and max_digits=2"):
        data.load(seg_config(**{"data.scenes.min_digits": 3, "data.scenes.max_digits": 2}).data)


def test_isbi_membranes_through_segfolder():
    path = SHARED_DATA / "isbi2012_membrane"
    if not (path / "image" / "0.png").exists():
        pytest.skip(f"ISBI 2012 membranes not found at {path} (set AELAB_SHARED_DATA to the shared/data folder)")
    splits = segmentation.read_segfolder(str(path), 0)
    train_split = splits["train"].in_memory()
    assert train_split.images.shape == (30, 512, 512, 1) and train_split.masks.shape == (30, 512, 512)
    # Binary 0/255 masks, membranes (0) about 22% of the pixels.
    assert set(np.unique(train_split.masks)) == {0, 1}
    assert 0.15 < np.mean(train_split.masks == 0) < 0.3


def test_tfds_segmentation_set_on_mock_data():
    rng = np.random.default_rng(0)

    def examples(self, split, **kwargs):
        out = []
        for i in range(6):
            h, w = rng.integers(20, 40, size=2)
            out.append({"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                        "segmentation_mask": rng.integers(1, 4, (h, w, 1), dtype=np.uint8),
                        "label": i % 2})
        return out

    config = base_config()
    config.data.name = "oxford_iiit_pet"
    config.data.mask_key = "segmentation_mask"
    config.data.mask_offset = 1
    config.data.image_size = 16
    with tfds.testing.mock_data(num_examples=6, as_data_source_fn=examples):
        dataset = data.load(config.data)
    assert dataset.image_shape == (16, 16, 3) and dataset.test.masks.shape == (6, 16, 16)
    assert set(np.unique(dataset.train.masks)) <= {0, 1, 2}
    config.data.image_size = 0
    with tfds.testing.mock_data(num_examples=6, as_data_source_fn=examples):
        with pytest.raises(UsageError, match="images vary in size; set data.image_size"):
            data.load(config.data)


# --- model -------------------------------------------------------------------

def test_depth_to_space_is_the_inverse_of_space_to_depth():
    x = jnp.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
    b, h, w, c = x.shape
    space_to_depth = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)
    np.testing.assert_array_equal(depth_to_space(space_to_depth), x)


@pytest.mark.parametrize("upsample", ["transpose", "resize", "depth_to_space"])
@pytest.mark.parametrize("skips", [True, False])
def test_unet_gives_logits_at_the_input_size(upsample, skips):
    model = UNet(3, 5, depth=2, width=4, upsample=upsample, skips=skips, norm="group",
                 rngs=nnx.Rngs(0))
    for shape in ((2, 16, 16, 3), (1, 13, 22, 3)):  # odd sizes are padded and cropped back
        assert model(jnp.ones(shape)).shape == shape[:3] + (5,)


def test_skips_add_parameters_only_in_the_decoder():
    count = lambda m: sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
    with_skips = UNet(1, 2, 2, 4, skips=True, rngs=nnx.Rngs(0))
    without = UNet(1, 2, 2, 4, skips=False, rngs=nnx.Rngs(0))
    # The first conv of each decoder block sees twice the channels: 3*3*(2c - c)*c more weights.
    assert count(with_skips) - count(without) == 9 * (8 * 8 + 4 * 4)


def test_bad_segmentation_configs():
    for overrides, message in [
        ({"loss": "bce"}, "unknown loss 'bce'; known: cross_entropy, cross_entropy"),
        ({"model.arch": "mlp"}, "unknown model.arch 'mlp' for task segmentation \\(segmentation models\\); known: unet"),
        ({"model.num_classes": 1}, "model.num_classes=1 must be >= 2"),
        ({"segmentation.class_weights": (1.0, 2.0)}, r"must hold 11 positive weights"),
        ({"augment.crop": 30}, "augment.crop=30 is larger than the 24x24 images"),
        ({"data.name": "digits"}, "task=segmentation needs masks, but digits has none"),
        ({"data.image_size": -1}, "data.image_size=-1 must be >= 0"),
        ({"model.unet.upsample": "bilinear"}, "unknown model.unet.upsample 'bilinear'; known: depth_to_space, resize"),
    ]:
        with pytest.raises(UsageError, match=message):
            train.build(seg_config(**overrides))


# --- training, resume and predict --------------------------------------------

def test_tiny_segmentation_learns_and_writes_its_figures(tmp_path):
    summary = train.train_and_evaluate(seg_config(**{"train.num_steps": 300}), str(tmp_path))
    ev, majority = summary["eval"], summary["baselines"]["majority"]
    assert ev["pixel_accuracy"] > majority["pixel_accuracy"] + 0.01
    assert ev["mean_iou"] > 2 * majority["mean_iou"]
    assert ev["iou_0"] > 0.95  # background is found
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    val = [r["loss"] for r in records if r["split"] == "val"]
    assert val[-1] < val[0]
    for name in ("segmentations", "confusion_matrix", "loss", "mean_iou"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0


@bitwise
def test_segmentation_resume_is_bitwise_identical(tmp_path):
    overrides = {"augment.hflip": True, "augment.crop": 16}  # random augmentation survives resume too
    straight = train.train_and_evaluate(seg_config(**overrides), str(tmp_path / "a"))
    train.train_and_evaluate(seg_config(**overrides), str(tmp_path / "b"), should_stop=lambda s: s == 13)
    resumed = train.train_and_evaluate(seg_config(**overrides), str(tmp_path / "b"))
    assert resumed["eval"] == straight["eval"]


def test_predict_writes_masks_at_the_input_size(tmp_path, capsys, monkeypatch):
    workdir = tmp_path / "run"
    train.train_and_evaluate(seg_config(), str(workdir))
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("predict read the training data"))
    inputs = tmp_path / "inputs"
    write_png(inputs / "a.png", np.random.default_rng(0).integers(0, 256, (24, 24)))
    write_png(inputs / "b.png", np.random.default_rng(1).integers(0, 256, (30, 20, 3)))
    assert main(["aelab", "predict", f"--workdir={workdir}", f"--input={inputs}", f"--out={tmp_path / 'out'}"]) == 0
    a = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    b = np.asarray(Image.open(tmp_path / "out" / "b.png"))
    assert a.shape == (24, 24) and b.shape == (30, 20) and a.max() <= 10
    assert "wrote" in capsys.readouterr().out
    # Bad input: one line, exit 2, nothing written.
    (inputs / "broken.png").write_bytes(b"not a png")
    assert main(["aelab", "predict", f"--workdir={workdir}", f"--input={inputs}", f"--out={tmp_path / 'out2'}"]) == 2
    assert "broken.png: cannot read image" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
    assert main(["aelab", "predict", f"--workdir={workdir}", f"--input={tmp_path / 'nothing'}",
                 f"--out={tmp_path / 'out3'}"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_predict_refuses_runs_of_other_tasks(tmp_path, capsys):
    from conftest import tiny_config

    train.train_and_evaluate(tiny_config(), str(tmp_path / "ae"))
    write_png(tmp_path / "x.png", np.zeros((8, 8)))
    assert main(["aelab", "predict", f"--workdir={tmp_path / 'ae'}", f"--input={tmp_path / 'x.png'}",
                 f"--out={tmp_path / 'out'}"]) == 2
    assert "predict needs a segmentation run" in capsys.readouterr().err


def test_bad_segmentation_input_from_the_command_line_writes_nothing(tmp_path, capsys):
    from conftest import REPO

    workdir = tmp_path / "run"
    code = main(["aelab", "train", f"--config={REPO / 'configs' / 'seg_mnist_scenes.py'}",
                 f"--workdir={workdir}", "--config.data.name=scenes:digits", "--config.data.scenes.canvas=6"])
    assert code == 2 and not workdir.exists()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.scenes.canvas=6 is smaller than the 8x8 digits" in err
