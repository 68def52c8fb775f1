"""Integer validation: every integer path must give the same spikes and logits, bit for bit.

Paths: the QAT model's integer-exact torch forward ("qat"), the numpy reference on the exported
core description ("reference"), onnxruntime on the exported ONNX file ("onnxruntime"), and the
hardware simulator on the core description mapped to a target ("simulator"). The reference is
the baseline; each other path is compared to it layer by layer (every spiking layer's counts at
every step), then on the logits. The first divergence is the earliest layer that differs, and
in it the lowest sample, time step and neuron index.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["PathRun", "Divergence", "ValidationReport", "ValidationJob", "ChunkOutcome", "compare_paths",
           "first_divergence", "merge_outcomes", "validate_export", "validate_shard"]


@dataclass
class PathRun:
    name: str
    logits: np.ndarray  # (N, classes) int64
    spikes: dict  # layer -> (T, N, *out_shape) integer counts


@dataclass(frozen=True)
class Divergence:
    path: str  # the path that differs from the reference
    sample: int
    layer: str  # a layer name, or "logits"
    time_step: int | None  # 0-based step; None for logits
    neuron: tuple  # index within the layer's output shape (channel, y, x) or (unit,)
    reference_value: int
    path_value: int

    def sentence(self) -> str:
        where = f"layer {self.layer}" + (f", time step {self.time_step}" if self.time_step is not None else "")
        return (f"first divergence: {self.path} vs reference at sample {self.sample}, {where}, "
                f"neuron {self.neuron}: reference {self.reference_value}, {self.path} {self.path_value}")

    def to_dict(self) -> dict:
        return {"path": self.path, "sample": self.sample, "layer": self.layer, "time_step": self.time_step,
                "neuron": list(self.neuron), "reference_value": self.reference_value, "path_value": self.path_value}


@dataclass
class ValidationReport:
    samples: int
    paths: list
    mismatched_samples: np.ndarray  # (N,) bool: any path differs anywhere for this sample
    accuracy: dict
    divergences: list = field(default_factory=list)  # the first divergence of each differing path
    notes: list = field(default_factory=list)  # e.g. fewer samples than asked for
    export_id: str | None = None  # the export that was validated
    dataset: str | None = None  # the data set spec the samples came from

    @property
    def mismatches(self) -> int:
        return int(self.mismatched_samples.sum())

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0 and not self.divergences

    def to_dict(self) -> dict:
        return {"bit_exact": self.bit_exact, "samples": self.samples, "mismatches": self.mismatches,
                "paths": self.paths, "accuracy": self.accuracy,
                "first_divergence": self.divergences[0].to_dict() if self.divergences else None,
                "divergences": [d.to_dict() for d in self.divergences], "notes": self.notes,
                "export_id": self.export_id, "dataset": self.dataset}


def _first_difference(reference: np.ndarray, other: np.ndarray, sample_axis: int):
    """(sample, index tuple of the rest) of the first differing element, ordered by sample."""
    diff = np.asarray(reference).astype(np.int64) != np.asarray(other).astype(np.int64)
    if not diff.any():
        return None
    moved = np.moveaxis(diff, sample_axis, 0)
    sample = int(np.argmax(moved.reshape(moved.shape[0], -1).any(axis=1)))
    rest = np.argwhere(moved[sample])[0]
    return sample, tuple(int(i) for i in rest)


def first_divergence(reference: PathRun, other: PathRun, layer_order: list) -> Divergence | None:
    for layer in layer_order:
        ref, oth = reference.spikes[layer], other.spikes.get(layer)
        if oth is None or ref.shape != oth.shape:  # a path that lacks the layer, or another shape
            return Divergence(other.name, 0, layer, None, (), -1, -1)
        found = _first_difference(ref, oth, sample_axis=1)
        if found:
            sample, (t, *neuron) = found
            return Divergence(other.name, sample, layer, t, tuple(neuron),
                              int(ref[(t, sample, *neuron)]), int(oth[(t, sample, *neuron)]))
    if np.shape(reference.logits) != np.shape(other.logits):
        return Divergence(other.name, 0, "logits", None, (), -1, -1)
    found = _first_difference(reference.logits, other.logits, sample_axis=0)
    if found:
        sample, neuron = found
        return Divergence(other.name, sample, "logits", None, neuron,
                          int(reference.logits[(sample, *neuron)]), int(other.logits[(sample, *neuron)]))
    return None


def _mismatched_samples(reference: PathRun, other: PathRun, layer_order: list) -> np.ndarray:
    if np.shape(reference.logits) != np.shape(other.logits):
        return np.ones(len(reference.logits), dtype=bool)
    bad = (np.asarray(reference.logits) != np.asarray(other.logits)).reshape(len(reference.logits), -1).any(axis=1)
    for layer in layer_order:
        ref, oth = reference.spikes[layer], other.spikes.get(layer)
        if oth is None or ref.shape != oth.shape:
            return np.ones(len(reference.logits), dtype=bool)
        diff = (ref != oth)
        bad |= np.moveaxis(diff, 1, 0).reshape(diff.shape[1], -1).any(axis=1)
    return bad


def compare_paths(reference: PathRun, others: list, labels: np.ndarray, layer_order: list) -> ValidationReport:
    """Compare every path to the reference; accuracy of each path on ``labels``."""
    mismatched = np.zeros(len(reference.logits), dtype=bool)
    divergences = []
    for other in others:
        mismatched |= _mismatched_samples(reference, other, layer_order)
        divergence = first_divergence(reference, other, layer_order)
        if divergence is not None:
            divergences.append(divergence)
    accuracy = {run.name: float((np.argmax(run.logits, axis=1) == labels).mean())
                if len(labels) and np.shape(run.logits)[:1] == np.shape(labels) else float("nan")
                for run in [reference, *others]}
    return ValidationReport(samples=len(reference.logits), paths=[reference.name] + [o.name for o in others],
                            mismatched_samples=mismatched, accuracy=accuracy, divergences=divergences)


def run_batched(function: Callable, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, dict]:
    """Concatenate (logits, spikes) of ``function`` over batches along the sample axes."""
    logits, spikes = [], {}
    for start in range(0, len(images), batch_size):
        batch_logits, batch_spikes = function(images[start : start + batch_size])
        logits.append(np.asarray(batch_logits))
        for name, value in batch_spikes.items():
            spikes.setdefault(name, []).append(np.asarray(value))
    return np.concatenate(logits), {name: np.concatenate(parts, axis=1) for name, parts in spikes.items()}


# ----------------------------------------------------------------------------- the whole check


def _qat_run(model, images: np.ndarray, batch_size: int = 500) -> PathRun:
    """The QAT model's integer-exact forward, as numpy (logits int64, spikes uint8)."""
    import torch

    def one_batch(batch):
        with torch.no_grad():
            run = model.integer_forward(torch.tensor(batch))
        return run.logits.numpy().astype(np.int64), {k: v.numpy().astype(np.uint8) for k, v in run.spikes.items()}

    logits, spikes = run_batched(one_batch, images, batch_size)
    return PathRun("qat", logits, spikes)


