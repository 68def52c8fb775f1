"""The Python API: the verbs of the command line as functions returning typed records.

    import mtsnn
    run = mtsnn.train(epochs=5, out="runs/model.pt")           # QAT on the embedded digits
    exp = mtsnn.export(run.checkpoint, bits=8, out="runs/")     # ONNX + core description
    sim = mtsnn.simulate("runs/", target="loihi")               # SOPs, latency, energy
    val = mtsnn.validate(run.checkpoint, "runs/")               # bit-exact across every path
    assert val.bit_exact

Every function raises an ``mtsnn.MtsnnError`` subclass (a ``ValueError``) with a one-line
message for bad input; its ``exit_code`` is what the command line returns (docs/cli.md).
Units: accuracies are fractions (0..1); times in seconds; energies in joules; images are
uint8 arrays (N, C, H, W). The command line (``mtsnn.cli``) only parses, calls these and prints.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mtsnn.hw_model.errors import InputError
from mtsnn.hw_model.fileio import check_output_file

__all__ = [
    "DEFAULT_ARCH",
    "TrainRun",
    "Evaluation",
    "TargetInfo",
    "SimulationReport",
    "train",
    "resume",
    "evaluate",
    "export",
    "simulate",
    "validate",
    "list_targets",
    "default_acc_bits",
    "TRAIN_DEFAULTS",
]

# Default architecture per data set: the paper's for MNIST-like and CIFAR-10 inputs; for the 8x8
# digits a small CNN whose every fan-in is <= 256 so it also maps onto TrueNorth-like cores.
DEFAULT_ARCH = {
    "digits": "24C3p1-P2-28C3p1-P2-256",
    "mnist": "15C5-P2-40C5-P2-300",
    "fashion-mnist": "15C5-P2-40C5-P2-300",
    "cifar10": "96C3-256C3-P2-384C3-P2-384C3-256C3-1024-1024",
}


def default_acc_bits(bits: int) -> int:
    """Accumulator width when not given: 20 bits (TrueNorth's membrane) up to 8-bit weights,
    growing with the weight width so that (Smax + 1) * theta_int stays far from saturation."""
    return max(20, bits + 12)


# ----------------------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainRun:
    """A finished training run.

    ``test_accuracy`` (fraction) is measured with the integer-exact forward for a quantized
    model (``accuracy_kind`` "integer-exact") and in float for the ``bits=0`` baseline
    (``accuracy_kind`` "float", never deployable as is). ``history`` holds one dict per epoch
    (loss, train/test accuracy, epoch_seconds, seconds since the start).
    """

    checkpoint: Path
    test_accuracy: float
    accuracy_kind: str
    test_samples: int
    dataset: str
    arch: str
    epochs: int
    seconds: float
    history: list = field(default_factory=list)


def _dataset_kind(spec: str | None) -> str:
    return "digits" if not spec else spec.split(":", 1)[0]


def _epoch_line(record, kind: str) -> str:
    return (f"epoch {record.epoch}/{record.epochs}: loss {record.loss:.4f}  train acc {record.train_accuracy:.4f}  "
            f"test acc ({kind}) {record.test_accuracy:.4f}  ({record.epoch_seconds:.1f} s, "
            f"total {record.total_seconds:.1f} s)")


def _init_state(path, config) -> dict:
    """The state dict of checkpoint ``path``, checked to fit ``config``'s architecture."""
    from mtsnn.toolchain.checkpoint import CheckpointError, load_checkpoint

    model, _ = load_checkpoint(path)
    for name in ("arch", "input_shape", "n_classes"):
        mine, theirs = getattr(config, name), getattr(model.config, name)
        if mine != theirs:
            raise CheckpointError(f"{path}: --init: {name}: expected {mine!r} (the model being trained), "
                                  f"found {theirs!r}")
    return model.state_dict()


def _run_training(config, data, settings, out: Path, training_meta: dict, *, init_state=None, resume_from=None,
                  progress: bool, log: Callable[[str], None], device=None, dist=None,
                  compile: str = "auto", flip: bool = False) -> TrainRun:
    """Train with a resumable checkpoint written atomically to ``out`` after every epoch."""
    import torch

    from mtsnn.toolchain.checkpoint import save_checkpoint
    from mtsnn.toolchain.train import train_model

    kind = "integer-exact" if config.quantized else "float"

    def training_dict(history: list, complete: bool) -> dict:
        last = history[-1] if history else {}
        return {**training_meta, "test_accuracy": last.get("test_accuracy"), "test_samples": len(data.test),
                "seconds": round(last.get("seconds", 0.0), 2), "history": history, "complete": complete,
                "accuracy_kind": kind, "torch_version": str(torch.__version__)}

    def on_epoch(model, state, record) -> None:
        complete = record.epoch == settings.epochs
        save_checkpoint(out, model, training_dict(state.history, complete), None if complete else state.to_dict())
        if progress:
            log(_epoch_line(record, kind))

    resume_state, model_state = resume_from if resume_from else (None, None)
    result = train_model(config, data, settings, init_state, resume=resume_state, model_state=model_state,
                         on_epoch=on_epoch, device=device, dist=dist, compile=compile, flip=flip)
    return TrainRun(checkpoint=out, test_accuracy=result.test_accuracy, accuracy_kind=kind,
                    test_samples=len(data.test), dataset=training_meta["dataset"], arch=config.arch,
                    epochs=settings.epochs, seconds=result.seconds, history=result.history)


def _recorded_settings(settings) -> dict:
    """The training settings a checkpoint records (and a resumed run reuses), all but ``progress``."""
    return {k: v for k, v in settings.to_dict().items() if k != "progress"}


def _device(device):
    """``--device``'s word as a torch.device (an ``InputError`` for CUDA asked for and absent)."""
    from mtsnn.toolchain.device import resolve_device

    return resolve_device(device)


def _where(device, dist) -> str:
    from mtsnn.toolchain.device import describe_device

    where = describe_device(device)
    return where if dist is None else f"{dist.world_size} processes ({dist.backend}), rank 0 on {where}"


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise InputError(f"--threads: expected an integer 1..1024, found {threads!r}")
    import torch

    torch.set_num_threads(threads)


def train(dataset: str | None = None, *, arch: str | None = None, timesteps: int = 2, smax: int = 15, bits: int = 8,
          acc_bits: int | None = None, tau: float = 10.0, theta: float | None = None, surrogate: int = 2,
          a: float = 1.0, b: float | None = None, loss: str = "ce", epochs: int | None = None, batch_size: int = 32,
          lr: float = 3e-3, augment: int = 1, flip: bool = False, seed: int = 0,
          init: str | os.PathLike | None = None, threads: int | None = None, device: str = "auto",
          compile: str = "auto", out: str | os.PathLike = "model.pt", progress: bool = True,
          log: Callable[[str], None] = print, dist=None) -> TrainRun:
    """Quantization-aware training of an MT-SNN; the checkpoint goes to ``out``.

    dataset: "digits" (default, embedded), "mnist:DIR", "fashion-mnist:DIR", "cifar10:DIR".
    arch: the paper's notation (default per data set, ``DEFAULT_ARCH``). timesteps T, smax
    (spike counts 0..Smax per step), bits (weight bits 2..16; 0 = float baseline), acc_bits
    (membrane accumulator, default ``default_acc_bits(bits)``), tau (membrane time constant in
    steps, 0 = no leak), theta (float threshold; default per Smax, ``default_theta``: 1/8 at
    Smax 1, 1/4 at 2..7, 1/2 at 8..31), surrogate curve 1|2|3 with height a and steepness b
    (default per Smax, ``default_surrogate_b``: min(20, 2 Smax**2)); a value given always wins, loss "ce"|"mse", epochs (default 30 on digits, 15 otherwise), batch_size, lr
    (peak of the one-cycle schedule), augment (random shift in pixels: a random crop of the image
    padded with zeros), flip (random left-right mirroring, for CIFAR-10), seed, init (start from
    this checkpoint's weights), threads (torch CPU threads; same seed and threads, same model),
    device ("auto": CUDA when present, else the CPU; "cpu"; "cuda" or "cuda:N"; CUDA asked for
    and absent is an ``InputError``), compile ("on": the fused MT-LIF kernels of
    ``mtsnn.toolchain.fused`` through torch.compile, the same integers; "off": the unfused neuron;
    "auto": on when the run is long enough to repay compiling). A resumable checkpoint is written atomically after every
    epoch (``resume`` continues it). ``dist``: a ``mtsnn.toolchain.distributed.DistContext`` when
    run by ``python -m mtsnn.train`` under torchrun (one process per rank; rank 0 writes the
    checkpoint and the log lines).
    """
    from mtsnn.toolchain.datasets import dataset_name, load_dataset
    from mtsnn.toolchain.model import ModelConfig, default_surrogate_b, default_theta
    from mtsnn.toolchain.neuron import SurrogateConfig
    from mtsnn.toolchain.train import TrainSettings

    if not isinstance(flip, bool):
        raise InputError(f"--flip: expected true or false, found {flip!r}")
    theta = default_theta(smax) if theta is None else theta
    b = default_surrogate_b(smax) if b is None else b
    out = check_output_file(out, "checkpoint")
    _set_threads(threads)
    device = dist.device if dist is not None else _device(device)
    kind = _dataset_kind(dataset)
    data = load_dataset(dataset)
    arch = arch or DEFAULT_ARCH.get(kind, DEFAULT_ARCH["mnist"])
    epochs = epochs if epochs is not None else (30 if kind == "digits" else 15)
    config = ModelConfig(arch=arch, input_shape=data.input_shape, n_classes=data.n_classes, timesteps=timesteps,
                         smax=smax, bits=bits, acc_bits=acc_bits if acc_bits is not None else default_acc_bits(bits),
                         tau=tau, theta=theta, surrogate=SurrogateConfig(surrogate, a, b))
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, loss=loss, augment=augment,
                             progress=progress)
    init_state = _init_state(init, config) if init else None
    progress = progress and (dist is None or dist.rank == 0)
    if progress:
        log(f"training {arch} on {data.name} ({len(data.train)} train / {len(data.test)} test) on "
            f"{_where(device, dist)}, T={config.timesteps} "
            f"Smax={config.smax} bits={config.bits} acc_bits={config.acc_bits} theta={config.theta:g} "
            f"surrogate={config.surrogate.curve} (a={config.surrogate.a:g}, b={config.surrogate.b:g}) compile={compile} "
            f"for {epochs} epochs")
    meta = {"init": str(init) if init else None, "dataset": dataset_name(dataset), "threads": threads,
            "device": str(device), "world_size": dist.world_size if dist is not None else 1, "compile": compile,
            "flip": bool(flip),
            **_recorded_settings(settings)}
    return _run_training(config, data, settings, out, meta, init_state=init_state, progress=progress, log=log,
                         device=device, dist=dist, compile=compile, flip=bool(flip))


