"""``mtsnn-sim``: simulate a core description on a target chip and report SOPs, latency, energy.

    mtsnn-sim CORE.json --target loihi|truenorth|FILE.toml [--dataset D] [--samples N]
              [--batch-size B] [--json OUT] [--plots DIR] [--placement-out PATH] [--no-progress]

The CLI only parses arguments and calls library functions: ``read_core``, ``load_target``,
``map_network`` (or ``mapping_from_placement`` when the file already holds a placement for
this target), ``toolchain.datasets.load_dataset`` (imported lazily; default: the digits test
split), ``simulate``, then ``hw_model.report``. Bad input (missing file, bad target, a design
rule the network breaks, a malformed core description, a data set that cannot be loaded or does
not match the network) prints one line ``mtsnn-sim: error: ...`` on stderr and exits with 2.
``add_sim_arguments`` / ``run_sim`` let the umbrella ``mtsnn sim`` reuse the same command.
"""

from __future__ import annotations

import argparse
import sys

from .coredesc import CoreFormatError, read_core, write_core
from .mapper import DesignRuleError, map_network, mapping_from_placement
from .report import build_report, format_table, write_json, write_plots
from .simulator import simulate
from .target import TargetError, load_target

__all__ = ["add_sim_arguments", "run_sim", "sim_main", "SimInputError"]

PROG = "mtsnn-sim"


class SimInputError(ValueError):
    """The command's input does not make sense (one line, for the user)."""


def add_sim_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("core", help="core description NAME.core.json (its .npz beside it)")
    parser.add_argument("--target", required=True, help="loihi, truenorth, or a target TOML file")
    parser.add_argument("--dataset", default=None,
                        help="data set spec (digits, mnist:DIR, fashion-mnist:DIR, cifar10:DIR); default digits")
    parser.add_argument("--samples", type=int, default=None, help="simulate the first N test samples (default all)")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per vectorised batch (default 128)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the report as JSON to this file")
    parser.add_argument("--plots", default=None, help="write PNG plots into this directory")
    parser.add_argument("--placement-out", default=None,
                        help="write the core description with this target's placement to this path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _load_images(spec, network, samples):
    from mtsnn.toolchain.datasets import load_dataset  # lazy: the data layer lives in toolchain (numpy + sklearn)

    split = load_dataset(spec).test
    images, labels = split.images, split.labels
    if tuple(images.shape[1:]) != tuple(network.encoder.shape):
        raise SimInputError(
            f"dataset {spec or 'digits'}: images of shape {tuple(images.shape[1:])} do not match the network's "
            f"input {tuple(network.encoder.shape)}"
        )
    if samples is not None:
        images, labels = images[:samples], labels[:samples]
    return images, labels


def _simulate_with_progress(mapping, images, labels, batch_size, show):
    from tqdm import tqdm

    with tqdm(total=len(images), unit="sample", desc=PROG, disable=not show, file=sys.stderr) as bar:
        return simulate(mapping, images, labels, batch_size=batch_size, progress=bar.update)


def run_sim(args: argparse.Namespace) -> int:
    """Run the command for parsed ``args``; returns the exit code (0 ok, 2 bad input)."""
    try:
        if args.samples is not None and args.samples < 1:
            raise SimInputError(f"--samples: expected an integer >= 1, found {args.samples}")
        if args.batch_size < 1:
            raise SimInputError(f"--batch-size: expected an integer >= 1, found {args.batch_size}")
        description = read_core(args.core)
        network = description.network
        target = load_target(args.target)
        placement = description.placement
        if placement is not None and placement.get("target") == target.name:
            mapping = mapping_from_placement(placement, network, target)
        else:
            mapping = map_network(network, target)
        images, labels = _load_images(args.dataset, network, args.samples)
    except (CoreFormatError, TargetError, DesignRuleError, SimInputError, OSError, ValueError) as exc:
        message = " ".join(str(exc).split())  # one line
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    result = _simulate_with_progress(mapping, images, labels, args.batch_size, not args.no_progress)
    report = build_report(result)
    print(format_table(report))
    try:
        if args.json_out:
            print(f"wrote {write_json(report, args.json_out)}")
        if args.plots:
            for path in write_plots(report, mapping, args.plots):
                print(f"wrote {path}")
        if args.placement_out:
            json_path, _ = write_core(args.placement_out, network, placement=mapping.placement())
            print(f"wrote {json_path}")
    except OSError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


def sim_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Simulate a core description on a neuromorphic target.")
    add_sim_arguments(parser)
    return run_sim(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(sim_main())
