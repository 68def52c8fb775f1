"""The command line: ``mtsnn train|evaluate|export|sim|validate|targets`` and the scripts
``mtsnn-train``, ``mtsnn-export``, ``mtsnn-sim``, ``mtsnn-validate``.

It only parses arguments, calls ``mtsnn.api`` and prints. Every user mistake is one line
``PROG: error: ...`` on stderr with the exit code of docs/cli.md: 0 ok, 1 integer divergence,
2 bad input or usage, 3 a requested check could not run, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from mtsnn import __version__
from mtsnn.hw_model.errors import (
    EXIT_BAD_INPUT,
    EXIT_DIVERGENCE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    InputError,
    MtsnnError,
    one_line,
)

__all__ = ["main", "train_main", "export_main", "sim_main", "validate_main", "run_command"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2) like every other mtsnn error."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def _parser(prog: str, description: str) -> _Parser:
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _safe_streams() -> None:
    """Never fail on a terminal that cannot show a character (e.g. µ on an ASCII console)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):  # not a TextIOWrapper (e.g. captured by a test)
            pass


def run_command(prog: str, function: Callable[[], int]) -> int:
    """Run ``function``; an mtsnn error or an OS error becomes one line and its exit code."""
    _safe_streams()
    try:
        return function()
    except MtsnnError as exc:
        _say(f"{prog}: error: {one_line(exc)}")
        return exc.exit_code
    except OSError as exc:  # a file mtsnn had to read or write: disk full, permission ...
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _say(f"{prog}: error: {one_line(where + (exc.strerror or str(exc)))}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted")
        return EXIT_INTERRUPTED


def _notes(items) -> None:
    for note in items:
        _say(f"note: {note}")


# ----------------------------------------------------------------------------- train


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from mtsnn.api import DEFAULT_ARCH, TRAIN_DEFAULTS as d

    add = parser.add_argument
    keep = argparse.SUPPRESS  # only options the user gave reach mtsnn.train (one place for defaults)
    add("--arch", default=keep, help="architecture string, e.g. 15C5-P2-40C5-P2-300 (default: per data set, "
        + ", ".join(f"{k}: {v}" for k, v in DEFAULT_ARCH.items()) + ")")
    add("--dataset", default=keep, help="digits (default, embedded), mnist:DIR, fashion-mnist:DIR or cifar10:DIR")
    add("-T", "--timesteps", type=int, default=keep, help=f"time steps (default {d['timesteps']})")
    add("--smax", type=int, default=keep, help=f"largest spike count per step, 1..31 (default {d['smax']})")
    add("--bits", type=int, default=keep, help=f"weight bits, 2..16, or 0 for the float baseline (default {d['bits']})")
    add("--acc-bits", type=int, default=keep, help="membrane accumulator bits, 8..32 (default max(20, bits + 12))")
    add("--tau", type=float, default=keep,
        help=f"membrane time constant in steps (default {d['tau']:g}: delta = 410); 0 = no leak")
    add("--theta", type=float, default=keep, help="float threshold (default per Smax: 1/8 at Smax 1, 1/4 at 2..7, "
        "1/2 at 8..31, docs/training.md; theta_int = theta * 2**f)")
    add("--surrogate", type=int, choices=(1, 2, 3), default=keep, help=f"surrogate curve (default {d['surrogate']})")
    add("--a", type=float, default=keep, help=f"surrogate height a (default {d['a']:g})")
    add("--b", type=float, default=keep, help="surrogate steepness b (default per Smax: min(20, 2 * Smax**2))")
    add("--loss", choices=("ce", "mse"), default=keep, help="cross-entropy on the logits (default) or MSE (paper)")
    add("--epochs", type=int, default=keep, help="epochs (default 30 on digits, 15 otherwise)")
    add("--batch-size", type=int, default=keep, help=f"batch size (default {d['batch_size']})")
    add("--lr", type=float, default=keep, help=f"peak learning rate of the one-cycle schedule (default {d['lr']:g})")
    add("--augment", type=int, default=keep, help=f"random shift in pixels while training (default {d['augment']})")
    add("--flip", action="store_true", default=keep, help="mirror training images left-right at random (CIFAR-10)")
    add("--seed", type=int, default=keep, help=f"random seed (default {d['seed']}): the same seed and --threads give "
        "the same model (torch's float reductions depend on the thread count)")
    add("--init", default=keep, metavar="CHECKPOINT", help="start from this checkpoint's weights (same arch, input and "
        "classes), e.g. QAT fine-tuning of a float baseline trained with --bits 0")
    add("--resume", default=None, metavar="CHECKPOINT", help="continue the interrupted run saved in CHECKPOINT "
        "(a checkpoint is written after every epoch); takes no other training option")
    add("--threads", type=int, default=keep, help="torch CPU threads (default: torch's choice)")
    _add_device_argument(parser, keep)
    add("--compile", choices=("auto", "on", "off"), default=keep,
        help="fused MT-LIF kernels through torch.compile (the same integers, several times faster neurons after "
             "5-40 s of compilation): auto (default: on when the run is long enough to repay it), on, off")
    add("--no-progress", action="store_true", help="no progress bars or epoch lines")
    add("-o", "--output", dest="out", default=keep, help=f"checkpoint path (default {d['out']}; with --resume: the "
        "resumed file)")


