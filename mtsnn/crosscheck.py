"""Cross-check mtsnn's simulator against SANA-FE, a simulator calibrated on Loihi silicon.

``sanafe_crosscheck(mapping, images)`` builds the same mapped network in SANA-FE (PyPI
``sanafe``, its shipped Loihi architecture file ``sanafe/examples/loihi.yaml``): the same
neurons on the same cores of the same tiles, the same synapses (zero weights included), the
input as spike generators on the same input cores, and runs it on the same schedule (free
running, bias every tick, each layer's membranes reset at its reset tick). It then compares,
tick by tick and per layer: spikes and synapse reads (must be identical), messages, dynamic
energy by category and the latency of every tick (``TOLERANCE``: within 10 %).

What SANA-FE can express limits what can be compared (``CheckUnavailable`` otherwise):

- binary spikes only: Smax = 1 in every layer and the encoder (SANA-FE's LIF emits one spike;
  an MT-LIF count above 1 has no SANA-FE equivalent);
- no leak (delta = 0): SANA-FE leaks multiplicatively in floating point and truncates the
  membrane to 1/64, which is not the chip's integer leak;
- no split fan-in (SANA-FE has no partial-sum merge) and no accumulator saturation;
- Loihi's mesh (8 x 4 tiles of 4 cores), the only calibrated architecture SANA-FE ships.

How the integer neuron is expressed in SANA-FE's ``leaky_integrate_fire`` soma: it fires on
``v > threshold`` and its soft reset subtracts the threshold, so ``threshold = theta - 2**-7``
fires on ``v >= theta`` for integer v; the 2**-7 left after a reset is removed by the soma's
truncation of v to 1/64 at its next update. ``leak_decay = 1``, ``bias = b`` every tick, and
the per-layer reset is ``potential = 0`` written before the reset tick (a ``sim(1)`` loop).
The readout is a LIF whose threshold is never reached; its potential after the last tick is
the logits.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np

from mtsnn.hw_model.errors import CheckUnavailable
from mtsnn.hw_model.network import DenseLayer
from mtsnn.hw_model.pricing import ENERGY_KINDS, core_prices, dynamic_energy
from mtsnn.hw_model.schedule import schedule_for

__all__ = ["TOLERANCE", "CrossCheck", "sanafe_available", "check_comparable", "sanafe_crosscheck",
           "format_crosscheck"]

TOLERANCE = 0.10  # dynamic energy and per-tick latency within 10 % of SANA-FE's
SANAFE_VERSION = "2.2.9"
_READOUT_THRESHOLD = float(2**30)  # never reached by an accumulator of <= 30 bits
_SOMA_CATEGORY = {"compartment": "soma", "update": "soma", "spike_out": "soma", "synapse": "synapse",
                  "axon_out": "network", "axon_in": "network", "hop": "network"}
CATEGORIES = ("synapse", "soma", "network")


def sanafe_available() -> bool:
    try:
        import sanafe  # noqa: F401
    except ImportError:
        return False
    return True


def check_comparable(mapping) -> None:
    """Raise ``CheckUnavailable`` (one line, naming what differs) unless SANA-FE can express it."""
    net, target = mapping.network, mapping.target
    if net.encoder.smax != 1:
        raise CheckUnavailable(f"crosscheck sanafe: encoder Smax {net.encoder.smax}: SANA-FE spikes are binary, "
                               "so only Smax = 1 networks have a SANA-FE equivalent")
    for layer in net.layers:
        if not layer.readout and layer.neuron.smax != 1:
            raise CheckUnavailable(f"crosscheck sanafe: layer {layer.name}: Smax {layer.neuron.smax}: SANA-FE spikes are "
                                   "binary, so only Smax = 1 networks have a SANA-FE equivalent")
        if layer.neuron.delta != 0:
            raise CheckUnavailable(f"crosscheck sanafe: layer {layer.name}: leak delta {layer.neuron.delta}: SANA-FE "
                                   "leaks in floating point with 1/64 truncation; only delta = 0 (tau 0) compares exactly")
    if any(not core.soma and not core.is_input for core in mapping.cores):
        raise CheckUnavailable("crosscheck sanafe: the mapping splits a fan-in into partial sums, which SANA-FE "
                               "cannot merge")
    if (target.mesh_x, target.mesh_y, target.cores_per_router) != (8, 4, 4) or target.encoding != "unary":
        raise CheckUnavailable(f"crosscheck sanafe: target {target.name}: SANA-FE's calibrated architecture is "
                               "Loihi's (8 x 4 tiles of 4 cores, unary spikes)")
    if not sanafe_available():
        raise CheckUnavailable("crosscheck sanafe: the sanafe package is not installed "
                               f"(pip install sanafe=={SANAFE_VERSION})")


# ----------------------------------------------------------------------------- building


def _architecture(max_generators: int):
    """SANA-FE's shipped Loihi architecture, with as many input units per core as needed
    (trimming them only makes SpikingChip() faster; the costs are unchanged)."""
    import sanafe
    from importlib.resources import files

    text = (files("sanafe.examples") / "loihi.yaml").read_text()
    text, replaced = re.subn(r"loihi_inputs\[0\.\.1023\]", f"loihi_inputs[0..{max(max_generators, 1) - 1}]", text)
    if replaced != 1:
        raise CheckUnavailable("crosscheck sanafe: unexpected sanafe/examples/loihi.yaml (input units not found); "
                               f"the cross-check is written for sanafe {SANAFE_VERSION}")
    fd, path = tempfile.mkstemp(suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
        return sanafe.load_arch(path)
    finally:
        os.unlink(path)


def _sanafe_core(arch, mapping, core_id: int):
    x, y = mapping.cores[core_id].router
    tile = x * mapping.target.mesh_y + y  # SANA-FE numbers tiles column by column
    return arch.tiles[tile].cores[core_id % mapping.target.cores_per_router]


def _connections(layer, core_conn, mapping, layer_index):
    """(source, destination, weight) of every synapse of a layer, zero weights included."""
    from mtsnn.hw_model.mapper import fanin_indices

    sources, targets, weights = [], [], []
    for core_id in mapping.layer_cores[layer_index]:
        core = mapping.cores[core_id]
        neurons = mapping.neuron_ids(core_id)
        c0, c1 = core.fan_in
        idx = fanin_indices(layer, neurons, c0, c1)
        if isinstance(layer, DenseLayer):
            w = layer.weight[neurons][:, c0:c1]
        elif hasattr(layer, "weight"):
            per_channel = layer.weight.reshape(layer.weight.shape[0], -1)
            channels = neurons // (layer.out_shape[1] * layer.out_shape[2])
            w = per_channel[channels][:, c0:c1]
        else:
            w = np.ones(idx.shape, dtype=np.int64)
        valid = idx >= 0
        sources.append(idx[valid])
        targets.append(np.broadcast_to(neurons[:, None], idx.shape)[valid])
        weights.append(w[valid])
    return np.concatenate(sources), np.concatenate(targets), np.concatenate(weights)


def _build(mapping):
    import sanafe

    net = mapping.network
    generators = max(mapping.cores[c].n_neurons for c in mapping.input_cores)
    arch = _architecture(generators)
    snn = sanafe.Network()
    n_in = int(np.prod(net.encoder.shape))
    inputs = snn.create_neuron_group("input", n_in, log_spikes=True)
    groups = []
    for index, layer in enumerate(net.layers):
        synapse = "loihi_dense_synapse" if layer.synapse_kind == "dense" else "loihi_conv_synapse"
        threshold = _READOUT_THRESHOLD if layer.readout else float(layer.neuron.theta_int) - 2.0**-7
        group = snn.create_neuron_group(f"l{index:02d}", layer.n_neurons,
                                        model_attributes={"threshold": threshold, "reset_mode": "soft",
                                                          "leak_decay": 1.0, "potential": 0},
                                        default_synapse_hw_name=synapse, log_spikes=True,
                                        log_potential=bool(layer.readout))
        bias = getattr(layer, "bias", None)
        if bias is not None:
            per_neuron = np.repeat(bias, layer.n_neurons // bias.size)
            for n, b in enumerate(per_neuron):
                if b:
                    group[n].set_attributes(model_attributes={"bias": int(b)})
        groups.append(group)
    for core_id in mapping.input_cores:
        n0, n1 = mapping.cores[core_id].neurons
        core = _sanafe_core(arch, mapping, core_id)
        for k, n in enumerate(range(n0, n1)):
            inputs[n].set_attributes(soma_hw_name=f"loihi_inputs[{k}]")
            inputs[n].map_to_core(core)
    for index, layer in enumerate(net.layers):
        source = inputs if index == 0 else groups[index - 1]
        src, dst, w = _connections(layer, None, mapping, index)
        source.connect_neurons_sparse(groups[index], {"weight": [int(v) for v in w]},
                                      list(zip(src.tolist(), dst.tolist())))
        for core_id in mapping.layer_cores[index]:
            core = _sanafe_core(arch, mapping, core_id)
            for n in mapping.neuron_ids(core_id).tolist():
                groups[index][n].map_to_core(core)
    chip = sanafe.SpikingChip(arch)
    chip.load(snn)
    return chip


# ----------------------------------------------------------------------------- running


@dataclass
class CrossCheck:
    """mtsnn vs SANA-FE on the same samples, tick by tick (arrays are (n_ticks,) means over samples)."""

    samples: int
    n_ticks: int
    layer_names: list
    spikes_identical: bool  # per layer, per tick, per sample
    synapse_reads_identical: bool
    messages_identical: bool
    logits_identical: bool
    first_difference: str | None
    latency_s: dict = field(default_factory=dict)  # "mtsnn" (detailed) / "mtsnn_fast" / "sanafe" -> (n_ticks,)
    energy_j: dict = field(default_factory=dict)  # "mtsnn" / "sanafe" -> {category -> (n_ticks,)}
    layer_spikes: dict = field(default_factory=dict)  # layer -> total spikes (identical in both)
    layer_synapse_reads: dict = field(default_factory=dict)  # layer -> total synapse reads
    seconds: dict = field(default_factory=dict)  # wall seconds: "mtsnn" (the samples), "sanafe_build", "sanafe_run"

    @property
    def dynamic_ratio(self) -> float:
        ours = sum(float(v.sum()) for v in self.energy_j["mtsnn"].values())
        theirs = sum(float(v.sum()) for v in self.energy_j["sanafe"].values())
        return ours / theirs

    @property
    def latency_ratios(self) -> np.ndarray:
        """mtsnn's detailed network model / SANA-FE, per tick."""
        return self.latency_s["mtsnn"] / self.latency_s["sanafe"]

    @property
    def fast_latency_ratios(self) -> np.ndarray:
        """mtsnn's contention-free fast model / SANA-FE, per tick (information: not asserted)."""
        return self.latency_s["mtsnn_fast"] / self.latency_s["sanafe"]

    @property
    def within_tolerance(self) -> bool:
        return abs(self.dynamic_ratio - 1) <= TOLERANCE and bool(np.all(np.abs(self.latency_ratios - 1) <= TOLERANCE))

    @property
    def counts_identical(self) -> bool:
        return self.spikes_identical and self.synapse_reads_identical and self.messages_identical \
            and self.logits_identical

    def to_dict(self) -> dict:
        return {
            "samples": self.samples, "n_ticks": self.n_ticks, "counts_identical": self.counts_identical,
            "spikes_identical": self.spikes_identical, "synapse_reads_identical": self.synapse_reads_identical,
            "messages_identical": self.messages_identical, "logits_identical": self.logits_identical,
            "first_difference": self.first_difference, "tolerance": TOLERANCE,
            "dynamic_energy_ratio": self.dynamic_ratio, "latency_ratio_per_tick": self.latency_ratios.tolist(),
            "contention_free_latency_ratio_per_tick": self.fast_latency_ratios.tolist(),
            "within_tolerance": self.within_tolerance,
            "latency_s": {k: v.tolist() for k, v in self.latency_s.items()},
            "energy_j": {who: {c: v.tolist() for c, v in cats.items()} for who, cats in self.energy_j.items()},
            "layer_spikes": self.layer_spikes, "layer_synapse_reads": self.layer_synapse_reads,
            "seconds": self.seconds, "sanafe_version": SANAFE_VERSION,
        }


