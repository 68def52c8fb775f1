"""``mtsnn-export`` / ``mtsnn export`` and ``mtsnn-validate`` / ``mtsnn validate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ExportError

__all__ = ["export_main", "validate_main", "add_export_arguments", "add_validate_arguments", "run_export",
           "run_validate", "output_paths"]


def output_paths(model_path: str | Path, out_dir: str | Path | None) -> dict[str, Path]:
    """Files written by export for ``model.pt``: out/model.onnx, out/model.core.json/.npz ..."""
    model_path = Path(model_path)
    folder = Path(out_dir) if out_dir else model_path.parent
    stem = model_path.stem
    return {
        "onnx": folder / f"{stem}.onnx",
        "core_json": folder / f"{stem}.core.json",
        "core_npz": folder / f"{stem}.core.npz",
        "golden": folder / f"{stem}.golden.npz",
        "report": folder / f"{stem}.export.json",
    }


def _eval_split(dataset, samples: int | None):
    images, labels = dataset.test.images, dataset.test.labels
    if samples is not None:
        if samples < 1:
            raise ExportError(f"--samples: expected a positive count, found {samples}")
        images, labels = images[:samples], labels[:samples]
    return np.ascontiguousarray(images), np.asarray(labels)


def _qat_run(model, images: np.ndarray, batch_size: int = 500):
    """The QAT model's integer-exact forward, as numpy (logits int64, spikes uint8)."""
    import torch

    from .validate import run_batched

    def one_batch(batch):
        with torch.no_grad():
            run = model.integer_forward(torch.tensor(batch))
        return run.logits.numpy().astype(np.int64), {k: v.numpy().astype(np.uint8) for k, v in run.spikes.items()}

    return run_batched(one_batch, images, batch_size)


# ----------------------------------------------------------------------------- export


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint written by mtsnn-train (model.pt)")
    parser.add_argument("--bits", type=int, default=None,
                        help="weight bits of the export, 2..16 (default: the trained bits; others re-quantize post-training)")
    parser.add_argument("-o", "--output", default=None, help="output folder (default: next to the model)")
    parser.add_argument("--dataset", default=None, help="evaluation data for lints/accuracy (default: the training data set)")
    parser.add_argument("--samples", type=int, default=None, help="evaluate on the first N test samples (default: all)")
    parser.add_argument("--golden", type=int, default=0, metavar="N",
                        help="also write N golden vectors (inputs, per-layer spikes, logits) to MODEL.golden.npz")