_RESUME_KEEPS = {"threads", "device", "compile", "out", "no_progress", "resume", "command"}


def _add_device_argument(parser: argparse.ArgumentParser, default="auto") -> None:
    parser.add_argument("--device", default=default, metavar="auto|cpu|cuda[:N]",
                        help="where the model runs: auto (default: CUDA when present, else the CPU), cpu, cuda or "
                             "cuda:N; CUDA asked for and absent is an error (exit 2)")


def run_train(args: argparse.Namespace) -> int:
    from mtsnn import api

    options = {k: v for k, v in vars(args).items() if k not in ("no_progress", "resume", "command")}
    progress = not args.no_progress
    if args.resume:
        conflicting = sorted(k for k in vars(args) if k not in _RESUME_KEEPS)
        if conflicting:
            raise InputError(f"--resume: continues the recorded run with its own settings; expected no other training "
                             f"option, found --{conflicting[0].replace('_', '-')}")
        target = args.out if hasattr(args, "out") else args.resume
        try:
            run = api.resume(args.resume, out=getattr(args, "out", None), threads=getattr(args, "threads", None),
                             device=getattr(args, "device", "auto"), compile=getattr(args, "compile", "auto"),
                             progress=progress)
        except KeyboardInterrupt:
            _interrupted_hint(target)
            raise
    else:
        target = options.get("out", "model.pt")
        try:
            run = api.train(**options, progress=progress)
        except KeyboardInterrupt:
            _interrupted_hint(target)
            raise
    label = "integer-exact forward" if run.accuracy_kind == "integer-exact" else "float baseline, not integer-exact"
    print(f"test accuracy ({label}): {run.test_accuracy:.4f} on {run.test_samples} samples "
          f"after {run.seconds:.1f} s of training")
    print(f"saved {run.checkpoint}")
    return EXIT_OK


def _interrupted_hint(path) -> None:
    from pathlib import Path

    if Path(path).is_file():
        _say(f"note: {path} holds the last finished epoch; continue with --resume {path}")


# ----------------------------------------------------------------------------- evaluate


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint written by mtsnn-train")
    parser.add_argument("--dataset", default=None, help="data set (default: the one the model was trained on)")
    parser.add_argument("--samples", type=int, default=None, help="evaluate the first N test samples (default: all)")
    _add_device_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_evaluate(args: argparse.Namespace) -> int:
    from mtsnn import api

    result = api.evaluate(args.model, dataset=args.dataset, samples=args.samples, device=args.device)
    _notes(result.notes)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"{args.model}: accuracy ({result.accuracy_kind}) {result.accuracy:.4f} on {result.samples} test "
              f"samples of {result.dataset}")
    return EXIT_OK


# ----------------------------------------------------------------------------- export


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint written by mtsnn-train (model.pt)")
    parser.add_argument("--bits", type=int, default=None,
                        help="weight bits of the export, 2..16 (default: the trained bits; others re-quantize "
                             "post-training)")
    parser.add_argument("-o", "--output", default=None, help="output folder (default: next to the model)")
    parser.add_argument("--dataset", default=None, help="evaluation data for lints/accuracy (default: the training "
                        "data set)")
    parser.add_argument("--samples", type=int, default=None, help="evaluate on the first N test samples (default all)")
    parser.add_argument("--golden", type=int, default=0, metavar="N",
                        help="also write N golden vectors (inputs, per-layer spikes, logits) to MODEL.golden.npz")
    parser.add_argument("--nir", action="store_true",
                        help="also write MODEL.nir: the integer network as a NIR graph (docs/nir.md)")
    _add_device_argument(parser)