def _simulator_mapping(network, target_spec):
    """The network mapped for the simulator path. A network that does not map onto the target
    cannot be checked there: ``CheckUnavailable`` (exit 3), never a silently skipped path."""
    from mtsnn.hw_model.errors import CheckUnavailable
    from mtsnn.hw_model.mapper import DesignRuleError, map_network
    from mtsnn.hw_model.target import load_target

    target = load_target(target_spec)
    try:
        return map_network(network, target)
    except DesignRuleError as exc:
        raise CheckUnavailable(f"simulator path: the network does not map onto target {target.name}: {exc} "
                               "(choose another --target, or --no-sim to skip this path)") from None


def _simulator_run(mapping, images: np.ndarray, batch_size: int = 128) -> PathRun:
    """The simulator as the fourth path, on a mapping from ``_simulator_mapping``."""
    from mtsnn.hw_model.simulator import simulate_batch

    def one_batch(batch):
        activity = simulate_batch(mapping, batch, record_spikes=True)
        return activity.logits, activity.spikes

    logits, spikes = run_batched(one_batch, images, batch_size)
    return PathRun(f"simulator[{mapping.target.name}]", logits, spikes)


# ----------------------------------------------------------------------------- chunks and shards
#
# The samples are checked a chunk at a time (every path's spikes for one chunk in memory, never
# for the whole data set), and the chunks can be shards of an engine (``mtsnn.engines``). What a
# chunk leaves is small: per sample whether any path differed, per path the correct predictions
# and its first divergence. Merging is exact: a path's first divergence over the whole set is the
# one of the earliest layer, and in it the lowest sample (``_divergence_rank``), and that sample's
# first difference lies in the chunk that holds it.