# the defaults of ``train`` by name, for the command line's help (one place for every default)
TRAIN_DEFAULTS = {name: p.default for name, p in inspect.signature(train).parameters.items()
                  if p.default is not inspect.Parameter.empty}


def resume(checkpoint: str | os.PathLike, *, out: str | os.PathLike | None = None, threads: int | None = None,
           device: str = "auto", compile: str = "auto", progress: bool = True, log: Callable[[str], None] = print,
           dist=None) -> TrainRun:
    """Continue an interrupted ``train`` run from its last per-epoch checkpoint (written to
    ``out``, default: the same file). With the same thread count the result is bit-identical
    to a run that was never interrupted."""
    from mtsnn.toolchain.checkpoint import CheckpointError, model_from_payload, read_checkpoint
    from mtsnn.toolchain.datasets import load_matching_dataset
    from mtsnn.toolchain.train import TrainSettings, TrainState

    ckpt = read_checkpoint(checkpoint)
    out = check_output_file(out or ckpt.path, "checkpoint")
    training = ckpt.training
    if not ckpt.resume:
        raise CheckpointError(f"{ckpt.path}: resume: expected an unfinished run (a per-epoch checkpoint), found a "
                              f"{'completed' if training.get('complete') else 'non-resumable'} checkpoint")
    missing = [key for key in _recorded_settings(TrainSettings()) if key not in training]
    if missing:
        raise CheckpointError(f"{ckpt.path}: training.{missing[0]}: expected the run's setting, found nothing")
    _set_threads(threads if threads is not None else training.get("threads"))
    device = dist.device if dist is not None else _device(device)
    world, recorded_world = (dist.world_size if dist is not None else 1), training.get("world_size", 1)
    if recorded_world != world:
        raise CheckpointError(f"{ckpt.path}: training.world_size: expected {world} (the processes resuming it), found "
                              f"{recorded_world!r}: resume a run with as many processes as trained it")
    model = model_from_payload(ckpt.path, ckpt.payload)
    settings = TrainSettings(**{key: training[key] for key in _recorded_settings(TrainSettings())}, progress=progress)
    data = load_matching_dataset(training.get("dataset"), model.config.input_shape, model.config.n_classes,
                                 str(ckpt.path))
    state = TrainState.from_dict(ckpt.resume, training.get("history", []))
    progress = progress and (dist is None or dist.rank == 0)
    if progress:
        log(f"resuming {model.config.arch} on {data.name} after epoch {state.epoch}/{settings.epochs} on "
            f"{_where(device, dist)}")
    meta = {k: training.get(k) for k in ("init", "dataset", "threads", *_recorded_settings(settings))}
    flip = bool(training.get("flip", False))
    meta.update(device=str(device), world_size=world, compile=compile, flip=flip)
    return _run_training(model.config, data, settings, Path(out), meta, resume_from=(state, model.state_dict()),
                         progress=progress, log=log, device=device, dist=dist, compile=compile, flip=flip)


