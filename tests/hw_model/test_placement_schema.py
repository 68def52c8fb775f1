"""The core description's JSON Schema describes the mapper's placement section precisely.

Real placements (several networks, Loihi and TrueNorth, and a shrunken Loihi that splits fan-in
into partial sums) validate; broken ones are refused, so the placement subschema is not vacuous.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import mtsnn.hw_model.coredesc as coredesc
from mtsnn.hw_model.coredesc import write_core
from mtsnn.hw_model.mapper import map_network
from mtsnn.hw_model.placement import PLACEMENT_FORMAT, PLACEMENT_VERSION, ROUTE_KINDS, check_placement
from mtsnn.hw_model.synthetic import random_network
from mtsnn.hw_model.target import ENCODINGS, PRESET_DIR, load_target, parse_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SCHEMA_PATH = Path(coredesc.__file__).parent / "schema" / "core-v1.schema.json"

NETWORKS = {
    "conv-pool-dense": dict(input_shape=(1, 8, 8), layers=(("conv", 4, 3, 1), ("pool", 2), ("dense", 16))),
    "dense-only": dict(input_shape=(1, 4, 4), layers=(("dense", 24),)),
    "two-conv": dict(input_shape=(2, 5, 5), layers=(("conv", 3, 3, 0), ("conv", 4, 3, 1))),
}


def small_loihi():
    """Loihi with tiny cores (16 axons, 24 neurons), so fan-in splits into partial-sum groups."""
    path = PRESET_DIR / "loihi.toml"
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    document["core"]["axons_in"] = 16
    document["core"]["neurons"] = 24
    return parse_target(document, origin=f"{path} (small cores)")


TARGETS = {"loihi": lambda: load_target("loihi"), "truenorth": lambda: load_target("truenorth", ("axon-types",)),
           "loihi-small": small_loihi}
CASES = [(net, target) for net in sorted(NETWORKS) for target in sorted(TARGETS)]


def _mapping(net_name, target_name):
    net = random_network(np.random.default_rng(7), **NETWORKS[net_name])
    return map_network(net, TARGETS[target_name]())


@pytest.fixture(scope="module")
def schema():
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(document)
    return document


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def split_document(tmp_path_factory):
    """A written core description whose placement has partial-sum cores and routes of both kinds."""
    mapping = _mapping("conv-pool-dense", "loihi-small")
    json_path, _ = write_core(tmp_path_factory.mktemp("split") / "m", mapping.network, placement=mapping.placement())
    return json.loads(json_path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- real placements validate


@pytest.mark.parametrize("net_name,target_name", CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_written_placement_validates(tmp_path, validator, net_name, target_name):
    mapping = _mapping(net_name, target_name)
    placement = mapping.placement()
    check_placement(placement, mapping.network)  # a genuine placement, by its owner's rules
    json_path, _ = write_core(tmp_path / "m", mapping.network, placement=placement)
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["placement"] == placement
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []


def test_split_placement_exercises_partial_sums(split_document, validator):
    placement = split_document["placement"]
    assert any(core["group"] > 0 for core in placement["cores"])
    assert {route["kind"] for route in placement["routes"]} == set(ROUTE_KINDS)
    assert any(sum(route["hops"]) > 0 for route in placement["routes"])
    assert validator.is_valid(split_document)


def test_null_placement_still_validates(split_document, validator):
    document = copy.deepcopy(split_document)
    document["placement"] = None
    assert validator.is_valid(document)


def test_schema_constants_match_the_writer(schema):
    sub = schema["properties"]["placement"]["properties"]
    assert sub["format"]["const"] == PLACEMENT_FORMAT
    assert sub["format_version"]["const"] == PLACEMENT_VERSION
    assert set(sub["encoding"]["enum"]) == set(ENCODINGS)
    assert set(sub["routes"]["items"]["properties"]["kind"]["enum"]) == set(ROUTE_KINDS)


def test_schema_keys_are_exactly_the_writers(schema, split_document):
    """Every object the writer emits has exactly the schema's (all required) keys."""
    node = schema["properties"]["placement"]
    placement = split_document["placement"]
    assert set(placement) == set(node["properties"]) == set(node["required"])
    assert set(placement["mesh"]) == set(node["properties"]["mesh"]["required"])
    core_schema, route_schema = node["properties"]["cores"]["items"], node["properties"]["routes"]["items"]
    assert all(set(core) == set(core_schema["required"]) == set(core_schema["properties"]) for core in placement["cores"])
    assert all(set(r) == set(route_schema["required"]) == set(route_schema["properties"]) for r in placement["routes"])