def _lint_table(lints) -> str:
    rows = [("layer", "spikes", "clipped@Smax", "acc.sat", "silent", "theta err")]
    for lint in lints:
        rows.append((one_line(lint.layer, 40), str(lint.spikes) if lint.spikes >= 0 else "-",
                     f"{100 * lint.smax_clipped_fraction:.2f}%", str(lint.accumulator_saturations),
                     "yes" if lint.silent else "no", f"{lint.threshold_rounding_error:.1e}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def run_export(args: argparse.Namespace) -> int:
    from mtsnn import api

    result = api.export(args.model, bits=args.bits, out=args.output, dataset=args.dataset, samples=args.samples,
                        golden=args.golden, nir=args.nir, device=args.device)
    _notes(result.notes)
    for warning in result.warnings:
        _say(f"warning: {one_line(warning)}")
    print(_lint_table(result.lints))
    print(f"integer accuracy at {result.bits} bits: {result.integer_accuracy:.4f} on {result.samples} "
          f"{result.dataset} test samples")
    print(f"export id {result.export_id} (checkpoint sha256 {result.checkpoint_sha256[:16]}...)")
    for path in result.files:
        print(f"wrote {path}")
    return EXIT_OK


# ----------------------------------------------------------------------------- sim


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("core", help="an export folder, or a core description NAME.core.json (its .npz beside it)")
    parser.add_argument("--target", required=True, help="a preset (see `mtsnn targets`) or a target TOML file")
    parser.add_argument("--dataset", default=None,
                        help="data set spec (digits, mnist:DIR, fashion-mnist:DIR, cifar10:DIR); default: the one "
                             "the export recorded, else digits")
    parser.add_argument("--samples", type=int, default=None, help="simulate the first N test samples (default all)")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per vectorised batch (default 128)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the report as JSON to this file")
    parser.add_argument("--plots", default=None, help="write PNG plots into this folder")
    parser.add_argument("--placement-out", default=None,
                        help="write the core description with this target's placement to this path")
    parser.add_argument("--static", choices=("chip", "used-cores", "none"), default=None,
                        help="how static power is charged: the whole chip's, the share of the cores in use, or none "
                             "(default: the target's, stated in the report)")
    parser.add_argument("--objective", choices=("cores", "latency", "energy"), default="cores",
                        help="map for the fewest cores (default), or for the lowest latency or energy per sample "
                             "(per-core neuron caps compared by simulating the first 8 samples)")
    parser.add_argument("--detailed-samples", type=int, default=16,
                        help="run the first N samples through the detailed network model (links that fill up, "
                             "back-pressure) and scale every sample's latency by its ratio to the contention-free "
                             "model (default 16; 0: contention-free only)")
    parser.add_argument("--crosscheck", choices=("sanafe",), default=None,
                        help="also run the first --crosscheck-samples samples in SANA-FE (pip install sanafe==2.2.9) "
                             "and compare counts, energy and latency tick by tick (binary networks: Smax = 1, no leak)")
    parser.add_argument("--crosscheck-samples", type=int, default=10, help="samples for --crosscheck (default 10)")
    parser.add_argument("--relax", action="append", choices=("axon-types",), default=[],
                        help="relax a design rule knowingly (axon-types: price a network that breaks TrueNorth's "
                             "4-axon-type weight rule as if every synapse had its own weight); the report says so")
    parser.add_argument("--engine", choices=("local", "ray"), default=None,
                        help="shard the samples over processes (local) or Ray tasks (ray) and merge the results "
                             "(the counts of one run; default: this process)")
    parser.add_argument("--workers", type=int, default=None, help="with --engine: shards run at once (default: CPUs)")
    parser.add_argument("--address", default=None, help="with --engine ray: an existing cluster's address")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_sim_outputs(args: argparse.Namespace) -> None:
    from mtsnn.hw_model.fileio import check_output_dir, check_output_file

    if args.json_out:
        check_output_file(args.json_out, "--json")
    if args.plots:
        check_output_dir(args.plots, "--plots")
    if args.placement_out:
        check_output_file(args.placement_out, "--placement-out")


def run_sim(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mtsnn import api
    from mtsnn.hw_model.coredesc import write_core
    from mtsnn.hw_model.report import format_table, write_json

    _check_sim_outputs(args)
    bars = []

    def progress(done: int, total: int) -> None:  # the bar opens once the inputs are known good
        if not bars:
            bars.append(tqdm(total=total, unit="sample", desc="mtsnn-sim", file=sys.stderr, leave=False))
        bars[0].update(done - bars[0].n)

    try:
        sim = api.simulate(args.core, target=args.target, dataset=args.dataset, samples=args.samples,
                           batch_size=args.batch_size, static=args.static, objective=args.objective,
                           detailed_samples=args.detailed_samples,
                           crosscheck_samples=args.crosscheck_samples if args.crosscheck else None,
                           relax=tuple(args.relax), engine=args.engine, workers=args.workers,
                           address=args.address, progress=None if args.no_progress else progress)
    finally:
        for bar in bars:
            bar.close()
    _notes(sim.notes)
    print(format_table(sim.report))
    code = EXIT_OK
    if sim.crosscheck is not None:
        from mtsnn.crosscheck import format_crosscheck

        print(format_crosscheck(sim.crosscheck))
        code = EXIT_OK if sim.crosscheck.counts_identical else EXIT_DIVERGENCE
    if args.json_out:
        print(f"wrote {write_json(sim.report, args.json_out)}")
    if args.plots:
        from mtsnn.plots import write_plots

        for path in write_plots(sim.report, sim.mapping, args.plots):
            print(f"wrote {path}")
    if args.placement_out:
        json_path, _ = write_core(args.placement_out, sim.mapping.network, placement=sim.mapping.placement())
        print(f"wrote {json_path}")
    return code


# ----------------------------------------------------------------------------- validate


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint written by mtsnn-train (model.pt)")
    parser.add_argument("dir", help="folder written by mtsnn-export (holds MODEL.export.json and its files)")
    parser.add_argument("--dataset", default=None, help="data set (default: the one the export recorded)")
    parser.add_argument("--samples", type=int, default=None, help="validate the first N test samples (default: all)")
    parser.add_argument("--target", default="loihi",
                        help="target of the simulator path: a preset or a TOML file (default loihi)")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulator path")
    parser.add_argument("--relax", action="append", choices=("axon-types",), default=[],
                        help="relax a design rule of the simulator's target knowingly (see mtsnn-sim --relax)")
    parser.add_argument("--engine", choices=("local", "ray"), default=None,
                        help="check shards of the samples in processes (local) or Ray tasks (ray) and merge them "
                             "(the same report as one run; default: this process)")
    parser.add_argument("--workers", type=int, default=None, help="with --engine: shards run at once (default: CPUs)")
    parser.add_argument("--address", default=None, help="with --engine ray: an existing cluster's address")
    _add_device_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_validate(args: argparse.Namespace) -> int:
    from mtsnn import api

    from mtsnn.hw_model.target import load_target

    target = load_target(args.target, tuple(args.relax)) if args.relax else args.target
    report = api.validate(args.model, args.dir, dataset=args.dataset, samples=args.samples, target=target,
                          simulate=not args.no_sim, engine=args.engine, workers=args.workers, address=args.address,
                          progress=None if args.json else _say, device=args.device)
    _notes(report.notes)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"bit-exact: {report.samples - report.mismatches}/{report.samples} samples ({', '.join(report.paths)})")
        for name, accuracy in report.accuracy.items():
            print(f"  accuracy {name:<12} {accuracy:.4f}")
        for divergence in report.divergences:
            print(divergence.sentence())
    return EXIT_OK if report.bit_exact else EXIT_DIVERGENCE


# ----------------------------------------------------------------------------- targets


def add_targets_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON list")


def run_targets(args: argparse.Namespace) -> int:
    from mtsnn import api

    targets = api.list_targets()
    if args.json:
        print(json.dumps([{"name": t.name, "description": t.description, "file": str(t.path)} for t in targets]))
    else:
        width = max(len(t.name) for t in targets)
        for t in targets:
            print(f"{t.name:<{width}}  {t.description}")
    return EXIT_OK


# ----------------------------------------------------------------------------- sweep


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits", help="data set spec (digits, mnist:DIR, ...; default digits)")
    parser.add_argument("--bits", default="8", help="weight bits to sweep, comma-separated (default 8)")
    parser.add_argument("--smax", default="15", help="Smax values, comma-separated (default 15)")
    parser.add_argument("--timesteps", default="2", help="time steps T, comma-separated (default 2)")
    parser.add_argument("--target", default="loihi", help="targets, comma-separated (presets or TOML files)")
    parser.add_argument("--static", default=None,
                        help="static-power conventions to report, comma-separated (chip, used-cores, none; "
                             "default: each target's own)")
    parser.add_argument("--relax", action="append", choices=("axon-types",), default=[],
                        help="relax a design rule on every target knowingly (see mtsnn-sim --relax)")
    parser.add_argument("--epochs", type=int, default=5, help="QAT fine-tuning epochs per point (default 5)")
    parser.add_argument("--baseline-epochs", type=int, default=10,
                        help="epochs of the float baseline, trained once (default 10)")
    parser.add_argument("--samples", type=int, default=None,
                        help="test samples validated and simulated per point (default all)")
    parser.add_argument("--arch", default=None, help="architecture (default: the data set's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every training run (default 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    parser.add_argument("-o", "--out", required=True, help="the sweep's folder (resumes the sweep it holds)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local process pool (default) or a Ray cluster (pip install 'mtsnn[ray]')")
    parser.add_argument("--address", default=None, help="with --engine ray: the cluster's address (default: a local Ray)")
    parser.add_argument("--workers", type=int, default=None, help="points run at once (default: CPUs, at most the points)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_sweep(args: argparse.Namespace) -> int:
    from mtsnn.sweep import SweepSpec, format_sweep_table, parse_grid
    from mtsnn.sweep import run_sweep as sweep

    spec = SweepSpec(dataset=args.dataset, bits=parse_grid(args.bits, "bits"), smax=parse_grid(args.smax, "smax"),
                     timesteps=parse_grid(args.timesteps, "timesteps"), targets=parse_grid(args.target, "target", str),
                     statics=parse_grid(args.static, "static", str) if args.static else None, epochs=args.epochs,
                     baseline_epochs=args.baseline_epochs, samples=args.samples, seed=args.seed, arch=args.arch,
                     batch_size=args.batch_size, lr=args.lr, relax=tuple(args.relax))
    result = sweep(spec, args.out, engine=args.engine, workers=args.workers, address=args.address,
                   progress=not args.no_progress, log=_say)
    print(format_sweep_table(result.rows))
    for name, path in result.files.items():
        print(f"wrote {path}")
    line = (f"sweep: {len(result.points)} points in {result.seconds:.1f} s: baseline {result.baseline_seconds:.1f} s, "
            f"point work run now {result.work_seconds:.1f} s")
    if result.overhead_seconds >= 0:  # one worker: the rest is the sweep's own overhead
        line += f", overhead {result.overhead_seconds:.1f} s"
    else:  # points overlapped on several workers
        line += " summed over the workers, which ran them side by side"
    print(line)
    return EXIT_OK


# ----------------------------------------------------------------------------- entry points

COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "train": ("train an MT-SNN with quantization-aware training", add_train_arguments, run_train),
    "evaluate": ("test accuracy of a checkpoint", add_evaluate_arguments, run_evaluate),
    "export": ("write ONNX + core description (and golden vectors)", add_export_arguments, run_export),
    "sim": ("simulate a core description on a neuromorphic target", add_sim_arguments, run_sim),
    "validate": ("prove every integer path agrees bit for bit", add_validate_arguments, run_validate),
    "targets": ("list the target presets, one line each", add_targets_arguments, run_targets),
    "sweep": ("sweep bits x Smax x T x target: train, export, validate, simulate; table and Pareto plots",
              add_sweep_arguments, run_sweep),
}


def _guarded_parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except KeyboardInterrupt:
        _say(f"{parser.prog}: interrupted")
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser("mtsnn", "Multi-threshold SNN deployment toolchain")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = _guarded_parse(parser, argv)
    if isinstance(args, int):
        return args
    return run_command(f"mtsnn {args.command}", lambda: COMMANDS[args.command][2](args))


def _script(prog: str, command: str, description: str, argv) -> int:
    parser = _parser(prog, description)
    COMMANDS[command][1](parser)
    args = _guarded_parse(parser, argv)
    if isinstance(args, int):
        return args
    return run_command(prog, lambda: COMMANDS[command][2](args))


def train_main(argv: Sequence[str] | None = None) -> int:
    return _script("mtsnn-train", "train", "Train an MT-SNN with quantization-aware training", argv)


def export_main(argv: Sequence[str] | None = None) -> int:
    return _script("mtsnn-export", "export", "Export a trained MT-SNN to ONNX + core description", argv)


def sim_main(argv: Sequence[str] | None = None) -> int:
    return _script("mtsnn-sim", "sim", "Simulate a core description on a neuromorphic target", argv)


def validate_main(argv: Sequence[str] | None = None) -> int:
    return _script("mtsnn-validate", "validate", "Check that the QAT model, the integer reference, onnxruntime and "
                   "the simulator agree bit for bit", argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
