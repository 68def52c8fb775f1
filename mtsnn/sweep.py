"""Design-space sweeps from one command: weight bits x Smax x time steps x target x static power.

``run_sweep(spec, out)`` answers "which point should I build?":

1. trains one float baseline (``bits = 0``, the grid's largest Smax and T) once;
2. for every (bits, Smax, T) point, in parallel on an engine: fine-tunes the baseline with QAT,
   exports it, validates the integer paths bit for bit (QAT forward, numpy reference,
   onnxruntime) and simulates it on every target, checking that the simulator's logits equal the
   reference's; a point that is not bit-exact is marked and never reported as a result, and a
   target that refuses the network is noted with the design rule that refused it;
3. writes the table (``sweep.csv``, ``sweep.json``: accuracy, SOPs, dynamic and static energy,
   latency mean and p99, throughput, cores, utilisation, per point x target x static
   convention) and Pareto plots (accuracy vs energy, accuracy vs latency, the front marked and
   labelled) into ``out``.

Resumable and deterministic: each point's result is written atomically to
``out/points/KEY/result.json`` when it finishes and is never recomputed; an interrupted sweep
continues where it stopped; a point's training uses the sweep's seed and one torch thread, so
the same spec gives the same table whatever the engine or the number of workers. The sweep's
spec is recorded in ``out/sweep.spec.json``; a folder holding a different sweep is refused.

Engines (``ENGINES``): ``local``, a process pool (the default), and ``ray`` (``pip install
mtsnn[ray]``): the same per-point function (``run_point``) as Ray tasks, on a local Ray or an
existing cluster (``address``). On a cluster the workers write the points' checkpoints and
exports under ``out`` too, so ``out`` must be on a file system they share.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from mtsnn.engines import ENGINES, check_engine, run_tasks
from mtsnn.hw_model.errors import InputError, one_line
from mtsnn.hw_model.fileio import atomic_write_bytes

__all__ = ["ENGINES", "SweepSpec", "SweepResult", "parse_grid", "run_point", "run_sweep", "pareto_front",
           "SPEC_FILE", "TABLE_COLUMNS"]

SPEC_FILE = "sweep.spec.json"
SPEC_FORMAT = "mtsnn-sweep"
SPEC_VERSION = 1
TABLE_COLUMNS = ("bits", "smax", "timesteps", "target", "static", "status", "accuracy", "bit_exact", "sops",
                 "dynamic_energy_j", "static_energy_j", "energy_j", "latency_s", "latency_p99_s", "throughput_sps",
                 "cores", "neuron_utilisation", "refused_by")
LIMITS = {"bits": (2, 16), "smax": (1, 255), "timesteps": (1, 64)}


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep. ``statics``: static-power conventions to report (None: each target's default)."""

    dataset: str = "digits"
    bits: tuple = (8,)
    smax: tuple = (15,)
    timesteps: tuple = (2,)
    targets: tuple = ("loihi",)
    statics: tuple | None = None
    epochs: int = 5  # QAT fine-tuning epochs per point
    baseline_epochs: int = 10  # float baseline epochs (trained once)
    samples: int | None = None  # test samples validated and simulated per point (None: all)
    seed: int = 0
    arch: str | None = None
    batch_size: int = 32
    lr: float = 3e-3
    relax: tuple = ()  # design rules relaxed on every target (e.g. "axon-types")

    def __post_init__(self) -> None:
        for name in ("bits", "smax", "timesteps", "targets"):
            values = getattr(self, name)
            if not isinstance(values, (tuple, list)) or not values:
                raise InputError(f"--{name}: expected at least one value, found none")
            object.__setattr__(self, name, tuple(values))
        for name, (lo, hi) in LIMITS.items():
            for value in getattr(self, name):
                if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                    raise InputError(f"--{name}: expected integers {lo}..{hi}, found {value!r}")
        for name in ("epochs", "baseline_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000:
                raise InputError(f"--{name.replace('_', '-')}: expected an integer 1..10000, found {value!r}")
        if self.samples is not None and (isinstance(self.samples, bool) or not isinstance(self.samples, int)
                                         or self.samples < 1):
            raise InputError(f"--samples: expected an integer >= 1, found {self.samples!r}")
        if self.statics is not None:
            from mtsnn.hw_model.target import STATIC_CONVENTIONS

            object.__setattr__(self, "statics", tuple(self.statics))
            for value in self.statics:
                if value not in STATIC_CONVENTIONS:
                    raise InputError(f"--static: expected {', '.join(STATIC_CONVENTIONS)}, found {value!r}")
        object.__setattr__(self, "relax", tuple(self.relax))
        for name in ("bits", "smax", "timesteps", "targets"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise InputError(f"--{name}: expected distinct values, found {', '.join(map(str, values))}")

    def points(self) -> list[dict]:
        """The training points, in grid order: every (bits, smax, timesteps)."""
        return [{"bits": b, "smax": s, "timesteps": t} for b, s, t in itertools.product(self.bits, self.smax,
                                                                                       self.timesteps)]

    def to_dict(self) -> dict:
        return {"format": SPEC_FORMAT, "format_version": SPEC_VERSION, **asdict(self)}


def point_key(point: dict) -> str:
    return f"b{point['bits']}-s{point['smax']}-t{point['timesteps']}"


def parse_grid(text: str, name: str, kind=int) -> tuple:
    """"4,6,8" -> (4, 6, 8); one line naming the option otherwise."""
    items = [item.strip() for item in str(text).split(",")]
    if not text or any(not item for item in items):
        raise InputError(f"--{name}: expected a comma-separated list, found {one_line(repr(text), 60)}")
    try:
        return tuple(kind(item) for item in items)
    except ValueError:
        raise InputError(f"--{name}: expected a comma-separated list of {'integers' if kind is int else 'names'}, "
                         f"found {one_line(repr(text), 60)}") from None


@dataclass
class SweepResult:
    """The finished sweep: one row per point x target x static convention (``TABLE_COLUMNS``)."""

    out: Path
    rows: list
    points: list  # each point's result record
    seconds: float  # wall time of this call
    work_seconds: float  # the points' own time (training .. simulation), summed over points run now
    baseline_seconds: float = 0.0  # training the float baseline (0 when reused)
    files: dict = field(default_factory=dict)

    @property
    def overhead_seconds(self) -> float:
        """Wall time beyond the baseline and the points' own work (meaningful with one worker:
        with several, the points overlap and this goes negative)."""
        return self.seconds - self.baseline_seconds - self.work_seconds

    def front(self, target: str, x: str = "energy_j") -> list:
        return pareto_front([r for r in self.rows if r["target"] == target and r["status"] == "ok"], x)


# ----------------------------------------------------------------------------- one point


def _target_rows(spec: SweepSpec, point: dict, sim, bit_exact: bool) -> list[dict]:
    """One row per static convention from one simulation (static energy re-priced, not re-run)."""
    from mtsnn.hw_model.pricing import static_energy

    report, result = sim.report, sim.result
    target = sim.mapping.target
    latency = result.per_sample["latency_s"] * report["network_model"]["congestion_ratio"]
    total = report["total"]
    rows = []
    for static in spec.statics or (target.static_default,):
        static_j = float(static_energy(latency, target, static, sim.mapping.n_cores).mean()) if len(latency) else 0.0
        rows.append({**point, "target": target.name, "static": static, "status": "ok" if bit_exact else "not-bit-exact",
                     "accuracy": report["accuracy"], "bit_exact": bit_exact, "sops": total["sops"],
                     "dynamic_energy_j": total["dynamic_energy_j"], "static_energy_j": static_j,
                     "energy_j": total["dynamic_energy_j"] + static_j, "latency_s": total["latency_s"],
                     "latency_p99_s": report["stats"]["latency_s"]["p99"], "throughput_sps": total["throughput_sps"],
                     "cores": total["cores"], "neuron_utilisation": total["neuron_utilisation"], "refused_by": None})
    return rows


def run_point(spec_dict: dict, point: dict, baseline: str, folder: str) -> dict:
    """Fine-tune, export, validate and simulate one point; returns its record (JSON-able).
    Module-level and argument-only, so a process pool or a Ray task can run it."""
    import numpy as np

    from mtsnn import api
    from mtsnn.hw_model.coredesc import read_core
    from mtsnn.hw_model.mapper import DesignRuleError
    from mtsnn.hw_model.reference import run_reference
    from mtsnn.toolchain.datasets import first_samples, load_dataset

    start = time.perf_counter()
    spec = SweepSpec(**{k: v for k, v in spec_dict.items() if k not in ("format", "format_version")})
    folder = Path(folder)
    run = api.train(spec.dataset, arch=spec.arch, timesteps=point["timesteps"], smax=point["smax"],
                    bits=point["bits"], epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed,
                    init=baseline, threads=1, out=folder / "model.pt", progress=False)
    exported = api.export(run.checkpoint, out=folder / "export", dataset=spec.dataset, samples=spec.samples)
    validation = api.validate(run.checkpoint, folder / "export", dataset=spec.dataset, samples=spec.samples,
                              simulate=False, progress=None)
    network = read_core(next((folder / "export").glob("*.core.json"))).network
    images, _, _ = first_samples(load_dataset(spec.dataset).test, spec.samples)
    reference = run_reference(network, images).logits
    rows, targets = [], {}
    for name in spec.targets:
        try:
            sim = api.simulate(folder / "export", target=name, dataset=spec.dataset, samples=spec.samples,
                               detailed_samples=0, relax=spec.relax)
        except DesignRuleError as exc:
            targets[name] = {"refused_by": str(exc)}
            rows.append({**point, "target": name, "static": None, "status": "refused",
                         **{c: None for c in TABLE_COLUMNS if c not in point and c not in ("target", "static",
                                                                                           "status")},
                         "refused_by": str(exc)})
            continue
        sim_exact = bool(np.array_equal(sim.result.logits, reference))
        targets[name] = {"simulator_bit_exact": sim_exact}
        rows.extend(_target_rows(spec, point, sim, validation.bit_exact and sim_exact))
    return {"point": point, "key": point_key(point), "train_accuracy": run.test_accuracy,
            "integer_accuracy": exported.integer_accuracy, "bit_exact": validation.bit_exact,
            "validation": {"samples": validation.samples, "paths": list(validation.paths),
                           "mismatches": validation.mismatches}, "targets": targets, "rows": rows,
            "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------- the sweep


def _check_folder(out: Path, spec: SweepSpec) -> None:
    """``out`` is new, empty, or holds this very sweep (resumed); never another one."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: -o: expected a folder for the sweep, found a file")
    recorded = out / SPEC_FILE
    if recorded.exists():
        try:
            found = json.loads(recorded.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{recorded}: <document>: expected a sweep spec, found {one_line(exc, 80)}") from None
        mine = json.loads(json.dumps(spec.to_dict()))
        if found != mine:
            different = sorted(k for k in set(found) | set(mine) if found.get(k) != mine.get(k))
            raise InputError(f"{recorded}: {', '.join(different)}: expected the same sweep to resume, found a "
                             "different one (choose another -o folder)")
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: -o: expected a new or empty folder (or one holding this sweep), found other files")


def _baseline(spec: SweepSpec, out: Path, log: Callable[[str], None]) -> Path:
    """The float baseline (largest Smax and T of the grid), trained once and reused."""
    from mtsnn import api
    from mtsnn.toolchain.checkpoint import CheckpointError, read_checkpoint

    path = out / "baseline.pt"
    if path.exists():
        try:
            if read_checkpoint(path).payload["training"].get("complete"):
                return path
        except CheckpointError:
            pass
    log(f"training the float baseline ({spec.baseline_epochs} epochs, Smax {max(spec.smax)}, T {max(spec.timesteps)})")
    api.train(spec.dataset, arch=spec.arch, timesteps=max(spec.timesteps), smax=max(spec.smax), bits=0,
              epochs=spec.baseline_epochs, batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed, threads=1,
              out=path, progress=False)
    return path


def _finished(out: Path, point: dict) -> dict | None:
    path = out / "points" / point_key(point) / "result.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return record if record.get("point") == point else None


def _save_point(out: Path, record: dict) -> None:
    path = out / "points" / record["key"] / "result.json"
    atomic_write_bytes(path, (json.dumps(record, indent=2, allow_nan=False) + "\n").encode("utf-8"))


def _in_this_process(tasks: list):
    """The points one after the other in this process, the caller's torch threads kept."""
    import torch

    threads = torch.get_num_threads()
    try:
        for args in tasks:
            yield run_point(*args)
    finally:
        torch.set_num_threads(threads)


def run_sweep(spec: SweepSpec, out: str | os.PathLike, *, engine: str = "local", workers: int | None = None,
              address: str | None = None, progress: bool = True, log: Callable[[str], None] = print) -> SweepResult:
    """Run (or resume) the sweep ``spec`` into ``out``; see the module docstring."""
    from mtsnn.hw_model.target import load_target

    start = time.perf_counter()
    check_engine(engine, workers, address)
    for name in spec.targets:
        load_target(name, spec.relax)  # an unknown target or a bad file: refused before any work
    from mtsnn.toolchain.datasets import load_dataset

    load_dataset(spec.dataset)  # a bad data set: refused before any work
    out = Path(out)
    _check_folder(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / SPEC_FILE, (json.dumps(spec.to_dict(), indent=2) + "\n").encode("utf-8"))
    points = spec.points()
    done = {point_key(p): r for p in points if (r := _finished(out, p)) is not None}
    todo = [p for p in points if point_key(p) not in done]
    workers = workers or max(1, min(len(todo), os.cpu_count() or 1))
    work = baseline_seconds = 0.0
    if todo:
        started = time.perf_counter()
        baseline = _baseline(spec, out, log if progress else (lambda _: None))
        baseline_seconds = time.perf_counter() - started
        tasks = [(spec.to_dict(), p, str(baseline), str(out / "points" / point_key(p))) for p in todo]
        stream = _in_this_process(tasks) if engine == "local" and workers == 1 else (
            record for _, record in run_tasks(run_point, tasks, engine=engine, workers=workers, address=address))
        bar = None
        if progress:
            from tqdm import tqdm

            import sys

            bar = tqdm(total=len(points), initial=len(done), unit="point", desc="mtsnn sweep", file=sys.stderr)
        try:
            for record in stream:
                _save_point(out, record)
                done[record["key"]] = record
                work += record["seconds"]
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    records = [done[point_key(p)] for p in points]
    rows = [row for record in records for row in record["rows"]]
    files = _write_outputs(out, spec, rows, records)
    return SweepResult(out=out, rows=rows, points=records, seconds=time.perf_counter() - start, work_seconds=work,
                       baseline_seconds=baseline_seconds, files=files)


# ----------------------------------------------------------------------------- outputs


def pareto_front(rows: list, x: str = "energy_j", y: str = "accuracy") -> list:
    """The rows no other row beats: lower or equal ``x`` and higher or equal ``y``, one strictly."""
    front = []
    for row in rows:
        dominated = any(o[x] <= row[x] and o[y] >= row[y] and (o[x] < row[x] or o[y] > row[y]) for o in rows)
        if not dominated:
            front.append(row)
    return sorted(front, key=lambda r: r[x])


def _csv_text(rows: list) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TABLE_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in TABLE_COLUMNS})
    return buffer.getvalue()


def _write_outputs(out: Path, spec: SweepSpec, rows: list, records: list) -> dict:
    from mtsnn.plots import sweep_pareto_plots

    files = {"csv": out / "sweep.csv", "json": out / "sweep.json"}
    atomic_write_bytes(files["csv"], _csv_text(rows).encode("utf-8"))
    document = {"format": "mtsnn-sweep-table", "format_version": 1, "spec": spec.to_dict(),
                "columns": list(TABLE_COLUMNS), "rows": rows,
                "points": [{k: r[k] for k in ("key", "point", "train_accuracy", "integer_accuracy", "bit_exact",
                                               "validation", "targets", "seconds")} for r in records],
                "fronts": {f"{target}/{x}": [point_key(r) for r in pareto_front(
                    [r for r in rows if r["target"] == target and r["status"] == "ok"
                     and r["static"] == (spec.statics[0] if spec.statics else r["static"])], x)]
                    for target in spec.targets for x in ("energy_j", "latency_s")}}
    atomic_write_bytes(files["json"], (json.dumps(document, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    for name, path in sweep_pareto_plots(rows, out, pareto_front, point_key, _plot_context(spec, records)).items():
        files[name] = path
    return files


def _plot_context(spec: SweepSpec, records: list) -> str:
    """The plots' second title line: data set, architecture, samples, training."""
    dataset = spec.dataset if ":" not in spec.dataset else (
        f"{spec.dataset.split(':', 1)[0]}:{Path(spec.dataset.split(':', 1)[1]).name or spec.dataset}")
    samples = sorted({r["validation"]["samples"] for r in records if r.get("validation")})
    counted = f"{samples[0]} test samples per point" if len(samples) == 1 else "test samples per point vary"
    return (f"{dataset}, {spec.arch or 'default arch'}, {counted}, QAT {spec.epochs} epochs per point "
            f"from a {spec.baseline_epochs}-epoch float baseline")


def format_sweep_table(rows: list) -> str:
    """A plain-text table of the rows (refused and not-bit-exact rows say so)."""
    from mtsnn.hw_model.report import si

    head = (f"{'bits':>4} {'Smax':>4} {'T':>2} {'target':<10} {'static':<10} {'accuracy':>8} {'energy':>10} "
            f"{'latency':>10} {'p99':>10} {'cores':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        left = f"{r['bits']:>4} {r['smax']:>4} {r['timesteps']:>2} {r['target']:<10} "
        if r["status"] == "refused":
            lines.append(left + f"refused: {one_line(r['refused_by'], 110)}")
            continue
        flag = "" if r["status"] == "ok" else "  NOT BIT-EXACT (not a result)"
        lines.append(left + f"{r['static']:<10} {r['accuracy']:>8.2%} {si(r['energy_j'], 'J'):>10} "
                     f"{si(r['latency_s'], 's'):>10} {si(r['latency_p99_s'], 's'):>10} {r['cores']:>5}{flag}")
    return "\n".join(lines)
