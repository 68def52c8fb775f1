"""Reports of a simulation: a JSON document and a terminal table (plots: ``mtsnn.plots``).

Every per-layer, per-core and ``total`` figure is **per sample** (the mean over the simulated
samples); ``all_samples`` holds the sums, ``stats`` the mean / p50 / p99 of the per-sample
latency, energy and SOPs. Energies are in joules, times in seconds (and in cycles of the
target's nominal ``cycle_s``). Dynamic energy (events x price) and static energy (static power
x latency, by the chosen ``static`` convention, ``hw_model.pricing.static_energy``) are always
reported apart, and the breakdowns add up: the input generators' row, the layers' rows and the
static row sum to the total, and so do the cores' rows and the static row.

Beside the chip's figures, ``conventional`` gives what a conventional (non-spiking) accelerator
would spend on one inference of the same network: one MAC per connected synapse for conv and
dense layers, one add per synapse for (sum-)pooling, priced with the 45 nm figures of
``REFERENCE_45NM`` (docs/hardware_sources.md section 3.1), and the ratio of the chip's energy to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes
from .network import PoolLayer
from .pricing import COUNT_KINDS, ENERGY_KINDS, static_energy, static_fraction
from .schedule import schedule_for
from .simulator import SimulationResult, summarize
from .target import STATIC_CONVENTIONS

__all__ = [
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "REFERENCE_45NM",
    "SOP_CONVENTIONS",
    "conventional_reference",
    "build_report",
    "format_table",
    "write_json",
    "report_title",
    "si",
]

REPORT_FORMAT = "mtsnn-sim-report"
REPORT_VERSION = 2

# Horowitz ISSCC 2014, 45 nm, 0.9 V, 32-bit floating point, as used by syops-counter and
# spikingjelly (docs/hardware_sources.md section 3.1): E_MAC = 3.7 pJ mult + 0.9 pJ add, E_AC = 0.9 pJ.
REFERENCE_45NM = {
    "e_mac_j": 4.6e-12,
    "e_ac_j": 0.9e-12,
    "source": "[H14] Horowitz ISSCC 2014, 45 nm 32-bit FP, via docs/hardware_sources.md section 3.1 "
    "(iCGY96/syops-counter README L81; spikingjelly simple_energy.py)",
}

SOP_CONVENTIONS = {
    "unary": "one SOP (synapse read) per synapse driven per spike: a count k on an input with fan-out F in a core "
    "costs k x F SOPs (sinabs / keras-spiking convention; TrueNorth and Loihi 1 spikes are single-bit events)",
    "graded": "one SOP (a multiply-accumulate of the payload) per synapse driven per nonzero graded input: "
    "F SOPs whatever the count; the energy of such an op is UNCONFIRMED (no public Loihi 2 figure)",
}
MULTI_SPIKE_WORDS = {
    "substeps": "a count k > 1 runs as sub-steps: each time step takes S = Smax chip ticks, a neuron fires one "
    "spike in each of its first k sub-ticks, every core updates (and synchronises) in every sub-tick",
    "burst": "IDEALISED: a count k is k one-bit events inside one tick, which neither Loihi 1 nor TrueNorth can "
    "run (one spike per neuron / per axon per tick); kept for comparison only",
    "payload": "a count k travels as one graded event carrying k",
}
STATIC_WORDS = {
    "chip": "the whole chip's static power x latency",
    "used-cores": "static power x (cores in use / cores on the chip) x latency",
    "none": "no static energy (dynamic only)",
}


def si(value: float, unit: str, digits: int = 3) -> str:
    """``value`` with an SI prefix: 1.23 µJ, 456 ns, 12.3 MSOP (SOP counts scale up: k, M, G)."""
    if value == 0 or not np.isfinite(value):
        return f"0 {unit}" if value == 0 else f"{value} {unit}"
    magnitude = abs(value)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"),
                           (1e-9, "n"), (1e-12, "p"), (1e-15, "f")):
        if magnitude >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


def _layer_synapses(result: SimulationResult) -> list[int]:
    mapping = result.mapping
    return [sum(mapping.connectivity[c].n_synapses for c in ids) for ids in mapping.layer_cores]


def conventional_reference(result: SimulationResult) -> dict:
    """MACs / adds and 45 nm energy of one non-spiking inference, per layer and in total."""
    layers, macs_total, adds_total = [], 0, 0
    for layer, synapses in zip(result.mapping.network.layers, _layer_synapses(result)):
        macs, adds = (0, synapses) if isinstance(layer, PoolLayer) else (synapses, 0)
        macs_total, adds_total = macs_total + macs, adds_total + adds
        layers.append({"layer": layer.name, "macs": macs, "adds": adds,
                       "energy_j": macs * REFERENCE_45NM["e_mac_j"] + adds * REFERENCE_45NM["e_ac_j"]})
    sops = float(result.per_sample["synapse_reads"].mean()) if result.n_samples else 0.0
    return {
        "description": "a conventional accelerator runs the network once per inference: one MAC per connected "
        "conv/dense synapse, one add per pooling synapse (45 nm, 32-bit FP)",
        "macs": macs_total,
        "adds": adds_total,
        "energy_j": macs_total * REFERENCE_45NM["e_mac_j"] + adds_total * REFERENCE_45NM["e_ac_j"],
        "snn_sops_as_45nm_accumulates_j": sops * REFERENCE_45NM["e_ac_j"],
        "e_mac_j": REFERENCE_45NM["e_mac_j"],
        "e_ac_j": REFERENCE_45NM["e_ac_j"],
        "source": REFERENCE_45NM["source"],
        "layers": layers,
    }


def _per_sample(value, n: int) -> float:
    return float(value) / n if n else 0.0


def _counts(result: SimulationResult, ids: list[int], n: int) -> dict:
    cc = result.core_counts
    return {kind: _per_sample(cc[kind][ids].sum(), n) for kind in COUNT_KINDS}


def _energies(result: SimulationResult, ids: list[int], n: int) -> dict:
    return {kind: _per_sample(result.core_energy_j[kind][ids].sum(), n) for kind in ENERGY_KINDS}


def _model_name(result: SimulationResult, core_path: str | None) -> str:
    arch = result.mapping.network.provenance.get("arch")
    if isinstance(arch, str) and arch:
        return arch
    return Path(core_path).name if core_path else "network"


def report_title(report: dict) -> str:
    """One line naming the model, target, samples and static convention (tables and plots)."""
    return (f"{report['model']['name']} on {report['target']['name']}, {report['samples']} samples, "
            f"static: {report['static']['convention']}")


def _throughput(result: SimulationResult, sync_s: float, congestion: float = 1.0, subticks: int = 1) -> float:
    """Samples per second with the layers pipelined: a new sample enters every T steps, and a
    steady-state step lasts as long as the busiest core's mean step inside its window (times the
    network-congestion ratio of the detailed model, when measured), plus a barrier per chip tick
    (``subticks`` of them per step)."""
    mapping, target, n = result.mapping, result.mapping.target, result.n_samples
    steps = mapping.network.timesteps
    if not n:
        return 0.0
    if target.time_model == "fixed":
        return 1.0 / (steps * subticks * target.tick_s)
    steady = float(result.window_cycles.max()) / (steps * n) * target.cycle_s * congestion + subticks * sync_s
    return 1.0 / (steps * steady) if steady > 0 else 0.0


def _network_model(result: SimulationResult, detailed_cycles) -> dict:
    """How latency was modelled: the contention-free fast model on every sample, and the
    detailed network model (``hw_model.noc``) on the first samples, whose ratio scales the rest."""
    fast = result.per_sample["cycles"]
    if detailed_cycles is None or not np.size(detailed_cycles) or result.mapping.target.time_model == "fixed":
        return {"model": "fast", "detailed_samples": 0, "congestion_ratio": 1.0,
                "meaning": "contention-free: each core's streams overlap, no back-pressure in the mesh"}
    detailed = np.asarray(detailed_cycles, dtype=np.float64).sum(axis=0)
    ratio = float(detailed.sum() / fast[: detailed.size].sum()) if fast[: detailed.size].sum() else 1.0
    return {"model": "detailed (calibrated)", "detailed_samples": int(detailed.size), "congestion_ratio": ratio,
            "meaning": f"the detailed network model (links that fill up, back-pressure on senders; hw_model.noc) on "
                       f"the first {detailed.size} samples; every sample's contention-free latency is scaled by "
                       f"their ratio {ratio:.3f}"}


def _axon_types_words(target) -> dict:
    if not target.axon_types:
        return {"limit": None, "rule": "none", "meaning": "every synapse has its own weight"}
    if target.axon_types_rule == "enforce":
        meaning = (f"enforced: every core's axons take at most {target.axon_types} types and each neuron weighs "
                   "the axons of a type alike (a design rule)")
    else:
        meaning = (f"RELAXED by the user: the chip's {target.axon_types} axon types per core are NOT enforced; "
                   "every synapse is modelled with its own weight, which the chip cannot store")
    return {"limit": target.axon_types, "rule": target.axon_types_rule, "meaning": meaning}


def build_report(result: SimulationResult, static: str | None = None, core_path: str | None = None,
                 detailed_cycles=None) -> dict:
    """The JSON-able report (see the module docstring). ``static``: a ``STATIC_CONVENTIONS``
    entry, default the target's ``[static] default``. ``detailed_cycles``: (n_ticks, N') tick
    cycles of the detailed network model on the first N' samples (``hw_model.noc``), which
    calibrate the latency of every sample; None: the contention-free fast model alone."""
    from .target import sync_cycles

    mapping, target, n = result.mapping, result.mapping.target, result.n_samples
    static = static or target.static_default
    if static not in STATIC_CONVENTIONS:
        raise ValueError(f"--static: expected one of {', '.join(STATIC_CONVENTIONS)}, found {static!r}")
    cycle_s, steps = target.cycle_s, mapping.network.timesteps
    schedule = schedule_for(mapping.network, target)
    conventional = conventional_reference(result)
    network = _network_model(result, detailed_cycles)
    latency = result.per_sample["latency_s"] * network["congestion_ratio"]
    static_j = static_energy(latency, target, static, mapping.n_cores)
    total_j = result.per_sample["dynamic_j"] + static_j

    cores = []
    for core, conn in zip(mapping.cores, mapping.connectivity):
        energy = _energies(result, [core.core_id], n)
        capacity = target.generators_per_core if core.is_input else target.neurons_per_core
        cores.append({
            "id": core.core_id, "layer": core.layer_name, "router": list(core.router), "neurons": core.n_neurons,
            "group": core.group, "axons": conn.n_axons, "synapses": conn.n_synapses,
            "neuron_utilisation": core.n_neurons / capacity,
            "axon_utilisation": conn.n_axons / target.axons_per_core,
            **{kind: value for kind, value in _counts(result, [core.core_id], n).items()},
            "busy_cycles": _per_sample(result.core_cycles[core.core_id], n),
            "busy_s": _per_sample(result.core_cycles[core.core_id], n) * cycle_s,
            "dynamic_energy_j": sum(energy.values()), "energy_breakdown_j": energy,
        })
    input_ids = list(mapping.input_cores)
    input_energy = _energies(result, input_ids, n)
    input_row = {"cores": len(input_ids), "neurons": int(np.prod(mapping.network.encoder.shape)),
                 **_counts(result, input_ids, n), "dynamic_energy_j": sum(input_energy.values()),
                 "energy_breakdown_j": input_energy}
    layers = []
    for index, layer in enumerate(mapping.network.layers):
        ids = list(mapping.layer_cores[index])
        counts, energy = _counts(result, ids, n), _energies(result, ids, n)
        busy = _per_sample(result.layer_busy_cycles[index], n)
        neuron_steps = layer.n_neurons * steps
        spikes = _per_sample(result.window_spikes.get(layer.name, 0), n)
        events = _per_sample(result.window_events.get(layer.name, 0), n)
        layers.append({
            "name": layer.name, "type": layer.type_tag, "readout": layer.readout, "neurons": layer.n_neurons,
            "fan_in": layer.fan_in, "synapse_kind": layer.synapse_kind, "cores": len(ids),
            "fan_in_groups": len({mapping.cores[c].group for c in ids}),
            "neuron_utilisation": float(np.mean([cores[c]["neuron_utilisation"] for c in ids])),
            "sops": counts["synapse_reads"], **counts,
            "window": [schedule.window(index).start, schedule.window(index).stop],
            "spikes": spikes,
            "spikes_all_ticks": _per_sample(result.tick_spikes.get(layer.name, 0), n),
            "firing_rate": None if layer.readout else spikes / neuron_steps,
            "sparsity": None if layer.readout else 1.0 - events / neuron_steps,
            "busy_cycles": busy, "busy_s": busy * cycle_s,
            "dynamic_energy_j": sum(energy.values()), "energy_breakdown_j": energy,
            "saturations": int(result.saturations[layer.name]),
            "conventional_macs": conventional["layers"][index]["macs"] + conventional["layers"][index]["adds"],
        })
    dynamic_breakdown = {kind: _per_sample(result.core_energy_j[kind].sum(), n) for kind in ENERGY_KINDS}
    dynamic = sum(dynamic_breakdown.values())
    static_mean = float(static_j.mean()) if n else 0.0
    stats = {"latency_s": summarize(latency), "dynamic_energy_j": summarize(result.per_sample["dynamic_j"]),
             "energy_j": summarize(total_j), "sops": summarize(result.per_sample["synapse_reads"]),
             "cycles": summarize(result.per_sample["cycles"])}
    time_breakdown = {key: _per_sample(value, n) * cycle_s for key, value in result.time_cycles.items()}
    sync_s = sync_cycles(target, mapping.tiles_in_use) * cycle_s
    hidden = [layer for layer in layers if not layer["readout"]]
    all_neuron_steps = sum(layer["neurons"] for layer in hidden) * steps
    total = {
        **_counts(result, list(range(mapping.n_cores)), n),
        "sops": _per_sample(result.core_counts["synapse_reads"].sum(), n),
        "spikes": sum(layer["spikes"] for layer in hidden),
        "firing_rate": sum(layer["spikes"] for layer in hidden) / all_neuron_steps if all_neuron_steps else 0.0,
        "energy_j": dynamic + static_mean,
        "dynamic_energy_j": dynamic,
        "static_energy_j": static_mean,
        "energy_breakdown_j": {**dynamic_breakdown, "static": static_mean},
        "latency_s": stats["latency_s"]["mean"],
        "latency_contention_free_s": float(result.per_sample["latency_s"].mean()) if n else 0.0,
        "latency_cycles": stats["cycles"]["mean"] * network["congestion_ratio"],
        "throughput_sps": _throughput(result, sync_s, network["congestion_ratio"], schedule.subticks),
        "time_breakdown_s": time_breakdown,
        "ticks": schedule.n_ticks,
        "chip_ticks": schedule.n_chip_ticks,
        "cores": mapping.n_cores,
        "tiles": mapping.tiles_in_use,
        "core_utilisation": mapping.n_cores / target.n_cores,
        "neuron_utilisation": float(np.mean([c["neuron_utilisation"] for c in cores])),
        "routes": len(mapping.routes),
        "max_link_load": int(result.link_load.max(initial=0)),
        "tick_overruns": result.overruns,
        "saturations": int(sum(result.saturations.values())),
    }
    conventional["ratio_energy"] = total["energy_j"] / conventional["energy_j"] if conventional["energy_j"] else None
    conventional["ratio_dynamic_energy"] = dynamic / conventional["energy_j"] if conventional["energy_j"] else None
    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "per": "sample (mean over the simulated samples) unless stated",
        "model": {"name": _model_name(result, core_path), "core": core_path,
                  "export_id": mapping.network.provenance.get("export_id")},
        "target": {
            "name": target.name,
            "file": target.path,
            "description": target.description,
            "time_model": target.time_model,
            "cycle_s": cycle_s,
            "assumptions": dict(target.assumptions),
        },
        "static": {"convention": static, "default": target.static_default, "power_w": target.static_power_w,
                   "fraction": static_fraction(target, static, mapping.n_cores), "meaning": STATIC_WORDS[static],
                   "choices": list(STATIC_CONVENTIONS)},
        "encoding": target.encoding,
        "multi_spike": {"realisation": target.multi_spike, "chip_ticks_per_step": schedule.subticks,
                        "meaning": MULTI_SPIKE_WORDS[target.multi_spike]},
        "axon_types": _axon_types_words(target),
        "sop_convention": SOP_CONVENTIONS[target.encoding],
        "sop_energy_status": "UNCONFIRMED (graded SOP)" if target.encoding == "graded" else "sourced (see target file)",
        "schedule": schedule.to_dict([layer.name for layer in mapping.network.layers]),
        "network_model": network,
        "samples": n,
        "accuracy": result.accuracy,
        "total": total,
        "all_samples": {"sops": int(result.core_counts["synapse_reads"].sum()),
                        "energy_j": float(total_j.sum()), "dynamic_energy_j": float(result.per_sample["dynamic_j"].sum()),
                        "latency_s": float(latency.sum())},
        "stats": stats,
        "input": input_row,
        "layers": layers,
        "cores": cores,
        "conventional": conventional,
    }
    report["title"] = report_title(report)
    return report


def _ticks_words(report: dict) -> str:
    schedule = report["schedule"]
    if schedule["subticks"] == 1:
        return f"{schedule['n_ticks']} ticks"
    return f"{schedule['n_ticks']} steps x {schedule['subticks']} sub-ticks = {schedule['n_chip_ticks']} chip ticks"


def format_table(report: dict) -> str:
    """A plain-text table per layer and in total, with SI prefixes, plus stats and references."""
    t = report["total"]
    header = (f"{'layer':<10} {'cores':>5} {'util':>5} {'SOPs':>10} {'spikes':>9} {'rate':>6} {'sparsity':>8} "
              f"{'busy':>9} {'dynamic E':>10} {'sat':>5}")
    lines = [report["title"] + f" ({report['encoding']} spikes, {report['target']['time_model']} ticks), per sample:",
             header, "-" * len(header)]
    row = report["input"]
    lines.append(f"{'input':<10} {row['cores']:>5} {'':>5} {'':>10} {si(row['input_spikes'], ''):>9} {'':>6} "
                 f"{'':>8} {'':>9} {si(row['dynamic_energy_j'], 'J'):>10} {'':>5}")
    for layer in report["layers"]:
        rate = "" if layer["firing_rate"] is None else f"{layer['firing_rate']:.3f}"
        sparsity = "" if layer["sparsity"] is None else f"{layer['sparsity']:.1%}"
        lines.append(
            f"{layer['name'][:10]:<10} {layer['cores']:>5} {layer['neuron_utilisation']:>5.0%} "
            f"{si(layer['sops'], 'SOP'):>10} {si(layer['spikes'], ''):>9} {rate:>6} {sparsity:>8} "
            f"{si(layer['busy_s'], 's'):>9} {si(layer['dynamic_energy_j'], 'J'):>10} {layer['saturations']:>5}")
    static = report["static"]
    lines.append(f"{'static':<10} {'':>5} {'':>5} {'':>10} {'':>9} {'':>6} {'':>8} {'':>9} "
                 f"{si(t['static_energy_j'], 'J'):>10} {'':>5}")
    lines += [
        "-" * len(header),
        f"{'total':<10} {t['cores']:>5} {t['neuron_utilisation']:>5.0%} {si(t['sops'], 'SOP'):>10} "
        f"{si(t['spikes'], ''):>9} {t['firing_rate']:>6.3f} {'':>8} {si(t['latency_s'], 's'):>9} "
        f"{si(t['energy_j'], 'J'):>10} {t['saturations']:>5}",
        "",
        f"energy:     {si(t['energy_j'], 'J')} = dynamic {si(t['dynamic_energy_j'], 'J')} + static "
        f"{si(t['static_energy_j'], 'J')} (static convention '{static['convention']}': {static['meaning']}; "
        f"target default '{static['default']}'; --static {'|'.join(static['choices'])})",
        "dynamic:    " + ", ".join(f"{k} {si(v, 'J')}" for k, v in t["energy_breakdown_j"].items() if k != "static"),
        f"latency:    {si(t['latency_s'], 's')} per sample ({report['network_model']['meaning']}; without "
        f"contention {si(t['latency_contention_free_s'], 's')}: " + ", ".join(
            f"{k} {si(v, 's')}" for k, v in t["time_breakdown_s"].items()) + f", {_ticks_words(report)})",
        f"throughput: {si(t['throughput_sps'], 'samples/s')} with the layers pipelined (a new sample every "
        f"{report['schedule']['n_ticks'] - len(report['layers'])} steps)",
        f"counts > 1: {report['multi_spike']['realisation']}: {report['multi_spike']['meaning']}",
        f"axon types: {report['axon_types']['meaning']}",
        f"cores:      {t['cores']} of the chip's ({t['core_utilisation']:.1%}) on {t['tiles']} tiles, {t['routes']} routes, "
        f"busiest link {si(t['max_link_load'], '')} messages, {t['tick_overruns']} tick overruns",
    ]
    for key, unit, label in (("latency_s", "s", "latency"), ("energy_j", "J", "energy"), ("sops", "SOP", "SOPs")):
        s = report["stats"][key]
        lines.append(f"{label:<11} mean {si(s['mean'], unit)}, p50 {si(s['p50'], unit)}, p99 {si(s['p99'], unit)}")
    if report["accuracy"] is not None:
        lines.append(f"accuracy:   {report['accuracy']:.2%} (simulated logits vs labels)")
    c = report["conventional"]
    ratio = f"{c['ratio_energy']:.3g}x" if c["ratio_energy"] is not None else "-"
    lines.append(f"45 nm:      a conventional accelerator spends {si(c['energy_j'], 'J')} ({si(c['macs'], 'MAC')} + "
                 f"{si(c['adds'], 'add')}) per inference; this chip {ratio} of that (dynamic alone "
                 f"{c['ratio_dynamic_energy']:.3g}x)")
    lines.append(f"SOP convention: {report['sop_convention']}")
    return "\n".join(lines)


def write_json(report: dict, path) -> Path:
    """Write the report atomically (the key order is the document's)."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    return path
