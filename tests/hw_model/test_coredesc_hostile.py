"""The core-description reader against broken and hostile input (hw_model.coredesc, hw_model.placement).

One regression test per class of problem an adversarial run found, a test that runs the reader
and the JSON Schema on the same corpus and checks they agree, and a seeded mutation fuzz test:
every mutated core description is either refused with a clean one-line ``CoreFormatError`` or
accepted, and then the integer reference and the simulator agree on it exactly.

``MTSNN_FUZZ_CASES`` (default 300) sets the number of fuzz cases, ``MTSNN_FUZZ_SEED`` the seed;
``MTSNN_FUZZ_REPORT`` names a JSON file the counts are written to.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import os
import resource
import signal
import struct
import sys
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import mtsnn.hw_model.coredesc as coredesc
from mtsnn.hw_model.coredesc import CoreFormatError, read_core, write_core
from mtsnn.hw_model.errors import InputError
from mtsnn.hw_model.mapper import map_network, mapping_from_placement
from mtsnn.hw_model.placement import check_placement
from mtsnn.hw_model.reference import run_reference
from mtsnn.hw_model.simulator import simulate_batch
from mtsnn.hw_model.synthetic import random_images, random_network
from mtsnn.hw_model.target import load_target

SCHEMA_PATH = Path(coredesc.__file__).parent / "schema" / "core-v1.schema.json"
LOIHI = load_target("loihi")


# Loihi with tiny cores (16 axons, 24 neurons): fan-in splits into partial-sum groups
SMALL_LOIHI = dataclasses.replace(LOIHI, axons_per_core=16, neurons_per_core=24)


def net_a(seed=0):
    return random_network(np.random.default_rng(seed), input_shape=(1, 6, 6),
                          layers=(("conv", 3, 3, 1), ("pool", 2), ("dense", 6)), n_classes=4)


def net_b(seed=1):
    return random_network(np.random.default_rng(seed), input_shape=(2, 4, 4), layers=(("conv", 3, 3, 0), ("dense", 5)),
                          n_classes=3, timesteps=3)


# ----------------------------------------------------------------------------- helpers


def write(tmp_path, net, placement=None, name="m"):
    json_path, npz_path = write_core(tmp_path / name, net, placement=placement)
    return json_path, npz_path


def load_doc(json_path):
    return json.loads(json_path.read_text(encoding="utf-8"))


def save_doc(json_path, doc, npz_path=None):
    """Write the document (rehashing the npz when given, so the npz checks are what is tested)."""
    if npz_path is not None:
        doc["arrays_sha256"] = hashlib.sha256(npz_path.read_bytes()).hexdigest()
    json_path.write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")


def refused(path, *parts):
    """read_core raises a clean one-line CoreFormatError holding every part; returns the message."""
    with pytest.raises(CoreFormatError) as info:
        read_core(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and message.isprintable(), message
    for part in parts:
        assert part in message, (part, message)
    return message


def members_of(npz_bytes):
    with zipfile.ZipFile(io.BytesIO(npz_bytes)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def zip_of(members, method=zipfile.ZIP_STORED):
    """A zip archive of (name, data[, method]) members, fixed timestamps."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names, which some tests want
        for member in members:
            name, data = member[0], member[1]
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = member[2] if len(member) > 2 else method
            archive.writestr(info, data)
    return buffer.getvalue()


def central_entries(data):
    """(offset of the central directory entry, offset of the local header) per member."""
    eocd = data.rfind(b"PK\x05\x06")
    entries, _, cd_offset = struct.unpack_from("<HLL", data, eocd + 10)
    found, pos = [], cd_offset
    for _ in range(entries):
        if data[pos:pos + 4] != b"PK\x01\x02":
            raise ValueError("not a central directory entry (an earlier mutation broke the archive)")
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, pos + 28)
        (local,) = struct.unpack_from("<L", data, pos + 42)
        found.append((pos, local))
        pos += 46 + name_len + extra_len + comment_len
    return found


def patch_member(data, index, *, flags=None, method=None, size=None, local=True):
    """Patch one member's general purpose flags / compression method / uncompressed size."""
    data = bytearray(data)
    cd, lh = central_entries(bytes(data))[index]
    for base, offsets in ((cd, (8, 10, 24)), (lh, (6, 8, 22))):
        if base == lh and not local:
            continue
        for value, offset, fmt in ((flags, offsets[0], "<H"), (method, offsets[1], "<H"), (size, offsets[2], "<L")):
            if value is not None:
                struct.pack_into(fmt, data, base + offset, value)
    return bytes(data)


def npy_bytes(header: dict | str, payload: bytes = b"", version=(1, 0)) -> bytes:
    """An npy member with an arbitrary header dict (or literal header text)."""
    text = header if isinstance(header, str) else repr(header)
    text = text + " " * (-(len(text) + 11) % 64) + "\n"
    length = len(text).to_bytes(2 if version == (1, 0) else 4, "little")
    return b"\x93NUMPY" + bytes(version) + length + text.encode("latin1") + payload


# ----------------------------------------------------------------------------- 1 and 6: JSON parsing


def inject(json_path, token, value_text):
    """Put ``value_text`` (raw JSON text) as provenance["x"] of the network."""
    doc = load_doc(json_path)
    doc["provenance"]["x"] = token
    text = json.dumps(doc).replace(json.dumps(token), value_text, 1)
    json_path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("depth", [65, 200, 100_000])
def test_deep_nesting_is_a_clean_error(tmp_path, depth):
    json_path, _ = write(tmp_path, net_a())
    inject(json_path, "@deep@", "[" * depth + "]" * depth)
    refused(json_path, str(json_path), "nested", str(coredesc.MAX_JSON_DEPTH))


def test_nesting_within_the_limit_is_accepted(tmp_path):
    json_path, _ = write(tmp_path, net_a())
    inject(json_path, "@deep@", "[" * 60 + "]" * 60)
    assert read_core(json_path).network.provenance["x"] is not None


@pytest.mark.parametrize("literal", ["9" * 5000, "-" + "1" * 31])
def test_huge_integer_literal_is_a_clean_error(tmp_path, literal):
    json_path, _ = write(tmp_path, net_a())
    inject(json_path, "@int@", literal)
    refused(json_path, str(json_path), "digits")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_non_finite_numbers_are_refused_anywhere(tmp_path, literal):
    """A NaN in provenance passed the reader and broke writing later: now it is refused on reading."""
    json_path, _ = write(tmp_path, net_a())
    inject(json_path, "@nan@", literal)
    refused(json_path, str(json_path), "finite")
    doc = load_doc(write(tmp_path, net_a(), name="n")[0])  # in a layer's provenance too
    doc["layers"][0]["provenance"]["f"] = "@nan@"
    (tmp_path / "n.core.json").write_text(json.dumps(doc).replace('"@nan@"', literal), encoding="utf-8")
    refused(tmp_path / "n.core.json", "finite")