# ----------------------------------------------------------------------------- broken placements are refused


def _del(key):
    return lambda obj: obj.pop(key)


def _set(key, value):
    return lambda obj: obj.__setitem__(key, value)


BROKEN = {
    "core missing axons": (("cores", 0), _del("axons")),
    "core missing router": (("cores", 1), _del("router")),
    "core group as string": (("cores", 0), _set("group", "0")),
    "core id as bool": (("cores", 0), _set("id", True)),
    "core id negative": (("cores", 0), _set("id", -1)),
    "core synapses as float": (("cores", 0), _set("synapses", 1.5)),
    "core layer empty": (("cores", 0), _set("layer", "")),
    "core neurons of length 3": (("cores", 0), _set("neurons", [0, 1, 2])),
    "core fan_in stop negative": (("cores", 0), _set("fan_in", [0, -1])),  # [0, 0]: an input generator core
    "core router negative": (("cores", 0), _set("router", [-1, 0])),
    "core extra key": (("cores", 0), _set("colour", "red")),
    "route extra key": (("routes", 0), _set("latency", 3)),
    "route unknown kind": (("routes", 0), _set("kind", "teleport")),
    "route missing path": (("routes", 0), _del("path")),
    "route empty path": (("routes", 0), _set("path", [])),
    "route hops of length 1": (("routes", 0), _set("hops", [1])),
    "mesh x 0": (("mesh",), _set("x", 0)),
    "mesh extra key": (("mesh",), _set("z", 1)),
    "missing routes": ((), _del("routes")),
    "missing mesh": ((), _del("mesh")),
    "format": ((), _set("format", "other")),
    "format_version 1": ((), _set("format_version", 1)),
    "routing yx": ((), _set("routing", "yx")),
    "encoding": ((), _set("encoding", "binary")),
    "no cores": ((), _set("cores", [])),
    "extra placement key": ((), _set("links", [])),
    "placement a list": (None, None),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_schema_rejects_broken_placement(split_document, validator, case):
    document = copy.deepcopy(split_document)
    assert validator.is_valid(document)  # valid before the edit
    where, edit = BROKEN[case]
    if where is None:
        document["placement"] = [document["placement"]]
    else:
        node = document["placement"]
        for key in where:
            node = node[key]
        edit(node)
    assert not validator.is_valid(document)


# ----------------------------------------------------------------------------- documentation


def test_placement_subschema_describes_and_closes_everything(schema):
    """Every property has a description; every object node is closed and requires all its keys."""
    missing, open_objects, items_undescribed = [], [], []

    def walk(node, where):
        if isinstance(node, dict):
            if "properties" in node:
                if node.get("additionalProperties") is not False:
                    open_objects.append(where)
                if set(node.get("required", ())) != set(node["properties"]):
                    open_objects.append(f"{where} (required)")
            for key, sub in node.get("properties", {}).items():
                if not isinstance(sub, dict) or not sub.get("description"):
                    missing.append(f"{where}.{key}")
            for key in ("items", "prefixItems"):
                subs = node.get(key)
                for sub in subs if isinstance(subs, list) else [subs]:
                    if isinstance(sub, dict) and not sub.get("description"):
                        items_undescribed.append(f"{where}.{key}")
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for index, sub in enumerate(node):
                walk(sub, f"{where}[{index}]")

    placement = schema["properties"]["placement"]
    assert placement["type"] == ["object", "null"] and placement.get("description")
    walk(placement, "placement")
    assert missing == [] and open_objects == [] and items_undescribed == []