class _QuietStdout:
    """Silence SANA-FE's progress lines ("Executed steps") while it runs: they are printed both
    through Python's sys.stdout (pybind11) and by C++ on file descriptor 1."""

    def __enter__(self):
        import contextlib
        import io
        import sys

        sys.stdout.flush()
        self._python = contextlib.redirect_stdout(io.StringIO())
        self._python.__enter__()
        self._saved = os.dup(1)
        self._null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self._null, 1)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 1)
        os.close(self._saved)
        os.close(self._null)
        self._python.__exit__(*exc)
        return False


def _sanafe_sample(chip, mapping, encoded: np.ndarray, schedule, core_layer: np.ndarray):
    """Run one sample; returns per tick: spikes per layer, synapse reads and messages per layer
    (by destination core), energy by category, sim_time, and the readout's final potentials."""
    net = mapping.network
    n_ticks, n_layers = schedule.n_ticks, len(net.layers)
    chip.reset()
    groups = chip.mapped_neuron_groups
    for n, neuron in enumerate(groups["input"]):
        train = [bool(encoded[n]) if t < net.timesteps else False for t in range(n_ticks)]
        neuron.set_attributes(model_attributes={"spikes": train})
    spikes = np.zeros((n_ticks, n_layers + 1), dtype=np.int64)  # column 0: the input generators
    reads = np.zeros((n_ticks, n_layers), dtype=np.int64)
    messages = np.zeros((n_ticks, n_layers + 1), dtype=np.int64)  # by source layer (0: input)
    energy = {c: np.zeros(n_ticks) for c in CATEGORIES}
    latency = np.zeros(n_ticks)
    readout = None
    names = {"input": 0, **{f"l{i:02d}": i + 1 for i in range(n_layers)}}
    for t in range(n_ticks):
        for index in range(n_layers):
            if t == schedule.reset_tick(index):
                for neuron in groups[f"l{index:02d}"]:
                    neuron.set_attributes(model_attributes={"potential": 0})
        with _QuietStdout():
            result = chip.sim(1, spike_trace=True, message_trace=True, potential_trace=True)
        for address in result["spike_trace"][0]:
            spikes[t, names[address.group_name]] += 1
        for message in result["message_trace"][0]:
            if message["placeholder"]:
                continue
            dest = core_layer[(message["dest_tile_id"], message["dest_core_offset"])]
            reads[t, dest] += message["spikes"]
            src = core_layer[(message["src_tile_id"], message["src_core_offset"])]
            messages[t, src + 1] += 1
        for category in CATEGORIES:
            energy[category][t] = result["energy"][category]
        energy["soma"][t] += result["energy"]["dendrite"]
        latency[t] = result["sim_time"]
        readout = result["potential_trace"][0]
    return spikes, reads, messages, energy, latency, np.rint(np.asarray(readout)).astype(np.int64)