CHUNK_SAMPLES = 1024  # samples whose spikes are held at once, per path


@dataclass(frozen=True)
class ValidationJob:
    """Everything a chunk needs, checked once by ``validate_export``; all of it pickles, so a
    process pool or a Ray task can run chunks (no shared file system needed)."""

    checkpoint: str  # the checkpoint's path, for messages and to rebuild the model
    payload: dict  # the checked checkpoint payload
    bits: int | None  # the export's bits (the QAT model is rebuilt at them)
    network: object  # hw_model.network.IntegerNetwork from the core description
    onnx_bytes: bytes  # the exported ONNX model with its spike outputs
    onnx_path: str  # for messages
    mapping: object | None  # the simulator path's mapping; None: no simulator path
    layer_order: tuple  # the spiking layers, input to output
    device: object | None = None  # torch.device of the QAT path (None: where the data is)


@dataclass
class ChunkOutcome:
    """What the paths did on samples ``start .. start + len(mismatched)``."""

    start: int
    paths: list  # the reference first
    mismatched: np.ndarray  # (n,) bool: any path differs anywhere for this sample
    correct: dict  # path -> correct predictions (None: the path's logits have another shape)
    divergences: dict  # path -> its first Divergence, samples counted from 0 over the whole set


def _divergence_rank(divergence: Divergence, layer_order: tuple) -> tuple:
    layer = layer_order.index(divergence.layer) if divergence.layer in layer_order else len(layer_order)
    return layer, divergence.sample


def _correct(run: PathRun, labels: np.ndarray) -> int | None:
    if np.shape(run.logits)[:1] != np.shape(labels):
        return None
    return int((np.argmax(run.logits, axis=1) == labels).sum()) if len(labels) else 0


def _onnx_run(job: ValidationJob, session, images: np.ndarray) -> PathRun:
    from mtsnn.hw_model.errors import MtsnnError, one_line
    from .errors import ExportError
    from .onnx_model import run_onnx

    try:
        logits, spikes = run_onnx(session, images, spikes=True)
    except MtsnnError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime refusing a graph that is not mtsnn's
        raise ExportError(f"{job.onnx_path}: expected an ONNX model onnxruntime can run on {images.shape[1:]} "
                          f"images, found one it cannot ({one_line(exc, 160)})") from None
    return PathRun("onnxruntime", logits, spikes)


def _check_chunk(job: ValidationJob, model, session, images: np.ndarray, labels: np.ndarray, start: int,
                 say: Callable[[str], None]) -> ChunkOutcome:
    """Every path on one chunk, compared to the reference."""
    from mtsnn.hw_model.reference import run_reference

    sim = None
    if job.mapping is not None:
        sim = _simulator_run(job.mapping, images)
        say("  simulator done")
    ref = run_reference(job.network, images)
    reference = PathRun("reference", ref.logits, ref.spikes)
    say("  reference done")
    others = [_qat_run(model, images)]
    say("  qat done")
    others.append(_onnx_run(job, session, images))
    say("  onnxruntime done")
    if sim is not None:
        others.append(sim)
    report = compare_paths(reference, others, labels, list(job.layer_order))
    divergences = {d.path: Divergence(d.path, d.sample + start, d.layer, d.time_step, d.neuron, d.reference_value,
                                      d.path_value) for d in report.divergences}
    return ChunkOutcome(start=start, paths=report.paths, mismatched=report.mismatched_samples,
                        correct={run.name: _correct(run, labels) for run in [reference, *others]},
                        divergences=divergences)


def merge_outcomes(outcomes: list, layer_order: tuple) -> ChunkOutcome:
    """One outcome for consecutive chunks (in sample order): the same as one chunk of them all."""
    outcomes = sorted(outcomes, key=lambda o: o.start)
    paths = outcomes[0].paths
    correct = {}
    for path in paths:
        counts = [o.correct.get(path) for o in outcomes]
        correct[path] = None if any(c is None for c in counts) else sum(counts)
    divergences = {}
    for path in paths:
        found = [o.divergences[path] for o in outcomes if path in o.divergences]
        if found:
            divergences[path] = min(found, key=lambda d: _divergence_rank(d, layer_order))
    mismatched = np.concatenate([o.mismatched for o in outcomes]) if outcomes else np.zeros(0, bool)
    return ChunkOutcome(start=outcomes[0].start, paths=paths, mismatched=mismatched, correct=correct,
                        divergences=divergences)