# ----------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class Evaluation:
    """Test accuracy (fraction) of a checkpoint: integer-exact, or float for a bits=0 baseline."""

    checkpoint: Path
    dataset: str
    samples: int
    accuracy: float
    accuracy_kind: str  # "integer-exact" | "float"
    arch: str
    bits: int
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": str(self.checkpoint), "dataset": self.dataset, "split": "test", "samples": self.samples,
                "accuracy": self.accuracy, "accuracy_kind": self.accuracy_kind, "arch": self.arch,
                "bits": self.bits, "notes": list(self.notes)}


def evaluate(checkpoint: str | os.PathLike, *, dataset: str | None = None, samples: int | None = None,
             device: str = "auto") -> Evaluation:
    """Test accuracy of ``checkpoint`` on ``dataset`` (default: its training data set), first
    ``samples`` test images (default all), computed on ``device`` (auto | cpu | cuda[:N])."""
    from mtsnn.toolchain.checkpoint import model_from_payload, read_checkpoint
    from mtsnn.toolchain.datasets import dataset_name, first_samples, load_matching_dataset
    from mtsnn.toolchain.train import evaluate_model

    device = _device(device)
    ckpt = read_checkpoint(checkpoint)
    model = model_from_payload(ckpt.path, ckpt.payload).to(device)
    spec = dataset_name(dataset or ckpt.training.get("dataset"))
    data = load_matching_dataset(spec, model.config.input_shape, model.config.n_classes, str(ckpt.path))
    images, labels, note = first_samples(data.test, samples)
    accuracy = evaluate_model(model, images, labels)
    return Evaluation(checkpoint=ckpt.path, dataset=spec, samples=len(labels), accuracy=accuracy,
                      accuracy_kind="integer-exact" if model.config.quantized else "float", arch=model.config.arch,
                      bits=model.config.bits, notes=[note] if note else [])


