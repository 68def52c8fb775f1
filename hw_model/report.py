"""Reports of a simulation: a JSON document, a terminal table and PNG plots.

Every per-layer, per-core and ``total`` figure is **per sample** (the mean over the simulated
samples); ``all_samples`` holds the sums, ``stats`` the mean / p50 / p99 of the per-sample
latency, energy and SOPs. Saturation counts are totals over all samples. Energies are in
joules, times in seconds and in cycles of the target's nominal ``cycle_s``.

Beside the chip's figures, ``conventional`` gives what a conventional (non-spiking) accelerator
would spend on one inference of the same network: one MAC per connected synapse for conv and
dense layers, one add per synapse for (sum-)pooling, priced with the 45 nm figures of
``REFERENCE_45NM`` (docs/hardware_sources.md section 3.1), and the SNN's SOPs priced as 45 nm accumulates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes
from .network import PoolLayer
from .simulator import COUNT_KINDS, ENERGY_KINDS, SimulationResult, price_energy, summarize

__all__ = [
    "REPORT_FORMAT",
    "REPORT_VERSION",
    "REFERENCE_45NM",
    "SOP_CONVENTIONS",
    "conventional_reference",
    "build_report",
    "format_table",
    "write_json",
]

REPORT_FORMAT = "mtsnn-sim-report"
REPORT_VERSION = 1

# Horowitz ISSCC 2014, 45 nm, 0.9 V, 32-bit floating point, as used by syops-counter and
# spikingjelly (docs/hardware_sources.md section 3.1): E_MAC = 3.7 pJ mult + 0.9 pJ add, E_AC = 0.9 pJ.
REFERENCE_45NM = {
    "e_mac_j": 4.6e-12,
    "e_ac_j": 0.9e-12,
    "source": "[H14] Horowitz ISSCC 2014, 45 nm 32-bit FP, via docs/hardware_sources.md section 3.1 "
    "(iCGY96/syops-counter README L81; spikingjelly simple_energy.py)",
}

SOP_CONVENTIONS = {
    "unary": "one SOP per synapse touched per spike: a count k on an input with fan-out F in a core "
    "costs k x F SOPs (sinabs / keras-spiking convention; TrueNorth and Loihi 1 spikes are single-bit events)",
    "graded": "one SOP (a multiply-accumulate of the payload) per synapse touched per nonzero graded input: "
    "F SOPs whatever the count; the energy of such an op is UNCONFIRMED (no public Loihi 2 figure)",
}


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
    sops = float(result.per_sample["sops"].mean()) if result.n_samples else 0.0
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


def _activity(counts: dict, n: int) -> dict:
    """Per-sample event counts of a layer or of the whole network, as the report names them."""
    return {
        "sops": _per_sample(counts["sops"], n),
        "input_events": _per_sample(counts["input_events"], n),
        "spikes": _per_sample(counts["spikes"], n),
        "spike_events": _per_sample(counts["spike_events"], n),
        "neuron_updates": _per_sample(counts["updates"], n),
        "active_updates": _per_sample(counts["active_updates"], n),
        "packets": _per_sample(counts["packets"], n),
        "hops": _per_sample(counts["hops_x"] + counts["hops_y"], n),
    }


def _per_sample(value, n: int) -> float:
    return float(value) / n if n else 0.0


def _energy_breakdown(counts: dict, target, n: int) -> dict:
    priced = price_energy(counts, 0.0, target)
    return {kind: _per_sample(priced[kind], n) for kind in ENERGY_KINDS if kind != "static"}


def build_report(result: SimulationResult) -> dict:
    """The JSON-able report (see the module docstring for the units)."""
    mapping, target, n = result.mapping, result.mapping.target, result.n_samples
    cycle_s = target.cycle_s
    cc = result.core_counts
    conventional = conventional_reference(result)
    cores = []
    for core, conn in zip(mapping.cores, mapping.connectivity):
        counts = {kind: cc[kind][core.core_id] for kind in COUNT_KINDS}
        cores.append({
            "id": core.core_id,
            "layer": core.layer_name,
            "router": list(core.router),
            "neurons": core.n_neurons,
            "group": core.group,
            "axons": conn.n_axons,
            "synapses": conn.n_synapses,
            "neuron_utilisation": core.n_neurons / target.neurons_per_core,
            "axon_utilisation": conn.n_axons / target.axons_per_core,
            **{kind: _per_sample(counts[kind], n) for kind in COUNT_KINDS},
            "busy_cycles": _per_sample(result.core_cycles[core.core_id], n),
            "busy_s": _per_sample(result.core_cycles[core.core_id], n) * cycle_s,
            "energy_j": sum(_energy_breakdown(counts, target, n).values()),
        })
    layers = []
    for index, layer in enumerate(mapping.network.layers):
        ids = list(mapping.layer_cores[index])
        counts = {kind: cc[kind][ids].sum() for kind in COUNT_KINDS}
        breakdown = _energy_breakdown(counts, target, n)
        busy = _per_sample(result.layer_busy_cycles[index], n)
        layers.append({
            "name": layer.name,
            "type": layer.type_tag,
            "readout": layer.readout,
            "neurons": layer.n_neurons,
            "fan_in": layer.fan_in,
            "cores": len(ids),
            "fan_in_groups": len({mapping.cores[c].group for c in ids}),
            "neuron_utilisation": float(np.mean([cores[c]["neuron_utilisation"] for c in ids])),
            **_activity(counts, n),
            "busy_cycles": busy,
            "busy_s": busy * cycle_s,
            "energy_j": sum(breakdown.values()),
            "energy_breakdown_j": breakdown,
            "saturations": int(result.saturations[layer.name]),
            "conventional_macs": conventional["layers"][index]["macs"] + conventional["layers"][index]["adds"],
        })
    stats = {key: summarize(result.per_sample[key]) for key in ("latency_s", "energy_j", "sops", "cycles")}
    energy_breakdown = {kind: _per_sample(result.energy_j[kind], n) for kind in ENERGY_KINDS}
    time_breakdown = {key: _per_sample(value, n) * cycle_s for key, value in result.time_cycles.items()}
    total_counts = {kind: int(cc[kind].sum()) for kind in COUNT_KINDS}
    total = {
        **_activity(total_counts, n),
        "energy_j": sum(energy_breakdown.values()),
        "energy_breakdown_j": energy_breakdown,
        "latency_s": stats["latency_s"]["mean"],
        "latency_cycles": stats["cycles"]["mean"],
        "time_breakdown_s": time_breakdown,
        "ticks": mapping.network.timesteps + len(mapping.network.layers) - 1,
        "cores": mapping.n_cores,
        "core_utilisation": mapping.n_cores / target.n_cores,
        "neuron_utilisation": float(np.mean([c["neuron_utilisation"] for c in cores])),
        "routes": len(mapping.routes),
        "max_link_load": result.max_link_load,
        "tick_overruns": result.overruns,
        "saturations": int(sum(result.saturations.values())),
    }
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "per": "sample (mean over the simulated samples) unless stated",
        "target": {
            "name": target.name,
            "file": target.path,
            "description": target.description,
            "time_model": target.time_model,
            "cycle_s": cycle_s,
            "assumptions": dict(target.assumptions),
        },
        "encoding": target.encoding,
        "sop_convention": SOP_CONVENTIONS[target.encoding],
        "sop_energy_status": "UNCONFIRMED (graded SOP)" if target.encoding == "graded" else "sourced (see target file)",
        "samples": n,
        "accuracy": result.accuracy,
        "total": total,
        "all_samples": {"sops": total_counts["sops"], "energy_j": float(sum(result.energy_j.values())),
                        "latency_s": float(result.per_sample["latency_s"].sum())},
        "stats": stats,
        "layers": layers,
        "cores": cores,
        "conventional": conventional,
    }


def _si(value: float, unit: str) -> str:
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_table(report: dict) -> str:
    """A plain-text table per layer and in total, plus stats and the conventional reference."""
    header = f"{'layer':<10} {'cores':>5} {'util':>5} {'SOPs':>10} {'spikes':>9} {'updates':>9} " \
             f"{'busy':>10} {'energy':>10} {'sat':>6}"
    lines = [
        f"target {report['target']['name']} ({report['encoding']} spikes, {report['target']['time_model']} ticks), "
        f"{report['samples']} samples, per sample:",
        header,
        "-" * len(header),
    ]
    for layer in report["layers"]:
        lines.append(
            f"{layer['name']:<10} {layer['cores']:>5} {layer['neuron_utilisation']:>5.0%} {layer['sops']:>10.1f} "
            f"{layer['spikes']:>9.1f} {layer['neuron_updates']:>9.0f} {_si(layer['busy_s'], 's'):>10} "
            f"{_si(layer['energy_j'], 'J'):>10} {layer['saturations']:>6}"
        )
    t = report["total"]
    lines += [
        "-" * len(header),
        f"{'total':<10} {t['cores']:>5} {t['neuron_utilisation']:>5.0%} {t['sops']:>10.1f} {t['spikes']:>9.1f} "
        f"{t['neuron_updates']:>9.0f} {_si(t['latency_s'], 's'):>10} {_si(t['energy_j'], 'J'):>10} "
        f"{t['saturations']:>6}",
        "",
        "energy: " + ", ".join(f"{k} {_si(v, 'J')}" for k, v in t["energy_breakdown_j"].items()),
        "time:   " + ", ".join(f"{k} {_si(v, 's')}" for k, v in t["time_breakdown_s"].items())
        + f" ({t['ticks']} ticks, {t['latency_cycles']:.0f} cycles of {report['target']['cycle_s']:g} s)",
        f"cores:  {t['cores']} of the chip's ({t['core_utilisation']:.1%}), {t['routes']} routes, "
        f"busiest link {t['max_link_load']} packets/tick, {t['tick_overruns']} tick overruns",
    ]
    for key, unit in (("latency_s", "s"), ("energy_j", "J"), ("sops", "")):
        s = report["stats"][key]
        fmt = (lambda v: _si(v, unit)) if unit else (lambda v: f"{v:.1f}")
        lines.append(f"{key:<10} mean {fmt(s['mean'])}, p50 {fmt(s['p50'])}, p99 {fmt(s['p99'])}")
    if report["accuracy"] is not None:
        lines.append(f"accuracy  {report['accuracy']:.2%} (simulated logits vs labels)")
    c = report["conventional"]
    lines.append(
        f"conventional 45 nm accelerator: {c['macs']} MACs + {c['adds']} adds = {_si(c['energy_j'], 'J')} "
        f"per inference; the SNN's SOPs as 45 nm accumulates: {_si(c['snn_sops_as_45nm_accumulates_j'], 'J')}"
    )
    lines.append(f"SOP convention: {report['sop_convention']}")
    return "\n".join(lines)


def write_json(report: dict, path) -> Path:
    """Write the report atomically (sorted keys are not used: the order is the document's)."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(report, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    return path
