"""The adversarial checks of the reliability issue, rerun as a user would: real processes, real
signals, a real full disk (tmpfs) and a real read-only mount.

    sudo python experiments/reliability/run.py [--workdir=/tmp/aelab_reliability] [--only=NAME ...]

Needs root for the small and read-only file systems (mount -t tmpfs); not part of CI (the
tests cover each case; this is the end-to-end pass over all of them). Writes
experiments/reliability/results.json and results.md: for every case the command, the exit
code and the documented one, the lines on stderr, and whether nothing was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
DIGITS = str(REPO / "configs" / "digits_ae.py")
QUIET = ["--config.train.progress=False", "--config.model.mlp.hidden=(32,)"]
NOISE = ("Traceback", "Exception ignored", "Event loop is closed")


def aelab(*args) -> list[str]:
    return [sys.executable, "-m", "aelab.main", *args]


def run(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(aelab(*args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def steps(workdir: pathlib.Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def wait_for(condition, process, timeout=300) -> None:
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"gave up waiting; process returned {process.poll()}")
        time.sleep(0.05)


def mount(path: pathlib.Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def unmount(path: pathlib.Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


def restores_all(workdir: pathlib.Path) -> bool:
    """Every checkpoint of a workdir restores and passes its checksums, read-only."""
    from aelab import checkpoint, config as config_lib, train
    from aelab import workdir as wd

    built = train.build(config_lib.from_saved(wd.read_json(workdir / "config.json")))
    reader = checkpoint.Checkpointer(str(workdir / "checkpoints"), read_only=True)
    try:
        for step in steps(workdir):
            reader.restore(step, built.state)
    finally:
        reader.close()
    return not (workdir / "checkpoints.corrupt").exists()


def outcome(name, command, result, expected, lost_nothing=True, note="", max_lines=1) -> dict:
    err = lines(result.stderr)
    one_line = len(err) <= max_lines and not any(word in result.stderr for word in NOISE)
    return {"case": name, "command": command, "exit": result.returncode, "expected_exit": expected,
            "stderr_lines": len(err), "stderr": err[-1][:300] if err else "", "one_line": one_line,
            "nothing_lost": bool(lost_nothing), "note": note,
            "ok": result.returncode == expected and one_line and bool(lost_nothing)}


class Finished:
    """A CompletedProcess-like record of a process we signalled ourselves."""

    def __init__(self, process: subprocess.Popen):
        _, self.stderr = process.communicate(timeout=600)
        self.returncode = process.returncode


# --- the cases -------------------------------------------------------------------------------

def live_uses(root: pathlib.Path) -> list[dict]:
    workdir = root / "live"
    trainer = subprocess.Popen(
        aelab("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET,
              "--config.data.normal_classes=(3,)", "--config.train.num_steps=1000000",
              "--config.train.checkpoint_every=20", "--config.train.keep_checkpoints=100000",
              "--config.train.log_every=20", "--config.train.eval_every=1000000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(steps(workdir)) >= 2, trainer)
    results = []
    for use in (["embed", f"--out={root / 'codes.npz'}"], ["anomaly"]):
        done = run(use[0], f"--workdir={workdir}", *use[1:])
        results.append((use[0], done))
    trainer.send_signal(signal.SIGTERM)
    stopped = Finished(trainer)
    whole = stopped.returncode == 0 and restores_all(workdir)
    return [outcome(f"`aelab {name}` on a run still training (checkpoint every 20 steps)",
                    f"aelab {name} --workdir=W (while aelab train runs in W)", done, 0, whole,
                    f"then every one of {len(steps(workdir))} checkpoints restored and passed its checksums",
                    max_lines=0) for name, done in results]


def sweep_signals(root: pathlib.Path) -> list[dict]:
    out = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        workdir = root / f"sweep_{sig.name}"
        command = aelab("sweep", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET,
                        "--config.train.num_steps=400", "--config.train.checkpoint_every=100",
                        "--config.train.log_every=20", "--sweep=model.latent_dim=2,3")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        point = workdir / "points" / "latent_dim=2"
        wait_for(lambda: steps(point) and (point / "metrics.jsonl").read_text().count("\n") >= 6, process)
        process.send_signal(sig)
        stopped = Finished(process)
        record = json.loads((workdir / "sweep.json").read_text())
        point_steps = steps(point)
        rerun = subprocess.run(command, capture_output=True, text=True)
        finished = json.loads((workdir / "sweep.json").read_text())
        resumed = json.loads((point / "resumes.jsonl").read_text().splitlines()[0])
        whole = (rerun.returncode == 0 and all(p["status"] == "done" for p in finished["points"].values())
                 and (sig == signal.SIGKILL or resumed["step"] == point_steps[-1] > 0))
        expected = 0 if sig == signal.SIGTERM else -signal.SIGKILL
        note = (f"sweep.json: stopped={record.get('stopped')!r}, checkpoint at step {point_steps}; "
                if sig == signal.SIGTERM else "") + f"the rerun resumed the point at step {resumed['step']} and finished"
        out.append(outcome(f"{sig.name} to `aelab sweep` during a point", f"kill -{sig.name[3:]} <aelab sweep>",
                           stopped, expected, whole, note, max_lines=2 if sig == signal.SIGTERM else 0))
    return out


def point_names(root: pathlib.Path) -> list[dict]:
    from sklearn.datasets import load_digits

    data = root / "sweep_names_data"
    data.mkdir()
    np.savez(data / "d.npz", x_train=(load_digits().images / 16).astype(np.float32))
    workdir = root / "sweep_names" / "inner"
    value = f"npz:{data}/../{data.name}/d.npz"
    done = run("sweep", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, "--config.train.num_steps=20",
               "--config.train.eval_every=20", f"--sweep=data.name=digits,{value}")
    inside = sorted(p.name for p in (workdir / "points").iterdir())
    contained = len(inside) == 2 and sorted(p.name for p in data.iterdir()) == ["d.npz"]
    return [outcome("a sweep value with `../` in it", f"aelab sweep ... --sweep=data.name=digits,{value}",
                    done, 0, contained, f"points: {inside}", max_lines=0)]


def flipped_bytes(root: pathlib.Path) -> list[dict]:
    workdir = root / "flipped"
    flags = [f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, "--config.train.checkpoint_every=500"]
    run("train", *flags, "--config.train.num_steps=1000")
    files = [p for p in (workdir / "checkpoints" / "1000" / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
    victim = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    for position in (len(data) // 3, len(data) // 2):
        data[position] ^= 0x40
    victim.write_bytes(bytes(data))
    done = run("train", *flags, "--config.train.num_steps=1500")
    moved = list((workdir / "checkpoints.corrupt").iterdir()) if (workdir / "checkpoints.corrupt").exists() else []
    return [outcome("bytes flipped inside a checkpoint's array data", "aelab train (resume)", done, 0,
                    len(moved) == 1 and steps(workdir)[-1] == 1500,
                    "warned, moved aside, resumed from step 500")]


def deleted_config(root: pathlib.Path) -> list[dict]:
    workdir = root / "no_config"
    flags = [f"--config={DIGITS}", f"--workdir={workdir}", *QUIET]
    run("train", *flags, "--config.train.num_steps=500")
    (workdir / "config.json").unlink()
    done = run("train", *flags, "--config.train.num_steps=1000", "--config.optimizer.learning_rate=0.01")
    return [outcome("config.json deleted, resumed with another learning rate",
                    "aelab train ... --config.optimizer.learning_rate=0.01", done, 2,
                    steps(workdir) == [500] and not (workdir / "config.json").exists())]


def captions_outside(root: pathlib.Path) -> list[dict]:
    from PIL import Image

    out = []
    for entry in ("../outside.png", "/etc/hostname"):
        folder = root / f"captions_{len(out)}"
        (folder / "images").mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((12, 10, 3), i * 30, np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(folder / "outside.png")
        text = "".join(f"{i}.png#0\ta picture {i} .\n" for i in range(6)) + f"{entry}#0\ta stray one .\n"
        (folder / "captions.txt").write_text(text)
        workdir = folder / "run"
        done = run("train", f"--config={REPO / 'configs' / 'caption_mnist_scenes.py'}", f"--workdir={workdir}",
                   f"--config.data.name=captions:{folder}", "--config.train.progress=False")
        out.append(outcome(f"captions.txt naming `{entry}`", "aelab train ... --config.data.name=captions:DIR",
                           done, 2, not workdir.exists()))
    return out


def full_disk(root: pathlib.Path) -> list[dict]:
    out = []
    disk = root / "disk"
    mount(disk, "3m")
    try:
        workdir = disk / "run"
        flags = [f"--config={DIGITS}", f"--workdir={workdir}", "--config.train.progress=False",
                 "--config.train.num_steps=3000", "--config.train.checkpoint_every=100",
                 "--config.train.keep_checkpoints=100"]
        done = run("train", *flags)
        leftovers = [p for p in workdir.rglob("*") if "tmp" in p.name]
        last = steps(workdir)[-1] if steps(workdir) else None
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = run("train", *flags)
        out.append(outcome("the disk fills up during a checkpoint", "aelab train (3 MB tmpfs)", done, 1,
                           not leftovers and again.returncode == 0,
                           f"no partial files; with room the rerun resumed from step {last} and finished"))
    finally:
        unmount(disk)
    # The disk fills once the final checkpoint is committed: the final evaluation, figures and
    # summary find no room.
    mount(disk, "16m")
    try:
        workdir = disk / "run"
        flags = ["--config.train.progress=False", "--config.train.num_steps=2000",
                 "--config.train.checkpoint_every=2000"]
        process = subprocess.Popen(aelab("train", f"--config={DIGITS}", f"--workdir={workdir}", *flags),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: (workdir / "checkpoints" / "2000").is_dir(), process)
        filler = disk / "filler"
        filler.write_bytes(b"\0" * max(shutil.disk_usage(disk).free - 4096, 0))
        done = Finished(process)
        leftovers = [p.name for p in workdir.rglob(".*.tmp")]
        filler.unlink()
        again = run("train", f"--config={DIGITS}", f"--workdir={workdir}", *flags)
        out.append(outcome("the disk fills up while the run finishes (evaluation, figures, summary)",
                           "aelab train (tmpfs filled after the final checkpoint)", done, 1,
                           "checkpoint step" not in done.stderr and not leftovers and again.returncode == 0
                           and (workdir / "summary.json").exists(),
                           "final checkpoint kept; with room the rerun wrote the figures and summary"))
    finally:
        unmount(disk)
    return out


def read_only(root: pathlib.Path) -> list[dict]:
    disk = root / "ro"
    mount(disk, "16m")
    try:
        workdir = disk / "run"
        flags = [f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, "--config.train.num_steps=300"]
        run("train", *flags)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        trained = run("train", *flags, "--config.train.num_steps=600")
        used = run("probe", f"--workdir={workdir}")
        read = run("embed", f"--workdir={workdir}", f"--out={root / 'ro_codes.npz'}", f"--uses_dir={root / 'ro_maps'}")
        return [outcome("a read-only workdir: resume", "aelab train (read-only mount)", trained, 2),
                outcome("a read-only workdir: a use writing into it", "aelab probe --workdir=W", used, 1),
                outcome("a read-only workdir: a use writing elsewhere", "aelab embed --workdir=W --uses_dir=D",
                        read, 0, max_lines=0)]
    finally:
        unmount(disk)


def workdir_is_a_file(root: pathlib.Path) -> list[dict]:
    path = root / "notes.txt"
    path.write_text("mine\n")
    done = run("train", f"--config={DIGITS}", f"--workdir={path}")
    return [outcome("--workdir names a regular file", "aelab train --workdir=notes.txt", done, 2,
                    path.read_text() == "mine\n")]


def two_sigterms(root: pathlib.Path) -> list[dict]:
    workdir = root / "two_signals"
    command = aelab("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET,
                    "--config.train.num_steps=1000000", "--config.train.checkpoint_every=200",
                    "--config.train.log_every=20", "--config.train.eval_every=1000000")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(steps(workdir)) >= 1, process)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    done = Finished(process)
    again = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (workdir / "resumes.jsonl").exists(), again)
    again.send_signal(signal.SIGINT)
    resumed = Finished(again)
    return [outcome("two SIGTERMs 20 ms apart", "kill -TERM twice", done, 128 + signal.SIGTERM,
                    resumed.returncode == 0, "the rerun resumed from the last checkpoint", max_lines=2),
            outcome("SIGINT (Ctrl-C)", "kill -INT <aelab train>", resumed, 0, True, max_lines=2)]


def damaged_manifest(root: pathlib.Path) -> list[dict]:
    workdir = root / "manifest"
    flags = [f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, "--config.train.checkpoint_every=500"]
    run("train", *flags, "--config.train.num_steps=1000")
    (workdir / "checkpoints" / "1000" / "state" / "manifest.ocdbt").write_bytes(b"\0garbage" * 20)
    done = run("train", *flags, "--config.train.num_steps=1500")
    return [outcome("a damaged manifest.ocdbt", "aelab train (resume)", done, 0,
                    steps(workdir)[-1] == 1500, "warned, moved aside, resumed from step 500")]


def small_inputs(root: pathlib.Path) -> list[dict]:
    out = []
    w = root / "small_w"

    def case(name, args, expected, command=None):
        done = run(*args)
        out.append(outcome(name, command or " ".join(args[:1] + [a for a in args[1:] if "workdir" not in a]),
                           done, expected, not w.exists()))

    case("a config-arg typo", ["train", f"--config={DIGITS}:latnt=3", f"--workdir={w}"], 2)
    case("a NaN learning rate", ["train", f"--config={DIGITS}", f"--workdir={w}",
                                 "--config.optimizer.learning_rate=nan"], 2)
    case("an invalid sweep point", ["sweep", f"--config={DIGITS}", f"--workdir={w}",
                                    "--sweep=model.arch=mlp,transformer"], 2)
    case("a sweep value given twice", ["sweep", f"--config={DIGITS}", f"--workdir={w}",
                                       "--sweep=model.latent_dim=2,2"], 2)
    noise = root / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(4000))
    case("an npz of random bytes", ["train", f"--config={DIGITS}", f"--workdir={w}",
                                    f"--config.data.name=npz:{noise}"], 2)
    nans = root / "nans.npz"
    np.savez(nans, x_train=np.full((10, 4, 4), np.nan, np.float32))
    case("an npz of NaN pixels", ["train", f"--config={DIGITS}", f"--workdir={w}",
                                  f"--config.data.name=npz:{nans}"], 2)
    from PIL import Image

    seg = root / "seg"
    for folder in ("images", "masks"):
        (seg / folder).mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.full((10, 12), 40 * i, np.uint8)).save(seg / "images" / f"{i}.png")
        Image.fromarray(np.full((10, 12), 7 if i == 4 else i % 2, np.uint8)).save(seg / "masks" / f"{i}.png")
    case("a segmentation mask with a class id out of range",
         ["train", f"--config={REPO / 'configs' / 'seg_mnist_scenes.py'}", f"--workdir={w}",
          f"--config.data.name=segfolder:{seg}", "--config.model.num_classes=2", "--config.train.batch_size=2",
          "--config.data.val_fraction=0.2", "--config.data.test_fraction=0.2"], 2)
    return out


def lowered_steps_and_logs(root: pathlib.Path) -> list[dict]:
    workdir = root / "lowered"
    command = aelab("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET,
                    "--config.train.num_steps=3000", "--config.train.checkpoint_every=500",
                    "--config.train.log_every=100", "--config.train.tensorboard=True")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: 1000 in steps(workdir), process)
    process.send_signal(signal.SIGKILL)
    Finished(process)
    events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    killed_events = sum(p.stat().st_size for p in events)
    lowered = run(*command[3:], "--config.train.num_steps=500")
    records = (workdir / "metrics.jsonl").read_text().splitlines(keepends=True)
    records[2] = records[2][:15] + "\n"
    (workdir / "metrics.jsonl").write_text("".join(records))
    resumed = run(*command[3:])
    sys.path.insert(0, str(REPO / "tests"))
    from test_reliability import tensorboard_scalars

    scalars = tensorboard_scalars(workdir / "tensorboard")
    return [outcome("num_steps lowered below the restored step", "aelab train ... --config.train.num_steps=500",
                    lowered, 2, json.loads((workdir / "config.json").read_text())["train"]["num_steps"] == 3000),
            outcome("a damaged line inside metrics.jsonl, then a resume", "aelab train (resume)", resumed, 0,
                    len(scalars) == len(set(scalars)) and killed_events > 1000,
                    f"one warning; the SIGKILLed run's event file held {killed_events} bytes; after the "
                    f"resume no TensorBoard (tag, step) appears twice ({len(scalars)} scalars)")]


# --- round three: untrusted workdirs, manifests and sweeps; several processes; streamed folders ---

def digit_pngs(folder: pathlib.Path, count: int = 300, start: int = 0) -> pathlib.Path:
    """`count` PNG digits (8x8, the embedded set) in one folder."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(load_digits().images[start:start + count]):
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{start + i:04d}.png")
    return folder