# ----------------------------------------------------------------------------- export


def export(checkpoint: str | os.PathLike, *, bits: int | None = None, out: str | os.PathLike | None = None,
           dataset: str | None = None, samples: int | None = None, golden: int = 0, nir: bool = False,
           device: str = "auto"):
    """Export ``checkpoint`` to ONNX + core description (+ ``golden`` vectors, + ``nir``: the
    integer network as a NIR graph, ``MODEL.nir``, docs/nir.md) in ``out``.

    Returns an ``ExportResult`` (export id, files, integer accuracy, lints, warnings); see
    ``mtsnn.export.pipeline.export_checkpoint`` for every argument. ``device``: where the QAT
    model's own forward runs (the re-quantized export's comparison); the integer network is
    built and run by the numpy reference on the CPU either way.
    """
    from mtsnn.export.pipeline import export_checkpoint
    from mtsnn.toolchain.device import using_device

    with using_device(_device(device)):
        return export_checkpoint(checkpoint, bits=bits, out=out, dataset=dataset, samples=samples, golden=golden,
                                 nir=nir)


# ----------------------------------------------------------------------------- simulate


@dataclass(frozen=True)
class TargetInfo:
    name: str
    description: str
    path: Path


def list_targets() -> list[TargetInfo]:
    """The target presets shipped with mtsnn (``--target NAME``), one record each."""
    from mtsnn.hw_model.target import PRESETS, load_target

    targets = [load_target(name) for name in PRESETS]
    return [TargetInfo(t.name, t.description, Path(t.path)) for t in targets]


