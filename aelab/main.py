"""The `aelab` command: parses one subcommand's flags, runs it, maps errors to exit codes.

    aelab --help                      the commands, a line each
    aelab COMMAND --help              a command's own flags, with their help and defaults

Exit codes: 0 done (or stopped by a signal, checkpointed), 1 training
diverged or a file could not be written, 2 bad input (nothing written),
128 + N a second signal N stopped the process at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import types
from typing import Callable, Iterator

from absl import flags

from aelab.errors import NonFiniteError, UsageError, WriteError, describe_os_error
from aelab import workdir as wd


@dataclasses.dataclass(frozen=True)
class Flag:
    kind: str  # string | integer | float | boolean | multi_string
    default: object
    help: str
    lower_bound: int | float | None = None


FLAGS = {
    "workdir": Flag("string", None, "the run's folder: train creates it (or resumes the run in it); "
                                    "the other commands read it without writing to its files"),
    "coordinator_address": Flag("string", None, "multi-host: host:port of process 0, with --num_processes "
                                                "and --process_id (default: detect SLURM or a TPU pod)"),
    "num_processes": Flag("integer", None, "multi-host: how many processes"),
    "process_id": Flag("integer", None, "multi-host: this process's index"),
    "connect_timeout_s": Flag("integer", 300, "multi-host: how long a process waits for all to connect "
                                              "before it ends, naming the coordinator", 1),
    "heartbeat_timeout_s": Flag("integer", 100, "multi-host: how long a silent peer is waited for before "
                                                "the others end, naming it and the last good checkpoint", 1),
    "sweep": Flag("multi_string", [], "an axis of the grid, KEY=V1,V2,... (repeat for a grid)"),
    "uses_dir": Flag("string", None, "where to write numbers and pictures (default: WORKDIR/uses)"),
    "num_samples": Flag("integer", 64, "how many images to draw from the prior", 1),
    "seed": Flag("integer", 0, "random seed"),
    "split": Flag("string", "test", "the split to encode: train | val | test"),
    "probe_examples": Flag("integer", 10000, "training examples the probes fit on", 10),
    "noise": Flag("multi_string", ["gaussian:0.1,0.3,0.5"], "corruption KIND:LEVEL[,LEVEL...] "
                                                           "(gaussian, mask, salt_and_pepper; repeat for more)"),
    "beam_size": Flag("integer", None, "beam size (1 = greedy; default: the run's decode.beam_size)"),
    "workload": Flag("string", None, "mlp_ae | conv_ae | mlp_vae | resnet_vae | transformer_mt"),
    "json": Flag("boolean", False, "print one JSON line instead of a table"),
    "examples": Flag("integer", 10000, "at most this many training examples are encoded and scored", 1),
    "shard_examples": Flag("integer", 10000, "examples per ArrayRecord shard", 1),
    "image_size": Flag("integer", 0, "resize images (and masks) to this square as config.data.image_size "
                                     "does; 0 = as the source reads them", 0),
    "min_seconds": Flag("float", 5.0, "seconds of timed training steps", 0.1),
    "imports": Flag("multi_string", [], "a plugin module to import first, e.g. one that registers a reader of "
                                        "your own format (repeat for more)"),
    "cpu_ynn_dots": Flag("boolean", None, "CPU matmuls by YNNPACK everywhere (--cpu_ynn_dots) or nowhere "
                                          "(--nocpu_ynn_dots); default: the compile policy's rule "
                                          "(aelab/compiler.py)"),
}


def _out(help_text: str) -> Flag:
    return Flag("string", None, help_text)


def _input(help_text: str) -> Flag:
    return Flag("string", None, help_text)


@dataclasses.dataclass(frozen=True)
class Command:
    summary: str
    usage: str
    flags: tuple[str, ...] = ()
    config: bool = False  # takes --config=FILE[:ARG] and --config.KEY=VALUE overrides
    own: dict = dataclasses.field(default_factory=dict)  # flags whose help is the command's own
    required: tuple[str, ...] = ()


COMMANDS = {
    "train": Command("train a model, or resume the run in WORKDIR",
                     "--config=configs/X.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]",
                     ("workdir", "coordinator_address", "num_processes", "process_id", "connect_timeout_s",
                      "heartbeat_timeout_s"),
                     config=True,
                     required=("config", "workdir")),
    "config": Command("print the resolved, validated config of a launch, without running it",
                      "--config=configs/X.py[:ARG] [--config.KEY=VALUE ...]", config=True, required=("config",)),
    "sweep": Command("train a grid of configs, each point a workdir under DIR/points/",
                     "--config=configs/X.py --workdir=DIR --sweep=KEY=V1,V2,... [--sweep=...]",
                     ("workdir", "sweep"), config=True, required=("config", "workdir", "sweep")),
    "report": Command("write a sweep's table (report.csv, report.md) and figures again", "--workdir=DIR",
                      ("workdir",), required=("workdir",)),
    "sample": Command("draw samples from a VAE's prior, and interpolations", "--workdir=DIR [--num_samples=64]",
                      ("workdir", "num_samples", "seed", "uses_dir"), required=("workdir",)),
    "embed": Command("write the codes of a split (.npz) and latent maps", "--workdir=DIR --out=codes.npz",
                     ("workdir", "split", "uses_dir"), own={"out": _out("the .npz file to write")},
                     required=("workdir", "out")),
    "probe": Command("linear-probe and 5-NN accuracy of the codes, beside PCA and pixels", "--workdir=DIR",
                     ("workdir", "probe_examples", "uses_dir"), required=("workdir",)),
    "denoise": Command("PSNR and SSIM of noisy and reconstructed test images",
                       "--workdir=DIR [--noise=gaussian:0.1,0.3]", ("workdir", "noise", "seed", "uses_dir"),
                       required=("workdir",)),
    "disentangle": Command("MIG and DCI of the codes against a generated set's known factors, and latent traversals",
                           "--workdir=DIR [--examples=10000]", ("workdir", "examples", "uses_dir"),
                           required=("workdir",)),
    "anomaly": Command("one-class anomaly detection: AUROC, AUPRC, a threshold set on validation data",
                       "--workdir=DIR", ("workdir", "uses_dir"), required=("workdir",)),
    "predict": Command("segmentation masks for images, as PNGs", "--workdir=DIR --input=IMAGE_OR_DIR --out=DIR",
                       ("workdir",), own={"input": _input("an image, or a folder of images"),
                                          "out": _out("the folder to write one mask PNG per image into")},
                       required=("workdir", "input", "out")),
    "translate": Command("translate sentences, one a line; score them with --reference",
                         "--workdir=DIR [--input=FILE] [--out=FILE] [--reference=FILE]",
                         ("workdir", "beam_size"),
                         own={"input": _input("a UTF-8 text file, one sentence a line (default: stdin)"),
                              "out": _out("the file to write the translations to (default: stdout)"),
                              "reference": _input("a reference translation a line, aligned with the input: "
                                                  "prints sacreBLEU's BLEU and chrF with their signatures")},
                         required=("workdir",)),
    "caption": Command("caption images", "--workdir=DIR --input=IMAGE_OR_DIR [--out=FILE]",
                       ("workdir", "beam_size"), own={"input": _input("an image, or a folder of images"),
                                                      "out": _out("the file to write the captions to "
                                                                  "(default: stdout)")},
                       required=("workdir", "input")),
    "convert": Command("write a data set once as ArrayRecord shards and a manifest, read back as records:DIR",
                       "--data=images:DIR --out=DIR [--shard_examples=10000] [--image_size=0] [--imports=MODULE]",
                       ("shard_examples", "image_size", "imports"),
                       own={"data": _input("the data set to convert, a data name as config.data.name takes "
                                           "(images:DIR, segfolder:DIR, captions:DIR, idx:DIR, npz:FILE, ...)"),
                            "out": _out("the folder to create (it must not exist)")},
                       required=("data", "out")),
    "bench": Command("time aelab's own train and eval steps on a fixed workload", "--workload=mlp_ae [--json]",
                     ("workload", "json", "min_seconds", "cpu_ynn_dots"), required=("workload",)),
}


def overview() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: aelab COMMAND [--flag=value ...]   (aelab COMMAND --help: that command's flags)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "Exit codes: 0 done or stopped by a signal (checkpointed), 1 training diverged or a file",
              "could not be written, 2 bad input (nothing written). Guide: README.md and docs/."]
    return "\n".join(lines) + "\n"


def command_help(name: str, argv: list[str] = ()) -> str:
    """A command's help; for a command that takes --config, also what the registered components
    (built in, and the plugins of a --config given beside --help) let a config choose."""
    command = COMMANDS[name]
    lines = [f"usage: aelab {name} {command.usage}", "", command.summary, "", "flags:"]
    if command.config:
        lines += ["  --config: a Python file with get_config(arg) -> ConfigDict; FILE:ARG passes ARG",
                  "  --config.KEY=VALUE: override any key of the config, type-checked (aelab config prints them)"]
    for flag_name, flag in _flags_of(command).items():
        default = "" if flag.default in (None, []) else f" (default: {flag.default})"
        required = " (required)" if flag_name in command.required else ""
        lines.append(f"  --{flag_name}: {flag.help}{default}{required}")
    if command.config:
        lines += ["", *registered_components(split_config_args(list(argv))[1])]
    return "\n".join(lines) + "\n"


def registered_components(config_path: str | None) -> list[str]:
    """Lines naming what a config can choose, with each one's own keys and defaults."""
    from aelab import config as config_lib  # start-up: only --help of a config command lists them
    from aelab.registry import ARCHITECTURES, METRICS, OBJECTIVES, PENALTIES, READERS, TASKS  # start-up: as above

    if config_path:
        config_lib.load(config_path, [], strict=False)  # imports the file's plugins
    families = sorted({e.family for e in ARCHITECTURES})

    def keys(entry) -> str:
        own = ", ".join(f"{k}={v!r}" for k, v in config_lib.flatten(dict(entry.config)) if k != entry.name)
        return f"{entry.name} ({own})" if own else entry.name

    lines = ["what a config chooses (with the keys each one adds; aelab config prints a run's):",
             "  task: " + ", ".join(sorted(e.name for e in TASKS)),
             "  model.arch, its keys in config.model.<arch>:"]
    lines += [f"    {family} models: " + "; ".join(keys(e) for e in sorted(ARCHITECTURES.entries(family),
                                                                        key=lambda e: e.name))
              for family in families]
    lines += ["  data.name prefixes (PREFIX:PATH; or a TFDS name): "
              + "; ".join(keys(e) for e in sorted(READERS, key=lambda e: e.name)),
              "  vae.objective (its keys in config.vae): "
              + "; ".join(keys(e) for e in sorted(OBJECTIVES, key=lambda e: e.name)),
              "  penalties, each weighted by config.penalty.<name> (0 = off): "
              + "; ".join(keys(e) for e in sorted(PENALTIES, key=lambda e: e.name)),
              "  metrics every evaluation adds: " + ", ".join(sorted(e.name for e in METRICS))]
    return lines