def sanafe_crosscheck(mapping, images: np.ndarray) -> CrossCheck:
    """Simulate ``images`` on ``mapping`` with mtsnn and with SANA-FE and compare (see the module doc)."""
    import time

    from mtsnn.hw_model.neuron import encode_pixels
    from mtsnn.hw_model.simulator import simulate_batch

    check_comparable(mapping)
    net = mapping.network
    schedule = schedule_for(net, mapping.target)
    n_ticks, n_layers, b = schedule.n_ticks, len(net.layers), len(images)
    started = time.perf_counter()
    ours = simulate_batch(mapping, images, record_ticks=True)
    ours_seconds = time.perf_counter() - started
    if any(ours.saturations.values()):
        raise CheckUnavailable("crosscheck sanafe: the accumulator saturated in mtsnn's run; SANA-FE's membrane "
                               "does not saturate, so the runs cannot be compared")
    prices = core_prices(mapping)
    energy = dynamic_energy(ours.counts, prices)  # kind -> (n_cores, n_ticks, B)
    our_energy = {c: np.zeros(n_ticks) for c in CATEGORIES}
    for kind in ENERGY_KINDS:
        our_energy[_SOMA_CATEGORY[kind]] += energy[kind].sum(axis=(0, 2)) / b
    from mtsnn.hw_model.noc import detailed_tick_cycles

    fast_latency = ours.tick_cycles.mean(axis=1) * mapping.target.cycle_s
    our_latency = detailed_tick_cycles(mapping, images).mean(axis=1) * mapping.target.cycle_s

    core_layer = {}
    for core in mapping.cores:
        x, y = core.router
        core_layer[(x * mapping.target.mesh_y + y, core.core_id % mapping.target.cores_per_router)] = core.layer_index
    started = time.perf_counter()
    chip = _build(mapping)
    built = time.perf_counter()
    encoded = encode_pixels(images, net.encoder.smax).reshape(b, -1)
    theirs_latency, theirs_energy = np.zeros(n_ticks), {c: np.zeros(n_ticks) for c in CATEGORIES}
    first_difference, identical = None, {"spikes": True, "reads": True, "messages": True, "logits": True}
    layer_spikes = {layer.name: 0 for layer in net.layers[:-1]}
    layer_reads = {layer.name: 0 for layer in net.layers}
    layer_cores = [np.array(ids) for ids in mapping.layer_cores]
    for sample in range(b):
        spikes, reads, messages, energy_s, latency_s, readout = _sanafe_sample(chip, mapping, encoded[sample], schedule,
                                                                                core_layer)
        theirs_latency += latency_s / b
        for c in CATEGORIES:
            theirs_energy[c] += energy_s[c] / b
        for index, layer in enumerate(net.layers):
            our_reads = ours.counts["synapse_reads"][layer_cores[index], :, sample].sum(axis=0)
            layer_reads[layer.name] += int(our_reads.sum())
            if not np.array_equal(our_reads, reads[:, index]) and identical["reads"]:
                identical["reads"] = False
                first_difference = first_difference or (f"sample {sample}, layer {layer.name}: synapse reads per tick "
                                                        f"{our_reads.tolist()} (mtsnn) vs {reads[:, index].tolist()}")
            if layer.readout:
                continue
            our_spikes = ours.tick_spikes[layer.name][:, sample].astype(np.int64).sum(axis=1)
            layer_spikes[layer.name] += int(our_spikes.sum())
            if not np.array_equal(our_spikes, spikes[:, index + 1]) and identical["spikes"]:
                identical["spikes"] = False
                first_difference = first_difference or (f"sample {sample}, layer {layer.name}: spikes per tick "
                                                        f"{our_spikes.tolist()} (mtsnn) vs {spikes[:, index + 1].tolist()}")
        our_messages = [ours.counts["messages_out"][list(mapping.input_cores), :, sample].sum(axis=0)]
        our_messages += [ours.counts["messages_out"][layer_cores[i], :, sample].sum(axis=0) for i in range(n_layers)]
        if not np.array_equal(np.stack(our_messages, axis=1), messages) and identical["messages"]:
            identical["messages"] = False
            first_difference = first_difference or f"sample {sample}: messages per tick and source layer differ"
        if not np.array_equal(readout, ours.logits[sample]) and identical["logits"]:
            identical["logits"] = False
            first_difference = first_difference or (f"sample {sample}: logits {ours.logits[sample].tolist()} (mtsnn) "
                                                    f"vs {readout.tolist()} (SANA-FE)")
    finished = time.perf_counter()
    return CrossCheck(samples=b, n_ticks=n_ticks, layer_names=[layer.name for layer in net.layers],
                      spikes_identical=identical["spikes"], synapse_reads_identical=identical["reads"],
                      messages_identical=identical["messages"], logits_identical=identical["logits"],
                      first_difference=first_difference,
                      latency_s={"mtsnn": our_latency, "mtsnn_fast": fast_latency, "sanafe": theirs_latency},
                      energy_j={"mtsnn": our_energy, "sanafe": theirs_energy},
                      layer_spikes=layer_spikes, layer_synapse_reads=layer_reads,
                      seconds={"mtsnn": ours_seconds, "sanafe_build": built - started, "sanafe_run": finished - built})