@dataclass(frozen=True, eq=False)
class SimulationReport:
    """A simulation's report (``report``: the JSON document of ``mtsnn.hw_model.report``), the
    raw ``result`` (per-core counts, per-sample latency and energy) and its ``mapping``."""

    report: dict
    result: object  # mtsnn.hw_model.simulator.SimulationResult
    mapping: object  # mtsnn.hw_model.mapper.Mapping
    core: Path
    dataset: str
    notes: list = field(default_factory=list)
    crosscheck: object = None  # mtsnn.crosscheck.CrossCheck when asked for

    @property
    def total(self) -> dict:
        return self.report["total"]


def resolve_core(core: str | os.PathLike):
    """(core description path, verified manifest or None) for an export folder or a .core.json.

    A folder must hold exactly one export; a .core.json beside its export manifest is checked
    against it (a file changed after the export is refused); a bare .core.json is read as is.
    """
    from mtsnn.export.artifacts import find_export, manifest_beside_core, read_manifest, verify_export

    path = Path(core)
    if path.is_dir():
        manifest = find_export(path)
        return manifest.paths.core_json, manifest
    from mtsnn.hw_model.coredesc import core_paths

    json_path, _ = core_paths(path)
    beside = manifest_beside_core(json_path)
    if json_path.is_file() and beside.is_file():
        manifest = read_manifest(beside)
        if json_path.name in manifest.files:
            verify_export(manifest)
            return json_path, manifest
    return json_path, None


