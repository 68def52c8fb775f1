"""Target chips as data: a TOML file per chip, loaded and validated into a frozen ``Target``.

Presets live in ``hw_model/targets/`` (``loihi.toml``, ``truenorth.toml``); any other TOML file
with the same layout can be passed by path. Every number in a preset carries its source in a
comment (short keys resolved in the file's ``[sources]`` table, all taken from
``docs/hardware_sources.md``); every number that is not a sourced figure is listed, with the reason,
in the file's ``[assumptions]`` table, which the loader checks and the reports repeat.

Layout (all units SI: seconds, joules, watts, bits)::

    [target]   name, description
    [chip]     cores, mesh_x, mesh_y, cores_per_router     (routers on a mesh_x x mesh_y mesh)
    [core]     neurons, axons (fan-in slots), synapse_memory_bits, weight_bits, acc_bits,
               partial_sums (may one layer's fan-in be split across cores and merged)
    [spikes]   encoding = "unary" (a count k costs k events) | "graded" (one event per count)
    [time]     model = "asap" | "fixed", tick_s, cycle_s
    [latency]  sop_s, update_active_s, update_inactive_s, packet_s, hop_x_s, hop_y_s,
               link_packet_s, barrier_s
    [energy]   sop_j, update_active_j, update_inactive_j, packet_j, hop_x_j, hop_y_j,
               static_power_w
    [sources]  short key -> reference
    [assumptions]  "section.key" -> why the number is an assumption

Time model. Both chips are asynchronous (no clock). Time is therefore counted in a nominal
time quantum ``cycle_s`` (a modelling choice, 1 ps in the presets, so every sourced latency is
a whole number of cycles and the fast and cycle-stepped simulators agree exactly in integers);
``event_cycles`` rounds each latency to whole cycles. ``model = "asap"``: a tick lasts as long
as its slowest core plus the mesh drain plus the barrier (Loihi runs as fast as possible);
``model = "fixed"``: every tick lasts ``tick_s`` (TrueNorth's 1 kHz real-time tick), and the
work is only checked against it (overruns are reported).

Errors: ``TargetError`` (a ``ValueError``) with one line naming the file, the key, what was
expected and what was found.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "TargetError",
    "Target",
    "ENCODINGS",
    "TIME_MODELS",
    "PRESETS",
    "PRESET_DIR",
    "load_target",
    "parse_target",
    "event_cycles",
]

ENCODINGS = ("unary", "graded")
TIME_MODELS = ("asap", "fixed")
PRESET_DIR = Path(__file__).resolve().parent / "targets"
PRESETS = ("loihi", "truenorth")


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
    synapse_memory_bits: int  # synapse storage per core; a synapse costs weight_bits bits
    weight_bits: int  # signed weight width the core stores
    acc_bits: int  # membrane accumulator width
    partial_sums: bool  # may a layer's fan-in be split across cores whose partial sums merge
    # [spikes]
    encoding: str  # "unary" | "graded"
    # [time]
    time_model: str  # "asap" | "fixed"
    tick_s: float  # fixed tick length (time_model "fixed"); informative for "asap"
    cycle_s: float  # nominal time quantum: all latencies are counted in whole cycles
    # [latency] seconds per event
    latency_sop_s: float  # one synaptic operation (read weight, accumulate)
    latency_update_active_s: float  # one neuron update of a neuron that received input
    latency_update_inactive_s: float  # one neuron update without input (leak/bias only)
    latency_packet_s: float  # a packet's fixed transit (router in/out)
    latency_hop_x_s: float  # one router-to-router hop along x
    latency_hop_y_s: float  # one router-to-router hop along y
    latency_link_packet_s: float  # one packet occupying one directed link (bandwidth bound)
    latency_barrier_s: float  # end-of-tick synchronisation
    # [energy] joules per event, watts static
    energy_sop_j: float
    energy_update_active_j: float
    energy_update_inactive_j: float
    energy_packet_j: float
    energy_hop_x_j: float
    energy_hop_y_j: float
    static_power_w: float
    sources: dict = field(default_factory=dict)  # short key -> reference
    assumptions: dict = field(default_factory=dict)  # "section.key" -> why it is assumed
    path: str = ""  # the file it came from ("" when built in code)

    def __post_init__(self) -> None:
        problem = _range_problem(self)
        if problem is not None:
            key, expected, found = problem
            raise TargetError(f"{key}: expected {expected}, found {found!r}")

    @property
    def n_routers(self) -> int:
        return self.mesh_x * self.mesh_y

    def router_of(self, core_id: int) -> tuple[int, int]:
        """(x, y) of the router that serves core ``core_id`` (row-major router order)."""
        router = core_id // self.cores_per_router
        return router % self.mesh_x, router // self.mesh_x


# file key (section, key) -> (Target field, kind)
_SCHEMA: dict[tuple[str, str], tuple[str, str]] = {
    ("target", "name"): ("name", "str"),
    ("target", "description"): ("description", "str"),
    ("chip", "cores"): ("n_cores", "int"),
    ("chip", "mesh_x"): ("mesh_x", "int"),
    ("chip", "mesh_y"): ("mesh_y", "int"),
    ("chip", "cores_per_router"): ("cores_per_router", "int"),
    ("core", "neurons"): ("neurons_per_core", "int"),
    ("core", "axons"): ("axons_per_core", "int"),
    ("core", "synapse_memory_bits"): ("synapse_memory_bits", "int"),
    ("core", "weight_bits"): ("weight_bits", "int"),
    ("core", "acc_bits"): ("acc_bits", "int"),
    ("core", "partial_sums"): ("partial_sums", "bool"),
    ("spikes", "encoding"): ("encoding", "str"),
    ("time", "model"): ("time_model", "str"),
    ("time", "tick_s"): ("tick_s", "float"),
    ("time", "cycle_s"): ("cycle_s", "float"),
    ("latency", "sop_s"): ("latency_sop_s", "float"),
    ("latency", "update_active_s"): ("latency_update_active_s", "float"),
    ("latency", "update_inactive_s"): ("latency_update_inactive_s", "float"),
    ("latency", "packet_s"): ("latency_packet_s", "float"),
    ("latency", "hop_x_s"): ("latency_hop_x_s", "float"),
    ("latency", "hop_y_s"): ("latency_hop_y_s", "float"),
    ("latency", "link_packet_s"): ("latency_link_packet_s", "float"),
    ("latency", "barrier_s"): ("latency_barrier_s", "float"),
    ("energy", "sop_j"): ("energy_sop_j", "float"),
    ("energy", "update_active_j"): ("energy_update_active_j", "float"),
    ("energy", "update_inactive_j"): ("energy_update_inactive_j", "float"),
    ("energy", "packet_j"): ("energy_packet_j", "float"),
    ("energy", "hop_x_j"): ("energy_hop_x_j", "float"),
    ("energy", "hop_y_j"): ("energy_hop_y_j", "float"),
    ("energy", "static_power_w"): ("static_power_w", "float"),
}
_SECTIONS = sorted({section for section, _ in _SCHEMA} | {"sources", "assumptions"})
_FIELD_TO_KEY = {fname: f"{section}.{key}" for (section, key), (fname, _) in _SCHEMA.items()}


def _range_problem(t: Target) -> tuple[str, str, Any] | None:
    """The first (key, expected, found) that is out of range, or None."""
    key = _FIELD_TO_KEY
    checks = [
        ("name", bool(t.name) and isinstance(t.name, str), "a non-empty string"),
        ("n_cores", t.n_cores >= 1, "an integer >= 1"),
        ("mesh_x", t.mesh_x >= 1, "an integer >= 1"),
        ("mesh_y", t.mesh_y >= 1, "an integer >= 1"),
        ("cores_per_router", t.cores_per_router >= 1, "an integer >= 1"),
        ("neurons_per_core", t.neurons_per_core >= 1, "an integer >= 1"),
        ("axons_per_core", t.axons_per_core >= 1, "an integer >= 1"),
        ("synapse_memory_bits", t.synapse_memory_bits >= 1, "an integer >= 1"),
        ("weight_bits", 2 <= t.weight_bits <= 32, "an integer 2..32"),
        ("acc_bits", 2 <= t.acc_bits <= 62, "an integer 2..62"),
        ("encoding", t.encoding in ENCODINGS, " or ".join(repr(e) for e in ENCODINGS)),
        ("time_model", t.time_model in TIME_MODELS, " or ".join(repr(m) for m in TIME_MODELS)),
        ("tick_s", math.isfinite(t.tick_s) and t.tick_s > 0, "a finite number > 0"),
        ("cycle_s", math.isfinite(t.cycle_s) and t.cycle_s > 0, "a finite number > 0"),
    ]
    for fname, ok, expected in checks:
        if not ok:
            return key[fname], expected, getattr(t, fname)
    for f in fields(t):
        if f.name.startswith(("latency_", "energy_", "static_")):
            value = getattr(t, f.name)
            if not (math.isfinite(value) and value >= 0):
                return key[f.name], "a finite number >= 0", value
    capacity = t.mesh_x * t.mesh_y * t.cores_per_router
    if capacity < t.n_cores:
        return "chip.cores", f"<= mesh_x * mesh_y * cores_per_router = {capacity}", t.n_cores
    if t.time_model == "fixed" and round(t.tick_s / t.cycle_s) < 1:
        return "time.tick_s", "at least one cycle", t.tick_s
    return None


def _typed(value: Any, kind: str) -> tuple[bool, Any]:
    if kind == "str":
        return isinstance(value, str), value
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    raise AssertionError(kind)


_KIND_WORDS = {"str": "a string", "bool": "true or false", "int": "an integer", "float": "a number"}


def parse_target(document: dict, origin: str = "<target>") -> Target:
    """Validate a parsed TOML document into a ``Target``; errors name ``origin`` and the key."""

    def fail(key: str, expected: str, found: Any) -> TargetError:
        return TargetError(f"{origin}: {key}: expected {expected}, found {found!r}")

    if not isinstance(document, dict):
        raise fail("<document>", "a TOML table", type(document).__name__)
    for section in document:
        if section not in _SECTIONS:
            raise fail(section, "one of the sections " + ", ".join(_SECTIONS), "an unknown section")
    values: dict[str, Any] = {}
    for section in _SECTIONS:
        table = document.get(section)
        if table is None:
            raise fail(f"[{section}]", "a table", "nothing (missing)")
        if not isinstance(table, dict):
            raise fail(f"[{section}]", "a table", table)
        if section in ("sources", "assumptions"):
            for key, text in table.items():
                if not isinstance(text, str) or not text.strip():
                    raise fail(f"{section}.{key}", "a non-empty string", text)
            continue
        known = {key for sec, key in _SCHEMA if sec == section}
        for key in table:
            if key not in known:
                raise fail(f"{section}.{key}", "one of " + ", ".join(sorted(known)), "an unknown key")
        for key in sorted(known):
            fname, kind = _SCHEMA[(section, key)]
            if key not in table:
                raise fail(f"{section}.{key}", _KIND_WORDS[kind], "nothing (missing)")
            ok, value = _typed(table[key], kind)
            if not ok:
                raise fail(f"{section}.{key}", _KIND_WORDS[kind], table[key])
            values[fname] = value
    if not document["sources"]:
        raise fail("[sources]", "at least one source", "an empty table")
    valid_keys = {f"{section}.{key}" for section, key in _SCHEMA}
    for key in document["assumptions"]:
        if key not in valid_keys:
            raise fail(f"assumptions.{key}", "a 'section.key' of this file", "an unknown key")
    try:
        return Target(**values, sources=dict(document["sources"]), assumptions=dict(document["assumptions"]),
                      path=origin)
    except TargetError as exc:
        raise TargetError(f"{origin}: {exc}") from None


def load_target(spec: str | os.PathLike) -> Target:
    """A preset by name ("loihi", "truenorth") or a TOML file by path."""
    text_spec = os.fspath(spec)
    if text_spec in PRESETS:
        path = PRESET_DIR / f"{text_spec}.toml"
    else:
        path = Path(text_spec)
        if not path.is_file():
            raise TargetError(
                f"{text_spec}: target: expected a preset ({', '.join(PRESETS)}) or a TOML file, "
                f"found {'a directory' if path.is_dir() else 'no such file'}"
            )
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: <document>: expected valid TOML, found a syntax error ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: <document>: expected a readable UTF-8 file, found {exc}") from None
    return parse_target(document, str(path))


def event_cycles(target: Target) -> dict[str, int]:
    """Each latency in whole cycles of ``target.cycle_s`` (rounded to the nearest cycle).

    Keys: sop, update_active, update_inactive, packet, hop_x, hop_y, link_packet, barrier,
    tick. Counting time in integers keeps the fast and the cycle-stepped simulators exact.
    """
    names = ("sop", "update_active", "update_inactive", "packet", "hop_x", "hop_y", "link_packet", "barrier")
    cycles = {name: int(round(getattr(target, f"latency_{name}_s") / target.cycle_s)) for name in names}
    cycles["tick"] = int(round(target.tick_s / target.cycle_s))
    return cycles
