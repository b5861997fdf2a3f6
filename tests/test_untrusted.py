"""A workdir, sweep folder or records manifest is untrusted input: it never chooses what program
runs or where anything is written, every path it names stays in its folder, and any damage is
one line (exit 2) with nothing lost. Also: changed data refused on resume, image-folder rules,
decompression bombs, scratch folders, workers that end with their trainer."""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from PIL import Image

import aelab
from aelab import compiler
from aelab import workdir as wd
from aelab.data import files
from aelab.main import main
from conftest import REPO
from test_bad_input import snapshot
from test_streaming import colour_folder

CONFIG = str(REPO / "configs" / "digits_ae.py")
FAST = ["--config.train.num_steps=20", "--config.train.log_every=10", "--config.train.eval_every=20",
        "--config.train.checkpoint_every=10", "--config.train.progress=False", "--config.train.tensorboard=False",
        "--config.model.mlp.hidden=(16,)"]


def train(workdir, *extra) -> int:
    return main(["aelab", "train", f"--config={CONFIG}", f"--workdir={workdir}", *FAST, *extra])


def one_line(capsys, *fragments) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("aelab: error: "), err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny digits run, copied by each test that changes it."""
    workdir = tmp_path_factory.mktemp("base") / "run"
    assert train(workdir) == 0
    return workdir


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy, symlinks=True)
    return copy


# --- a workdir never chooses the program that runs, nor where anything is written ---------------

def test_a_use_compiles_into_the_users_cache_whatever_the_runs_config_says(run, tmp_path, monkeypatch):
    planted = tmp_path / "planted-cache"
    config = json.loads((run / "config.json").read_text())
    config["train"]["compile_cache"] = str(planted)
    (run / "config.json").write_text(json.dumps(config))
    chosen = []
    monkeypatch.setattr(compiler, "enable_compile_cache", chosen.append)
    aelab.load(str(run)).encode(np.zeros((2, 8, 8, 1), np.float32))
    assert chosen == [compiler.USER_CACHE]


def test_a_planted_cache_folder_is_neither_used_nor_created_by_a_use(run, tmp_path):
    """A real `aelab embed` in a fresh process (no cache chosen by the environment): the
    folder a run's config.json names is not created, and nothing is read from it; the user's
    cache is."""
    planted = run / "cache"
    config = json.loads((run / "config.json").read_text())
    config["train"]["compile_cache"] = str(planted)
    (run / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    result = subprocess.run([sys.executable, "-m", "aelab.main", "embed", f"--workdir={run}",
                             f"--out={tmp_path / 'codes.npz'}"], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not planted.exists()
    assert os.path.isdir(os.path.expanduser(compiler.USER_CACHE))


def test_train_refuses_a_compile_cache_inside_its_workdir(tmp_path, capsys):
    workdir = tmp_path / "w"
    assert train(workdir, f"--config.train.compile_cache={workdir}/cache") == 2
    one_line(capsys, "train.compile_cache=", "lies inside the workdir")
    assert not workdir.exists()


@pytest.mark.parametrize("name", ["config.json", "summary.json", "checkpoints/10/x"])
def test_a_uses_out_may_not_name_a_file_of_the_run(run, capsys, name):
    before = snapshot(run)
    assert main(["aelab", "embed", f"--workdir={run}", f"--out={run / name}"]) == 2
    one_line(capsys, "--out=")
    assert snapshot(run) == before


def test_a_symlinked_config_json_leading_out_of_the_run_is_refused(run, tmp_path, capsys):
    outside = tmp_path / "elsewhere.json"
    shutil.move(run / "config.json", outside)
    os.symlink(outside, run / "config.json")
    assert main(["aelab", "embed", f"--workdir={run}", f"--out={tmp_path / 'codes.npz'}"]) == 2
    one_line(capsys, "leads outside")


@pytest.mark.parametrize("content,problem", [("{not json", "not JSON"), ("[1, 2]", "holds a list"),
                                              ("", "not JSON")])
@pytest.mark.parametrize("name", ["config.json", "model.json"])
def test_a_damaged_workdir_file_is_one_line(run, tmp_path, capsys, name, content, problem):
    (run / name).write_text(content)
    assert main(["aelab", "embed", f"--workdir={run}", f"--out={tmp_path / 'codes.npz'}"]) == 2
    one_line(capsys, name, "is damaged", problem)


def test_lowering_num_steps_below_the_checkpoint_refuses_even_with_an_older_summary(run, capsys):
    assert train(run, "--config.train.num_steps=30") == 0  # checkpoint 30, summary at 30
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "step": 20}))  # as a stop at 30 would leave it
    capsys.readouterr()
    assert train(run, "--config.train.num_steps=20") == 2
    one_line(capsys, "train.num_steps=20 is below the step", "(30)")


# --- sweeps -------------------------------------------------------------------------------------

def make_sweep(root, finished, names):
    (root / "points").mkdir(parents=True)
    points = {}
    for i, name in enumerate(names):
        points[name] = {"values": {"model.latent_dim": i}, "status": "done"}
        if "/" not in name and name not in (".", ".."):
            shutil.copytree(finished, root / "points" / name)
    (root / "sweep.json").write_text(json.dumps({"axes": [["model.latent_dim", list(range(len(names)))]],
                                                 "points": points, "base_config": {}}))
    return root


@pytest.mark.parametrize("name", ["../../outside_run", "/abs/run", ".."])
def test_report_never_follows_a_point_name_out_of_the_sweep(finished, tmp_path, capsys, name):
    shutil.copytree(finished, tmp_path / "outside_run")
    root = make_sweep(tmp_path / "s" / "sweep", finished, ["a", name])
    assert main(["aelab", "report", f"--workdir={root}"]) == 2
    one_line(capsys, "names a point")
    assert not (root / "report.md").exists()


def test_a_symlinked_point_folder_is_refused(finished, tmp_path, capsys):
    shutil.copytree(finished, tmp_path / "outside_run")
    root = make_sweep(tmp_path / "sweep", finished, ["a"])
    shutil.rmtree(root / "points" / "a")
    os.symlink(tmp_path / "outside_run", root / "points" / "a")
    assert main(["aelab", "report", f"--workdir={root}"]) == 2
    one_line(capsys, "leads outside")


@pytest.mark.parametrize("record,problem", [({"points": {}}, "no list of axes"),
                                            ({"axes": [], "points": []}, "its points are not"),
                                            ([1], "holds a list")])
def test_a_damaged_sweep_json_is_one_line(tmp_path, capsys, record, problem):
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    assert main(["aelab", "report", f"--workdir={tmp_path}"]) == 2
    one_line(capsys, "sweep.json", problem)


def test_a_second_sweep_on_the_same_folder_is_refused_at_once(tmp_path, capsys):
    root = tmp_path / "sweep"
    root.mkdir()
    with wd.exclusive(str(root)):
        assert main(["aelab", "sweep", f"--config={CONFIG}", f"--workdir={root}", "--sweep=model.latent_dim=2,3",
                     *FAST]) == 2
    one_line(capsys, "is in use by another aelab process")
    assert not (root / "points").exists()


# --- records manifests ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    folder = colour_folder(root / "imgs", count=40)
    assert main(["aelab", "convert", f"--data=images:{folder}", f"--out={root / 'rec'}"]) == 0
    return root / "rec"


@pytest.fixture
def rec(records, tmp_path):
    copy = tmp_path / "rec"
    shutil.copytree(records, copy)
    return copy


def edit_manifest(rec, change):
    manifest = json.loads((rec / "manifest.json").read_text())
    change(manifest)
    (rec / "manifest.json").write_text(json.dumps(manifest))


def train_on(rec, workdir) -> int:
    return main(["aelab", "train", f"--config={CONFIG}", f"--workdir={workdir}", *FAST,
                 f"--config.data.name=records:{rec}", "--config.train.batch_size=8"])


def first_shard(manifest):
    return next(iter(manifest["splits"].values()))["shards"][0]


@pytest.mark.parametrize("escape", ["../outside.array_record", "/tmp/x.array_record"])
def test_a_manifest_shard_outside_its_folder_is_refused(rec, tmp_path, capsys, escape):
    shutil.copy(rec / first_shard(json.loads((rec / "manifest.json").read_text()))["file"],
                tmp_path / "outside.array_record")
    edit_manifest(rec, lambda m: first_shard(m).update(file=escape))
    assert train_on(rec, tmp_path / "w") == 2
    one_line(capsys, "not a file of this folder")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("field", ["labels", "references"])
def test_manifest_labels_and_references_outside_the_folder_are_refused(rec, tmp_path, capsys, field):
    edit_manifest(rec, lambda m: next(iter(m["splits"].values())).update({field: "/etc/hostname"}))
    assert train_on(rec, tmp_path / "w") == 2
    one_line(capsys, "not a file of this folder", "/etc/hostname")


def test_a_shard_symlinked_out_of_the_folder_is_refused(rec, tmp_path, capsys):
    shard = rec / first_shard(json.loads((rec / "manifest.json").read_text()))["file"]
    shutil.move(shard, tmp_path / "moved.array_record")
    os.symlink(tmp_path / "moved.array_record", shard)
    assert train_on(rec, tmp_path / "w") == 2
    one_line(capsys, "leads outside")


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m.pop("splits"), "splits"),
    (lambda m: m.update(splits=[]), "splits"),
    (lambda m: m.update(image_shape="abc"), "image_shape"),
    (lambda m: m.update(image_shape=[8, -8, 3]), "image_shape"),
    (lambda m: m.update(image_shape=[9, 9, 3]), "image_shape, dtype and mask_shape make 243"),
    (lambda m: m.update(dtype="object"), "dtype"),
    (lambda m: first_shard(m).update(count="many"), "count"),
])
def test_a_damaged_manifest_is_one_line_before_anything_is_written(rec, tmp_path, capsys, change, fragment):
    edit_manifest(rec, change)
    assert train_on(rec, tmp_path / "w") == 2
    one_line(capsys, "manifest.json", fragment)
    assert not (tmp_path / "w").exists()


def test_a_flipped_byte_in_a_shard_is_one_line_naming_it_before_training(rec, tmp_path, capsys):
    name = first_shard(json.loads((rec / "manifest.json").read_text()))["file"]
    data = bytearray((rec / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (rec / name).write_bytes(bytes(data))
    assert train_on(rec, tmp_path / "w") == 2
    one_line(capsys, f"shard {name}")
    assert not (tmp_path / "w" / "checkpoints").exists() or not os.listdir(tmp_path / "w" / "checkpoints")


def test_convert_removes_the_scratch_folders_a_killed_convert_left(records, tmp_path):
    out = tmp_path / "out" / "rec"
    out.parent.mkdir()
    locked_by_none = out.parent / ".convert-dead1"
    locked_by_none.mkdir()
    (locked_by_none / wd.LOCK).write_text("")
    (locked_by_none / "shard").write_bytes(b"x" * 1000)
    old_unlocked = out.parent / ".convert-dead2"
    old_unlocked.mkdir()
    os.utime(old_unlocked, (time.time() - 2 * wd.STALE_UNLOCKED_S,) * 2)
    folder = colour_folder(tmp_path / "imgs", count=12)
    assert main(["aelab", "convert", f"--data=images:{folder}", f"--out={out}"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["rec"]


def test_convert_refuses_an_out_folder_inside_its_source(tmp_path, capsys):
    folder = colour_folder(tmp_path / "imgs", count=12)
    before = snapshot(folder)
    assert main(["aelab", "convert", f"--data=images:{folder}", f"--out={folder / 'rec'}"]) == 2
    one_line(capsys, "lies inside the data folder")
    assert snapshot(folder) == before


# --- image folders ----------------------------------------------------------------------------------

def flat_folder(root, count=24):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def test_hidden_files_and_folders_of_an_image_folder_are_ignored(tmp_path):
    folder = flat_folder(tmp_path / "imgs")
    colour_folder(folder / ".thumbs", count=6)  # another shape: read, it would fail
    (folder / ".DS_Store").write_bytes(b"\0\1")
    from aelab import data
    from conftest import tiny_config
    loaded = data.load(tiny_config(**{"data.name": f"images:{folder}"}).data)
    assert sum(len(loaded.split(s)) for s in ("train", "val", "test")) == 24


def test_an_image_folder_mixing_images_and_subfolders_is_refused(tmp_path, capsys):
    folder = flat_folder(tmp_path / "imgs")
    colour_folder(folder / "more", count=4)
    assert train(tmp_path / "w", f"--config.data.name=images:{folder}") == 2
    one_line(capsys, "more", "000.png")
    assert not (tmp_path / "w").exists()


def png_declaring(path, width, height):
    """A valid PNG header declaring width x height pixels, with one tiny compressed row."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_one_line_naming_aelabs_pixel_limit(tmp_path, capsys):
    folder = flat_folder(tmp_path / "imgs")
    png_declaring(folder / "bomb.png", 20000, 20000)
    assert train(tmp_path / "w", f"--config.data.name=images:{folder}") == 2
    one_line(capsys, "bomb.png", "20000 x 20000 pixels", f"limit of {files.MAX_PIXELS:,} pixels")