def _sharded_simulation(mapping, images, labels, batch_size: int, engine: str, workers: int | None,
                        address: str | None, on_shard):
    """The samples cut into one contiguous shard per worker (several per worker beyond 4096
    samples each), simulated as engine tasks and merged in order."""
    from mtsnn.engines import check_engine, contiguous_shards, run_tasks
    from mtsnn.hw_model.simulator import merge_results, simulate_shard

    check_engine(engine, workers, address)
    workers = workers or max(1, min(len(images) // batch_size or 1, os.cpu_count() or 1))
    tasks = [(mapping, images[a:b], labels[a:b], batch_size) for a, b in contiguous_shards(len(images), workers, 4096)]
    results = [None] * len(tasks)
    for index, result in run_tasks(simulate_shard, tasks, engine=engine, workers=workers, address=address):
        results[index] = result
        if on_shard is not None:
            on_shard(result.n_samples)
    return merge_results(results)


def simulate(core: str | os.PathLike, *, target: str | os.PathLike = "loihi", dataset: str | None = None,
             samples: int | None = None, batch_size: int = 128, static: str | None = None,
             objective: str = "cores", detailed_samples: int = 16, crosscheck_samples: int | None = None,
             relax: tuple = (), engine: str | None = None, workers: int | None = None, address: str | None = None,
             progress: Callable[[int, int], None] | None = None) -> SimulationReport:
    """Map the core description (an export folder, or a ``.core.json``) onto ``target`` (a preset
    name or a TOML file), run ``samples`` test images of ``dataset`` (default: the data set the
    export recorded) tick by tick and report SOPs, latency and energy per layer, core and total.
    ``static``: how static power is charged, "chip" | "used-cores" | "none" (default: the
    target's default, stated in the report). ``objective``: map for the fewest "cores" (every
    core packed), or for the lowest "latency" or "energy" (per-core neuron caps compared by
    simulating the first 8 samples; ``hw_model.optimize``). ``detailed_samples``: run the first N samples
    through the detailed network model too (links that fill up, back-pressure; ``hw_model.noc``)
    and scale every sample's latency by its ratio to the contention-free model (0: the fast
    model alone). ``crosscheck_samples``: also run that many samples
    in SANA-FE and compare tick by tick (``mtsnn.crosscheck``; binary networks only, checked
    before anything runs). ``relax``: design rules the user relaxes knowingly (``"axon-types"``:
    price a network that breaks TrueNorth's axon-type rule; the report says so). ``engine``
    ("local" | "ray", ``mtsnn.engines``): shard the samples over ``workers`` processes or Ray
    tasks (``address``: an existing Ray cluster) and merge the shards' results (the same counts
    as one run; energies summed in another order, equal up to float rounding); None: in this process. ``progress(done, total)`` is called with 0 before the first
    batch and after every batch (after every shard with an engine)."""
    from mtsnn.hw_model.coredesc import read_core
    from mtsnn.hw_model.mapper import mapping_from_placement
    from mtsnn.hw_model.report import build_report
    from mtsnn.hw_model.simulator import simulate as run_simulation
    from mtsnn.hw_model.target import load_target
    from mtsnn.toolchain.datasets import dataset_name, first_samples, load_matching_dataset

    from mtsnn.hw_model.target import STATIC_CONVENTIONS

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"--batch-size: expected an integer >= 1, found {batch_size!r}")
    if isinstance(detailed_samples, bool) or not isinstance(detailed_samples, int) or detailed_samples < 0:
        raise InputError(f"--detailed-samples: expected an integer >= 0, found {detailed_samples!r}")
    if static is not None and static not in STATIC_CONVENTIONS:
        raise InputError(f"--static: expected one of {', '.join(STATIC_CONVENTIONS)}, found {static!r}")
    from mtsnn.engines import check_engine

    check_engine(engine, workers, address)  # before the long work; --workers/--address need --engine
    json_path, manifest = resolve_core(core)
    description = read_core(json_path)
    network = description.network
    from mtsnn.hw_model.optimize import OBJECTIVES, map_for_objective

    if objective not in OBJECTIVES:
        raise InputError(f"--objective: expected one of {', '.join(OBJECTIVES)}, found {objective!r}")
    chip = load_target(target, relax)
    placement = description.placement
    recorded = None
    candidates = []
    if placement is not None and placement.get("target") == chip.name and objective == "cores":
        mapping = mapping_from_placement(placement, network, chip)
        recorded = "the placement stored in the core description"
    if crosscheck_samples is not None and (isinstance(crosscheck_samples, bool) or
                                           not isinstance(crosscheck_samples, int) or crosscheck_samples < 1):
        raise InputError(f"--crosscheck-samples: expected an integer >= 1, found {crosscheck_samples!r}")
    recorded_data = (manifest.dataset if manifest else None) or network.provenance.get("dataset")
    spec = dataset_name(dataset or (recorded_data if isinstance(recorded_data, str) else None))
    data = load_matching_dataset(spec, network.encoder.shape, network.n_classes, str(json_path))
    images, labels, note = first_samples(data.test, samples)
    if recorded is None:
        mapping, candidates = map_for_objective(network, chip, objective, images[:8], static)
    if crosscheck_samples is not None:
        from mtsnn.crosscheck import check_comparable

        check_comparable(mapping)
    total, done = len(labels), [0]

    def on_batch(n: int) -> None:
        done[0] += n
        progress(done[0], total)

    if progress is not None:
        progress(0, total)
    if engine is None:
        result = run_simulation(mapping, images, labels, batch_size=batch_size,
                                progress=on_batch if progress is not None else None)
    else:
        result = _sharded_simulation(mapping, images, labels, batch_size, engine, workers, address,
                                     on_batch if progress is not None else None)
    from mtsnn.hw_model.noc import detailed_tick_cycles

    detailed = detailed_tick_cycles(mapping, images[:detailed_samples]) if detailed_samples else None
    report = build_report(result, static=static, core_path=str(json_path), detailed_cycles=detailed)
    report["dataset"] = spec
    report["mapping"] = {"objective": objective, "source": recorded or f"mapped for the objective '{objective}'",
                         "orders": mapping.orders(), "candidates": [c.to_dict() for c in candidates]}
    check = None
    if crosscheck_samples is not None:
        from mtsnn.crosscheck import sanafe_crosscheck

        check = sanafe_crosscheck(mapping, images[:crosscheck_samples])
        report["crosscheck"] = check.to_dict()
    return SimulationReport(report=report, result=result, mapping=mapping, core=json_path, dataset=spec,
                            notes=[note] if note else [], crosscheck=check)


# ----------------------------------------------------------------------------- validate


def validate(checkpoint: str | os.PathLike, export_dir: str | os.PathLike, *, dataset: str | None = None,
             samples: int | None = None, target: str | os.PathLike = "loihi", simulate: bool = True,
             engine: str | None = None, workers: int | None = None, address: str | None = None,
             progress: Callable[[str], None] | None = None, device: str = "auto"):
    """Prove that the QAT forward, the integer reference, onnxruntime and (``simulate``) the
    simulator on ``target`` agree bit for bit; returns a ``ValidationReport`` (``bit_exact``,
    per-path accuracy, the first divergence of each differing path). Refuses a checkpoint and
    an export that do not belong together (``ExportError``); a requested simulator path that
    cannot run raises ``CheckUnavailable``. ``engine`` ("local" | "ray", ``mtsnn.engines``):
    check contiguous shards of the samples as ``workers`` processes or Ray tasks (``address``:
    an existing Ray cluster) and merge them (the same report as one run); None: in this process.
    ``device``: where the QAT path's integer forward runs (auto | cpu | cuda[:N]); its results
    are compared on the CPU with the others."""
    from mtsnn.export.validate import validate_export
    from mtsnn.toolchain.device import using_device

    from mtsnn.hw_model.target import Target

    from mtsnn.engines import check_engine

    check_engine(engine, workers, address)
    target = target if isinstance(target, Target) else os.fspath(target)  # a Target: loaded (and relaxed) already
    run_shards = None
    if engine is not None:
        def run_shards(job, images, labels, say):
            return _sharded_validation(job, images, labels, engine, workers, address, say)
    with using_device(_device(device)):
        return validate_export(checkpoint, export_dir, dataset=dataset, samples=samples, target=target,
                               simulate=simulate, run_shards=run_shards, progress=progress)


def _sharded_validation(job, images, labels, engine: str, workers: int | None, address: str | None, say):
    """The samples cut into contiguous shards (one per worker, more beyond 4 chunks each), checked
    as engine tasks and merged: the report of one run."""
    from mtsnn.engines import contiguous_shards, run_tasks
    from mtsnn.export.validate import CHUNK_SAMPLES, merge_outcomes, validate_shard

    workers = workers or max(1, min(-(-len(images) // CHUNK_SAMPLES), os.cpu_count() or 1))
    shards = contiguous_shards(len(images), workers, 4 * CHUNK_SAMPLES)
    tasks = [(job, images[a:b], labels[a:b], a) for a, b in shards] or [(job, images, labels, 0)]
    outcomes = []
    for _, outcome in run_tasks(validate_shard, tasks, engine=engine, workers=workers, address=address):
        outcomes.append(outcome)
        say(f"  shard {len(outcomes)}/{len(tasks)} done")
    return merge_outcomes(outcomes, job.layer_order)