def _model_and_session(job: ValidationJob):
    """The QAT model and an onnxruntime session of the job (a graph onnxruntime refuses: one line)."""
    from mtsnn.hw_model.errors import one_line
    from mtsnn.toolchain.checkpoint import model_from_payload
    from .errors import ExportError
    from .onnx_model import make_session

    import onnx

    model = model_from_payload(Path(job.checkpoint), job.payload, bits=job.bits)
    try:
        session = make_session(onnx.load_from_string(job.onnx_bytes))
    except Exception as exc:  # noqa: BLE001 - onnx/onnxruntime refusing a graph that is not mtsnn's
        raise ExportError(f"{job.onnx_path}: expected an ONNX model onnxruntime can load, found one it cannot "
                          f"({one_line(exc, 160)})") from None
    return model, session


def validate_shard(job: ValidationJob, images: np.ndarray, labels: np.ndarray, start: int,
                   chunk: int | None = None, say: Callable[[str], None] | None = None,
                   prepared: tuple | None = None) -> ChunkOutcome:
    """Every path on ``images`` (samples ``start ..`` of the whole set), a chunk at a time; a
    module-level function, so an engine can run it as a task. ``prepared``: the job's
    ``(model, session)`` when the caller has them."""
    from mtsnn.toolchain.device import using_device

    say = say or (lambda text: None)
    chunk = chunk or CHUNK_SAMPLES
    model, session = prepared or _model_and_session(job)
    outcomes = []
    firsts = range(0, max(len(images), 1), chunk)
    with using_device(job.device):
        for first in firsts:
            path_lines = say if first == 0 else (lambda text: None)  # per-path lines for the first chunk
            outcomes.append(_check_chunk(job, model, session, images[first : first + chunk],
                                         labels[first : first + chunk], start + first, path_lines))
            if len(firsts) > 1:
                say(f"  checked {min(first + chunk, len(images))}/{len(images)} samples")
    return merge_outcomes(outcomes, job.layer_order)


def _check_same_network(model, network, checkpoint: Path, core_path: Path) -> None:
    """The checkpoint and the core description describe the same layers (names, shapes, classes)."""
    from .errors import ExportError

    config = model.config
    names = [layer.name for layer in network.layers]
    checks = [
        ("input shape", tuple(config.input_shape), tuple(network.encoder.shape)),
        ("classes", config.n_classes, network.n_classes),
        ("time steps", config.timesteps, network.timesteps),
        ("layer names", list(model.layer_names), names),
    ]
    for what, expected, found in checks:
        if expected != found:
            raise ExportError(f"{core_path}: {what}: expected {expected} (from {checkpoint.name}), found {found}")