def _write_golden(path: Path, images, labels, result, n: int) -> None:
    import io

    from mtsnn.hw_model.coredesc import atomic_write_bytes

    n = min(n, len(images))
    arrays = {"images": images[:n], "labels": labels[:n].astype(np.int64), "logits": result.logits[:n]}
    for name, spikes in result.spikes.items():
        arrays[f"spikes_{name}"] = spikes[:, :n]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def run_export(args: argparse.Namespace) -> int:
    from mtsnn.hw_model.coredesc import atomic_write_bytes, write_core
    from mtsnn.hw_model.reference import run_reference
    from mtsnn.toolchain.checkpoint import load_checkpoint
    from mtsnn.toolchain.cli import load_matching_dataset
    from mtsnn.toolchain.train import evaluate_model

    from .integer import to_integer_network
    from .lints import lint_network, lint_warnings
    from .onnx_model import build_onnx, save_onnx

    trained, payload = load_checkpoint(args.model)
    trained_bits = trained.config.bits
    bits = trained_bits if args.bits is None else args.bits
    if bits == 0:
        raise ExportError(f"{args.model}: a float baseline (trained with --bits 0) must be exported with --bits 2..16 "
                          "(post-training quantization)")
    if not 2 <= bits <= 16:
        raise ExportError(f"--bits: expected 2..16, found {bits}")
    model = trained if bits == trained_bits else load_checkpoint(args.model, bits=bits)[0]
    spec, dataset = load_matching_dataset(args.dataset, payload, trained, args.model)
    images, labels = _eval_split(dataset, args.samples)

    net = to_integer_network(model, provenance={
        "trained_bits": trained_bits, "export_bits": bits, "requantized": bits != trained_bits,
        "dataset": spec, "training_test_accuracy": payload["training"].get("test_accuracy"),
    })
    result = run_reference(net, images)
    accuracy = float((result.predictions == labels).mean())
    warnings = []
    report = {"model": str(args.model), "bits": bits, "trained_bits": trained_bits, "dataset": spec,
              "samples": int(len(labels)), "integer_accuracy": accuracy}
    if bits != trained_bits:
        before = evaluate_model(trained, images, labels)  # the float baseline evaluates in float
        report["trained_accuracy"] = before
        report["accuracy_change"] = accuracy - before
        warnings.append(f"exporting at {bits} bits, trained at {trained_bits}: post-training re-quantization changes "
                        f"accuracy {before:.4f} -> {accuracy:.4f} ({100 * (accuracy - before):+.2f} pp) "
                        f"on {len(labels)} {spec} test samples")
    lints = lint_network(net, result, len(labels))
    warnings += lint_warnings(lints)
    report["lints"] = [lint.to_dict() for lint in lints]
    report["warnings"] = warnings

    paths = output_paths(args.model, args.output)
    write_core(paths["core_json"], net)
    save_onnx(build_onnx(net), paths["onnx"])
    written = [paths["onnx"], paths["core_json"], paths["core_npz"]]
    if args.golden:
        _write_golden(paths["golden"], images, labels, result, args.golden)
        written.append(paths["golden"])
    report["files"] = [str(p) for p in written + [paths["report"]]]
    atomic_write_bytes(paths["report"], (json.dumps(report, indent=2) + "\n").encode())

    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(_lint_table(lints))
    print(f"integer accuracy at {bits} bits: {accuracy:.4f} on {len(labels)} {spec} test samples")
    for path in written + [paths["report"]]:
        print(f"wrote {path}")
    return 0


