"""Does sinabs, loading a NIR file written by mtsnn, reproduce mtsnn's integer logits? (delta = 0)

Two environments, because sinabs 3.1.3 pins nir<=1.0.4 while mtsnn writes with nir 1.0.6:

1. the project's ``.venv`` (run in a subprocess, ``--mtsnn-python``) builds the integer network
   (``hw_model.synthetic.random_network`` with delta = 0, or ``--network CORE.json``), writes it
   with ``mtsnn.export.nir_model.write_nir`` (or takes ``--nir FILE``), draws random uint8 images
   and runs ``hw_model.reference.run_reference``: the ground truth (logits and every layer's spike
   counts at every step);
2. this process (``.venv-sinabs``, made by ``bash bench/nir_sinabs_setup.sh``) reads the NIR file
   with ``nir.read``, encodes the images with the rule in the Input node's metadata, feeds the same
   integer counts at each of the T steps, and runs three sinabs builds of the file:

   A  ``sinabs.from_nir`` as it is (what a user gets without reading the metadata);
   B1 the same model with each IF layer's spike function set to ``MaxSpike(Smax)`` (multi-spike,
      capped at the node's metadata ``smax``; the reset stays sinabs's ``MembraneSubtract``); the
      readout integrator, which sinabs drops, is done outside sinabs by summing the readout
      synapse's output over T;
   B  as B1, and the membrane floor sinabs adds on import (``min_v_mem = -v_threshold``) removed;
   C  ``nirtorch.load`` with sinabs's own node mapping, adapted as in B, plus the readout ``I`` node
      mapped to a non-spiking sinabs ``IAFSqueeze(spike_fn=None)`` (its output is its membrane):
      the whole graph runs inside sinabs.

Each build's logits (and, for B and C, every layer's spike counts) are compared with the reference,
exactly. Exit status 0 when C matches bit for bit on every sample, 1 otherwise.

    bash bench/nir_sinabs_setup.sh                        # once
    .venv-sinabs/bin/python bench/nir_sinabs_check.py     # default: 64 samples, T = 4, Smax = 15
    .venv-sinabs/bin/python bench/nir_sinabs_check.py --arch pool3-conv-dense --samples 128
    .venv-sinabs/bin/python bench/nir_sinabs_check.py --network out/model.core.json [--nir out/model.nir]

Nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARCHS = {  # input shape, hidden layers (a 10-class dense readout is appended)
    "conv-pool-dense": ((1, 12, 12), (("conv", 8, 3, 1), ("pool", 2), ("dense", 16))),
    "pool3-conv-dense": ((2, 9, 9), (("pool", 3), ("conv", 6, 3, 1), ("dense", 12))),
    "conv-conv-dense": ((1, 10, 10), (("conv", 6, 3, 0), ("conv", 8, 3, 1), ("dense", 20))),
}
FLOAT32_EXACT = 2**24


# ----------------------------------------------------------------------------- stage 1: mtsnn (.venv)


def _same_graph(found, expected, path, network) -> None:
    if sorted(found.nodes) != sorted(expected.nodes) or list(found.edges) != list(expected.edges):
        raise SystemExit(f"{path}: its nodes/edges are not those of {network}'s NIR graph")
    for key, node in expected.nodes.items():
        for name in ("weight", "bias", "v_threshold", "kernel_size"):
            if hasattr(node, name) and not np.array_equal(getattr(found.nodes[key], name), getattr(node, name)):
                raise SystemExit(f"{path}: {key}.{name} differs from {network}'s")


def prepare(args) -> None:
    """Runs under the project's venv: NIR file + reference arrays + facts into args.prepare."""
    import nir

    from mtsnn.export.nir_model import node_keys, to_nir, write_nir
    from mtsnn.hw_model.coredesc import read_core
    from mtsnn.hw_model.reference import run_reference
    from mtsnn.hw_model.synapse import partial_sum_bound
    from mtsnn.hw_model.synthetic import random_images, random_network

    out = Path(args.prepare)
    rng = np.random.default_rng(args.seed)
    if args.network:
        net = read_core(args.network).network
        source = str(args.network)
    else:
        shape, layers = ARCHS[args.arch]
        net = random_network(rng, shape, layers, n_classes=10, timesteps=args.timesteps, smax=args.smax,
                             delta=args.delta, acc_bits=args.acc_bits)
        source = f"random_network(arch={args.arch}, seed={args.seed}, delta={args.delta})"
    if args.nir:  # the given file must be this network's NIR graph
        nir_path = Path(args.nir)
        _same_graph(nir.read(nir_path), to_nir(net), nir_path, args.network)
    else:
        nir_path = write_nir(net, out / "net.nir")
    images = random_images(rng, args.samples, net.encoder.shape)
    ref = run_reference(net, images)
    keys = node_keys(net)
    arrays = {"images": images, "logits": ref.logits}
    for layer, key in zip(net.layers[:-1], keys):
        arrays[f"spikes/{key}_neuron"] = ref.spikes[layer.name]
    np.savez(out / "reference.npz", **arrays)
    bounds = {layer.name: int(partial_sum_bound(layer, net.input_smax(i))) for i, layer in enumerate(net.layers)}
    sample_saturated = []
    if sum(ref.saturations.values()):
        sample_saturated = [bool(sum(run_reference(net, images[i : i + 1], record_spikes=False).saturations.values()))
                            for i in range(len(images))]
    facts = {
        "source": source,
        "nir": str(nir_path),
        "layers": [{"name": layer.name, "key": key, "type": layer.type_tag, "delta": layer.neuron.delta,
                    "smax": layer.neuron.smax, "theta_int": layer.neuron.theta_int, "acc_bits": layer.neuron.acc_bits,
                    "readout": layer.readout, "partial_sum_bound": bounds[layer.name]}
                   for layer, key in zip(net.layers, keys)],
        "timesteps": net.timesteps,
        "samples": len(images),
        "saturations": ref.saturations,
        "smax_clipped": ref.smax_clipped,
        "samples_with_saturation": int(sum(sample_saturated)),
        "accumulator_limit_below_2_24": all(2 ** (layer.neuron.acc_bits - 1) - 1 < FLOAT32_EXACT for layer in net.layers),
    }
    (out / "facts.json").write_text(json.dumps(facts, indent=1))