def _flags_of(command: Command) -> dict[str, Flag]:
    return {**{name: FLAGS[name] for name in command.flags}, **command.own}


def split_config_args(argv: list[str]) -> tuple[list[str], str | None, list[str]]:
    """(argv without its config flags, the --config=PATH[:ARG] value, the --config.KEY=VALUE overrides
    as "KEY=VALUE"); `--config PATH` (a space) is read as --config=PATH."""
    rest, path, overrides = [], None, []
    items = iter(argv)
    for item in items:
        if item.startswith("--config="):
            path = item[len("--config="):]
        elif item == "--config":
            path = next(items, "")
        elif item.startswith("--config."):
            overrides.append(item[len("--config."):])
        else:
            rest.append(item)
    return rest, path, overrides


def parse(argv: list[str]) -> tuple[str, types.SimpleNamespace]:
    """(command, its flag values) from `argv`; raises UsageError with one line. For a command that
    takes --config, `values.config` is the resolved config of the launch (aelab.config.load) and
    `values.keys` every declared key with the launch's values (what a sweep varies)."""
    name = next((a for a in argv[1:] if not a.startswith("-")), None)
    if name not in COMMANDS:
        given = f"subcommand {name!r} not understood" if name else "no subcommand given"
        raise UsageError(f"{given}; accepted: {', '.join(COMMANDS)} (aelab --help lists them)")
    command = COMMANDS[name]
    if command.config:
        argv, config_path, overrides = split_config_args(argv)
    values = flags.FlagValues()
    for flag_name, flag in _flags_of(command).items():
        define = getattr(flags, f"DEFINE_{flag.kind}")
        kwargs = {"lower_bound": flag.lower_bound} if flag.lower_bound is not None else {}
        define(flag_name, flag.default, flag.help, flag_values=values, **kwargs)
    try:
        rest = values(argv)
    except flags.Error as e:
        message = _flag_error(str(e))
        hint = f" (aelab {name} --help lists its flags)" if "Unknown command line flag" in message else ""
        raise UsageError(message + hint) from None
    if rest[1:] != [name]:
        raise UsageError(f"unexpected arguments {' '.join(rest[1:])!r}; usage: aelab {name} {command.usage}")
    for required in command.required:
        given = config_path if required == "config" else values[required].value
        if not given:
            raise UsageError(f"--{required} is required; usage: aelab {name} {command.usage}")
    parsed = types.SimpleNamespace(**{flag_name: values[flag_name].value for flag_name in _flags_of(command)})
    if command.config:
        from aelab import config as config_lib  # start-up: the commands without a config never import the models

        launch = config_lib.load(config_path, overrides, strict=name != "sweep")  # a sweep's points may read them
        parsed.config, parsed.keys = launch.config, launch.keys
    return name, parsed


