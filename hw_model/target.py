"""Target chips as data: a TOML file per chip, loaded and validated into a frozen ``Target``.

Presets live in ``hw_model/targets/`` (``loihi.toml``, ``loihi2.toml``, ``truenorth.toml``); any other TOML file
with the same layout can be passed by path. Every number in a preset carries its source in a
comment (short keys resolved in the file's ``[sources]`` table, the figures themselves in
docs/hardware_sources.md); every number that is not a sourced figure is listed, with the
reason, in the file's ``[assumptions]`` table, which the loader checks and the reports repeat.

Layout (all units SI: seconds, joules, watts, bits)::

    [target]   name, description
    [chip]     cores, mesh_x, mesh_y, cores_per_router        (a router serves one tile of cores)
    [core]     neurons (compartments), axons_in (input axons / fan-in slots), axons_out
               (core-to-core fan-out edges), synapse_memory_bits, weight_bits, acc_bits,
               axon_types (distinct weights a neuron may give its axons in a core: TrueNorth's
               4 axon types; 0 = no such limit), axon_types_rule = "enforce" | "relax",
               partial_sums (may a neuron's fan-in be split across cores and merged), and the
               synapse storage format: synapse_word_bits, synapse_group_max,
               synapse_header_bits, synapse_index_bits_min
    [input]    generators_per_core: spike generators per input core (the encoded image enters
               the chip as spikes sent by generator cores, as SANA-FE models Loihi's inputs)
    [spikes]   encoding = "unary" (a count k is k one-bit events) | "graded" (one event carries
               k as a payload), payload_bits, multi_spike: how a binary chip realises a count
               k > 1: "substeps" (each time step runs as Smax chip ticks, one spike per
               sub-tick; ``hw_model.schedule``) or "burst" (k events inside one tick: an
               idealisation neither Loihi 1 nor TrueNorth can run, kept for comparison);
               graded targets: "payload"
    [time]     model = "asap" | "fixed", tick_s, cycle_s
    [latency]  seconds per event (EVENT_KINDS): synapse_conv_s, synapse_dense_s,
               synapse_sparse_s, compartment_s, update_s, spike_out_s, axon_out_s, axon_in_s,
               hop_x_s, hop_y_s
    [energy]   joules per event, the same kinds: synapse_conv_j ... hop_y_j
    [sync]     tiles = [...], barrier_s = [...]: the end-of-tick synchronisation as a function
               of the number of tiles in use (the entry with the largest tiles <= n applies)
    [static]   power_w (the whole chip's static power), default = "chip" | "used-cores" | "none"
    [network]  link_buffer_messages: messages a link holds before the sender is back-pressured
               (the detailed network model, ``hw_model.noc``)
    [sources]  short key -> reference
    [assumptions]  "section.key" -> why the number is an assumption

The events (what ``hw_model.simulator`` counts and ``hw_model.pricing`` prices):

- ``synapse_<kind>``: one synapse read (a weight fetched and accumulated) for each synapse an
  arriving event drives, by the synapse kind the layer is stored as (conv, dense, sparse);
- ``compartment``: the per-tick read of every allocated compartment, idle or active;
- ``update``: a neuron update that changes state (input arrived, membrane or bias nonzero);
- ``spike_out``: a spike generated;
- ``axon_out`` / ``axon_in``: a message leaving / arriving at a core;
- ``hop_x`` / ``hop_y``: a message crossing one router-to-router link along x (E-W) / y (N-S).

Time model. Both chips are asynchronous (no clock). Time is counted in a nominal quantum
``cycle_s`` (a modelling choice, 1 ps in the presets, so every latency is a whole number of
cycles and the fast and cycle-stepped simulators agree exactly in integers); ``event_cycles``
rounds each latency to whole cycles and refuses one that would round to zero or move by more
than 0.1 %. ``asap``: a tick lasts as long as its busiest core plus the synchronisation;
``fixed``: every tick lasts ``tick_s`` (TrueNorth's 1 kHz tick) and longer work is an overrun.

Errors: ``TargetError`` with one line naming the file, the key, what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, one_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "TargetError",
    "Target",
    "ENCODINGS",
    "MULTI_SPIKE",
    "AXON_TYPE_RULES",
    "TIME_MODELS",
    "STATIC_CONVENTIONS",
    "EVENT_KINDS",
    "SYNAPSE_KINDS",
    "PRESETS",
    "PRESET_DIR",
    "MAX_TARGET_BYTES",
    "load_target",
    "relax_target",
    "RELAXATIONS",
    "parse_target",
    "event_cycles",
    "sync_cycles",
    "synapse_memory_bits_needed",
]

ENCODINGS = ("unary", "graded")
MULTI_SPIKE = {"unary": ("substeps", "burst"), "graded": ("payload",)}
AXON_TYPE_RULES = ("enforce", "relax")
TIME_MODELS = ("asap", "fixed")
STATIC_CONVENTIONS = ("chip", "used-cores", "none")
SYNAPSE_KINDS = ("conv", "dense", "sparse")
EVENT_KINDS = ("synapse_conv", "synapse_dense", "synapse_sparse", "compartment", "update", "spike_out",
               "axon_out", "axon_in", "hop_x", "hop_y")
PRESET_DIR = Path(__file__).resolve().parent / "targets"
PRESETS = ("loihi", "loihi2", "truenorth")
MAX_TARGET_BYTES = 1 << 20
# ranges: sizes an honest chip file stays far inside; they bound every allocation a target drives
MAX_CORES = 1 << 24
MAX_MESH = 1 << 16
MAX_PER_CORE = 1 << 24
MAX_EVENT_ENERGY_J = 1e-6
MAX_EVENT_LATENCY_S = 1e-3
MAX_STATIC_W = 1e4
CYCLE_RANGE_S = (1e-15, 1e-9)
TICK_RANGE_S = (1e-9, 10.0)
MAX_LATENCY_CYCLES = 1 << 40
MAX_ROUNDING = 1e-3  # a latency must be a whole number of cycles within this relative error


class TargetError(InputError):
    """A target file is missing, malformed or out of range (one line: file, key, expected, found)."""


@dataclass(frozen=True)
class Target:
    """One chip: structure, per-core limits, spike encoding, time and energy per event kind."""

    name: str
    description: str
    # [chip]
    n_cores: int  # neuromorphic cores on the chip
    mesh_x: int  # routers along x (E-W)
    mesh_y: int  # routers along y (N-S)
    cores_per_router: int  # cores sharing one router (a Loihi "tile"); 0 hops between them
    # [core]
    neurons_per_core: int  # neurons (compartments) per core
    axons_per_core: int  # input axons (distinct inputs, fan-in slots) per core
    axons_out_per_core: int  # core-to-core fan-out edges per core
    synapse_memory_bits: int  # synapse storage per core; a synapse costs weight_bits bits
    weight_bits: int  # signed weight width the core stores
    acc_bits: int  # membrane accumulator width
    partial_sums: bool  # may a layer's fan-in be split across cores whose partial sums merge
    # [input]
    generators_per_core: int  # input spike generators per input core
    # [spikes]
    encoding: str  # "unary" | "graded"
    payload_bits: int  # bits of a graded event's payload (1 for unary)
    # [time]
    time_model: str  # "asap" | "fixed"
    tick_s: float  # fixed tick length (time_model "fixed"); informative for "asap"
    cycle_s: float  # nominal time quantum: all latencies are counted in whole cycles
    # [latency] / [energy]: seconds and joules per event, keyed by EVENT_KINDS
    latency_s: dict = field(default_factory=dict)
    energy_j: dict = field(default_factory=dict)
    # [sync]
    sync_tiles: tuple = ()  # ascending tile counts
    sync_s: tuple = ()  # barrier seconds for >= that many tiles in use
    # [static]
    static_power_w: float = 0.0  # the whole chip's static power
    static_default: str = "chip"  # the convention reports use unless the user picks another
    # [network]
    link_buffer_messages: int = 16  # messages a link buffers before it back-pressures (detailed NoC model)
    # synapse storage format (``synapse_memory_bits_needed``): an axon's synapses are stored in
    # groups of at most synapse_group_max entries, each group a header plus its entries, rounded
    # up to whole words; a conv or sparse entry also holds the index of its target neuron
    synapse_word_bits: int = 1
    synapse_group_max: int = 1 << 20
    synapse_header_bits: int = 0
    synapse_index_bits_min: int = 0
    # TrueNorth's axon types: a neuron weighs its axons in a core by the axon's type, one of
    # axon_types weights per neuron (0: no such limit); "relax" models every synapse with its own
    # weight (what the real chip cannot do), and reports say so
    axon_types: int = 0
    axon_types_rule: str = "enforce"
    multi_spike: str = "substeps"  # [spikes]: how a count k > 1 is realised (MULTI_SPIKE[encoding])
    sources: dict = field(default_factory=dict)  # short key -> reference
    assumptions: dict = field(default_factory=dict)  # "section.key" -> why it is assumed
    path: str = ""  # the file it came from ("" when built in code)

    def __post_init__(self) -> None:
        object.__setattr__(self, "latency_s", dict(self.latency_s))
        object.__setattr__(self, "energy_j", dict(self.energy_j))
        object.__setattr__(self, "sync_tiles", tuple(self.sync_tiles))
        object.__setattr__(self, "sync_s", tuple(self.sync_s))
        problem = _range_problem(self)
        if problem is not None:
            key, expected, found = problem
            raise TargetError(f"{key}: expected {expected}, found {one_line(repr(found), 80)}")

    @property
    def n_routers(self) -> int:
        return self.mesh_x * self.mesh_y

    def router_of(self, core_id: int) -> tuple[int, int]:
        """(x, y) of the router that serves core ``core_id``. Routers are filled in boustrophedon
        order (row 0 left to right, row 1 right to left, ...), so consecutive routers, and with
        them consecutive cores and layers, are always neighbours on the mesh."""
        router = core_id // self.cores_per_router
        y, along = divmod(router, self.mesh_x)
        return (along if y % 2 == 0 else self.mesh_x - 1 - along), y

    def synapse_event(self, kind: str) -> str:
        return f"synapse_{kind}"


# file key (section, key) -> (Target field, kind)
_SCHEMA: dict[tuple[str, str], tuple[str, str]] = {
    ("target", "name"): ("name", "str"),
    ("target", "description"): ("description", "str"),
    ("chip", "cores"): ("n_cores", "int"),
    ("chip", "mesh_x"): ("mesh_x", "int"),
    ("chip", "mesh_y"): ("mesh_y", "int"),
    ("chip", "cores_per_router"): ("cores_per_router", "int"),
    ("core", "neurons"): ("neurons_per_core", "int"),
    ("core", "axons_in"): ("axons_per_core", "int"),
    ("core", "axons_out"): ("axons_out_per_core", "int"),
    ("core", "synapse_memory_bits"): ("synapse_memory_bits", "int"),
    ("core", "weight_bits"): ("weight_bits", "int"),
    ("core", "acc_bits"): ("acc_bits", "int"),
    ("core", "partial_sums"): ("partial_sums", "bool"),
    ("core", "synapse_word_bits"): ("synapse_word_bits", "int"),
    ("core", "synapse_group_max"): ("synapse_group_max", "int"),
    ("core", "synapse_header_bits"): ("synapse_header_bits", "int"),
    ("core", "synapse_index_bits_min"): ("synapse_index_bits_min", "int"),
    ("core", "axon_types"): ("axon_types", "int"),
    ("core", "axon_types_rule"): ("axon_types_rule", "str"),
    ("input", "generators_per_core"): ("generators_per_core", "int"),
    ("spikes", "encoding"): ("encoding", "str"),
    ("spikes", "payload_bits"): ("payload_bits", "int"),
    ("spikes", "multi_spike"): ("multi_spike", "str"),
    ("time", "model"): ("time_model", "str"),
    ("time", "tick_s"): ("tick_s", "float"),
    ("time", "cycle_s"): ("cycle_s", "float"),
    ("sync", "tiles"): ("sync_tiles", "int_list"),
    ("sync", "barrier_s"): ("sync_s", "float_list"),
    ("static", "power_w"): ("static_power_w", "float"),
    ("network", "link_buffer_messages"): ("link_buffer_messages", "int"),
    ("static", "default"): ("static_default", "str"),
}
for _event in EVENT_KINDS:
    _SCHEMA[("latency", f"{_event}_s")] = (f"latency:{_event}", "float")
    _SCHEMA[("energy", f"{_event}_j")] = (f"energy:{_event}", "float")
del _event
_SECTIONS = sorted({section for section, _ in _SCHEMA} | {"sources", "assumptions"})
_FIELD_TO_KEY = {fname: f"{section}.{key}" for (section, key), (fname, _) in _SCHEMA.items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range_problem(t: Target) -> tuple[str, str, Any] | None:
    """The first (key, expected, found) that is out of range, or None."""
    key = _FIELD_TO_KEY
    ints = [
        ("n_cores", 1, MAX_CORES), ("mesh_x", 1, MAX_MESH), ("mesh_y", 1, MAX_MESH),
        ("cores_per_router", 1, 1024), ("neurons_per_core", 1, MAX_PER_CORE), ("axons_per_core", 1, MAX_PER_CORE),
        ("axons_out_per_core", 1, MAX_PER_CORE), ("synapse_memory_bits", 1, 1 << 40), ("weight_bits", 2, 32),
        ("acc_bits", 2, 62), ("generators_per_core", 1, MAX_PER_CORE), ("payload_bits", 1, 32),
        ("link_buffer_messages", 1, 1 << 16), ("synapse_word_bits", 1, 4096), ("synapse_group_max", 1, 1 << 24),
        ("synapse_header_bits", 0, 4096), ("synapse_index_bits_min", 0, 32), ("axon_types", 0, 1 << 16),
    ]
    if not isinstance(t.name, str) or not t.name or not t.name.isprintable() or len(t.name) > 64:
        return key["name"], "a printable name of 1..64 characters", t.name
    for fname, lo, hi in ints:
        value = getattr(t, fname)
        if not _is_int(value) or not lo <= value <= hi:
            return key[fname], f"an integer {lo}..{hi}", value
    choices = [("encoding", ENCODINGS), ("time_model", TIME_MODELS), ("static_default", STATIC_CONVENTIONS),
               ("axon_types_rule", AXON_TYPE_RULES)]
    for fname, allowed in choices:
        if getattr(t, fname) not in allowed:
            return key[fname], " or ".join(repr(e) for e in allowed), getattr(t, fname)
    if t.encoding == "unary" and t.payload_bits != 1:
        return key["payload_bits"], "1 for unary (one-bit) spikes", t.payload_bits
    if t.multi_spike not in MULTI_SPIKE[t.encoding]:
        return (key["multi_spike"], " or ".join(repr(e) for e in MULTI_SPIKE[t.encoding]) + f" for {t.encoding} spikes",
                t.multi_spike)
    reals = [("tick_s", *TICK_RANGE_S), ("cycle_s", *CYCLE_RANGE_S), ("static_power_w", 0.0, MAX_STATIC_W)]
    for fname, lo, hi in reals:
        value = getattr(t, fname)
        if not (isinstance(value, float) and math.isfinite(value) and lo <= value <= hi):
            return key[fname], f"a finite number in {lo:g}..{hi:g}", value
    for event in EVENT_KINDS:
        for prefix, table, hi in (("latency", t.latency_s, MAX_EVENT_LATENCY_S), ("energy", t.energy_j,
                                                                                 MAX_EVENT_ENERGY_J)):
            value = table.get(event)
            if not (isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= hi):
                return key[f"{prefix}:{event}"], f"a finite number in 0..{hi:g}", value
    if not t.sync_tiles or len(t.sync_tiles) != len(t.sync_s) or len(t.sync_tiles) > 64:
        return key["sync_tiles"], "1..64 tile counts, as many as sync.barrier_s entries", list(t.sync_tiles)
    if t.sync_tiles[0] != 1 or any(not _is_int(n) or n < 1 for n in t.sync_tiles) or any(
            b <= a for a, b in zip(t.sync_tiles, t.sync_tiles[1:])):
        return key["sync_tiles"], "ascending integers starting at 1", list(t.sync_tiles)
    for value in t.sync_s:
        if not (isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= MAX_EVENT_LATENCY_S):
            return key["sync_s"], f"finite numbers in 0..{MAX_EVENT_LATENCY_S:g}", list(t.sync_s)
    capacity = t.mesh_x * t.mesh_y * t.cores_per_router
    if capacity < t.n_cores:
        return key["n_cores"], f"<= mesh_x * mesh_y * cores_per_router = {capacity}", t.n_cores
    if t.time_model == "fixed" and round(t.tick_s / t.cycle_s) > MAX_LATENCY_CYCLES:
        return key["tick_s"], f"at most {MAX_LATENCY_CYCLES} cycles of time.cycle_s", t.tick_s
    return _cycles_problem(t)


def _cycles_problem(t: Target) -> tuple[str, str, Any] | None:
    """Every latency is a whole number of cycles (within MAX_ROUNDING) and none rounds to zero."""
    named = [(f"latency:{e}", t.latency_s[e]) for e in EVENT_KINDS] + [("sync_s", s) for s in t.sync_s]
    if t.time_model == "fixed":
        named.append(("tick_s", t.tick_s))
    for fname, seconds in named:
        exact = seconds / t.cycle_s
        cycles = round(exact)
        if seconds > 0 and (cycles < 1 or abs(cycles - exact) > MAX_ROUNDING * exact or cycles > MAX_LATENCY_CYCLES):
            return _FIELD_TO_KEY[fname], (f"a whole number of time.cycle_s = {t.cycle_s:g} s cycles "
                                          f"(1..{MAX_LATENCY_CYCLES}, within {MAX_ROUNDING:.1%})"), seconds
    return None


def _typed(value: Any, kind: str) -> tuple[bool, Any]:
    if kind == "str":
        return isinstance(value, str), value
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "int":
        return _is_int(value), value
    if kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind == "int_list":
        ok = isinstance(value, list) and all(_is_int(v) for v in value)
        return ok, tuple(value) if ok else value
    if kind == "float_list":
        ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        return ok, tuple(float(v) for v in value) if ok else value
    raise AssertionError(kind)


_KIND_WORDS = {"str": "a string", "bool": "true or false", "int": "an integer", "float": "a number",
               "int_list": "a list of integers", "float_list": "a list of numbers"}


def parse_target(document: dict, origin: str = "<target>") -> Target:
    """Validate a parsed TOML document into a ``Target``; errors name ``origin`` and the key."""

    def fail(key: str, expected: str, found: Any) -> TargetError:
        return TargetError(f"{origin}: {key}: expected {expected}, found {one_line(repr(found), 80)}")

    if not isinstance(document, dict):
        raise fail("<document>", "a TOML table", type(document).__name__)
    for section in document:
        if section not in _SECTIONS:
            raise fail(one_line(section, 40), "one of the sections " + ", ".join(_SECTIONS), "an unknown section")
    values: dict[str, Any] = {"latency_s": {}, "energy_j": {}}
    for section in _SECTIONS:
        table = document.get(section)
        if table is None:
            raise fail(f"[{section}]", "a table", "nothing (missing)")
        if not isinstance(table, dict):
            raise fail(f"[{section}]", "a table", table)
        if section in ("sources", "assumptions"):
            for key, text in table.items():
                if not isinstance(text, str) or not text.strip():
                    raise fail(f"{section}.{one_line(key, 40)}", "a non-empty string", text)
            continue
        known = {key for sec, key in _SCHEMA if sec == section}
        for key in table:
            if key not in known:
                raise fail(f"{section}.{one_line(key, 40)}", "one of " + ", ".join(sorted(known)), "an unknown key")
        for key in sorted(known):
            fname, kind = _SCHEMA[(section, key)]
            if key not in table:
                raise fail(f"{section}.{key}", _KIND_WORDS[kind], "nothing (missing)")
            ok, value = _typed(table[key], kind)
            if not ok:
                raise fail(f"{section}.{key}", _KIND_WORDS[kind], table[key])
            if fname.startswith(("latency:", "energy:")):
                prefix, event = fname.split(":")
                values[f"{prefix}_{'s' if prefix == 'latency' else 'j'}"][event] = value
            else:
                values[fname] = value
    if not document["sources"]:
        raise fail("[sources]", "at least one source", "an empty table")
    valid_keys = {f"{section}.{key}" for section, key in _SCHEMA}
    for key in document["assumptions"]:
        if key not in valid_keys:
            raise fail(f"assumptions.{one_line(key, 40)}", "a 'section.key' of this file", "an unknown key")
    try:
        return Target(**values, sources=dict(document["sources"]), assumptions=dict(document["assumptions"]),
                      path=origin)
    except TargetError as exc:
        raise TargetError(f"{origin}: {exc}") from None


RELAXATIONS = {
    "axon-types": ("axon_types_rule", "relax",
                   "the chip's axon types per core are not enforced: every synapse has its own weight"),
}


def relax_target(target: Target, relax=()) -> Target:
    """``target`` with the named design rules relaxed (``RELAXATIONS``); the change is recorded
    in its assumptions, so every report repeats it."""
    relax = list(relax or ())
    for name in relax:
        if name not in RELAXATIONS:
            raise TargetError(f"--relax: expected one of {', '.join(RELAXATIONS)}, found {one_line(repr(name), 40)}")
    changes, assumptions = {}, dict(target.assumptions)
    for name in dict.fromkeys(relax):
        fname, value, meaning = RELAXATIONS[name]
        changes[fname] = value
        assumptions[_FIELD_TO_KEY[fname]] = f"RELAXED by the user (--relax {name}): {meaning}"
    return dataclasses.replace(target, **changes, assumptions=assumptions) if changes else target


def load_target(spec: str | os.PathLike | Target, relax=()) -> Target:
    """A preset by name (``PRESETS``: "loihi", "loihi2", "truenorth") or a TOML file by path, with the design rules
    named in ``relax`` relaxed (``relax_target``)."""
    if isinstance(spec, Target):  # already loaded (e.g. relaxed by the caller)
        return relax_target(spec, relax)
    text_spec = os.fspath(spec)
    if text_spec in PRESETS:
        path = PRESET_DIR / f"{text_spec}.toml"
    else:
        path = Path(text_spec)
        if not path.is_file():
            raise TargetError(
                f"{one_line(text_spec, 200)}: target: expected a preset ({', '.join(PRESETS)}) or a TOML file, "
                f"found {'a directory' if path.is_dir() else 'no such file'}"
            )
    try:
        size = path.stat().st_size
        if size > MAX_TARGET_BYTES:
            raise TargetError(f"{path}: <document>: expected at most {MAX_TARGET_BYTES} bytes, found {size}")
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: <document>: expected valid TOML, found a syntax error ({one_line(exc)})") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's 4300-digit conversion limit
        raise TargetError(f"{path}: <document>: expected TOML with numbers of sensible size, found "
                          f"{one_line(exc, 120)}") from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise TargetError(f"{path}: <document>: expected a readable UTF-8 TOML file, found "
                          f"{one_line(getattr(exc, 'strerror', None) or exc, 120)}") from None
    return relax_target(parse_target(document, str(path)), relax)


def synapse_memory_bits_needed(target: Target, fanout, kind: str, core_neurons: int,
                               weight_bits: int | None = None) -> int:
    """Bits a core's synapses take in the target's storage format: per input axon driving
    ``fanout[i]`` synapses of kind ``kind`` ("conv", "dense", "sparse") in a core of
    ``core_neurons`` neurons, each weight ``weight_bits`` wide (default: the target's). Each axon's synapses are stored in groups of at most
    ``synapse_group_max``; a group is a header plus its entries, rounded up to whole
    ``synapse_word_bits`` words; an entry is the weight, plus (conv and sparse) the index of its
    target neuron, at least ``synapse_index_bits_min`` bits (nengo-loihi's synapse format;
    ``synapse_index_bits_min = 0`` means a crossbar, whose entries need no index)."""
    import numpy as np

    fanout = np.asarray(fanout, dtype=np.int64)
    stores_index = kind != "dense" and target.synapse_index_bits_min > 0  # 0: a crossbar, the position is the address
    index = max(target.synapse_index_bits_min, int(core_neurons - 1).bit_length()) if stores_index else 0
    entry = (target.weight_bits if weight_bits is None else int(weight_bits)) + index
    word, group, header = target.synapse_word_bits, target.synapse_group_max, target.synapse_header_bits
    full, rest = np.divmod(fanout, group)
    full_bits = -(-(group * entry + header) // word) * word
    rest_bits = np.where(rest > 0, -(-(rest * entry + header) // word) * word, 0)
    return int((full * full_bits + rest_bits).sum())


def event_cycles(target: Target) -> dict[str, int]:
    """Each event's latency in whole cycles of ``target.cycle_s`` (keys: EVENT_KINDS and ``tick``).

    Counting time in integers keeps the fast and the cycle-stepped simulators exact.
    """
    cycles = {event: int(round(target.latency_s[event] / target.cycle_s)) for event in EVENT_KINDS}
    cycles["tick"] = int(round(target.tick_s / target.cycle_s))
    return cycles


def sync_cycles(target: Target, tiles_in_use: int) -> int:
    """The end-of-tick synchronisation for ``tiles_in_use`` tiles: the entry with the largest
    tile count <= tiles_in_use, in whole cycles."""
    seconds = target.sync_s[0]
    for tiles, value in zip(target.sync_tiles, target.sync_s):
        if tiles <= tiles_in_use:
            seconds = value
    return int(round(seconds / target.cycle_s))