# ----------------------------------------------------------------------------- stage 2: sinabs (.venv-sinabs)


def _encoder_counts(graph, images: np.ndarray) -> tuple[str, np.ndarray]:
    import nir

    (key,) = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    meta = graph.nodes[key].metadata
    assert str(meta["rule"]).startswith("count = (p * smax + 127) // 255"), meta["rule"]
    return key, (images.astype(np.int64) * int(meta["smax"]) + 127) // 255


def _as_int(values, what: str) -> np.ndarray:
    array = values.detach().double().numpy()
    if not np.array_equal(np.rint(array), array):
        raise AssertionError(f"{what}: sinabs produced non-integer values")
    return np.rint(array).astype(np.int64)


def _compare_spikes(graph, cache, ref, n: int, t: int) -> dict:
    """Per spiking node: how many (step, sample, neuron) counts differ from the reference."""
    import nir

    result = {}
    for key, node in graph.nodes.items():
        if isinstance(node, (nir.IF, nir.LIF)):
            got = _as_int(cache[key], key).reshape((n, t) + cache[key].shape[1:]).swapaxes(0, 1)
            want = ref[f"spikes/{key}"]
            result[key] = {"differ": int((got != want).sum()), "of": int(want.size), "max_count": int(got.max())}
    return result


def _logits_report(name: str, logits: np.ndarray, want: np.ndarray, notes: list, spikes: dict | None = None) -> dict:
    equal = np.all(logits == want, axis=1)
    report = {"build": name, "samples_equal": int(equal.sum()), "samples": int(len(want)),
              "max_abs_logit_error": int(np.abs(logits - want).max()),
              "predictions_equal": int((np.argmax(logits, 1) == np.argmax(want, 1)).sum()), "notes": notes}
    if spikes is not None:
        report["spikes"] = spikes
    return report