def _flag_error(message: str) -> str:
    """One line for a flag error."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else message


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[int], bool]]:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current step; a second
    signal stops at once (exit 128 + the signal's number), keeping the checkpoints already
    written. The previous handlers are back after the block."""
    requested: list[int] = []

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if requested:
            print(f"aelab: second {name}; stopped at once, without a checkpoint (those already "
                  "written are kept; rerun to resume)", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        requested.append(signum)
        print(f"\naelab: got {name}; checkpointing after this step", file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda step: bool(requested)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --- the commands: each imports only what it needs (start-up is part of every command) ----------

def _train(values) -> int:
    from aelab import lifetime, parallel, restore, supervise, train  # start-up: only this command imports them

    launch = parallel.distributed_launch(values.coordinator_address, values.num_processes, values.process_id)
    if launch and not supervise.is_child():  # the runtime's aborts become one line
        return supervise.run(*launch.describe(), values.connect_timeout_s,
                             lambda: (restore.checkpoint_steps(values.workdir) or [None])[-1])
    if launch and os.environ.get(supervise.PARENT, "").isdigit():
        lifetime.end_with(int(os.environ[supervise.PARENT]))
    parallel.initialize_distributed(launch, values.connect_timeout_s, values.heartbeat_timeout_s)
    with stop_on_signals() as should_stop, supervise.peers_watched() if launch else contextlib.nullcontext():
        summary = train.train_and_evaluate(values.config, values.workdir, should_stop=should_stop)
    if summary.get("stopped"):
        print(f"aelab: stopped at step {summary['step']}; checkpoint saved. "
              f"Rerun the same command to resume.", file=sys.stderr)
        return 0
    _print_summary(summary, values.workdir)
    return 0


def _config(values) -> int:
    from aelab import train  # start-up: only this command imports it

    resolved, _ = train.check_config(values.config)
    print(json.dumps(resolved.to_dict(), indent=2, sort_keys=True))
    return 0


def _sweep(values) -> int:
    from aelab import sweep  # start-up: only this command imports it

    with stop_on_signals() as should_stop:
        record = sweep.run_sweep(values.keys, values.workdir, values.sweep, should_stop)
    statuses = [e["status"] for e in record["points"].values()]
    if record.get("stopped"):
        print(f"aelab: sweep stopped during point {record['stopped']}; its checkpoint is saved. "
              "Rerun the same command to continue.", file=sys.stderr)
        return 0
    print(f"aelab: {statuses.count('done')} points done, {statuses.count('failed')} failed; "
          f"table in {values.workdir}/report.md")
    return 1 if "failed" in statuses else 0


def _convert(values) -> int:
    from aelab import config as config_lib, data, plugins  # start-up: only this command imports it
    from aelab.data import records  # start-up: only this command imports it

    plugins.import_modules(tuple(values.imports), "--imports")
    _, source = data.reader_of(values.data)
    if source and os.path.isdir(source) and wd.inside(values.out, source):
        raise UsageError(f"--out={wd.shown(values.out)} lies inside the data folder {wd.shown(source)}; the "
                         "records would become part of the data set they come from")
    config = config_lib.base_config()
    config.data.name, config.data.image_size = values.data, values.image_size
    data.check_name(config.data)
    splits = data.read_splits(config.data, stream=True)
    splits = splits[0] if isinstance(splits, tuple) else splits  # (splits, counts to report)
    manifest = records.convert(splits, values.data, values.out, values.shard_examples)
    counts = ", ".join(f"{name} {entry['count']:,}" for name, entry in manifest["splits"].items())
    shards = sum(len(entry["shards"]) for entry in manifest["splits"].values())
    print(f"aelab: wrote {values.out}: {counts} examples of shape {tuple(manifest['image_shape'])} in {shards} "
          f"shard(s); train with --config.data.name=records:{values.out}")
    return 0


def _bench(values) -> int:
    from aelab import bench  # start-up: only this command imports it

    bench.main(values.workload, values.json, values.min_seconds, values.cpu_ynn_dots)
    return 0


def _use(command: str, values) -> list[str]:
    """Runs a command that reads a trained workdir (or a sweep); returns the files it wrote."""
    from aelab import uses  # start-up: only the uses import it

    uses.check_outputs(values.workdir, out=getattr(values, "out", None), uses_dir=getattr(values, "uses_dir", None))
    if command == "report":
        from aelab import sweep  # start-up: only this command imports it

        return sweep.report(values.workdir)
    if command == "sample":
        from aelab import generate  # start-up: only this command imports it

        return generate.sample(values.workdir, values.num_samples, values.seed, values.uses_dir)
    if command == "embed":
        from aelab.uses import codes  # start-up: only this command imports it

        return codes.embed(values.workdir, values.split, values.out, values.uses_dir)
    if command == "probe":
        from aelab.uses import codes  # start-up: only this command imports it

        return [codes.probe(values.workdir, values.probe_examples, values.uses_dir)]
    if command == "denoise":
        from aelab.uses import denoise  # start-up: only this command imports it

        return denoise.denoise(values.workdir, values.noise, values.seed, values.uses_dir)
    if command == "disentangle":
        from aelab.uses import disentangle  # start-up: only this command imports it

        return disentangle.disentangle(values.workdir, values.examples, values.uses_dir)
    if command == "anomaly":
        from aelab.uses import anomaly  # start-up: only this command imports it

        return anomaly.anomaly(values.workdir, values.uses_dir)
    if command == "predict":
        from aelab.uses import predict  # start-up: only this command imports it

        return predict.predict(values.workdir, values.input, values.out)
    if command == "translate":
        from aelab.uses import translate  # start-up: only this command imports it

        return translate.translate(values.workdir, values.input, values.out, values.beam_size,
                                   values.reference)
    from aelab.uses import caption  # start-up: only this command imports it

    return caption.caption(values.workdir, values.input, values.out, values.beam_size)


RUNNERS = {"train": _train, "config": _config, "sweep": _sweep, "convert": _convert, "bench": _bench}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        (sys.stdout if len(argv) > 1 else sys.stderr).write(overview())
        return 0 if len(argv) > 1 else 2
    try:
        if any(a in ("-h", "--help") for a in argv[2:]) and argv[1] in COMMANDS:
            sys.stdout.write(command_help(argv[1], argv))
            return 0
        command, values = parse(argv)
        if command in RUNNERS:
            return RUNNERS[command](values)
        for path in _use(command, values):
            print(f"aelab: wrote {path}")
        return 0
    except UsageError as e:
        print(f"aelab: error: {wd.shown(str(e))}", file=sys.stderr)
        return 2
    except (NonFiniteError, WriteError) as e:
        print(f"aelab: error: {wd.shown(str(e))}", file=sys.stderr)
        return 1
    except OSError as e:  # a use command's output (a full disk, a read-only folder)
        print(f"aelab: error: cannot write {wd.shown(e.filename or 'its output')} ({describe_os_error(e)}); "
              "--uses_dir=DIR and --out=PATH choose where a use writes", file=sys.stderr)
        return 1


def _print_summary(summary: dict, workdir: str) -> None:
    ev, pca = summary["eval"], summary["baselines"].get("pca", {})
    parts = [f"{k} {ev[k]:.4f}" for k in ("neg_elbo", "nll", "recon_sse", "mean_iou", "pixel_accuracy",
                                          "bleu", "chrf", "exact_match")
             if k in ev]
    line = f"aelab: step {summary['step']}: eval " + ", ".join(parts)
    if "recon_sse" in pca:
        line += f" (PCA-{pca['n_components']} recon_sse: {pca['recon_sse']:.4f})"
    print(line + f"; units in README; workdir {workdir}")


def run() -> None:
    """Console-script entry point."""
    # force: importing Orbax has already given the root logger a handler of Python's format.
    logging.basicConfig(format="aelab: %(levelname)s: %(message)s", level=logging.WARNING, force=True)
    if os.environ.get("AELAB_DEBUG"):  # aelab's debug log: what Orbax said about a failed save, ...
        logging.getLogger("aelab").setLevel(logging.DEBUG)
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