def validate_export(checkpoint, folder, *, dataset: str | None = None, samples: int | None = None,
                    target: str = "loihi", simulate: bool = True, run_shards: Callable | None = None,
                    progress: Callable[[str], None] | None = None) -> ValidationReport:
    """Check that the QAT forward of ``checkpoint``, the integer reference and onnxruntime on the
    export in ``folder``, and (``simulate``) the simulator on ``target`` agree bit for bit.

    Before comparing anything it proves the pair belongs together: the export's manifest must
    record this checkpoint's SHA-256 and every exported file must match its recorded digest
    (``ExportError``, exit 2 otherwise); the checkpoint and the core description must describe
    the same layers. A requested path that cannot run raises ``CheckUnavailable`` (exit 3).
    The samples are checked ``CHUNK_SAMPLES`` at a time (memory bounded by a chunk, not by the
    data set). ``run_shards(job, images, labels, say) -> ChunkOutcome``, when given, runs them
    instead (``mtsnn.api.validate`` passes one that runs ``validate_shard`` on contiguous shards
    over an engine and merges them with ``merge_outcomes``). ``report.bit_exact`` is the verdict; ``report.notes`` holds
    anything the caller should print.
    """
    from mtsnn.hw_model.coredesc import read_core
    from mtsnn.hw_model.errors import one_line
    from mtsnn.toolchain.checkpoint import read_checkpoint
    from mtsnn.toolchain.datasets import dataset_name, first_samples, load_matching_dataset
    from mtsnn.toolchain.device import current_device
    from .artifacts import find_export
    from .errors import ExportError
    from .onnx_model import add_spike_outputs, load_onnx

    say = progress or (lambda text: None)
    ckpt = read_checkpoint(checkpoint)
    manifest = find_export(folder, stem=ckpt.path.stem, checkpoint_sha256=ckpt.sha256)
    if manifest.checkpoint_sha256 != ckpt.sha256:
        raise ExportError(f"{ckpt.path}: checkpoint_sha256: expected {manifest.checkpoint_sha256[:16]}... (the checkpoint "
                          f"export {manifest.path} was made from), found {ckpt.sha256[:16]}...: this checkpoint and "
                          "this export do not belong together")
    paths = manifest.paths
    core = read_core(paths.core_json)
    recorded = {key: core.network.provenance.get(key) for key in ("export_id", "checkpoint_sha256")}
    if recorded != {"export_id": manifest.export_id, "checkpoint_sha256": manifest.checkpoint_sha256}:
        raise ExportError(f"{paths.core_json}: provenance.export_id: expected {manifest.export_id} (from "
                          f"{manifest.path.name}), found {one_line(repr(recorded['export_id']), 80)}")
    try:  # an untrusted file: the protobuf parser raises several types on garbage
        onnx_model = load_onnx(paths.onnx)
        onnx_id = {p.key: p.value for p in onnx_model.metadata_props}.get("export_id")
        onnx_bytes = add_spike_outputs(onnx_model).SerializeToString() if onnx_id == manifest.export_id else b""
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"{paths.onnx}: expected an ONNX model written by mtsnn-export, found unreadable content "
                          f"({one_line(exc, 120)})") from None
    if onnx_id != manifest.export_id:
        raise ExportError(f"{paths.onnx}: metadata export_id: expected {manifest.export_id}, "
                          f"found {one_line(repr(onnx_id), 80)}")
    bits = core.network.provenance.get("export_bits")
    bits = bits if isinstance(bits, int) else None
    job = ValidationJob(checkpoint=str(ckpt.path), payload=ckpt.payload, bits=bits, network=core.network,
                        onnx_bytes=onnx_bytes, onnx_path=str(paths.onnx), mapping=None,
                        layer_order=tuple(layer.name for layer in core.network.layers if not layer.readout),
                        device=current_device())
    model, session = _model_and_session(job)  # here, once: a bad file fails before the long work
    _check_same_network(model, core.network, ckpt.path, paths.core_json)
    spec = dataset_name(dataset or manifest.dataset or ckpt.training.get("dataset"))
    data = load_matching_dataset(spec, core.network.encoder.shape, core.network.n_classes, str(paths.core_json))
    images, labels, note = first_samples(data.test, samples)
    images, labels = np.ascontiguousarray(images), np.asarray(labels)
    if simulate:  # a target the network cannot map onto fails before the long work
        job = dataclasses.replace(job, mapping=_simulator_mapping(core.network, target))
    say(f"validating {len(labels)} {spec} test samples: qat, reference, onnxruntime"
        + (f", simulator ({job.mapping.target.name})" if simulate else "")
        + (", in shards" if run_shards is not None else ""))
    if run_shards is None:
        outcome = validate_shard(job, images, labels, 0, say=say, prepared=(model, session))
    else:
        outcome = run_shards(job, images, labels, say)
    report = _report(outcome, len(labels), job.layer_order)
    report.notes = [note] if note else []
    report.export_id = manifest.export_id
    report.dataset = spec
    return report


def _report(outcome: ChunkOutcome, n: int, layer_order: tuple) -> ValidationReport:
    accuracy = {path: float("nan") if outcome.correct[path] is None or n == 0 else outcome.correct[path] / n
                for path in outcome.paths}
    divergences = [outcome.divergences[path] for path in outcome.paths if path in outcome.divergences]
    return ValidationReport(samples=n, paths=list(outcome.paths), mismatched_samples=outcome.mismatched,
                            accuracy=accuracy, divergences=divergences)