def test_accepted_documents_can_be_written_again(tmp_path):
    json_path, _ = write(tmp_path, net_a())
    inject(json_path, "@f@", "1.5e300")
    desc = read_core(json_path)
    write_core(tmp_path / "again", desc.network)  # no late failure in the writer
    assert read_core(tmp_path / "again").network == desc.network


def test_duplicate_keys_are_refused(tmp_path):
    json_path, _ = write(tmp_path, net_a())
    text = json_path.read_text(encoding="utf-8").replace('"timesteps": 2', '"timesteps": 2, "timesteps": 64', 1)
    json_path.write_text(text, encoding="utf-8")
    refused(json_path, "timesteps", "twice")


def test_oversized_json_is_refused_before_reading(tmp_path):
    json_path, _ = write(tmp_path, net_a())
    with open(json_path, "r+b") as f:  # sparse: no disk, no time
        f.truncate(coredesc.MAX_JSON_BYTES + 1)
    refused(json_path, str(json_path), f"at most {coredesc.MAX_JSON_BYTES} bytes")


@pytest.mark.parametrize("data", [b"\xff\xfe{}", b"\xef\xbb\xbf{}", b"{\"a\": \"\xed\xa0\x80\"}", b""])
def test_undecodable_json_is_a_clean_error(tmp_path, data):
    json_path, _ = write(tmp_path, net_a())
    json_path.write_bytes(data)
    refused(json_path, str(json_path))


@pytest.mark.parametrize("path", ["", "/", "nul\x00byte"])
def test_odd_paths_are_a_clean_error(path):
    with pytest.raises(CoreFormatError) as info:
        read_core(path)
    assert str(info.value).isprintable()


def test_a_directory_in_place_of_the_json_is_a_clean_error(tmp_path):
    (tmp_path / "d.core.json").mkdir()
    refused(tmp_path / "d.core.json", "not found")


# ----------------------------------------------------------------------------- 2: types and shapes


def test_empty_out_shape_is_a_clean_error(tmp_path):
    """Used to be an IndexError (out_shape[0])."""
    json_path, _ = write(tmp_path, net_a())
    doc = load_doc(json_path)
    doc["layers"][2]["out_shape"] = []
    save_doc(json_path, doc)
    refused(json_path, "layers[2] (dense3).out_shape")


WRONG_TYPES = [None, True, 1.5, 2.0, "3", [], [1], {}, {"a": 1}, -1, 10**25]
TYPED_FIELDS = [
    ("timesteps",), ("n_classes",), ("encoder",), ("encoder", "shape"), ("encoder", "shape", 0), ("encoder", "smax"),
    ("encoder", "kind"), ("layers",), ("layers", 0), ("layers", 0, "type"), ("layers", 0, "name"),
    ("layers", 0, "in_shape"), ("layers", 0, "out_shape"), ("layers", 0, "out_shape", 1), ("layers", 0, "readout"),
    ("layers", 0, "neuron"), ("layers", 0, "neuron", "theta_int"), ("layers", 0, "kernel"), ("layers", 0, "stride"),
    ("layers", 0, "padding"), ("layers", 0, "weight_bits"), ("layers", 0, "weight"), ("layers", 0, "weight", "array"),
    ("layers", 0, "weight", "shape"), ("layers", 0, "provenance"), ("layers", 1, "kernel"), ("layers", 1, "stride"),
    ("layers", 2, "in_shape"), ("layers", 2, "bias", "shape"), ("provenance",), ("arrays",), ("arrays_sha256",),
    ("format",), ("format_version",),
]


def _set_path(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize("path", TYPED_FIELDS, ids=[".".join(map(str, p)) for p in TYPED_FIELDS])
def test_every_field_is_type_checked(tmp_path, path):
    json_path, _ = write(tmp_path, net_a())
    original = load_doc(json_path)
    for value in WRONG_TYPES:
        doc = copy.deepcopy(original)
        _set_path(doc, path, value)
        save_doc(json_path, doc)
        try:
            read_core(json_path)  # a few values are legitimately fine (e.g. a provenance object)
        except CoreFormatError as exc:
            assert "\n" not in str(exc) and str(exc).isprintable()


# ----------------------------------------------------------------------------- 3: the npz


def rewrite_npz(json_path, npz_path, data):
    npz_path.write_bytes(data)
    save_doc(json_path, load_doc(json_path), npz_path)


@pytest.mark.parametrize("flags", [0x1, 0x40, 0x20, 0x2000])
def test_encrypted_or_patched_member_is_refused(tmp_path, flags):
    json_path, npz_path = write(tmp_path, net_a())
    rewrite_npz(json_path, npz_path, patch_member(npz_path.read_bytes(), 0, flags=flags))
    refused(json_path, str(npz_path), "member", "unencrypted")


@pytest.mark.parametrize("method", [1, 12, 14, 99])
def test_unknown_compression_method_is_refused(tmp_path, method):
    json_path, npz_path = write(tmp_path, net_a())
    rewrite_npz(json_path, npz_path, patch_member(npz_path.read_bytes(), 1, method=method))
    refused(json_path, str(npz_path), f"compression {method}")


@pytest.fixture(scope="module")
def bomb_member():
    """A deflated .npy member that inflates to 64 MiB (about 64 KiB on disk)."""
    payload = npy_bytes({"descr": "<i8", "fortran_order": False, "shape": (8 * 2**20,)}, bytes(64 * 2**20))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return payload, compressor.compress(payload) + compressor.flush()


def test_unreferenced_member_is_never_inflated(tmp_path, monkeypatch, bomb_member):
    """A member the JSON does not reference (here one inflating to 64 MiB, declared as 2 GiB)
    is listed and checked, never opened."""
    json_path, npz_path = write(tmp_path, net_a())
    payload, _ = bomb_member
    members = members_of(npz_path.read_bytes()) + [("junk.npy", payload, zipfile.ZIP_DEFLATED)]
    data = zip_of(members)
    data = patch_member(data, len(members) - 1, size=2**31)
    rewrite_npz(json_path, npz_path, data)
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(
        getattr(name, "filename", name)) or real_open(self, name, *a, **k))
    assert read_core(json_path).network == net_a()
    assert "junk.npy" not in opened and len(opened) == 6


def test_referenced_member_declaring_a_huge_size_is_refused_before_reading(tmp_path, monkeypatch, bomb_member):
    json_path, npz_path = write(tmp_path, net_a())
    payload, _ = bomb_member
    members = [(n, payload if n == "conv1.weight.npy" else d, zipfile.ZIP_DEFLATED)
               for n, d in members_of(npz_path.read_bytes())]
    rewrite_npz(json_path, npz_path, zip_of(members))
    reads = []
    real_read = zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, n=-1: reads.append(n) or real_read(self, n))
    refused(json_path, "layers[0] (conv1).weight", "declared size")
    assert not reads  # refused from the central directory alone