def _lint_table(lints) -> str:
    rows = [("layer", "spikes", "clipped@Smax", "acc.sat", "silent", "theta err")]
    for lint in lints:
        rows.append((lint.layer, str(lint.spikes) if lint.spikes >= 0 else "-",
                     f"{100 * lint.smax_clipped_fraction:.2f}%", str(lint.accumulator_saturations),
                     "yes" if lint.silent else "no", f"{lint.threshold_rounding_error:.1e}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)


def export_main(argv: Sequence[str] | None = None) -> int:
    from mtsnn.toolchain.cli import run_guarded

    parser = argparse.ArgumentParser(prog="mtsnn-export", description="Export a trained MT-SNN to ONNX + core description")
    add_export_arguments(parser)
    args = parser.parse_args(argv)
    return run_guarded("mtsnn-export", lambda: run_export(args))


# ----------------------------------------------------------------------------- validate


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint written by mtsnn-train (model.pt)")
    parser.add_argument("dir", help="folder written by mtsnn-export (holds MODEL.onnx and MODEL.core.json)")
    parser.add_argument("--dataset", default=None, help="data set (default: the training data set)")
    parser.add_argument("--samples", type=int, default=None, help="validate the first N test samples (default: all)")
    parser.add_argument("--target", default="loihi", help="target for the simulator path: loihi, truenorth or a TOML file (default loihi)")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulator path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _find_export(model_path: str, folder: str) -> dict[str, Path]:
    folder_path = Path(folder)
    if not folder_path.is_dir():
        raise ExportError(f"{folder}: not a folder: expected the output folder of mtsnn-export")
    paths = output_paths(model_path, folder_path)
    if not paths["core_json"].is_file():
        candidates = sorted(folder_path.glob("*.core.json"))
        if len(candidates) != 1:
            raise ExportError(f"{paths['core_json']}: not found: expected the core description written by "
                              f"mtsnn-export {model_path} -o {folder}")
        stem = candidates[0].name[: -len(".core.json")]
        paths = output_paths(folder_path / f"{stem}.pt", folder_path)
    if not paths["onnx"].is_file():
        raise ExportError(f"{paths['onnx']}: not found: expected the ONNX model written by mtsnn-export")
    return paths


def _simulator_run(core, target_spec: str, images: np.ndarray, batch_size: int = 128):
    """(PathRun or None, note). The simulator is the fourth path when the network maps onto the
    target; when a design rule refuses it, the note says so (and the command prints it)."""
    from mtsnn.hw_model.mapper import DesignRuleError, map_network
    from mtsnn.hw_model.simulator import simulate_batch
    from mtsnn.hw_model.target import load_target

    from .validate import PathRun, run_batched

    target = load_target(target_spec)
    try:
        mapping = map_network(core.network, target)
    except DesignRuleError as exc:
        return None, f"simulator path not run: the network does not map onto {target.name}: {exc}"

    def one_batch(batch):
        activity = simulate_batch(mapping, batch, record_spikes=True)
        return activity.logits, activity.spikes

    logits, spikes = run_batched(one_batch, images, batch_size)
    return PathRun(f"simulator[{target.name}]", logits, spikes), None


def run_validate(args: argparse.Namespace) -> int:
    from mtsnn.hw_model.coredesc import read_core
    from mtsnn.hw_model.reference import run_reference
    from mtsnn.toolchain.checkpoint import load_checkpoint
    from mtsnn.toolchain.cli import load_matching_dataset

    from .onnx_model import run_onnx
    from .validate import PathRun, compare_paths

    paths = _find_export(args.model, args.dir)
    core = read_core(paths["core_json"])
    bits = core.network.provenance.get("bits")
    model, payload = load_checkpoint(args.model, bits=bits if isinstance(bits, int) else None)
    spec, dataset = load_matching_dataset(args.dataset, payload, model, args.model)
    images, labels = _eval_split(dataset, args.samples)
    progress = not args.json

    def say(text):
        if progress:
            print(text, file=sys.stderr, flush=True)

    say(f"validating {len(labels)} {spec} test samples: qat, reference, onnxruntime"
        + ("" if args.no_sim else f", simulator ({args.target})"))
    ref = run_reference(core.network, images)
    reference = PathRun("reference", ref.logits, ref.spikes)
    say("  reference done")
    qat_logits, qat_spikes = _qat_run(model, images)
    others = [PathRun("qat", qat_logits, qat_spikes)]
    say("  qat done")
    onnx_logits, onnx_spikes = run_onnx(paths["onnx"], images, spikes=True)
    others.append(PathRun("onnxruntime", onnx_logits, onnx_spikes))
    say("  onnxruntime done")
    notes = []
    if not args.no_sim:
        sim_run, note = _simulator_run(core, args.target, images)
        if sim_run is not None:
            others.append(sim_run)
            say("  simulator done")
        if note:
            notes.append(note)
    layer_order = [layer.name for layer in core.network.layers if not layer.readout]
    report = compare_paths(reference, others, labels, layer_order)
    report.notes = notes
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(f"bit-exact: {report.samples - report.mismatches}/{report.samples} samples "
              f"({', '.join(report.paths)})")
        for name, acc in report.accuracy.items():
            print(f"  accuracy {name:<12} {acc:.4f}")
        for divergence in report.divergences:
            print(divergence.sentence())
        for note in notes:
            print(f"note: {note}")
    return 0 if report.bit_exact else 1


def validate_main(argv: Sequence[str] | None = None) -> int:
    from mtsnn.toolchain.cli import run_guarded

    parser = argparse.ArgumentParser(prog="mtsnn-validate",
                                     description="Check that the QAT model, the integer reference, onnxruntime and the "
                                                 "simulator agree bit for bit")
    add_validate_arguments(parser)
    args = parser.parse_args(argv)
    return run_guarded("mtsnn-validate", lambda: run_validate(args))
