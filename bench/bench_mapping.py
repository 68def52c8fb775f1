"""Mapping before and after, side by side in one run: cores, utilisation, latency and energy of
the same trained networks on every preset, under each mapping and spike-count realisation.

Rows per network and target:

- ``before``: what mtsnn did when the mapping issue was filed: slices cut in flat (C, H, W)
  neuron order, every core packed to its neuron limit, synapse memory counted as weight bits
  alone (no storage-format overhead), and counts above 1 priced as k events inside one tick
  ("burst", which neither Loihi 1 nor TrueNorth can run). Mapped with today's design rules, so
  a mapping that breaks a published limit is shown as refused, with the rule's message;
- ``cores``: today's default: per layer the neuron order that needs the fewest cores, the
  target's storage format, counts realised as the target file says (sub-steps on binary chips);
- ``latency`` / ``energy``: today's ``--objective`` mappings (per-core neuron caps compared by
  simulation on 8 calibration samples with the detailed network model).

TrueNorth is run with its axon-type rule relaxed (``--relax axon-types``): 8-bit weights break
it, and the table says so. Energies are per sample, dynamic plus the target's default static
convention; latency is the contention-free fast model (the same model for every row).

    python bench/bench_mapping.py --model runs/bench/mnist8.pt --dataset mnist:DIR \
        --model runs/digits/model.pt --dataset digits [--samples 200] [--json OUT]

Pairs of --model/--dataset are matched in order.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

TARGETS = ("loihi", "loihi2", "truenorth")
ROWS = ("before", "cores", "latency", "energy")


def _network(path: str):
    from mtsnn.export.integer import to_integer_network
    from mtsnn.toolchain.checkpoint import load_checkpoint

    return to_integer_network(load_checkpoint(path)[0])


def _before(target):
    """The target as the filing-time mapper saw it: no storage-format overhead, burst counts."""
    changes = dict(synapse_word_bits=1, synapse_header_bits=0, synapse_index_bits_min=0,
                   synapse_group_max=1 << 20)
    if target.encoding == "unary":
        changes["multi_spike"] = "burst"
    return dataclasses.replace(target, **changes)


def _mapping(row: str, network, target, calibration):
    from mtsnn.hw_model.mapper import map_network
    from mtsnn.hw_model.optimize import map_for_objective

    if row == "before":
        return map_network(network, _before(target), order="channel")
    return map_for_objective(network, target, row, calibration)[0]


def _measure(mapping, images, labels) -> dict:
    from mtsnn.hw_model.pricing import static_energy
    from mtsnn.hw_model.simulator import simulate

    result = simulate(mapping, images, labels)
    target = mapping.target
    latency = result.per_sample["latency_s"]
    static = static_energy(latency, target, target.static_default, mapping.n_cores)
    utilisation = [core.n_neurons / target.neurons_per_core for core in mapping.cores if not core.is_input]
    return {
        "cores": mapping.n_cores,
        "neuron_utilisation": float(np.mean(utilisation)),
        "latency_s": float(latency.mean()),
        "energy_j": float((result.per_sample["dynamic_j"] + static).mean()),
        "dynamic_energy_j": float(result.per_sample["dynamic_j"].mean()),
        "tick_overruns": int(result.overruns),
        "accuracy": result.accuracy,
    }


def run(models: list[str], datasets: list[str], samples: int) -> list[dict]:
    from mtsnn.hw_model.errors import InputError
    from mtsnn.hw_model.target import load_target
    from mtsnn.toolchain.datasets import load_dataset

    records = []
    for model, spec in zip(models, datasets):
        network = _network(model)
        test = load_dataset(spec).test
        images, labels = test.images[:samples], test.labels[:samples]
        for name in TARGETS:
            target = load_target(name, ("axon-types",) if name == "truenorth" else ())
            for row in ROWS:
                record = {"model": model, "dataset": spec, "target": name, "mapping": row}
                start = time.perf_counter()
                try:
                    mapping = _mapping(row, network, target, images[:8])
                    record.update(_measure(mapping, images, labels))
                except InputError as exc:  # a design rule refuses the mapping: shown, not hidden
                    record["refused"] = str(exc)
                record["seconds"] = time.perf_counter() - start
                records.append(record)
                print(_line(record), file=sys.stderr, flush=True)
    return records


def _si(value: float, unit: str) -> str:
    for factor, prefix in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _line(r: dict) -> str:
    head = f"{r['target']:<9} {r['mapping']:<8}"
    if "refused" in r:
        return f"{head} refused: {r['refused']}"
    return (f"{head} {r['cores']:>5} {r['neuron_utilisation']:>6.0%} {_si(r['latency_s'], 's'):>10} "
            f"{_si(r['energy_j'], 'J'):>10} {r['tick_overruns']:>8} {r['accuracy']:>8.2%}")


def table(records: list[dict]) -> str:
    lines = []
    for model in dict.fromkeys(r["model"] for r in records):
        lines += ["", f"{model} ({records[[r['model'] for r in records].index(model)]['dataset']}):",
                  f"{'target':<9} {'mapping':<8} {'cores':>5} {'util':>6} {'latency':>10} {'energy':>10} "
                  f"{'overruns':>8} {'accuracy':>8}"]
        lines += [_line(r) for r in records if r["model"] == model]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="a checkpoint (repeat for several)")
    parser.add_argument("--dataset", action="append", required=True, help="its data set spec (same order)")
    parser.add_argument("--samples", type=int, default=200, help="test samples simulated per row (default 200)")
    parser.add_argument("--json", default=None, help="write the records as JSON here")
    args = parser.parse_args(argv)
    if len(args.model) != len(args.dataset):
        parser.error("give one --dataset per --model")
    records = run(args.model, args.dataset, args.samples)
    print(table(records))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(records, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
