"""Streaming input: images that stay on disk until a batch reads them, with the same bits as in memory."""

import gzip
import json
import os
import re

import jax
import numpy as np
import pytest
from conftest import REPO, tiny_config
from PIL import Image

from aelab import checkpoint, data, train
from aelab.data import sources
from aelab.data.lazy import LazyImages
from aelab.errors import UsageError


def colour_folder(root, count=96, size=8, seed=0):
    """`count` random RGB PNGs in two class folders."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return root


def folder_config(path, **overrides):
    return tiny_config(**{"data.name": f"images:{path}", "train.batch_size": 16, **overrides})


def test_lazy_images_read_only_the_rows_asked_for():
    pixels = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    read = []
    images = LazyImages(lambda i: read.append(i) or pixels[i], (4, 4, 3), 10, str)
    view = images.take(np.array([7, 2, 5]))
    assert read == [] and view.shape == (3, 4, 4, 3) and view.nbytes == 3 * 48 * 4
    np.testing.assert_array_equal(view[np.array([2, 0])], pixels[[5, 7]] / np.float32(255))
    assert read == [5, 7]
    np.testing.assert_array_equal(view[::2], pixels[[7, 5]].astype(np.float32) / np.float32(255.0))
    np.testing.assert_array_equal(np.asarray(images), pixels.astype(np.float32) / np.float32(255.0))
    assert view.where(1) == "2"


def test_idx_files_are_memory_mapped_and_read_like_the_gzipped_ones(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (5, 3, 3), dtype=np.uint8)
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in pixels.shape)
    (tmp_path / "x").write_bytes(header + pixels.tobytes())
    (tmp_path / "x.gz").write_bytes(gzip.compress(header + pixels.tobytes()))
    mapped = sources.read_idx_file(str(tmp_path / "x"), rank=3)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, sources.read_idx_file(str(tmp_path / "x.gz"), rank=3))
    (tmp_path / "y").write_bytes(header + pixels.tobytes()[:-1])
    with pytest.raises(UsageError, match=r"header says \[5, 3, 3\] \(45 bytes\) but the file holds 44"):
        sources.read_idx_file(str(tmp_path / "y"), rank=3)


def test_a_folder_is_streamed_above_the_device_budget_and_read_into_memory_below(tmp_path):
    config = folder_config(colour_folder(tmp_path / "f"))
    streamed = data.load(config.data, stream_above_mb=0)
    assert streamed.info["input"] == "streamed" and isinstance(streamed.train.images, LazyImages)
    in_memory = data.load(config.data, stream_above_mb=2048)
    assert in_memory.info["input"] == "in memory" and isinstance(in_memory.train.images, np.ndarray)
    for name in ("train", "val", "test"):  # the same carving, the same pixels
        np.testing.assert_array_equal(np.asarray(streamed.split(name).images), in_memory.split(name).images)
        np.testing.assert_array_equal(streamed.split(name).labels, in_memory.split(name).labels)


def test_streamed_training_is_bitwise_the_in_memory_run_and_resumes_exactly(tmp_path):
    """The batch of step s is a function of (seed, s) on the streaming path too: however many
    threads make batches ahead (none, 2 or 3), or two worker processes, the run equals the
    on-device one, and a run
    stopped at step 20 and continued ends where an unbroken one does."""
    folder = colour_folder(tmp_path / "f")

    def streamed(threads, **more):
        return folder_config(folder, **{"train.device_data_mb": 0, "train.input_threads": threads, **more})
    summaries = {"device": train.train_and_evaluate(folder_config(folder), str(tmp_path / "device")),
                 "streamed": train.train_and_evaluate(streamed(3), str(tmp_path / "streamed")),
                 "processes": train.train_and_evaluate(streamed(0, **{"train.input_processes": 2}),
                                                       str(tmp_path / "processes"))}
    assert summaries["device"]["data"]["input"] == "in memory" and summaries["device"]["batches"] == "on device"
    assert summaries["streamed"]["data"]["input"] == "streamed" and summaries["streamed"]["batches"] == "from host"
    assert 0 <= summaries["streamed"]["input_wait_fraction"] < 1
    train.train_and_evaluate(streamed(0, **{"train.num_steps": 20}), str(tmp_path / "resumed"))
    summaries["resumed"] = train.train_and_evaluate(streamed(2), str(tmp_path / "resumed"))
    for name in ("streamed", "processes", "resumed"):
        for a, b in zip(jax.tree.leaves(checkpoint.read_state(str(tmp_path / name))[1]),
                        jax.tree.leaves(checkpoint.read_state(str(tmp_path / "device"))[1]), strict=True):
            assert np.array_equal(a, b), name
        assert summaries[name]["eval"] == summaries["device"]["eval"]


def test_a_segmentation_folder_streams_images_and_masks_with_the_in_memory_bits(tmp_path):
    """`segfolder:` reads image and mask files lazily (masks as class ids, 0/255 as binary), and a
    streamed run ends bitwise where the in-memory one does."""
    from test_segmentation import make_segfolder, seg_config

    make_segfolder(tmp_path / "seg", n=40, size=(12, 12), values=(0, 255))

    def config(**more):
        return seg_config(**{"data.name": f"segfolder:{tmp_path / 'seg'}", "model.num_classes": 2,
                             "train.batch_size": 8, "train.num_steps": 6, "train.eval_every": 6,
                             "train.checkpoint_every": 6, "train.eval_batch_size": 8, **more})
    loaded = data.load(config().data, stream_above_mb=0)
    assert isinstance(loaded.train.masks, LazyImages) and loaded.train.masks.dtype == np.int32
    assert set(np.unique(np.asarray(loaded.test.masks)).tolist()) == {0, 1}
    summaries = {"device": train.train_and_evaluate(config(), str(tmp_path / "device")),
                 "streamed": train.train_and_evaluate(config(**{"train.device_data_mb": 0, "train.input_threads": 2}),
                                                      str(tmp_path / "streamed"))}
    assert summaries["streamed"]["data"]["input"] == "streamed"
    assert summaries["device"]["data"]["input"] == "in memory"
    for a, b in zip(jax.tree.leaves(checkpoint.read_state(str(tmp_path / "streamed"))[1]),
                    jax.tree.leaves(checkpoint.read_state(str(tmp_path / "device"))[1]), strict=True):
        assert np.array_equal(a, b)
    assert summaries["streamed"]["eval"] == summaries["device"]["eval"]
    assert summaries["streamed"]["baselines"] == summaries["device"]["baselines"]


def test_a_damaged_file_in_a_streamed_folder_stops_the_run_before_training_naming_it(tmp_path):
    """Streamed files are decoded only when a batch needs them, but every header is read at
    the start: an unreadable file or one of another size is one error, and nothing is written."""
    folder = colour_folder(tmp_path / "f")
    damaged = folder / "class1" / "0051.png"
    damaged.write_bytes(b"not a png")
    streamed = folder_config(folder, **{"train.device_data_mb": 0, "train.input_threads": 2})
    with pytest.raises(UsageError, match=f"{damaged}: cannot read image"):
        train.train_and_evaluate(streamed, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(damaged, format="PNG")
    with pytest.raises(UsageError, match=f"{damaged}: image of shape \\(4, 4, 3\\), but .* has \\(8, 8, 3\\)"):
        train.train_and_evaluate(streamed, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_a_file_that_fails_to_decode_in_a_worker_process_is_one_line_naming_it(tmp_path, capsys):
    """Headers pass, bodies are cut short: the worker process's error reaches the user as the
    one line of a UsageError, exit 2, not a traceback."""
    from aelab import main

    folder = colour_folder(tmp_path / "f")
    for path in sorted((folder / "class0").iterdir())[1:13]:  # the first is read at listing
        path.write_bytes(path.read_bytes()[:60])
    command = ["aelab", "train", "--config=configs/digits_ae.py", f"--config.data.name=images:{folder}",
               "--config.train.device_data_mb=0", "--config.train.input_processes=2",
               "--config.train.batch_size=16", "--config.train.progress=false", f"--workdir={tmp_path / 'w'}"]
    assert main.main(command) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(rf"aelab: error: {re.escape(str(folder))}/class0/\d+\.png: cannot read image "
                        r"\(image file is truncated\)", err), err


def test_uses_read_only_the_images_of_the_split_they_score(tmp_path, monkeypatch):
    """A trained run's uses open its data lazily: `embed --split=test` decodes test files only,
    and the model itself (aelab.load) none."""
    from aelab import restore
    from aelab.uses import codes

    root = tmp_path / "f"
    colour_folder(root / "train", count=64), colour_folder(root / "test", count=24, seed=1)
    workdir = str(tmp_path / "w")
    train.train_and_evaluate(folder_config(root, **{"train.num_steps": 10}), workdir)
    read = []
    row = LazyImages._row
    monkeypatch.setattr(LazyImages, "_row", lambda self, i: read.append(self._describe(i)) or row(self, i))
    restore.load(workdir).encode(np.zeros((2, 8, 8, 3), np.float32))
    assert read == []
    codes.embed(workdir, "test", str(tmp_path / "codes.npz"))
    assert len(read) == 24 and all(f"{os.sep}test{os.sep}" in path for path in read)


def test_a_folder_converted_to_records_reads_back_the_same_examples(tmp_path, capsys):
    from aelab import main

    folder, out = colour_folder(tmp_path / "f", count=40), tmp_path / "records"
    assert main.main(["aelab", "convert", f"--data=images:{folder}", f"--out={out}", "--shard_examples=16"]) == 0
    assert "train 40 examples of shape (8, 8, 3) in 3 shard(s)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [16, 16, 8]
    assert manifest["dtype"] == "uint8" and len(manifest["splits"]["train"]["shards"][0]["sha256"]) == 64
    config = folder_config(folder).data
    from_records = data.load(_with_name(config, f"records:{out}"), stream_above_mb=0)
    assert isinstance(from_records.train.images, LazyImages)
    from_folder = data.load(config)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(np.asarray(from_records.split(name).images), from_folder.split(name).images)
        np.testing.assert_array_equal(from_records.split(name).labels, from_folder.split(name).labels)
    # Never over a folder that exists; nothing left behind by a conversion that fails.
    assert main.main(["aelab", "convert", f"--data=images:{folder}", f"--out={out}"]) == 2
    (folder / "class0" / "0002.png").write_bytes(b"not a png")
    assert main.main(["aelab", "convert", f"--data=images:{folder}", f"--out={tmp_path / 'again'}"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "records"]
    assert "0002.png: cannot read image" in capsys.readouterr().err


def test_mask_and_caption_folders_convert_to_records_and_read_back_the_same(tmp_path, capsys):
    """Records hold an image's mask after its pixels and a split's captions beside its shards:
    a segmentation or captioning run reads them as it reads the folder."""
    from test_captioning import flickr8k_release
    from test_segmentation import make_segfolder

    from aelab import main
    from aelab.config import base_config

    make_segfolder(tmp_path / "seg", n=10, values=(0, 1, 2), splits=("train", "test"))
    captions, _ = flickr8k_release(tmp_path / "Flickr8k")
    for source, extra in ((f"segfolder:{tmp_path / 'seg'}", {}), (f"captions:{captions}", {"image_size": 16})):
        out = tmp_path / f"records_{source.split(':')[0]}"
        assert main.main(["aelab", "convert", f"--data={source}", f"--out={out}", "--shard_examples=4",
                          f"--image_size={extra.get('image_size', 0)}"]) == 0
        config = base_config("segmentation" if source.startswith("seg") else "captioning").data
        config.name = source
        config.update(extra)
        from_source = data.load(config)
        config.name = f"records:{out}"
        from_records = data.load(config, stream_above_mb=0)
        assert from_records.info["input"] == "streamed"
        for name in ("train", "val", "test"):
            a, b = from_source.split(name), from_records.split(name)
            np.testing.assert_array_equal(a.images, np.asarray(b.images))
            if source.startswith("seg"):
                assert isinstance(b.masks, LazyImages)
                np.testing.assert_array_equal(a.masks, np.asarray(b.masks))
            else:
                assert list(a.references) == list(b.references) and len(a.references[0]) == 5
    assert json.loads((tmp_path / "records_segfolder" / "manifest.json").read_text())["mask_shape"] == [10, 12]


def test_damaged_records_are_one_line_naming_the_shard(tmp_path, capsys):
    from aelab import main

    folder, out = colour_folder(tmp_path / "f", count=40), tmp_path / "records"
    assert main.main(["aelab", "convert", f"--data=images:{folder}", f"--out={out}", "--shard_examples=16"]) == 0
    name = _with_name(folder_config(folder).data, f"records:{out}")
    shard = out / "train-00001-of-00003.array_record"
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(UsageError, match=r"shard train-00001-of-00003.array_record has \d+ bytes but the manifest"):
        data.load(name)
    shard.unlink()
    with pytest.raises(UsageError, match="missing shard train-00001-of-00003.array_record"):
        data.load(name)
    (out / "manifest.json").write_text("{}")
    command = ["aelab", "train", "--config=configs/digits_ae.py", f"--config.data.name=records:{out}",
               f"--workdir={tmp_path / 'w'}"]
    assert main.main(command) == 2 and not (tmp_path / "w").exists()
    assert capsys.readouterr().err.strip().endswith("manifest.json is not an aelab-records manifest of version 1")


def _with_name(data_config, name):
    config = data_config.copy_and_resolve_references()
    config.name = name
    return config


@pytest.mark.slow
def test_celeba64_config_trains_on_tfds_mock_data_and_on_a_colour_folder(tmp_path):
    """configs/celeba64_vae.py: TFDS celeb_a (its mock data: 218x178 faces, no class label) cut
    and resized to 64x64, read lazily from the ArrayRecord files; and a folder of colour images of
    another size, streamed."""
    import tensorflow_datasets as tfds

    from aelab.config import from_file

    def short(config, **more):
        for key, value in {"train.num_steps": 4, "train.batch_size": 8, "train.eval_batch_size": 16,
                           "train.log_every": 2, "train.eval_every": 4, "train.checkpoint_every": 4,
                           "train.progress": False, "train.tensorboard": False, "vae.iw_samples": 4,
                           "vae.iw_chunk": 4, "data.download": False, **more}.items():
            group, name = key.split(".")
            config[group][name] = value
        return config

    with tfds.testing.mock_data(num_examples=24):
        summary = train.train_and_evaluate(short(from_file(REPO / "configs" / "celeba64_vae.py")),
                                           str(tmp_path / "tfds"))
    assert summary["data"]["image_shape"] == [64, 64, 3] and np.isfinite(summary["eval"]["neg_elbo"])
    colour_folder(tmp_path / "faces", count=48, size=40)
    config = short(from_file(REPO / "configs" / "celeba64_vae.py"),
                   **{"data.name": f"images:{tmp_path / 'faces'}", "train.device_data_mb": 0})
    summary = train.train_and_evaluate(config, str(tmp_path / "folder"))
    assert summary["data"]["image_shape"] == [64, 64, 3] and summary["data"]["input"] == "streamed"
    assert np.isfinite(summary["eval"]["neg_elbo"]) and summary["step"] == 4