def test_npy_header_declaring_1e12_elements_is_refused_before_allocating(tmp_path):
    json_path, npz_path = write(tmp_path, net_a())
    huge = npy_bytes({"descr": "<i8", "fortran_order": False, "shape": (10**6, 10**6)})
    members = [(n, huge if n == "dense3.weight.npy" else d) for n, d in members_of(npz_path.read_bytes())]
    rewrite_npz(json_path, npz_path, zip_of(members))
    refused(json_path, "layers[2] (dense3).weight", "shape [6, 27]", "1000000")


@pytest.mark.parametrize("descr", ["<f8", ">i4", "|O", "<c16", "?", "[('a', '<i4')]", "('<i4', (2,))", "<U3"])
def test_non_plain_integer_dtypes_are_refused(tmp_path, descr):
    json_path, npz_path = write(tmp_path, net_a())
    text = "{'descr': %s, 'fortran_order': False, 'shape': (6,), }" % (
        descr if descr.startswith(("[", "(")) else repr(descr))
    bad = npy_bytes(text, bytes(6 * 16))
    members = [(n, bad if n == "dense3.bias.npy" else d) for n, d in members_of(npz_path.read_bytes())]
    rewrite_npz(json_path, npz_path, zip_of(members))
    refused(json_path, "layers[2] (dense3).bias")


@pytest.mark.parametrize("case", ["version 3.0", "header length", "not npy", "truncated data", "bad header"])
def test_malformed_npy_members_are_refused(tmp_path, case):
    json_path, npz_path = write(tmp_path, net_a())
    members = dict(members_of(npz_path.read_bytes()))
    good = members["dense3.bias.npy"]
    bad = {
        "version 3.0": good[:6] + b"\x03\x00" + good[8:],
        "header length": good[:8] + b"\xff\xff" + good[10:],
        "not npy": b"PK\x03\x04" + good[4:],
        "truncated data": good[:-2],
        "bad header": npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (6,), 'x': __import__('os')}",
                                bytes(48)),
    }[case]
    members["dense3.bias.npy"] = bad
    rewrite_npz(json_path, npz_path, zip_of(sorted(members.items())))
    refused(json_path, "layers[2] (dense3).bias")


def test_member_list_is_checked(tmp_path):
    json_path, npz_path = write(tmp_path, net_a())
    members = members_of(npz_path.read_bytes())
    rewrite_npz(json_path, npz_path, zip_of(members + [("readme.txt", b"hi")]))
    refused(json_path, str(npz_path), "readme.txt", ".npy")
    rewrite_npz(json_path, npz_path, zip_of(members + [members[0]]))
    refused(json_path, str(npz_path), "unique")


def test_deflated_npz_and_fortran_order_are_accepted(tmp_path):
    net = net_a()
    json_path, npz_path = write(tmp_path, net)
    members = []
    for name, data in members_of(npz_path.read_bytes()):
        array = np.lib.format.read_array(io.BytesIO(data))
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.asfortranarray(array.astype("<i4")))
        members.append((name, buffer.getvalue(), zipfile.ZIP_DEFLATED))
    rewrite_npz(json_path, npz_path, zip_of(members))
    assert read_core(json_path).network == net


@pytest.mark.parametrize("field_offset,value", [(10, 65535), (12, 0xFFFFFFF0), (12, 2**21)])
def test_central_directory_is_bounded_before_zipfile_parses_it(tmp_path, field_offset, value):
    json_path, npz_path = write(tmp_path, net_a())
    data = bytearray(npz_path.read_bytes())
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<H" if field_offset == 10 else "<L", data, eocd + field_offset, value)
    rewrite_npz(json_path, npz_path, bytes(data))
    refused(json_path, str(npz_path), "(archive)")


def test_zip64_end_record_claiming_many_members_is_refused(tmp_path):
    json_path, npz_path = write(tmp_path, net_a())
    data = npz_path.read_bytes()
    eocd = data.rfind(b"PK\x05\x06")
    _, _, _, _, entries, cd_size, cd_offset, _ = struct.unpack_from("<4s4H2LH", data, eocd)
    record64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 10**9, 10**9, 2**40, cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
    rewrite_npz(json_path, npz_path, data[:eocd] + record64 + locator + data[eocd:])
    refused(json_path, str(npz_path), "members")


@pytest.mark.parametrize("junk", [b"", b"PK", b"not a zip at all" * 10, bytes(1000)])
def test_garbage_npz_is_a_clean_error(tmp_path, junk):
    json_path, npz_path = write(tmp_path, net_a())
    rewrite_npz(json_path, npz_path, junk)
    refused(json_path, str(npz_path))


def test_npz_over_the_size_limit_is_refused_before_hashing(tmp_path):
    json_path, npz_path = write(tmp_path, net_a())
    with open(npz_path, "r+b") as f:
        f.truncate(coredesc.MAX_NPZ_BYTES + 1)  # sparse
    refused(json_path, str(npz_path), "file size")


# ----------------------------------------------------------------------------- 4: unknown keys


UNKNOWN_KEY_PLACES = [(), ("encoder",), ("layers", 0), ("layers", 1), ("layers", 2), ("layers", 0, "neuron"),
                      ("layers", 0, "weight"), ("layers", 2, "bias")]


@pytest.mark.parametrize("where", UNKNOWN_KEY_PLACES, ids=[".".join(map(str, w)) or "top" for w in UNKNOWN_KEY_PLACES])
def test_unknown_keys_are_refused_where_the_schema_refuses_them(tmp_path, where):
    json_path, _ = write(tmp_path, net_a())
    doc = load_doc(json_path)
    node = doc
    for key in where:
        node = node[key]
    node["colour"] = "red"
    save_doc(json_path, doc)
    refused(json_path, "colour", "no such field")


def test_provenance_stays_free_form(tmp_path):
    json_path, _ = write(tmp_path, net_a())
    doc = load_doc(json_path)
    doc["provenance"]["anything"] = {"goes": [1, "two", None, 3.5]}
    doc["layers"][0]["provenance"]["x"] = "\u00e9\u202e"
    save_doc(json_path, doc)
    assert read_core(json_path).network.provenance["anything"] == {"goes": [1, "two", None, 3.5]}


# ----------------------------------------------------------------------------- the reader and the schema agree


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_holds_the_readers_patterns_and_limits(validator):
    schema = validator.schema
    layer_names = [schema["$defs"][kind]["properties"]["name"]["pattern"]
                   for kind in ("conv_layer", "pool_layer", "dense_layer")]
    assert layer_names == [coredesc.NAME_PATTERN] * 3
    assert schema["$defs"]["array_ref"]["properties"]["array"]["pattern"] == coredesc.KEY_PATTERN
    assert schema["properties"]["arrays"]["pattern"] == coredesc.FILE_NAME_PATTERN
    assert schema["properties"]["arrays_sha256"]["pattern"] == coredesc.SHA256_PATTERN
    assert schema["properties"]["layers"]["maxItems"] == coredesc.MAX_LAYERS
    assert schema["$defs"]["shape_chw"]["items"]["maximum"] == coredesc.MAX_ELEMENTS