def format_crosscheck(check: CrossCheck) -> str:
    """A terminal table: counts identical or not, energy by category and latency per tick."""
    from mtsnn.hw_model.report import si

    lines = [f"cross-check against SANA-FE {SANAFE_VERSION} (Loihi architecture, calibrated on silicon), "
             f"{check.samples} samples, {check.n_ticks} ticks each:",
             f"  spikes per layer and tick: {'identical' if check.spikes_identical else 'DIFFERENT'}; "
             f"synapse reads: {'identical' if check.synapse_reads_identical else 'DIFFERENT'}; "
             f"messages: {'identical' if check.messages_identical else 'DIFFERENT'}; "
             f"logits: {'identical' if check.logits_identical else 'DIFFERENT'}"]
    if check.first_difference:
        lines.append(f"  first difference: {check.first_difference}")
    lines.append(f"  {'dynamic energy / sample':<26}{'mtsnn':>12}{'SANA-FE':>12}{'ratio':>8}")
    for category in CATEGORIES:
        ours, theirs = check.energy_j["mtsnn"][category].sum(), check.energy_j["sanafe"][category].sum()
        ratio = f"{ours / theirs:.3f}" if theirs else "-"
        lines.append(f"  {category:<26}{si(ours, 'J'):>12}{si(theirs, 'J'):>12}{ratio:>8}")
    lines.append(f"  {'total':<26}{si(sum(v.sum() for v in check.energy_j['mtsnn'].values()), 'J'):>12}"
                 f"{si(sum(v.sum() for v in check.energy_j['sanafe'].values()), 'J'):>12}{check.dynamic_ratio:>8.3f}")
    lines.append(f"  {'tick':<6}{'mtsnn':>12}{'SANA-FE':>12}{'ratio':>8}{'no contention':>15}{'ratio':>8}")
    for tick, (ours, fast, theirs) in enumerate(zip(check.latency_s["mtsnn"], check.latency_s["mtsnn_fast"],
                                                     check.latency_s["sanafe"])):
        lines.append(f"  {tick:<6}{si(ours, 's'):>12}{si(theirs, 's'):>12}{ours / theirs:>8.3f}{si(fast, 's'):>15}"
                     f"{fast / theirs:>8.3f}")
    verdict = "within" if check.within_tolerance else "OUTSIDE"
    lines.append(f"  dynamic energy and every tick's latency {verdict} {TOLERANCE:.0%} of SANA-FE's; "
                 f"wall time {check.seconds['mtsnn']:.3f} s (mtsnn) vs {check.seconds['sanafe_run']:.1f} s (SANA-FE, "
                 f"plus {check.seconds['sanafe_build']:.1f} s to build its chip)")
    return "\n".join(lines)