def test_a_file_name_with_a_newline_cannot_forge_a_second_line(tmp_path, capsys):
    folder = flat_folder(tmp_path / "imgs")
    (folder / "x\naelab: error: forged.png").write_bytes(b"not a png")
    assert train(tmp_path / "w", f"--config.data.name=images:{folder}") == 2
    one_line(capsys, "x\\naelab: error: forged.png")


# --- the data a run trained on is part of its identity ---------------------------------------------

def test_a_resume_on_changed_data_is_refused_unless_accepted(tmp_path, capsys):
    folder = flat_folder(tmp_path / "imgs", count=40)
    workdir = tmp_path / "w"
    capsys.readouterr()
    assert train(workdir, f"--config.data.name=images:{folder}", "--config.train.batch_size=8", "--config.train.num_steps=10") == 0, capsys.readouterr().err
    for i in range(40, 60):  # images added between a checkpoint and the rerun
        shutil.copy(folder / "000.png", folder / f"{i:03d}.png")
    before = snapshot(workdir)
    capsys.readouterr()
    assert train(workdir, f"--config.data.name=images:{folder}", "--config.train.batch_size=8") == 2
    one_line(capsys, "changed", "train.accept_changed_data=True")
    assert snapshot(workdir) == before
    assert train(workdir, f"--config.data.name=images:{folder}", "--config.train.batch_size=8", "--config.train.accept_changed_data=True") == 0


