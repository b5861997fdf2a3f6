"""The `aelab` command: thin. Parses flags, picks a subcommand, maps errors to exit codes.

    aelab train --config=configs/digits_ae.py[:args] --workdir=DIR [--config.a.b=v ...]
        [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]   (multi-host; SLURM/TPU detected)
    aelab sample --workdir=DIR [--num_samples=64] [--seed=0]
    aelab embed --workdir=DIR [--split=test] --out=FILE.npz
    aelab probe --workdir=DIR [--probe_examples=10000]
    aelab denoise --workdir=DIR --noise=gaussian:0.1,0.3 [--noise=mask:0.5 ...]
    aelab anomaly --workdir=DIR
    aelab predict --workdir=DIR --input=IMAGE_OR_DIR --out=DIR   (segmentation masks as PNGs)
    aelab translate --workdir=DIR [--input=FILE] [--out=FILE] [--beam_size=N]   (stdin/stdout by default)
    aelab caption --workdir=DIR --input=IMAGE_OR_DIR [--out=FILE] [--beam_size=N]   (stdout by default)
    aelab sweep --config=CONFIG.py --workdir=DIR --sweep=model.latent_dim=2,4,8 [--sweep=seed=0,1] [--config...]
    aelab report --workdir=DIR
    aelab bench --workload=mlp_ae|conv_ae|mlp_vae [--json] [--min_seconds=5] [--[no]cpu_ynn_dots]   (no workdir)

Exit codes: 0 done (or stopped by a signal, checkpointed), 1 training
diverged, 2 bad input (nothing written).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Callable, Iterator

import ml_collections
from absl import flags
from ml_collections import config_flags

from aelab.errors import UsageError, WriteError, describe_os_error
from aelab import config as config_lib
from aelab import train
from aelab.train import NonFiniteError

USAGE = ("usage: aelab train --config=CONFIG.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...] | "
         "aelab sample|embed|probe|denoise|anomaly|predict|translate|caption --workdir=DIR [...]")
SUBCOMMANDS = ("train", "sweep", "report", "sample", "embed", "probe", "denoise", "anomaly", "predict",
               "translate", "caption", "bench")
NEEDS_CONFIG = ("train", "sweep")


def parse(argv: list[str]):
    """Parses `argv` into (subcommand, flag values); raises UsageError with one line.

    For `train`, `values.config` is the loaded, overridden ConfigDict.
    """
    values = flags.FlagValues()
    # sys_argv: ml-collections reads override names from it (default: sys.argv).
    config_flags.DEFINE_config_file("config", None, "config file, path[:arg]",
                                    flag_values=values, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "run directory", flag_values=values)
    flags.DEFINE_string("uses_dir", None, "sample, embed, probe, denoise, anomaly: where to write numbers and "
                        "pictures (default: WORKDIR/uses)", flag_values=values)
    flags.DEFINE_integer("num_samples", 64, "sample: how many images", lower_bound=1,
                         flag_values=values)
    flags.DEFINE_integer("seed", 0, "sample, denoise: random seed", flag_values=values)
    flags.DEFINE_string("split", "test", "embed: train | val | test", flag_values=values)
    flags.DEFINE_string("out", None, "embed: the .npz file to write; predict: the mask folder; "
                        "translate, caption: the output file (default: stdout)", flag_values=values)
    flags.DEFINE_string("input", None, "predict, caption: an image or a folder of images; translate: a text "
                        "file, one sentence a line (default: stdin)", flag_values=values)
    flags.DEFINE_integer("beam_size", None, "translate, caption: beam size (1 = greedy; default: the run's "
                         "decode.beam_size)", flag_values=values)
    flags.DEFINE_integer("probe_examples", 10000, "probe: training examples for the probes",
                         lower_bound=10, flag_values=values)
    flags.DEFINE_string("workload", None, "bench: mlp_ae | conv_ae | mlp_vae", flag_values=values)
    flags.DEFINE_boolean("json", False, "bench: print one JSON line", flag_values=values)
    flags.DEFINE_float("min_seconds", 5.0, "bench: seconds of timed training steps", lower_bound=0.1,
                       flag_values=values)
    flags.DEFINE_boolean("cpu_ynn_dots", None, "bench: CPU matmuls by YNNPACK everywhere (--cpu_ynn_dots) "
                         "or nowhere (--nocpu_ynn_dots); default: the trainer's rule, YNNPACK only in "
                         "train steps and decoders of models without convolutions (aelab/compiler.py)", flag_values=values)
    flags.DEFINE_string("coordinator_address", None, "train (multi-host): host:port of process 0; "
                        "with --num_processes and --process_id (default: detect SLURM/TPU)", flag_values=values)
    flags.DEFINE_integer("num_processes", None, "train (multi-host): how many processes", flag_values=values)
    flags.DEFINE_integer("process_id", None, "train (multi-host): this process's index", flag_values=values)
    flags.DEFINE_multi_string("sweep", [], "sweep: KEY=V1,V2,... (repeat for a grid)",
                              flag_values=values)
    flags.DEFINE_multi_string("noise", ["gaussian:0.1,0.3,0.5"], "denoise: KIND:LEVEL[,LEVEL...]",
                              flag_values=values)
    _check_override_keys(argv)
    try:
        rest = values(argv)
    except flags.Error as e:
        raise UsageError(_flag_error(str(e))) from None
    except Exception as e:  # raised by the config file's own code
        raise UsageError(f"cannot load --config: {type(e).__name__}: {e}".splitlines()[0]) from None
    if len(rest) != 2 or rest[1] not in SUBCOMMANDS:
        given = " ".join(rest[1:]) or "none"
        raise UsageError(f"subcommand {given!r} not understood; accepted: {', '.join(SUBCOMMANDS)}. {USAGE}")
    if rest[1] == "bench":
        if not values.workload:
            raise UsageError("bench needs --workload=mlp_ae|conv_ae|mlp_vae")
        return rest[1], values
    if not values.workdir:
        raise UsageError(f"--workdir is required. {USAGE}")
    if rest[1] not in NEEDS_CONFIG:
        return rest[1], values
    if not any(a.startswith("--config=") for a in argv):
        raise UsageError(f"--config is required. {USAGE}")
    config = values.config
    if not isinstance(config, ml_collections.ConfigDict):
        try:  # ml-collections defers a file's load failure to the first attribute access
            config.keys()
        except OSError as e:
            raise UsageError(f"cannot load --config: {str(e).strip().splitlines()[-1].strip()}") from None
        except AttributeError:
            pass
        raise UsageError(f"--config: get_config returned {type(config).__name__}; expected a ConfigDict")
    return rest[1], values


def _flag_error(message: str) -> str:
    """One line for a flag error. ml-collections reports an error raised by a config file's
    get_config as "Error whilst parsing config file:" and the traceback; its last line says why."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and "Error whilst parsing config file" in lines[0]:
        kind, _, reason = lines[-1].partition(": ")
        reason = reason if kind.endswith("UsageError") else lines[-1]
        return f"{lines[0].split(': Error whilst')[0]}: {reason}"
    return lines[0] if lines else message


