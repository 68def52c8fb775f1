"""The placement section of a core description (written by ``hw_model.mapper``).

Layout (JSON, snake_case, version ``PLACEMENT_VERSION``)::

    {"format": "mtsnn-placement", "format_version": 2,
     "target": "loihi",                          # name of the target file it was made for
     "mesh": {"x": 8, "y": 4, "cores_per_router": 4},
     "routing": "xy", "encoding": "unary",
     "cores": [{"id": 0, "layer": "conv1", "neurons": [0, 256], "fan_in": [0, 36],
                "group": 0, "router": [0, 0], "axons": 64, "synapses": 2048}, ...],
     "routes": [{"src": 0, "dst": 3, "kind": "spike", "hops": [1, 0],
                 "path": [[0, 0], [1, 0]]}, ...]}

``neurons`` is a [start, stop) range of the layer's flat (C, H, W) neuron indices, ``fan_in``
a [start, stop) range of the per-neuron fan-in order, ``group`` 0 the soma core. Within a
layer every fan-in group covers every neuron exactly once and the groups tile the fan-in.
Input generator cores (``layer`` "input", ``INPUT_LAYER``; the mapper's cores that inject the
encoder's counts), when present, come first: ``neurons`` is then a range of the encoder's flat
(C, H, W) inputs, ``fan_in`` [0, 0] and ``group`` 0, and together they cover every input exactly
once.
Routes are XY (x first, then y); ``hops`` = [|dx|, |dy|].

``check_placement`` validates all of this against the network (not the target: the target's
limits are the mapper's design rules) and raises ``ValueError`` naming the field, in one
printable line. It also checks what the mapper relies on when it rebuilds a mapping from a
placement (``mapper._build_mapping``): every object has exactly the keys of the JSON Schema
(unknown keys are refused), integers are JSON integers (never ``true``), and every core of a
fan-in group > 0 holds exactly the neuron range of one soma (group 0) core of its layer, the
core its partial sums go to. Its work is linear in the number of cores and routes the
placement lists and in the routers its paths list; nothing is computed from a claimed size
(a route's XY path is rebuilt only once its listed length matches its hops).
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

from .errors import one_line

__all__ = ["PLACEMENT_FORMAT", "PLACEMENT_VERSION", "ROUTE_KINDS", "INPUT_LAYER", "check_placement", "xy_path"]

PLACEMENT_FORMAT = "mtsnn-placement"
PLACEMENT_VERSION = 2
NEURON_ORDERS = ("channel", "position")  # hw_model.mapper.neuron_order
ROUTE_KINDS = ("spike", "partial_sum")
INPUT_LAYER = "input"  # the layer name of input generator cores (hw_model.mapper.INPUT_LAYER)
_PLACEMENT_KEYS = ("format", "format_version", "target", "mesh", "routing", "encoding", "orders", "cores", "routes")
_MESH_KEYS = ("x", "y", "cores_per_router")
_CORE_KEYS = ("id", "layer", "neurons", "fan_in", "group", "router", "axons", "synapses")
_ROUTE_KEYS = ("src", "dst", "kind", "hops", "path")

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def xy_path(src: tuple[int, int], dst: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """Routers visited by dimension-order routing: along x first, then along y (both ends included)."""
    (x, y), (x1, y1) = src, dst
    path = [(x, y)]
    while x != x1:
        x += 1 if x1 > x else -1
        path.append((x, y))
    while y != y1:
        y += 1 if y1 > y else -1
        path.append((x, y))
    return tuple(path)


def _fail(field: str, expected: str, found: Any) -> ValueError:
    """One printable line, however large or hostile ``found`` is (its repr is bounded)."""
    return ValueError(one_line(f"{one_line(field, 200)}: expected {one_line(expected, 300)}, "
                               f"found {one_line(_REPR.repr(found), 120)}", limit=700))


def _check_keys(obj: dict, keys: tuple, where: str) -> None:
    """Exactly ``keys`` (the schema's additionalProperties: false and required)."""
    prefix = f"{where}." if where else ""
    for key in obj:
        if key not in keys:
            raise _fail(f"{prefix}{one_line(key, 60)}", f"no such field (the keys are {', '.join(keys)})",
                        "an unknown key")
    for key in keys:
        if key not in obj:
            raise _fail(f"{prefix}{key}", "a value (missing field)", "nothing")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_pair(value: Any, field: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)):
        raise _fail(field, "a list of two integers", value)
    return value[0], value[1]