# --- workers end with their trainer -----------------------------------------------------------------

def children(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in os.listdir(f"/proc/{parent}/task"):
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = {int(k) for k in f.read().split()}
            except OSError:
                continue
            todo.extend(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_no_input_worker_outlives_a_sigkilled_trainer(tmp_path):
    folder = colour_folder(tmp_path / "imgs", count=64)
    workdir = tmp_path / "w"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "aelab.main", "train", f"--config={CONFIG}", f"--workdir={workdir}",
         f"--config.data.name=images:{folder}", "--config.train.device_data_mb=0", "--config.train.batch_size=16",
         "--config.train.input_processes=2", "--config.train.num_steps=100000", "--config.train.log_every=5",
         "--config.train.eval_every=100000", "--config.train.progress=False", "--config.model.mlp.hidden=(16,)"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    metrics = workdir / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count('"train"') >= 2):
        assert time.time() < deadline and trainer.poll() is None, trainer.communicate()
        time.sleep(0.2)
    workers = children(trainer.pid)
    assert len(workers) >= 2, workers  # the grain workers (and the resource tracker)
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    deadline = time.time() + 10
    while [pid for pid in workers if alive(pid)] and time.time() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)]


# --- uses read only the split they use --------------------------------------------------------------

def test_embed_of_the_test_split_reads_no_training_file(tmp_path, capsys):
    """idx: and records: runs whose training files were moved away: `embed --split=test` opens
    only the test files and gives the codes it gave before; a carved split still needs them."""
    from test_data import make_idx_dir

    (tmp_path / "idx").mkdir()
    idx = make_idx_dir(tmp_path / "idx", n_train=80, n_test=30)
    folder = tmp_path / "imgs"
    colour_folder(folder / "train", count=60)
    colour_folder(folder / "test", count=20, seed=1)
    rec = tmp_path / "rec"
    assert main(["aelab", "convert", f"--data=images:{folder}", f"--out={rec}"]) == 0
    for name, data, moved in (("idx", f"idx:{idx}", sorted(idx.glob("train-*"))),
                              ("rec", f"records:{rec}", sorted(rec.glob("train-*")))):
        workdir = tmp_path / f"w_{name}"
        assert train(workdir, f"--config.data.name={data}", "--config.train.batch_size=8") == 0
        before = tmp_path / f"{name}_before.npz"
        assert main(["aelab", "embed", f"--workdir={workdir}", "--split=test", f"--out={before}"]) == 0
        away = tmp_path / f"{name}_away"
        away.mkdir()
        for path in moved:
            path.rename(away / path.name)
        after = tmp_path / f"{name}_after.npz"
        assert main(["aelab", "embed", f"--workdir={workdir}", "--split=test", f"--out={after}"]) == 0
        np.testing.assert_array_equal(np.load(before)["codes"], np.load(after)["codes"])
        capsys.readouterr()
        assert main(["aelab", "embed", f"--workdir={workdir}", "--split=val", f"--out={after}"]) == 2  # carved
        one_line(capsys, "train")