def _valid_corpus(tmp_path):
    """(name, json_path) of valid documents: several networks, without and with placements."""
    specs = {
        "conv-pool-dense": net_a(0),
        "conv-dense": net_b(1),
        "dense-only": random_network(np.random.default_rng(2), input_shape=(1, 4, 4), layers=(("dense", 24),)),
        "two-conv": random_network(np.random.default_rng(3), input_shape=(2, 5, 5),
                                   layers=(("conv", 3, 3, 0), ("conv", 4, 3, 1))),
    }
    corpus = []
    for name, net in specs.items():
        corpus.append((f"{name}", write(tmp_path / name, net)[0]))
        for target_name, target in (("loihi", LOIHI), ("small", SMALL_LOIHI)):
            mapping = map_network(net, target)
            corpus.append((f"{name}+{target_name}", write(tmp_path / f"{name}-{target_name}", net,
                                                          mapping.placement())[0]))
    return corpus


def _drop(key):
    return lambda node: node.pop(key)


def _put(key, value):
    return lambda node: node.__setitem__(key, value)


# (place in the document, edit) -> both the reader and the schema must refuse
INVALID_EDITS = {
    "extra top key": ((), _put("extra", 1)),
    "extra encoder key": (("encoder",), _put("extra", 1)),
    "extra conv key": (("layers", 0), _put("colour", "red")),
    "extra pool key": (("layers", 1), _put("colour", "red")),
    "extra dense key": (("layers", 2), _put("colour", "red")),
    "extra neuron key": (("layers", 0, "neuron"), _put("tau", 2)),
    "extra array_ref key": (("layers", 0, "weight"), _put("dtype", "int8")),
    "dense with a kernel": (("layers", 2), _put("kernel", 3)),
    "pool with weights": (("layers", 1), _put("weight", {"array": "x", "shape": [1]})),
    "missing placement": ((), _drop("placement")),
    "missing provenance": ((), _drop("provenance")),
    "missing layer provenance": (("layers", 0), _drop("provenance")),
    "missing pool stride": (("layers", 1), _drop("stride")),
    "missing conv padding": (("layers", 0), _drop("padding")),
    "missing theta_int": (("layers", 0, "neuron"), _drop("theta_int")),
    "name with ESC": (("layers", 0), _put("name", "\x1b[31mred")),
    "name with a trailing newline": (("layers", 0), _put("name", "conv1\n")),
    "name of 65 characters": (("layers", 0), _put("name", "c" * 65)),
    "empty name": (("layers", 0), _put("name", "")),
    "name with a lone surrogate": (("layers", 0), _put("name", "conv\ud800")),
    "name with DEL": (("layers", 0), _put("name", "conv\x7f")),
    "name with a C1 control": (("layers", 0), _put("name", "conv\x9b")),
    "name with a bidi override": (("layers", 0), _put("name", "conv\u202e1")),
    "non-ASCII name": (("layers", 0), _put("name", "couche\u00e9")),
    "empty dense out_shape": (("layers", 2), _put("out_shape", [])),
    "conv out_shape of 2": (("layers", 0), _put("out_shape", [3, 6])),
    "zero dimension": (("layers", 0), _put("in_shape", [1, 0, 6])),
    "string dimension": (("encoder",), _put("shape", [1, "6", 6])),
    "float dimension": (("encoder",), _put("shape", [1, 6.5, 6])),
    "bool dimension": (("encoder",), _put("shape", [True, 6, 6])),
    "dimension above the limit": (("encoder",), _put("shape", [1, 6, 2**28 + 1])),
    "encoder shape of 2": (("encoder",), _put("shape", [6, 6])),
    "dense in_shape of 9 dims": (("layers", 2), _put("in_shape", [1] * 9)),
    "timesteps 65": ((), _put("timesteps", 65)),
    "timesteps string": ((), _put("timesteps", "2")),
    "timesteps null": ((), _put("timesteps", None)),
    "timesteps true": ((), _put("timesteps", True)),
    "n_classes 0": ((), _put("n_classes", 0)),
    "n_classes above the limit": ((), _put("n_classes", 2**28 + 1)),
    "encoder smax 0": (("encoder",), _put("smax", 0)),
    "encoder kind": (("encoder",), _put("kind", "poisson")),
    "format": ((), _put("format", "onnx")),
    "format_version 2": ((), _put("format_version", 2)),
    "format_version true": ((), _put("format_version", True)),
    "arrays with a folder": ((), _put("arrays", "../m.core.npz")),
    "arrays dot": ((), _put("arrays", ".")),
    "arrays dotdot": ((), _put("arrays", "..")),
    "arrays with a newline": ((), _put("arrays", "m.core.npz\n")),
    "arrays with a backslash": ((), _put("arrays", "a\\m.core.npz")),
    "arrays with NUL": ((), _put("arrays", "m\x00.npz")),
    "uppercase sha256": ((), lambda d: d.__setitem__("arrays_sha256", d["arrays_sha256"].upper())),
    "sha256 with a newline": ((), lambda d: d.__setitem__("arrays_sha256", d["arrays_sha256"] + "\n")),
    "no layers": ((), _put("layers", [])),
    "layers an object": ((), _put("layers", {})),
    "1025 layers": ((), lambda d: d.__setitem__("layers", d["layers"] * 342)),
    "weight_bits 1": (("layers", 0), _put("weight_bits", 1)),
    "delta 4097": (("layers", 0, "neuron"), _put("delta", 4097)),
    "acc_bits 7": (("layers", 0, "neuron"), _put("acc_bits", 7)),
    "theta_int 0": (("layers", 0, "neuron"), _put("theta_int", 0)),
    "smax 32": (("layers", 0, "neuron"), _put("smax", 32)),
    "readout string": (("layers", 0), _put("readout", "yes")),
    "provenance a list": ((), _put("provenance", [])),
    "layer provenance null": (("layers", 0), _put("provenance", None)),
    "placement a list": ((), _put("placement", [])),
    "placement a string": ((), _put("placement", "loihi")),
    "array key empty": (("layers", 0, "weight"), _put("array", "")),
    "array key with ESC": (("layers", 0, "weight"), _put("array", "\x1bconv1.weight")),
    "array key of 129": (("layers", 0, "weight"), _put("array", "k" * 129)),
    "weight shape of 9 dims": (("layers", 2, "weight"), _put("shape", [1] * 9)),
    "extra placement key": (("placement",), _put("links", [])),
    "extra mesh key": (("placement", "mesh"), _put("z", 1)),
    "extra core key": (("placement", "cores", 0), _put("colour", "red")),
    "extra route key": (("placement", "routes", 0), _put("latency", 3)),
    "missing placement routes": (("placement",), _drop("routes")),
    "core id true": (("placement", "cores", 0), _put("id", True)),
    "core layer a list": (("placement", "cores", 0), _put("layer", ["conv1"])),
    "core synapses float": (("placement", "cores", 0), _put("synapses", 1.5)),
    "core neurons of 3": (("placement", "cores", 0), _put("neurons", [0, 1, 2])),
    "core router negative": (("placement", "cores", 0), _put("router", [-1, 0])),
    "route kind": (("placement", "routes", 0), _put("kind", "teleport")),
    "route empty path": (("placement", "routes", 0), _put("path", [])),
    "route hops of 1": (("placement", "routes", 0), _put("hops", [1])),
    "mesh x 0": (("placement", "mesh"), _put("x", 0)),
    "placement format_version true": (("placement",), _put("format_version", True)),
    "placement target empty": (("placement",), _put("target", "")),
    "placement routing": (("placement",), _put("routing", "yx")),
}