def _check_header(placement: dict) -> tuple[int, int, int]:
    if placement.get("format") != PLACEMENT_FORMAT:
        raise _fail("format", repr(PLACEMENT_FORMAT), placement.get("format"))
    version = placement.get("format_version")
    if not _is_int(version) or version != PLACEMENT_VERSION:
        raise _fail("format_version", str(PLACEMENT_VERSION), version)
    _check_keys(placement, _PLACEMENT_KEYS, "")
    if not isinstance(placement.get("target"), str) or not placement["target"]:
        raise _fail("target", "a target name", placement.get("target"))
    if placement.get("routing") != "xy":
        raise _fail("routing", "'xy'", placement.get("routing"))
    if placement.get("encoding") not in ("unary", "graded"):
        raise _fail("encoding", "'unary' or 'graded'", placement.get("encoding"))
    mesh = placement.get("mesh")
    if not isinstance(mesh, dict):
        raise _fail("mesh", "an object", mesh)
    _check_keys(mesh, _MESH_KEYS, "mesh")
    for key in ("x", "y", "cores_per_router"):
        if not _is_int(mesh.get(key)) or mesh[key] < 1:
            raise _fail(f"mesh.{key}", "an integer >= 1", mesh.get(key))
    return mesh["x"], mesh["y"], mesh["cores_per_router"]


def _check_cores(placement: dict, network, mesh_x: int, mesh_y: int) -> list[dict]:
    cores = placement.get("cores")
    if not isinstance(cores, list) or not cores:
        raise _fail("cores", "a non-empty list", cores if not isinstance(cores, list) else "[]")
    layers = {layer.name: layer for layer in network.layers}
    coverage: dict[tuple[str, int], list[tuple[int, int]]] = {}
    groups: dict[str, dict[int, tuple[int, int]]] = {}
    input_spans: list[tuple[int, int]] = []
    n_inputs = math.prod(network.encoder.shape)
    layer_cores_seen = False
    for index, core in enumerate(cores):
        where = f"cores[{index}]"
        if not isinstance(core, dict):
            raise _fail(where, "an object", core)
        _check_keys(core, _CORE_KEYS, where)
        if not _is_int(core["id"]) or core["id"] != index:
            raise _fail(f"{where}.id", str(index), core["id"])
        if core["layer"] == INPUT_LAYER and INPUT_LAYER not in layers:
            if layer_cores_seen:
                raise _fail(f"{where}.layer", "input generator cores before every layer's cores", core["layer"])
            input_spans.append(_check_input_core(core, where, n_inputs, mesh_x, mesh_y))
            continue
        layer_cores_seen = True
        layer = layers.get(core["layer"]) if isinstance(core["layer"], str) else None
        if layer is None:
            raise _fail(f"{where}.layer", "a layer name of the network", core.get("layer"))
        n0, n1 = _int_pair(core.get("neurons"), f"{where}.neurons")
        if not 0 <= n0 < n1 <= layer.n_neurons:
            raise _fail(f"{where}.neurons", f"a range within 0..{layer.n_neurons}", core["neurons"])
        c0, c1 = _int_pair(core.get("fan_in"), f"{where}.fan_in")
        if not 0 <= c0 < c1 <= layer.fan_in:
            raise _fail(f"{where}.fan_in", f"a range within 0..{layer.fan_in}", core["fan_in"])
        group = core.get("group")
        if not _is_int(group) or group < 0:
            raise _fail(f"{where}.group", "an integer >= 0", group)
        known = groups.setdefault(layer.name, {}).setdefault(group, (c0, c1))
        if known != (c0, c1):
            raise _fail(f"{where}.fan_in", f"{list(known)} like the layer's other group-{group} cores", core["fan_in"])
        x, y = _int_pair(core.get("router"), f"{where}.router")
        if not (0 <= x < mesh_x and 0 <= y < mesh_y):
            raise _fail(f"{where}.router", f"a router of the {mesh_x} x {mesh_y} mesh", core["router"])
        for key in ("axons", "synapses"):
            if not _is_int(core.get(key)) or core[key] < 0:
                raise _fail(f"{where}.{key}", "an integer >= 0", core.get(key))
        coverage.setdefault((layer.name, group), []).append((n0, n1))
    if input_spans:
        spans = sorted(input_spans)
        if spans[0][0] != 0 or spans[-1][1] != n_inputs or any(a[1] != b[0] for a, b in zip(spans[:-1], spans[1:])):
            raise _fail(f"cores ({INPUT_LAYER} neurons)", f"input ranges covering 0..{n_inputs} exactly once", spans)
    soma_ranges = {name: set(spans) for (name, group), spans in coverage.items() if group == 0}
    for layer in network.layers:
        layer_groups = groups.get(layer.name)
        if not layer_groups:
            raise _fail("cores", f"cores for layer {layer.name}", "none")
        ranges = [layer_groups[g] for g in sorted(layer_groups)]
        if sorted(layer_groups) != list(range(len(ranges))) or ranges[0][0] != 0 or ranges[-1][1] != layer.fan_in \
                or any(a[1] != b[0] for a, b in zip(ranges[:-1], ranges[1:])):
            raise _fail(f"cores ({layer.name} fan_in)", f"groups 0.. tiling 0..{layer.fan_in}", ranges)
        for group in layer_groups:
            spans = sorted(coverage[(layer.name, group)])
            covered = spans[0][0] == 0 and spans[-1][1] == layer.n_neurons and all(
                a[1] == b[0] for a, b in zip(spans[:-1], spans[1:])
            )
            if not covered:
                raise _fail(f"cores ({layer.name} group {group} neurons)",
                            f"ranges covering 0..{layer.n_neurons} exactly once", spans)
    # a group > 0 core sends its partial sums to the soma core of the same neuron slice: its
    # range must be exactly one soma core's range (the groups above cover each neuron once,
    # so a matching soma core is unique)
    for index, core in enumerate(cores[len(input_spans):], start=len(input_spans)):
        if core["group"] > 0 and tuple(core["neurons"]) not in soma_ranges[core["layer"]]:
            raise _fail(f"cores[{index}].neurons",
                        f"the neuron range of one soma (group 0) core of layer {core['layer']} "
                        "(a partial-sum core holds exactly a soma core's neurons)", core["neurons"])
    return cores


