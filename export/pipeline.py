"""Export a checkpoint: integer network -> core description + ONNX (+ golden vectors), one set.

``export_checkpoint`` is the library function behind ``mtsnn.export`` and ``mtsnn-export``:

1. read the checkpoint once (its bytes are hashed: the export records where it came from);
2. check the arguments and the output folder before any long work;
3. rebuild the model at the export's bits (other bits than trained: post-training
   re-quantization, with the accuracy change measured and reported);
4. read out the integer network, run the integer reference on the evaluation data, lint it;
5. under an exclusive lock on the folder, write the core description, the ONNX file and the
   golden vectors, then the manifest (``export.artifacts``) last.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtsnn.hw_model.coredesc import write_core
from mtsnn.hw_model.errors import one_line
from mtsnn.hw_model.fileio import atomic_write_bytes, check_output_dir
from mtsnn.hw_model.reference import run_reference
from mtsnn.toolchain.checkpoint import model_from_payload, read_checkpoint
from mtsnn.toolchain.datasets import dataset_name, first_samples, load_matching_dataset
from mtsnn.toolchain.train import evaluate_model
from .artifacts import ExportPaths, export_id_for, export_lock, write_manifest
from .nir_model import write_nir
from .errors import ExportError
from .integer import to_integer_network
from .lints import LayerLint, lint_network, lint_warnings
from .onnx_model import build_onnx, save_onnx

__all__ = ["ExportResult", "MAX_GOLDEN", "export_checkpoint"]

MAX_GOLDEN = 100_000


@dataclass(frozen=True)
class ExportResult:
    """What one export wrote and measured.

    ``integer_accuracy`` is the exported integer network's test accuracy (fraction, 0..1) on
    ``samples`` images of ``dataset``; ``trained_accuracy`` the checkpoint's own accuracy on the
    same images when the export re-quantized it (other bits than trained), else None.
    """

    export_id: str  # 32 hex digits, carried by every file of the export
    checkpoint: Path
    checkpoint_sha256: str
    bits: int
    trained_bits: int
    dataset: str
    samples: int
    integer_accuracy: float
    trained_accuracy: float | None
    lints: list  # LayerLint per layer
    warnings: list  # sentences
    paths: ExportPaths
    files: list = field(default_factory=list)  # every file written, the manifest last
    notes: list = field(default_factory=list)  # e.g. fewer samples than asked for

    @property
    def accuracy_change(self) -> float | None:
        return None if self.trained_accuracy is None else self.integer_accuracy - self.trained_accuracy

    def to_dict(self) -> dict:
        report = {"model": str(self.checkpoint), "bits": self.bits, "trained_bits": self.trained_bits,
                  "dataset": self.dataset, "samples": self.samples, "integer_accuracy": self.integer_accuracy}
        if self.trained_accuracy is not None:
            report["trained_accuracy"] = self.trained_accuracy
            report["accuracy_change"] = self.accuracy_change
        report["lints"] = [lint.to_dict() for lint in self.lints]
        report["warnings"] = list(self.warnings)
        report["notes"] = list(self.notes)
        return report


def _check_arguments(trained_bits: int, bits: int | None, golden: int, checkpoint: Path) -> int:
    bits = trained_bits if bits is None else bits
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise ExportError(f"--bits: expected an integer 2..16, found {bits!r}")
    if bits == 0:
        raise ExportError(f"{checkpoint}: a float baseline (trained with --bits 0) must be exported with --bits 2..16 "
                          "(post-training quantization)")
    if not 2 <= bits <= 16:
        raise ExportError(f"--bits: expected 2..16, found {bits}")
    if isinstance(golden, bool) or not isinstance(golden, int) or not 0 <= golden <= MAX_GOLDEN:
        raise ExportError(f"--golden: expected an integer 0..{MAX_GOLDEN}, found {golden!r}")
    return bits


def _golden_bytes(images, labels, result, n: int, export_id: str) -> bytes:
    n = min(n, len(images))
    arrays = {"images": images[:n], "labels": labels[:n].astype(np.int64), "logits": result.logits[:n],
              "export_id": np.array(export_id)}
    for name, spikes in result.spikes.items():
        arrays[f"spikes_{name}"] = spikes[:, :n]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def export_checkpoint(checkpoint: str | os.PathLike, *, bits: int | None = None, out: str | os.PathLike | None = None,
                      dataset: str | None = None, samples: int | None = None, golden: int = 0,
                      nir: bool = False) -> ExportResult:
    """Export ``checkpoint`` at ``bits`` (default: the trained bits) into folder ``out``
    (default: beside the checkpoint). ``dataset`` / ``samples``: the evaluation data for the
    accuracy and the lints (default: the data set the model was trained on, all test images);
    ``golden``: also write that many golden vectors; ``nir``: also write ``MODEL.nir``, the
    integer network as a NIR graph (docs/nir.md). Raises ``MtsnnError`` subclasses."""
    ckpt = read_checkpoint(checkpoint)
    trained_bits = ckpt.payload["config"].get("bits")
    if isinstance(trained_bits, bool) or not isinstance(trained_bits, int):
        raise ExportError(f"{ckpt.path}: config.bits: expected an integer, found {trained_bits!r}")
    bits = _check_arguments(trained_bits, bits, golden, ckpt.path)
    recorded_accuracy = ckpt.training.get("test_accuracy")  # copied into the provenance of the export
    if recorded_accuracy is not None and not (isinstance(recorded_accuracy, (int, float))
                                              and not isinstance(recorded_accuracy, bool)
                                              and 0 <= recorded_accuracy <= 1):
        raise ExportError(f"{ckpt.path}: training.test_accuracy: expected a fraction 0..1 or nothing, found "
                          f"{one_line(repr(recorded_accuracy), 80)}")
    paths = ExportPaths.for_checkpoint(ckpt.path, out)
    check_output_dir(paths.folder, "export folder")

    trained = model_from_payload(ckpt.path, ckpt.payload)
    model = trained if bits == trained_bits else model_from_payload(ckpt.path, ckpt.payload, bits=bits)
    spec = dataset_name(dataset or ckpt.training.get("dataset"))
    data = load_matching_dataset(spec, trained.config.input_shape, trained.config.n_classes, str(ckpt.path))
    images, labels, note = first_samples(data.test, samples)
    images, labels = np.ascontiguousarray(images), np.asarray(labels)
    parameters = {"bits": bits, "golden": golden, "dataset": spec, "samples": len(labels)}
    if nir:  # only then: exports without NIR keep the ids they always had
        parameters["nir"] = True
    export_id = export_id_for(ckpt.sha256, parameters)

    net = to_integer_network(model, provenance={
        "trained_bits": trained_bits, "export_bits": bits, "requantized": bits != trained_bits,
        "dataset": spec, "training_test_accuracy": recorded_accuracy,
        "export_id": export_id, "checkpoint_sha256": ckpt.sha256,
    })
    result = run_reference(net, images)
    accuracy = float((result.predictions == labels).mean())
    warnings, trained_accuracy = [], None
    if bits != trained_bits:
        trained_accuracy = evaluate_model(trained, images, labels)  # a float baseline evaluates in float
        warnings.append(f"exporting at {bits} bits, trained at {trained_bits}: post-training re-quantization changes "
                        f"accuracy {trained_accuracy:.4f} -> {accuracy:.4f} "
                        f"({100 * (accuracy - trained_accuracy):+.2f} pp) on {len(labels)} {spec} test samples")
    lints: list[LayerLint] = lint_network(net, result, len(labels))
    warnings += lint_warnings(lints)

    with export_lock(paths.folder):
        write_core(paths.core_json, net)
        save_onnx(build_onnx(net), paths.onnx)
        files = [paths.onnx, paths.core_json, paths.core_npz]
        if golden:
            atomic_write_bytes(paths.golden, _golden_bytes(images, labels, result, golden, export_id))
            files.append(paths.golden)
        elif paths.golden.exists():  # a golden file of an earlier export would not match this one
            paths.golden.unlink()
        if nir:
            write_nir(net, paths.nir)
            files.append(paths.nir)
        elif paths.nir.exists():  # nor would a NIR file of an earlier export
            paths.nir.unlink()
        export = ExportResult(export_id=export_id, checkpoint=ckpt.path, checkpoint_sha256=ckpt.sha256, bits=bits,
                              trained_bits=trained_bits, dataset=spec, samples=int(len(labels)),
                              integer_accuracy=accuracy, trained_accuracy=trained_accuracy, lints=lints,
                              warnings=warnings, paths=paths, files=files, notes=[note] if note else [])
        manifest = write_manifest(paths, export_id, ckpt.sha256, files, export.to_dict())
    return ExportResult(**{**export.__dict__, "files": files + [manifest]})