def test_reader_and_schema_agree_on_a_corpus(tmp_path, validator):
    valid = _valid_corpus(tmp_path)
    with_placement = next(path for name, path in valid if name == "conv-pool-dense+small")
    base = load_doc(with_placement)
    assert any(core["group"] > 0 for core in base["placement"]["cores"])
    verdicts = []
    for name, json_path in valid:
        doc = load_doc(json_path)
        read_core(json_path)
        verdicts.append((name, True, validator.is_valid(doc)))
    for name, (where, edit) in INVALID_EDITS.items():
        doc = copy.deepcopy(base)
        node = doc
        for key in where:
            node = node[key]
        edit(node)
        json_path = with_placement.with_name("edit.core.json")
        json_path.write_text(json.dumps(doc), encoding="utf-8")
        try:
            read_core(json_path)
            reader_ok = True
        except CoreFormatError as exc:
            reader_ok = False
            assert str(exc).isprintable(), (name, str(exc))
        verdicts.append((name, reader_ok, validator.is_valid(doc)))
    assert len(verdicts) >= 30
    disagreements = [(name, reader, schema) for name, reader, schema in verdicts if reader != schema]
    assert disagreements == []
    assert sum(1 for _, ok, _ in verdicts if ok) == len(valid) == 12


# ----------------------------------------------------------------------------- 5: names


HOSTILE_NAMES = ["\x1b]0;pwned\x07", "conv\n1", "a\ud800", "\x00", "x" * 65, "", "\u202econv", "tab\there", "del\x7f"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:20] for n in HOSTILE_NAMES])
def test_hostile_layer_names_are_refused_with_a_printable_message(tmp_path, name):
    json_path, _ = write(tmp_path, net_a())
    doc = load_doc(json_path)
    doc["layers"][1]["name"] = name
    save_doc(json_path, doc)
    message = refused(json_path, "layers[1].name", "printable ASCII")
    assert "\x1b" not in message and "\x07" not in message


def test_the_writer_refuses_names_the_reader_would_refuse(tmp_path):
    net = net_a()
    bad = [layer if i != 1 else type(layer)(name="pool\x1b[2J", in_shape=layer.in_shape, neuron=layer.neuron,
                                            readout=False, kernel=layer.kernel)
           for i, layer in enumerate(net.layers)]
    bad_net = type(net)(encoder=net.encoder, layers=tuple(bad), timesteps=net.timesteps, n_classes=net.n_classes)
    with pytest.raises(CoreFormatError, match="printable ASCII"):
        write_core(tmp_path / "m", bad_net)
    assert list(tmp_path.iterdir()) == []


def test_messages_escape_hostile_paths(tmp_path):
    folder = tmp_path / "evil\x1b[31m\nname"
    folder.mkdir()
    message = refused(folder / "absent.core.json", "not found")
    assert "\x1b" not in message


# ----------------------------------------------------------------------------- 7: placements the mapper cannot rebuild


@pytest.fixture()
def split_mapping():
    mapping = map_network(net_a(), SMALL_LOIHI)
    assert any(core.group > 0 for core in mapping.cores)
    return mapping