def base_run(root: pathlib.Path) -> pathlib.Path:
    """The finished digits run the round-three cases start from (copied where a case changes it)."""
    workdir = root / "w_base"
    if not (workdir / "summary.json").exists():
        run("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, "--config.train.num_steps=300")
    return workdir


def copy_run(root: pathlib.Path, name: str) -> pathlib.Path:
    target = root / name
    shutil.copytree(base_run(root), target, symlinks=True)
    return target


def records(root: pathlib.Path) -> pathlib.Path:
    out = root / "rec"
    if not out.exists():
        run("convert", f"--data=images:{digit_pngs(root / 'img300')}", f"--out={out}")
    return out


def edited_records(root: pathlib.Path, name: str, change) -> pathlib.Path:
    target = root / name
    shutil.copytree(records(root), target)
    manifest = json.loads((target / "manifest.json").read_text())
    change(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def bare_env(home: pathlib.Path) -> dict:
    """An environment choosing no compile cache: the user's is HOME/.cache/aelab/jax."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    return {**env, "HOME": str(home), "JAX_PLATFORMS": "cpu"}


def planted_cache(root: pathlib.Path) -> list[dict]:
    out = []
    for name, where in (("inside", "W/cache"), ("elsewhere", str(root / "elsewhere_cache"))):
        workdir = copy_run(root, f"planted_{name}")
        cache = workdir / "cache" if where == "W/cache" else pathlib.Path(where)
        config = json.loads((workdir / "config.json").read_text())
        config["train"]["compile_cache"] = str(cache)
        (workdir / "config.json").write_text(json.dumps(config))
        if name == "inside":  # a planted entry, as a compiled program would be named
            cache.mkdir()
            (cache / "jit__encode-planted-cache").write_bytes(b"\x7fELF" + b"\0" * 200)
        before = sorted(p.name for p in cache.iterdir()) if cache.exists() else None
        done = subprocess.run(aelab("embed", f"--workdir={workdir}", f"--out={root / f'codes_{name}.npz'}"),
                              capture_output=True, text=True, env=bare_env(root / f"home_{name}"), timeout=600)
        after = sorted(p.name for p in cache.iterdir()) if cache.exists() else None
        out.append(outcome(f"config.json's train.compile_cache {name} the run ({where}); a use runs",
                           "aelab embed --workdir=W --out=codes.npz", done, 0,
                           before == after and (root / f"home_{name}" / ".cache" / "aelab" / "jax").is_dir(),
                           "the run's cache folder untouched (neither read, created nor written); the "
                           "user's cache used", max_lines=0))
    workdir = root / "cache_in_workdir"
    done = run("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET,
               f"--config.train.compile_cache={workdir}/cache")
    out.append(outcome("train.compile_cache inside the run's own workdir", "aelab train ... "
                       "--config.train.compile_cache=W/cache", done, 2, not workdir.exists()))
    return out


def manifest_escapes(root: pathlib.Path) -> list[dict]:
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    first = lambda m: m["splits"]["train"]["shards"][0]  # noqa: E731
    shutil.copy(records(root) / first(json.loads((records(root) / "manifest.json").read_text()))["file"],
                outside / "x.array_record")
    np.save(outside / "lab.npy", np.zeros(300, np.int64))
    cases = [("a shard `../outside/x.array_record`", lambda m: first(m).update(file="../outside/x.array_record")),
             ("a shard by absolute path", lambda m: first(m).update(file=str(outside / "x.array_record"))),
             ("labels by absolute path", lambda m: m["splits"]["train"].update(labels=str(outside / "lab.npy"))),
             ("references `/etc/hostname`", lambda m: m["splits"]["train"].update(references="/etc/hostname"))]
    return train_on_edited_records(root, "escape", "records manifest names", cases)


def train_on_edited_records(root: pathlib.Path, tag: str, title: str, cases) -> list[dict]:
    """For each (name, change): a copy of the records with its manifest changed, trained on: exit 2,
    nothing written."""
    out = []
    for i, (name, change) in enumerate(cases):
        rec, workdir = edited_records(root, f"rec_{tag}{i}", change), root / f"w_{tag}{i}"
        done = run("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, f"--config.data.name=records:{rec}")
        out.append(outcome(f"{title} {name}", "aelab train --config.data.name=records:REC", done, 2,
                           not workdir.exists()))
    return out


def damaged_manifests(root: pathlib.Path) -> list[dict]:
    first = lambda m: m["splits"]["train"]["shards"][0]  # noqa: E731
    cases = [("`splits` deleted", lambda m: m.pop("splits")), ("`splits` is []", lambda m: m.update(splits=[])),
             ("`image_shape` deleted", lambda m: m.pop("image_shape")),
             ("`image_shape` is \"abc\"", lambda m: m.update(image_shape="abc")),
             ("a negative `image_shape`", lambda m: m.update(image_shape=[8, -8, 1])),
             ("a wrong `image_shape`", lambda m: m.update(image_shape=[9, 9, 1])),
             ("`dtype` is \"object\"", lambda m: m.update(dtype="object")),
             ("a shard's count changed", lambda m: first(m).update(count=first(m)["count"] + 1))]
    out = train_on_edited_records(root, "damaged", "manifest.json:", cases)
    rec, workdir = edited_records(root, "rec_flipped", lambda m: None), root / "w_flipped"
    shard = rec / json.loads((rec / "manifest.json").read_text())["splits"]["train"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    done = run("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, f"--config.data.name=records:{rec}")
    out.append(outcome("a byte flipped inside a shard", "aelab train --config.data.name=records:REC", done, 2,
                       not (workdir / "checkpoints").exists() or not steps(workdir),
                       "refused before the first step (SHA-256 of every shard), naming the shard"))
    return out


def sweep_escapes(root: pathlib.Path) -> list[dict]:
    sweep = root / "s" / "sweep"
    (sweep / "points").mkdir(parents=True)
    shutil.copytree(base_run(root), sweep / "points" / "a")
    copy_run(root, "outside_run")
    out = []
    for name, points in (("a point named `../../outside_run`", {"../../outside_run": 1}),
                         ("a point folder symlinked out of the sweep", {"b": 1}),
                         ("no `axes`", None)):
        if name.startswith("a point folder"):
            os.symlink(root / "outside_run", sweep / "points" / "b")
        record = {"axes": [["model.latent_dim", [1, 2]]], "base_config": {},
                  "points": {"a": {"values": {"model.latent_dim": 2}, "status": "done"},
                             **{k: {"values": {"model.latent_dim": v}, "status": "done"} for k, v in (points or {}).items()}}}
        if points is None:
            record.pop("axes")
        (sweep / "sweep.json").write_text(json.dumps(record))
        done = run("report", f"--workdir={sweep}")
        out.append(outcome(f"sweep.json: {name}", "aelab report --workdir=SWEEP", done, 2,
                           not (sweep / "report.md").exists()))
        if name.startswith("a point folder"):
            (sweep / "points" / "b").unlink()
    return out


def tokenizer_damage(root: pathlib.Path) -> list[dict]:
    sys.path.insert(0, str(REPO / "tests"))
    from test_translation import mt_config, reverse_corpus

    from aelab import train

    base = root / "mt_base"
    config = mt_config(reverse_corpus(root / "reverse.tsv", n=300), **{
        "train.num_steps": 20, "train.eval_every": 20, "train.checkpoint_every": 20, "decode.eval_examples": 0,
        "decode.beam_size": 1})
    train.train_and_evaluate(config, str(base))
    (root / "sentences.txt").write_text("ab cd\nef gh ba\n")
    out = []
    for name, damage in (("symlinked to /etc/passwd", lambda p: (p.unlink(), os.symlink("/etc/passwd", p))),
                         ("truncated", lambda p: p.write_bytes(p.read_bytes()[:40])),
                         ("random bytes", lambda p: p.write_bytes(np.random.default_rng(0).bytes(3000))),
                         ("deleted", lambda p: p.unlink())):
        workdir = root / f"mt_{name.split()[0]}"
        shutil.copytree(base, workdir, symlinks=True)
        damage(workdir / "tokenizer.model")
        done = run("translate", f"--workdir={workdir}", f"--input={root / 'sentences.txt'}")
        out.append(outcome(f"a translation run's tokenizer.model {name}", "aelab translate --workdir=W --input=F",
                           done, 2))
    return out


def damaged_workdirs(root: pathlib.Path) -> list[dict]:
    out = []
    for name, file, content in (("config.json not JSON", "config.json", "{not json"),
                                ("config.json a list", "config.json", "[1, 2]"),
                                ("model.json empty", "model.json", ""),
                                ("a key of the wrong type in config.json", "config.json", None)):
        workdir = copy_run(root, "damaged_" + name.split()[0] + str(len(out)))
        if content is None:
            config = json.loads((workdir / "config.json").read_text())
            config["model"]["latent_dim"] = "many"
            content = json.dumps(config)
        (workdir / file).write_text(content)
        done = run("embed", f"--workdir={workdir}", f"--out={root / 'damaged_codes.npz'}")
        out.append(outcome(f"a damaged workdir: {name}", "aelab embed --workdir=W --out=codes.npz", done, 2))
    for name in ("config.json", "summary.json"):
        workdir = copy_run(root, f"out_onto_{name}")
        before = (workdir / name).read_bytes()
        done = run("embed", f"--workdir={workdir}", f"--out={workdir / name}")
        out.append(outcome(f"a use's --out names the run's {name}", f"aelab embed --workdir=W --out=W/{name}", done,
                           2, (workdir / name).read_bytes() == before))
    workdir = copy_run(root, "lowered_stale")
    flags = [f"--config={DIGITS}", f"--workdir={workdir}", *QUIET]
    run("train", *flags, "--config.train.num_steps=400")
    summary = json.loads((workdir / "summary.json").read_text())
    (workdir / "summary.json").write_text(json.dumps({**summary, "step": 300}))  # an older summary
    done = run("train", *flags, "--config.train.num_steps=300")
    out.append(outcome("num_steps lowered below the checkpoint, an older summary.json present",
                       "aelab train ... --config.train.num_steps=300", done, 2, steps(workdir)[-1] == 400))
    return out


def streamed_folders(root: pathlib.Path) -> list[dict]:
    out = []
    folder = digit_pngs(root / "grows", 200)
    workdir = root / "w_grows"
    flags = [f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, f"--config.data.name=images:{folder}",
             "--config.train.batch_size=32"]
    run("train", *flags, "--config.train.num_steps=100")
    digit_pngs(folder, 100, start=200)
    before = (workdir / "config.json").read_bytes()
    done = run("train", *flags, "--config.train.num_steps=200")
    out.append(outcome("images added to the folder between a checkpoint and the rerun", "aelab train (resume)",
                       done, 2, steps(workdir)[-1] == 100 and (workdir / "config.json").read_bytes() == before))
    done = run("train", *flags, "--config.train.num_steps=200", "--config.train.accept_changed_data=True")
    out.append(outcome("the same, continued on purpose", "aelab train ... --config.train.accept_changed_data=True",
                       done, 0, steps(workdir)[-1] == 200, max_lines=0))
    hidden = digit_pngs(root / "hidden", 120)
    digit_pngs(hidden / ".thumbs" / "x", 30)
    workdir = root / "w_hidden"
    done = run("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, "--config.train.num_steps=20",
               f"--config.data.name=images:{hidden}", "--config.train.batch_size=32")
    summary = json.loads((workdir / "summary.json").read_text()) if (workdir / "summary.json").exists() else {}
    counted = sum(summary.get("data", {}).get(k, 0) for k in ("num_train", "num_val", "num_test"))
    out.append(outcome("an image folder with a hidden subfolder `.thumbs/`", "aelab train --config.data.name="
                       "images:F", done, 0, counted == 120, f"trained on the 120 top-level images "
                       f"(summary counts {counted})", max_lines=0))
    for name, make in (("a folder named `x.png` beside the images", lambda f: (f / "x.png").mkdir()),
                       ("top-level images beside a class subfolder", lambda f: digit_pngs(f / "more", 5))):
        folder = digit_pngs(root / f"mixed{len(out)}", 60)
        make(folder)
        workdir = root / f"w_mixed{len(out)}"
        done = run("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, f"--config.data.name=images:{folder}")
        out.append(outcome(f"an image folder with {name}", "aelab train --config.data.name=images:F", done, 2,
                           not workdir.exists()))
    folder = digit_pngs(root / "convert_into", 60)
    done = run("convert", f"--data=images:{folder}", f"--out={folder / 'rec'}")
    out.append(outcome("a records folder converted into its own source folder", "aelab convert --data=images:F "
                       "--out=F/rec", done, 2, not (folder / "rec").exists()))
    folder = digit_pngs(root / "bomb", 60)
    from PIL import Image

    Image.new("1", (20000, 20000)).save(folder / "bomb.png", optimize=True)
    done = run("train", f"--config={DIGITS}", f"--workdir={root / 'w_bomb'}", *QUIET,
               f"--config.data.name=images:{folder}")
    out.append(outcome("a PNG declaring 20000x20000 pixels", "aelab train --config.data.name=images:F", done, 2,
                       not (root / "w_bomb").exists()))
    folder = digit_pngs(root / "newline", 60)
    (folder / "x\naelab: error: forged.png").write_bytes(b"not a png")
    done = run("train", f"--config={DIGITS}", f"--workdir={root / 'w_newline'}", *QUIET,
               f"--config.data.name=images:{folder}")
    out.append(outcome("a file name with a newline in it", "aelab train --config.data.name=images:F", done, 2,
                       not (root / "w_newline").exists()))
    return out


def leftovers(root: pathlib.Path) -> list[dict]:
    out = []
    folder = digit_pngs(root / "img300", 300) if not (root / "img300").exists() else root / "img300"
    colour = root / "colour"
    sys.path.insert(0, str(REPO / "tests"))
    from test_streaming import colour_folder
    from test_untrusted import alive, children

    colour_folder(colour, count=256, size=32)
    workdir = root / "w_workers"
    process = subprocess.Popen(aelab("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET,
                                     f"--config.data.name=images:{colour}", "--config.train.device_data_mb=0",
                                     "--config.train.input_processes=2", "--config.train.num_steps=1000000",
                                     "--config.train.log_every=5", "--config.train.eval_every=1000000",
                                     "--config.train.batch_size=32"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count('"train"') >= 2, process)
    workers = children(process.pid)
    process.send_signal(signal.SIGKILL)
    killed = Finished(process)
    time.sleep(10)
    left = [pid for pid in workers if alive(pid)]
    out.append(outcome("SIGKILL of a run with train.input_processes=2", "kill -KILL <aelab train>", killed,
                       -signal.SIGKILL, not left, f"{len(workers)} worker processes, {len(left)} alive 10 s later",
                       max_lines=0))
    big = root / "big"
    colour_folder(big, count=3000, size=32)
    out_dir = root / "conv_out"
    out_dir.mkdir()
    process = subprocess.Popen(aelab("convert", f"--data=images:{big}", f"--out={out_dir / 'rec'}",
                                     "--shard_examples=100"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(p.name.startswith(".convert-") and any(p.glob("*.array_record"))
                         for p in out_dir.iterdir()), process)
    process.send_signal(signal.SIGKILL)
    Finished(process)
    scratch = [p.name for p in out_dir.iterdir()]
    done = run("convert", f"--data=images:{folder}", f"--out={out_dir / 'rec2'}")
    out.append(outcome("SIGKILL of aelab convert, then another convert beside it", "aelab convert ... (rerun)",
                       done, 0, sorted(p.name for p in out_dir.iterdir()) == ["rec2"],
                       f"left by the kill: {scratch}; removed by the next convert", max_lines=0))
    sweep = root / "two_sweeps"
    command = aelab("sweep", f"--config={DIGITS}", f"--workdir={sweep}", *QUIET, "--config.train.num_steps=300",
                    "--sweep=model.latent_dim=2,3")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (sweep / "sweep.json").exists(), first)
    second = run(*command[3:])
    finished = Finished(first)
    record = json.loads((sweep / "sweep.json").read_text())
    out.append(outcome("two `aelab sweep` on the same DIR at once", "aelab sweep ... (a second, while one runs)",
                       second, 2, finished.returncode == 0 and all(p["status"] == "done"
                                                                   for p in record["points"].values()),
                       "the first finished every point"))
    return out


def full_disk_convert(root: pathlib.Path) -> list[dict]:
    disk = root / "small_convert"
    mount(disk, "1m")
    try:
        done = run("convert", f"--data=images:{digit_pngs(root / 'img_big', 1797)}", f"--out={disk / 'rec'}",
                   "--image_size=32")
        return [outcome("aelab convert onto a full disk (1 MB tmpfs)", "aelab convert --out=FULL/rec", done, 1,
                        not list(disk.iterdir()), "nothing left on the disk")]
    finally:
        unmount(disk)


def processes(root: pathlib.Path) -> list[dict]:
    sys.path.insert(0, str(REPO / "tests"))
    from test_distributed import free_port

    folder = digit_pngs(root / "mp_data", 128)

    def launch(workdir, steps_, process_ids, extra=(), port=None):
        port = port or free_port()
        return [subprocess.Popen(aelab("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET,
                                       f"--config.data.name=images:{folder}", "--config.train.batch_size=16",
                                       f"--config.train.num_steps={steps_}", "--config.train.checkpoint_every=20",
                                       "--config.train.log_every=5", f"--coordinator_address=localhost:{port}",
                                       "--num_processes=2", f"--process_id={i}", *(extra[i] if extra else ())),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in process_ids]

    out = []
    workdir = root / "mp_mismatch"
    for name, flag in (("learning rate", "--config.optimizer.learning_rate=0.01"),
                       ("latent size", "--config.model.latent_dim=3")):
        both = [Finished(p) for p in launch(workdir, 40, (0, 1), extra=([], [flag]))]
        for i, done in enumerate(both):
            out.append(outcome(f"two processes of one run, another {name} on process 1: process {i}",
                               f"aelab train ... --process_id={i}" + (f" {flag}" if i else ""), done, 2,
                               not workdir.exists()))
    began = time.time()
    [alone] = [Finished(p) for p in launch(root / "mp_alone", 40, (0,), extra=(["--connect_timeout_s=20"],))]
    out.append(outcome("one process of two started, the other never", "aelab train ... --process_id=0 "
                       "--connect_timeout_s=20", alone, 1, True, f"ended after {time.time() - began:.0f} s"))
    workdir = root / "mp_lost"
    both = launch(workdir, 1000000, (0, 1), extra=(["--heartbeat_timeout_s=10"],) * 2)
    wait_for(lambda: steps(workdir), both[0])
    both[1].send_signal(signal.SIGKILL)
    began = time.time()
    survivor = Finished(both[0])
    Finished(both[1])
    out.append(outcome("process 1 of 2 SIGKILLed mid-run (--heartbeat_timeout_s=10)", "kill -KILL <process 1>",
                       survivor, 1,
                       bool(steps(workdir)), f"process 0 ended {time.time() - began:.0f} s later"))
    return out


def unused_split(root: pathlib.Path) -> list[dict]:
    from sklearn.datasets import load_digits

    sys.path.insert(0, str(REPO / "tests"))
    from test_data import write_idx

    idx = root / "idx"
    idx.mkdir()
    images = (load_digits().images * 255 / 16).astype(np.uint8)
    for prefix, part in (("train", images[:1500]), ("t10k", images[1500:])):
        write_idx(idx / f"{prefix}-images-idx3-ubyte", part)
        write_idx(idx / f"{prefix}-labels-idx1-ubyte", np.zeros(len(part), np.uint8))
    workdir = root / "w_idx"
    run("train", f"--config={DIGITS}", f"--workdir={workdir}", *QUIET, f"--config.data.name=idx:{idx}",
        "--config.train.num_steps=100")
    for path in idx.glob("train-*"):
        path.rename(root / path.name)
    done = run("embed", f"--workdir={workdir}", "--split=test", f"--out={root / 'idx_codes.npz'}")
    return [outcome("`aelab embed --split=test` on an idx: run whose training files were moved away",
                    "aelab embed --workdir=W --split=test --out=codes.npz", done, 0, True, max_lines=0)]


CASES = {f.__name__: f for f in (live_uses, sweep_signals, point_names, flipped_bytes, deleted_config,
                                 captions_outside, full_disk, read_only, workdir_is_a_file, two_sigterms,
                                 damaged_manifest, small_inputs, lowered_steps_and_logs, planted_cache,
                                 manifest_escapes, damaged_manifests, sweep_escapes, tokenizer_damage,
                                 damaged_workdirs, streamed_folders, leftovers, full_disk_convert, processes,
                                 unused_split)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/aelab_reliability")
    parser.add_argument("--only", action="append", choices=sorted(CASES), default=[])
    args = parser.parse_args()
    root = pathlib.Path(args.workdir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    started, results = time.time(), []
    for name in args.only or CASES:
        print(f"== {name}", flush=True)
        for result in CASES[name](root):
            print(f"   {'ok ' if result['ok'] else 'BAD'} exit {result['exit']} (documented "
                  f"{result['expected_exit']}): {result['case']}: {result['stderr']}", flush=True)
            results.append(result)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "aelab"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip())
    record = {"command": " ".join(["python", *sys.argv]), "commit": commit, "aelab_changed_since_commit": dirty,
              "machine": platform.platform(), "wall_s": round(time.time() - started, 1),
              "passed": sum(r["ok"] for r in results), "cases": results}
    if not args.only:
        (HERE / "results.json").write_text(json.dumps(record, indent=2) + "\n")
        rows = ["| case | exit (documented) | stderr | nothing lost | ok |", "|---|---|---|---|---|"]
        rows += [f"| {r['case']} | {r['exit']} ({r['expected_exit']}) | {r['stderr_lines']} line(s): "
                 f"`{r['stderr'][:140]}` | {'yes' if r['nothing_lost'] else 'NO'}{': ' + r['note'] if r['note'] else ''}"
                 f" | {'yes' if r['ok'] else 'NO'} |" for r in results]
        (HERE / "results.md").write_text("\n".join(rows) + "\n")
    print(f"{record['passed']} passed, {len(results) - record['passed']} failed")


if __name__ == "__main__":
    main()