def _check_input_core(core: dict, where: str, n_inputs: int, mesh_x: int, mesh_y: int) -> tuple[int, int]:
    """An input generator core: a range of the encoder's inputs, no fan-in, group 0."""
    n0, n1 = _int_pair(core["neurons"], f"{where}.neurons")
    if not 0 <= n0 < n1 <= n_inputs:
        raise _fail(f"{where}.neurons", f"a range of the {n_inputs} inputs within 0..{n_inputs}", core["neurons"])
    if _int_pair(core["fan_in"], f"{where}.fan_in") != (0, 0):
        raise _fail(f"{where}.fan_in", "[0, 0] (an input generator core has no fan-in)", core["fan_in"])
    if not _is_int(core["group"]) or core["group"] != 0:
        raise _fail(f"{where}.group", "0 (an input generator core)", core["group"])
    x, y = _int_pair(core["router"], f"{where}.router")
    if not (0 <= x < mesh_x and 0 <= y < mesh_y):
        raise _fail(f"{where}.router", f"a router of the {mesh_x} x {mesh_y} mesh", core["router"])
    for key in ("axons", "synapses"):
        if not _is_int(core[key]) or core[key] < 0:
            raise _fail(f"{where}.{key}", "an integer >= 0", core[key])
    return n0, n1


def _check_routes(placement: dict, cores: list[dict]) -> None:
    routes = placement.get("routes")
    if not isinstance(routes, list):
        raise _fail("routes", "a list", routes)
    for index, route in enumerate(routes):
        where = f"routes[{index}]"
        if not isinstance(route, dict):
            raise _fail(where, "an object", route)
        _check_keys(route, _ROUTE_KEYS, where)
        for key in ("src", "dst"):
            if not _is_int(route.get(key)) or not 0 <= route[key] < len(cores):
                raise _fail(f"{where}.{key}", f"a core id 0..{len(cores) - 1}", route.get(key))
        if not isinstance(route["kind"], str) or route["kind"] not in ROUTE_KINDS:
            raise _fail(f"{where}.kind", " or ".join(repr(k) for k in ROUTE_KINDS), route.get("kind"))
        (x0, y0), (x1, y1) = cores[route["src"]]["router"], cores[route["dst"]]["router"]
        hops = _int_pair(route.get("hops"), f"{where}.hops")
        if hops != (abs(x1 - x0), abs(y1 - y0)):
            raise _fail(f"{where}.hops", f"the Manhattan distance {[abs(x1 - x0), abs(y1 - y0)]}", route["hops"])
        path = route.get("path")
        if not isinstance(path, list) or not path:
            raise _fail(f"{where}.path", "a non-empty list of routers", path)
        if len(path) != hops[0] + hops[1] + 1:  # before building the path: hops may be huge
            raise _fail(f"{where}.path", f"the XY path of {hops[0] + hops[1] + 1} routers "
                        f"(|dx| + |dy| + 1, both ends included)", f"a list of {len(path)} routers")
        points = [_int_pair(p, f"{where}.path") for p in path]
        expected = list(xy_path((x0, y0), (x1, y1)))
        if points != expected:
            raise _fail(f"{where}.path", f"the XY path {[list(p) for p in expected]}", path)


def _check_orders(placement: dict, network) -> None:
    """``orders``: each layer's neuron order (the order its cores' [start, stop) ranges index)."""
    orders = placement.get("orders")
    names = [layer.name for layer in network.layers]
    if not isinstance(orders, dict) or sorted(orders) != sorted(names):
        raise _fail("orders", f"an object with one order per layer ({', '.join(names[:8])})", orders)
    for name, order in orders.items():
        if order not in NEURON_ORDERS:
            raise _fail(f"orders.{one_line(name, 64)}", " or ".join(repr(o) for o in NEURON_ORDERS), order)


def check_placement(placement: dict, network) -> None:
    """Raise ValueError naming the field when ``placement`` does not fit ``network``."""
    if not isinstance(placement, dict):
        raise _fail("placement", "an object", placement)
    mesh_x, mesh_y, _ = _check_header(placement)
    _check_orders(placement, network)
    cores = _check_cores(placement, network, mesh_x, mesh_y)
    _check_routes(placement, cores)