def _split_soma_range(placement):
    """Cut the first partial-sum core's neuron range in two (a valid cover of that group, but no
    soma core holds either half): the mapper used to crash with KeyError on it."""
    cores = placement["cores"]
    index = next(i for i, core in enumerate(cores) if core["group"] > 0 and core["neurons"][1] - core["neurons"][0] > 1)
    core = cores[index]
    n0, n1 = core["neurons"]
    second = dict(core, neurons=[(n0 + n1) // 2, n1])
    core["neurons"] = [n0, (n0 + n1) // 2]
    cores.insert(index + 1, second)
    for i, c in enumerate(cores):
        c["id"] = i
    placement["routes"] = []
    return index


def test_partial_sum_core_must_hold_a_soma_cores_range(tmp_path, split_mapping):
    placement = split_mapping.placement()
    index = _split_soma_range(placement)
    with pytest.raises(ValueError) as info:
        check_placement(placement, split_mapping.network)
    message = str(info.value)
    assert f"cores[{index}].neurons" in message and "soma" in message and "\n" not in message
    with pytest.raises(ValueError):  # not a KeyError any more
        mapping_from_placement(placement, split_mapping.network, SMALL_LOIHI)
    write(tmp_path, split_mapping.network, placement)
    refused(tmp_path / "m.core.json", "placement: ", f"cores[{index}].neurons")


def test_route_path_is_not_built_from_huge_claimed_hops(split_mapping):
    placement = split_mapping.placement()
    placement["mesh"]["x"] = 10**15
    route = placement["routes"][0]
    placement["cores"][route["dst"]]["router"] = [10**15 - 1, 0]
    src = placement["cores"][route["src"]]["router"]
    route["hops"] = [10**15 - 1 - src[0], src[1]]
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"routes\[0\].path"):
        check_placement(placement, split_mapping.network)
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("edit", [
    lambda p: p["cores"][0].__setitem__("layer", ["conv1"]),
    lambda p: p["cores"][1].__setitem__("id", True),
    lambda p: p.__setitem__("format_version", True),
    lambda p: p["routes"][0].__setitem__("kind", {"a": 1}),
    lambda p: p["cores"][0].__setitem__("neurons", ["\x1b", 1]),
    lambda p: p.__setitem__("cores", [{"x": [1] * 100_000}]),
])
def test_placement_type_confusion_is_a_clean_value_error(split_mapping, edit):
    placement = split_mapping.placement()
    edit(placement)
    with pytest.raises(ValueError) as info:
        check_placement(placement, split_mapping.network)
    assert str(info.value).isprintable() and len(str(info.value)) < 800


# ----------------------------------------------------------------------------- 8: sizes


def test_small_file_claiming_9e8_neurons_is_refused_at_once(tmp_path):
    """4 KB of JSON claiming a 30000 x 30000 pool input used to hang later code."""
    pool = random_network(np.random.default_rng(0), input_shape=(1, 4, 4), layers=(("pool", 2),), n_classes=4)
    json_path, _ = write(tmp_path, pool)
    doc = load_doc(json_path)
    doc["encoder"]["shape"] = doc["layers"][0]["in_shape"] = [1, 30000, 30000]
    doc["layers"][0]["out_shape"] = [1, 15000, 15000]
    save_doc(json_path, doc)
    assert json_path.stat().st_size < 4096
    start = time.monotonic()
    refused(json_path, "encoder.shape", str(coredesc.MAX_ELEMENTS))
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("case", ["layer neurons", "weights", "total"])
def test_sizes_are_bounded_from_the_json_alone(tmp_path, case):
    json_path, _ = write(tmp_path, net_a())
    doc = load_doc(json_path)
    if case == "layer neurons":  # a pool of 2**28 + 2**20 neurons
        doc["layers"][1]["in_shape"] = [3, 2**15, 2**14]
        doc["layers"][1]["out_shape"] = [3, 2**14, 2**13]
        expected = "layers[1] (pool2)"
    elif case == "weights":  # dense weight of 2**29 elements
        doc["layers"][2]["weight"]["shape"] = doc["layers"][2]["weight"]["shape"][:1] + [2**27]
        doc["layers"][2]["in_shape"] = [2**27]
        doc["layers"][2]["out_shape"] = doc["layers"][2]["bias"]["shape"] = [4]
        doc["layers"][2]["weight"]["shape"] = [4, 2**27]
        expected = "layers[2] (dense3)"
    else:  # each layer within the limit (2**28 weights), the sum over it
        doc["layers"][2]["in_shape"] = [2**25]
        doc["layers"][2]["out_shape"] = doc["layers"][2]["bias"]["shape"] = [8]
        doc["layers"][2]["weight"]["shape"] = [8, 2**25]
        expected = "layers[2] (dense3)"
    save_doc(json_path, doc)
    refused(json_path, expected, str(coredesc.MAX_ELEMENTS))


# ----------------------------------------------------------------------------- the mutation fuzz test


@dataclass
class Base:
    name: str
    net: object
    doc: dict
    npz: bytes
    target: object  # the placement's target (for mapping_from_placement), or None


class _Hang(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


HOSTILE_VALUES = [None, True, False, 0, -1, 1, 2, 7, 64, 65, 2**31, 2**63, 10**29, -10**29, 1.5, 2.0, -0.0, 1e308,
                  "", "x", "conv1", "\x1b[31m", "\ud800", "a\nb", "\u202e", [], [0], [1, 2], [1, 2, 3], [[0, 1]],
                  [2**28, 2**28, 2**28], {}, {"a": 1}, {"format": "mtsnn-placement"}]
HOSTILE_NAMES_FUZZ = ["\x1b[2J", "a\nb", "x" * 65, "", "\ud800", "conv1", "pool2", "dense3", "new", " ", "~" * 64,
                      "\u00e9", "a/b", "..", "conv1.weight"]


def _paths(node, prefix=()):
    """Every (path, value) in the document, depth first."""
    out = [(prefix, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, prefix + (key,)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, prefix + (index,)))
    return out


def _node(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _doc_set(rng, state):
    paths = [p for p, _ in _paths(state["doc"]) if p]
    path = _pick(rng, paths)
    _node(state["doc"], path[:-1])[path[-1]] = copy.deepcopy(_pick(rng, HOSTILE_VALUES))


def _doc_int(rng, state):
    paths = [(p, v) for p, v in _paths(state["doc"]) if p and isinstance(v, int) and not isinstance(v, bool)]
    if not paths:
        return
    path, v = _pick(rng, paths)
    new = _pick(rng, [v + 1, v - 1, 0, -1, 2 * v, v * 1000, 2**31, 2**63, 10**29, v // 2, 1, 64, 4096, 4097])
    _node(state["doc"], path[:-1])[path[-1]] = new


def _doc_delete(rng, state):
    dicts = [(p, v) for p, v in _paths(state["doc"]) if isinstance(v, dict) and v]
    path, node = _pick(rng, dicts)
    del node[_pick(rng, sorted(node))]


def _doc_add(rng, state):
    dicts = [v for p, v in _paths(state["doc"]) if isinstance(v, dict)]
    _pick(rng, dicts)[_pick(rng, ["colour", "x", "stride", "kernel", "weight", "\x1b", "padding"])] = 1


def _doc_list(rng, state):
    lists = [v for p, v in _paths(state["doc"]) if isinstance(v, list)]
    node = _pick(rng, lists)
    op = int(rng.integers(5))
    if op == 0 and node:
        node.pop(int(rng.integers(len(node))))
    elif op == 1 and node:
        node.append(copy.deepcopy(node[int(rng.integers(len(node)))]))
    elif op == 2:
        node.clear()
    elif op == 3:
        node.reverse()
    else:
        node.append(copy.deepcopy(_pick(rng, HOSTILE_VALUES)))


def _doc_name(rng, state):
    layers = state["doc"].get("layers")
    if isinstance(layers, list) and layers and isinstance(layers[0], dict):
        _pick(rng, layers)["name"] = _pick(rng, HOSTILE_NAMES_FUZZ)


def _doc_shapes(rng, state):
    """Coherent-looking but huge shape claims (the 9e8-neuron attack and relatives)."""
    doc = state["doc"]
    big = _pick(rng, [[1, 30000, 30000], [3, 2**14, 2**14], [1, 2**28, 1], [2**20, 2**10, 1], [64, 64, 64]])
    for path in (("encoder", "shape"), ("layers", 0, "in_shape")):
        try:
            _node(doc, path[:-1])[path[-1]] = list(big)
        except (KeyError, IndexError, TypeError):
            pass
    if rng.random() < 0.5:
        try:
            layer = _pick(rng, doc["layers"])
            layer["out_shape"] = [_pick(rng, [2**20, 2**28, 9 * 10**8, 0, 1])] + layer["out_shape"][1:]
        except (KeyError, IndexError, TypeError):
            pass


def _doc_placement(rng, state):
    placement = state["doc"].get("placement")
    if not isinstance(placement, dict) or not placement.get("cores"):
        return _doc_set(rng, state)
    cores = placement["cores"]
    op = int(rng.integers(8))
    core = _pick(rng, cores)
    if op == 0:  # split a core's neuron range (the mapper's KeyError)
        n0, n1 = core["neurons"]
        if n1 - n0 > 1:
            mid = (n0 + n1) // 2
            second = dict(core, neurons=[mid, n1])
            core["neurons"] = [n0, mid]
            cores.insert(cores.index(core) + 1, second)
            for i, c in enumerate(cores):
                c["id"] = i
    elif op == 1:
        core["group"] = int(rng.integers(0, 3))
    elif op == 2:
        placement["mesh"]["x"] = _pick(rng, [10**15, 2**31, 1])
        core["router"] = [_pick(rng, [10**15 - 1, 2**31 - 1, 0]), 0]
    elif op == 3 and placement["routes"]:
        route = _pick(rng, placement["routes"])
        route["hops"] = [_pick(rng, [10**12, 2**40, 0]), 0]
    elif op == 4:
        cores.reverse()
    elif op == 5:
        core["fan_in"] = [0, _pick(rng, [1, 2**40, core["fan_in"][1] + 1])]
    elif op == 6:
        placement["routes"] = []
    else:
        core["neurons"] = [core["neurons"][0], core["neurons"][1] + _pick(rng, [-1, 1, 10**20])]


def _doc_meta(rng, state):
    doc = state["doc"]
    key = _pick(rng, ["arrays", "arrays_sha256", "format", "format_version"])
    doc[key] = _pick(rng, ["../m.core.npz", ".", "", "m\x00.npz", "m.core.npz\n", "\ud800", "other.npz",
                           "A" * 64, "mtsnn-core", 1, True, 1.0, None])


def _doc_benign(rng, state):
    """A change the reader must accept (new neuron parameters, time steps, provenance): the
    network that comes out must still run identically on the reference and the simulator."""
    doc = state["doc"]
    layers = [layer for layer in doc.get("layers", [])
              if isinstance(layer, dict) and isinstance(layer.get("neuron"), dict)]
    op = int(rng.integers(4))
    if op == 0 and layers:
        neuron = _pick(rng, layers)["neuron"]
        neuron["theta_int"] = int(rng.integers(1, 5000))
        neuron["delta"] = int(rng.integers(0, 4097))
        neuron["smax"] = int(rng.integers(1, 32))
    elif op == 1:
        doc["timesteps"] = int(rng.integers(1, 9))
    elif op == 2 and isinstance(doc.get("provenance"), dict):
        doc["provenance"][_pick(rng, ["a", "\u00e9", "\x1b", "k" * 100])] = _pick(
            rng, [1.5, -0.0, 1e-300, None, "\ud800", [[], {}], {"deep": [[[[1]]]]}, 10**29])
    elif isinstance(doc.get("encoder"), dict):
        doc["encoder"]["smax"] = int(rng.integers(1, 32))


def _text_placeholder(rng, state):
    """Raw JSON text no json.dumps would write: deep nesting, huge integers, NaN, duplicates."""
    doc = state["doc"]
    targets = [v for p, v in _paths(doc) if isinstance(v, dict)]
    _pick(rng, targets)["@raw@"] = "@raw@"
    depth = _pick(rng, [63, 65, 500, 5000, 200_000])
    state["raw"] = _pick(rng, ["[" * depth + "]" * depth, "9" * _pick(rng, [31, 4301, 100_000]), "NaN", "Infinity",
                               "-Infinity", "1e999", '{"a": 1, "a": 2}', "1" * 30, "-" + "9" * 30, "1.5e308"])


def _npz_members(rng, state):
    """Re-pack the npz with one member changed (header, dtype, shape, data, or compression)."""
    members = members_of(state["npz"])
    index = int(rng.integers(len(members)))
    name, data = members[index]
    array = np.lib.format.read_array(io.BytesIO(data))
    op = int(rng.integers(9))
    if op == 0:  # another valid integer array of the right shape
        new = rng.integers(-3, 4, size=array.shape).astype(_pick(rng, ["<i8", "<i2", "|i1", "<u2"]))
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, new)
        data = buffer.getvalue()
    elif op == 1:
        data = npy_bytes({"descr": _pick(rng, ["<f8", ">i4", "|O", "<U2", "|b1", "<i8"]), "fortran_order": False,
                          "shape": array.shape}, array.astype("<i8").tobytes())
    elif op == 2:
        data = npy_bytes({"descr": "<i8", "fortran_order": False,
                          "shape": _pick(rng, [(10**12,), (10**6, 10**6), (), (0,), array.shape[::-1], (-1,)])},
                         array.astype("<i8").tobytes())
    elif op == 3:
        data = data[: int(rng.integers(len(data)))]
    elif op == 4:
        data = data[:6] + bytes([_pick(rng, [0, 2, 3, 255]), 0]) + data[8:]
    elif op == 5:
        data = data[:8] + _pick(rng, [b"\xff\xff", b"\x00\x00", b"\x10\x00"]) + data[10:]
    elif op == 6:  # extreme values (out of the layer's bit range)
        data = npy_bytes({"descr": "<i8", "fortran_order": False, "shape": array.shape},
                         np.full(array.shape, _pick(rng, [2**62, -2**40, 32767]), "<i8").tobytes())
    elif op == 7:
        data = npy_bytes({"descr": "<i8", "fortran_order": True, "shape": array.shape},
                         np.asfortranarray(array.astype("<i8")).tobytes(order="F"))
    else:
        data = data + b"\0" * int(rng.integers(1, 64))
    members[index] = (name, data)
    method = zipfile.ZIP_DEFLATED if rng.random() < 0.3 else zipfile.ZIP_STORED
    state["npz"] = zip_of(members, method)


def _npz_flags(rng, state):
    entries = central_entries(state["npz"])
    index = int(rng.integers(len(entries)))
    op = int(rng.integers(3))
    if op == 0:
        state["npz"] = patch_member(state["npz"], index, flags=_pick(rng, [0x1, 0x40, 0x20, 0x2000, 0x8, 0x800]),
                                    local=rng.random() < 0.5)
    elif op == 1:
        state["npz"] = patch_member(state["npz"], index, method=_pick(rng, [1, 6, 9, 12, 14, 93, 99, 8]),
                                    local=rng.random() < 0.5)
    else:
        state["npz"] = patch_member(state["npz"], index, size=_pick(rng, [0, 1, 2**31, 0xFFFFFFFF, 200]),
                                    local=rng.random() < 0.5)


def _npz_extra(rng, state):
    members = members_of(state["npz"])
    op = int(rng.integers(5))
    if op == 0:
        members.append(("readme.txt", b"hello"))
    elif op == 1:
        members.append(members[int(rng.integers(len(members)))])
    elif op == 2:
        payload, _ = state["bomb"]
        members.append(("junk.npy", payload, zipfile.ZIP_DEFLATED))
    elif op == 3:
        members.pop(int(rng.integers(len(members))))
    else:
        members.append(("x.npy", npy_bytes({"descr": "<i8", "fortran_order": False, "shape": (10**12,)})))
    state["npz"] = zip_of(members)


def _npz_bytes(rng, state):
    data = bytearray(state["npz"])
    op = int(rng.integers(5))
    if op == 0:
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
    elif op == 1:
        data = data[: int(rng.integers(len(data)))]
    elif op == 2:
        eocd = data.rfind(b"PK\x05\x06")
        struct.pack_into("<H", data, eocd + 10, _pick(rng, [0, 1, 65535, 4097]))
        struct.pack_into("<L", data, eocd + 12, _pick(rng, [0, 1, 2**20 + 1, 0xFFFFFFFF, 46]))
    elif op == 3:
        data = bytearray(rng.integers(0, 256, size=int(rng.integers(0, 600)), dtype=np.uint8).tobytes())
    else:
        data += b"trailing comment" * int(rng.integers(1, 5))
    state["npz"] = bytes(data)


def _text_bytes(rng, state):
    state["text_ops"].append(int(rng.integers(5)))


DOC_OPS = [_doc_set, _doc_int, _doc_delete, _doc_add, _doc_list, _doc_name, _doc_shapes, _doc_placement, _doc_meta,
           _text_placeholder]
NPZ_OPS = [_npz_members, _npz_flags, _npz_extra, _npz_bytes]
ALL_OPS = DOC_OPS * 3 + NPZ_OPS * 2 + [_text_bytes] + [_doc_benign] * 12


def _apply_text_ops(rng, text: bytes, ops) -> bytes:
    for op in ops:
        if op == 0 and text:
            text = text[: int(rng.integers(len(text)))]
        elif op == 1 and text:
            data = bytearray(text)
            for _ in range(int(rng.integers(1, 6))):
                data[int(rng.integers(len(data)))] = int(rng.integers(256))
            text = bytes(data)
        elif op == 2:
            text = b"\xef\xbb\xbf" + text
        elif op == 3:
            text = _pick(rng, [b"[]", b"null", b"1", b'"x"', b"{}", b"{\"format\": \"mtsnn-core\"}", b""])
        else:
            text = text + _pick(rng, [b" ", b"x", b"{}", b"\x00"])
    return text


@pytest.fixture(scope="module")
def fuzz_bases(tmp_path_factory, bomb_member):
    folder = tmp_path_factory.mktemp("bases")
    bases = []
    for name, net, target in (("plain", net_a(0), None), ("loihi", net_a(0), LOIHI),
                              ("split", net_b(1), SMALL_LOIHI), ("plain-b", net_b(1), None)):
        placement = map_network(net, target).placement() if target is not None else None
        json_path, npz_path = write_core(folder / name, net, placement=placement)
        doc = load_doc(json_path)
        doc["arrays"] = "f.core.npz"  # the fuzz loop writes every case as f.core.json + f.core.npz
        bases.append(Base(name, net, doc, npz_path.read_bytes(), target))
    return bases


def _consistent(desc, rng, base):
    """The accepted network runs identically on the reference and the simulator."""
    net = desc.network
    try:
        mapping = map_network(net, LOIHI)
    except InputError:
        return "unmappable"
    images = random_images(rng, 3, net.encoder.shape)
    ref = run_reference(net, images)
    sim = simulate_batch(mapping, images, record_spikes=True)
    if not np.array_equal(ref.logits, sim.logits):
        return "inconsistent"
    if set(ref.spikes) != set(sim.spikes) or any(not np.array_equal(ref.spikes[k], sim.spikes[k]) for k in ref.spikes):
        return "inconsistent"
    if desc.placement is not None and base.target is not None:
        try:
            mapping_from_placement(desc.placement, net, base.target)
        except ValueError:  # InputError / DesignRuleError / ValueError: a clean refusal
            pass
    return "consistent"


def _vm_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def test_mutation_fuzz(tmp_path, fuzz_bases, bomb_member, monkeypatch):
    cases = int(os.environ.get("MTSNN_FUZZ_CASES", "300"))
    seed = int(os.environ.get("MTSNN_FUZZ_SEED", "20240601"))
    hang_s = 10.0
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # the round-trip writes: no need to hit the disk
    counts = dict(tried=0, clean_errors=0, accepted_consistent=0, accepted_unmappable=0, crashes=0, hangs=0,
                  memory_blowups=0, dirty_messages=0, inconsistent=0, slowest_s=0.0)
    problems, messages = [], []
    json_path, npz_path = tmp_path / "f.core.json", tmp_path / "f.core.npz"
    limit_as = None
    if sys.platform.startswith("linux"):  # a hostile input must not be able to allocate gigabytes
        limit_as = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + 3 * 2**30, limit_as[1]))
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    started = time.monotonic()
    try:
        for case in range(cases):
            rng = np.random.default_rng([seed, case])
            base = fuzz_bases[int(rng.integers(len(fuzz_bases)))]
            state = dict(doc=copy.deepcopy(base.doc), npz=base.npz, raw=None, text_ops=[], bomb=bomb_member)
            pool = [_doc_benign, _doc_benign, _npz_members] if rng.random() < 0.25 else ALL_OPS
            ops = [pool[int(rng.integers(len(pool)))] for _ in range(int(rng.integers(1, 4)))]
            for op in ops:
                try:
                    op(rng, state)
                except Exception:  # noqa: BLE001 - the harness's own parsing of an already mutated input
                    pass  # an earlier mutation already broke what this one edits: keep the input as it is
            if rng.random() < 0.85 and isinstance(state["doc"], dict) and "arrays_sha256" in state["doc"]:
                state["doc"]["arrays_sha256"] = hashlib.sha256(state["npz"]).hexdigest()
            text = json.dumps(state["doc"], ensure_ascii=bool(rng.random() < 0.7))
            if state["raw"] is not None:
                text = text.replace('"@raw@": "@raw@"', f'"@raw@": {state["raw"]}', 1)
            data = _apply_text_ops(rng, text.encode("utf-8", "surrogatepass"), state["text_ops"])
            json_path.write_bytes(data)
            npz_path.write_bytes(state["npz"])
            counts["tried"] += 1
            what = f"case {case} ({base.name}: {', '.join(op.__name__ for op in ops)})"
            t0 = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, hang_s)
            try:
                try:
                    desc = read_core(json_path)
                except CoreFormatError as exc:
                    message = str(exc)
                    if "\n" in message or "\r" in message or not message.isprintable():
                        counts["dirty_messages"] += 1
                        problems.append(f"{what}: dirty message {message!r}")
                    else:
                        counts["clean_errors"] += 1
                        messages.append(message)
                    continue
                verdict = _consistent(desc, rng, base)
                counts[f"accepted_{verdict}" if verdict != "inconsistent" else "inconsistent"] += 1
                if verdict == "inconsistent":
                    problems.append(f"{what}: reference and simulator disagree")
                write_core(tmp_path / "again", desc.network, placement=desc.placement)  # no late writer failure
            except _Hang:
                counts["hangs"] += 1
                problems.append(f"{what}: more than {hang_s} s")
            except MemoryError:
                counts["memory_blowups"] += 1
                problems.append(f"{what}: MemoryError")
            except Exception as exc:  # noqa: BLE001 - any other exception is what this test hunts
                counts["crashes"] += 1
                problems.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                counts["slowest_s"] = max(counts["slowest_s"], round(time.monotonic() - t0, 3))
    finally:
        signal.signal(signal.SIGALRM, previous)
        if limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, limit_as)
    counts["seconds"] = round(time.monotonic() - started, 1)
    counts["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    summary = json.dumps(counts)
    print(f"\nmutation fuzz: {summary}")
    if os.environ.get("MTSNN_FUZZ_REPORT"):
        kinds = {}
        for message in messages:  # which checks refused: the text after the file name, numbers dropped
            kind = "".join(c for c in message.split(": ", 1)[-1][:48] if not c.isdigit())
            kinds[kind] = kinds.get(kind, 0) + 1
        top = dict(sorted(kinds.items(), key=lambda item: -item[1])[:80])
        Path(os.environ["MTSNN_FUZZ_REPORT"]).write_text(json.dumps(dict(counts, problems=problems[:50],
                                                                         refusals=top), indent=1))
    assert problems == [], problems[:20]
    assert counts["clean_errors"] > 0 and counts["accepted_consistent"] > 0