def _check_override_keys(argv: list[str]) -> None:
    """Unknown `--config.a.b` keys get a one-line error listing the valid keys at that level."""
    path = next((a.partition("=")[2] for a in argv if a.startswith("--config=")), None)
    overrides = [a[len("--config."):].partition("=")[0] for a in argv if a.startswith("--config.")]
    if not path or not overrides:
        return
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", path, "", flag_values=values, sys_argv=["aelab"])
    try:
        values(["aelab"])
        base = values.config
    except Exception as e:  # a broken config file is reported by the main parse
        del e
        return
    for key in overrides:
        config_lib.lookup(base, key, f"unknown config key --config.{key}")


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


def main(argv: list[str]) -> int:
    try:
        command, values = parse(argv)
        if command == "sweep":
            from aelab import sweep

            if not values.sweep:
                raise UsageError(f"sweep needs at least one --sweep=KEY=V1,V2,... {USAGE}")
            with stop_on_signals() as should_stop:
                record = sweep.run_sweep(values.config, values.workdir, values.sweep, should_stop)
            statuses = [e["status"] for e in record["points"].values()]
            if record.get("stopped"):
                print(f"aelab: sweep stopped during point {record['stopped']}; its checkpoint is saved. "
                      "Rerun the same command to continue.", file=sys.stderr)
                return 0
            print(f"aelab: {statuses.count('done')} points done, {statuses.count('failed')} failed; "
                  f"table in {values.workdir}/report.md")
            return 1 if "failed" in statuses else 0
        if command == "bench":
            from aelab import bench

            bench.main(values.workload, values.json, values.min_seconds, values.cpu_ynn_dots)
            return 0
        if command != "train":
            for path in _use(command, values):
                print(f"aelab: wrote {path}")
            return 0
        from aelab import parallel

        parallel.initialize_distributed(values.coordinator_address, values.num_processes, values.process_id)
        with stop_on_signals() as should_stop:
            summary = train.train_and_evaluate(values.config, values.workdir, should_stop=should_stop)
        if summary.get("stopped"):
            print(f"aelab: stopped at step {summary['step']}; checkpoint saved. "
                  f"Rerun the same command to resume.", file=sys.stderr)
            return 0
        _print_summary(summary, values.workdir)
        return 0
    except UsageError as e:
        print(f"aelab: error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteError, WriteError) as e:
        print(f"aelab: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a use command's output (a full disk, a read-only folder)
        print(f"aelab: error: cannot write {e.filename or 'its output'} ({describe_os_error(e)}); "
              "--uses_dir=DIR and --out=PATH choose where a use writes", file=sys.stderr)
        return 1


def _use(command: str, values) -> list[str]:
    """Runs a subcommand that uses a trained workdir; returns the files it wrote. Each imports
    only what it needs (scikit-learn alone takes ~2 s)."""
    if command == "report":
        from aelab import sweep

        return sweep.report(values.workdir)
    if command == "sample":
        from aelab import generate

        return generate.sample(values.workdir, values.num_samples, values.seed, values.uses_dir)
    if command in ("embed", "probe"):
        from aelab.uses import codes

        if command == "probe":
            return [codes.probe(values.workdir, values.probe_examples, values.uses_dir)]
        if not values.out:
            raise UsageError(f"embed needs --out=FILE.npz. {USAGE}")
        return codes.embed(values.workdir, values.split, values.out, values.uses_dir)
    if command == "denoise":
        from aelab.uses import denoise

        return denoise.denoise(values.workdir, values.noise, values.seed, values.uses_dir)
    if command == "predict":
        from aelab.uses import predict

        return predict.predict(values.workdir, values.input, values.out)
    if command == "translate":
        from aelab.uses import translate

        return translate.translate(values.workdir, values.input, values.out, values.beam_size)
    if command == "caption":
        from aelab.uses import caption

        return caption.caption(values.workdir, values.input, values.out, values.beam_size)
    from aelab.uses import anomaly

    return anomaly.anomaly(values.workdir, values.uses_dir)


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