def run_sinabs(workdir: Path, facts: dict) -> list[dict]:
    import nir
    import nirtorch
    import sinabs
    import sinabs.layers as sl
    import torch
    from sinabs.activation import MaxSpike, MembraneSubtract
    from sinabs.nir import _import_sinabs_module

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_grad_enabled(False)
    graph = nir.read(facts["nir"])
    ref = np.load(workdir / "reference.npz")
    assert graph.metadata["format"] == "mtsnn-nir", graph.metadata.get("format")
    t = int(graph.metadata["timesteps"])
    images, want = ref["images"], ref["logits"]
    n = len(images)
    _, counts = _encoder_counts(graph, images)
    # sinabs's Squeeze layers take (batch * time, ...) with time inner: sample b, step s -> row b * T + s
    x = torch.from_numpy(np.repeat(counts[:, None], t, axis=1).reshape((n * t,) + counts.shape[1:])).float()
    (readout_key,) = [k for k, node in graph.nodes.items() if isinstance(node, nir.I)]
    (readout_synapse,) = [a for a, b in graph.edges if b == readout_key]
    reports = []

    def attempt(name: str, build) -> None:
        try:
            reports.append(build())
        except Exception as exc:  # a build sinabs cannot do is a result too
            reports.append({"build": name, "error": f"{type(exc).__name__}: {exc}", "samples_equal": 0, "samples": n})

    # A: sinabs.from_nir as it is
    def build_a():
        model = sinabs.from_nir(graph, batch_size=n)
        present = {name for name, _ in model.named_children()}
        dropped = sorted(set(graph.nodes) - present)
        _, state = model(x)
        current = _as_int(state.cache[readout_synapse], readout_synapse).reshape(n, t, -1)
        notes = [f"nodes sinabs/nirtorch dropped (no mapping): {dropped}",
                 "readout integrated outside sinabs: logits = sum over T of the readout synapse's output",
                 "IF layers as sinabs maps them: MultiSpike (no Smax cap), min_v_mem = -v_threshold"]
        return _logits_report("A: sinabs.from_nir as is", current.sum(1), want, notes,
                              _compare_spikes(graph, state.cache, ref, n, t))

    # B: the same model, spike function (B1) and then also the membrane floor (B) adapted from the metadata
    def build_b(name: str, keep_floor: bool):
        model = sinabs.from_nir(graph, batch_size=n)
        adapted = []
        for key, node in graph.nodes.items():
            if isinstance(node, (nir.IF, nir.LIF)):
                layer = getattr(model, key)
                smax = int(node.metadata["smax"])
                assert node.metadata["reset"] == "subtractive" and isinstance(layer.reset_fn, MembraneSubtract)
                layer.spike_fn = MaxSpike(max_num_spikes_per_bin=smax)
                if not keep_floor:
                    layer.min_v_mem = None
                adapted.append(f"{key}: {type(layer).__name__} spike_fn=MaxSpike({smax})"
                               + (", min_v_mem = -v_threshold kept" if keep_floor else ", min_v_mem=None"))
        _, state = model(x)
        current = _as_int(state.cache[readout_synapse], readout_synapse).reshape(n, t, -1)
        return _logits_report(name, current.sum(1), want, adapted + ["readout integrated outside sinabs (sum over T)"],
                              _compare_spikes(graph, state.cache, ref, n, t))

    # C: the whole graph inside sinabs, the readout I node as a non-spiking IAF
    def model_map(node):
        if isinstance(node, nir.I):
            return sl.IAFSqueeze(spike_fn=None, min_v_mem=None, batch_size=n)
        if isinstance(node, nir.LIF):  # sinabs 3.1.3's own LIF import fails on (C, H, W) parameters
            return sl.LIFSqueeze(tau_mem=torch.as_tensor(node.tau, dtype=torch.float32), batch_size=n,
                                 spike_threshold=torch.as_tensor(node.v_threshold), norm_input=False, min_v_mem=None,
                                 spike_fn=MaxSpike(max_num_spikes_per_bin=int(node.metadata["smax"])))
        module = _import_sinabs_module(node, batch_size=n, num_timesteps=None)
        if isinstance(node, nir.IF):
            module.spike_fn = MaxSpike(max_num_spikes_per_bin=int(node.metadata["smax"]))
            module.min_v_mem = None
        return module

    def build_c():
        full = nirtorch.load(graph, model_map)
        _, state = full(x)
        membrane = _as_int(state.cache[readout_key], readout_key).reshape(n, t, -1)
        notes = ["IF as in B; LIF as LIFSqueeze(tau_mem=tau, norm_input=False, MaxSpike(Smax), min_v_mem=None)",
                 f"{readout_key}: IAFSqueeze(spike_fn=None, min_v_mem=None); logits = its membrane after step T"]
        return _logits_report("C: nirtorch.load + sinabs mapping, adapted, readout I -> IAFSqueeze(spike_fn=None)",
                              membrane[:, -1], want, notes, _compare_spikes(graph, state.cache, ref, n, t))

    attempt("A: sinabs.from_nir as is", build_a)
    b1 = "B1: sinabs.from_nir + MaxSpike(Smax) only (sinabs's membrane floor kept)"
    attempt(b1, lambda: build_b(b1, keep_floor=True))
    b2 = "B: sinabs.from_nir + MaxSpike(Smax), no membrane floor"
    attempt(b2, lambda: build_b(b2, keep_floor=False))
    attempt("C: nirtorch.load + sinabs mapping, adapted, readout I -> IAFSqueeze(spike_fn=None)", build_c)
    return reports


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="conv-pool-dense")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--smax", type=int, default=15)
    parser.add_argument("--acc-bits", type=int, default=20)
    parser.add_argument("--delta", type=int, default=0, help="leak of the random network (the check is about 0)")
    parser.add_argument("--network", default=None, help="a core description (X.core.json) instead of a random network")
    parser.add_argument("--nir", default=None, help="with --network: its NIR file (default: written from --network)")
    parser.add_argument("--mtsnn-python", default=str(ROOT / ".venv" / "bin" / "python"),
                        help="python of the project's venv (stage 1)")
    parser.add_argument("--workdir", default=None, help="keep the NIR file and reference here (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the report as JSON")
    parser.add_argument("--prepare", default=None, help=argparse.SUPPRESS)  # stage 1, run by stage 2
    args = parser.parse_args(argv)
    if args.nir and not args.network:
        parser.error("--nir needs --network (the reference is computed from the core description)")
    if args.prepare:
        prepare(args)
        return 0
    for name in ("network", "nir", "workdir", "json"):  # stage 1 runs in the repository root
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    try:
        import sinabs  # noqa: F401
    except ImportError:
        print("sinabs is not installed here: run `bash bench/nir_sinabs_setup.sh`, then "
              "`.venv-sinabs/bin/python bench/nir_sinabs_check.py`", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="nir-sinabs-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        stage1 = [args.mtsnn_python, str(Path(__file__).resolve()), "--prepare", str(workdir)]
        for name in ("arch", "samples", "seed", "timesteps", "smax", "acc_bits", "delta", "network", "nir"):
            value = getattr(args, name)
            if value is not None:
                stage1 += [f"--{name.replace('_', '-')}", str(value)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        if subprocess.run(stage1, cwd=ROOT, env=env).returncode != 0:
            print(f"stage 1 (mtsnn, {args.mtsnn_python}) failed: see above", file=sys.stderr)
            return 2
        facts = json.loads((workdir / "facts.json").read_text())
        reports = run_sinabs(workdir, facts)

    from importlib.metadata import version

    versions = {d: version(d) for d in ("torch", "sinabs", "nir", "nirtorch", "numpy")}
    print(f"network: {facts['source']}; T = {facts['timesteps']}; {facts['samples']} samples")
    print("layers: " + "; ".join(f"{l['key']} ({l['type']}, delta {l['delta']}, smax {l['smax']}, theta {l['theta_int']}, "
                                 f"|partial sums| <= {l['partial_sum_bound']})" for l in facts["layers"]))
    print(f"reference: accumulator saturations {facts['saturations']}, Smax-clipped neuron-steps "
          f"{facts['smax_clipped']}, samples with a saturation {facts['samples_with_saturation']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for report in reports:
        if "error" in report:
            print(f"\n{report['build']}: FAILED to build or run: {report['error']}")
            continue
        print(f"\n{report['build']}: logits equal on {report['samples_equal']}/{report['samples']} samples "
              f"(max |error| {report['max_abs_logit_error']}), predictions equal {report['predictions_equal']}/"
              f"{report['samples']}")
        for note in report["notes"]:
            print(f"  - {note}")
        for key, s in report.get("spikes", {}).items():
            print(f"  spikes {key}: {s['differ']} of {s['of']} counts differ (largest count {s['max_count']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"facts": facts, "versions": versions, "reports": reports}, indent=1))
    final = reports[-1]
    return 0 if final["samples_equal"] == final["samples"] else 1


if __name__ == "__main__":
    sys.exit(main())
