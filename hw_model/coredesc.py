"""The neuromorphic core description: ``NAME.core.json`` + ``NAME.core.npz``.

One writer (``write_core``) and one reader (``read_core``). The JSON holds the structure and
every scalar; the npz holds the integer arrays, referenced from the JSON by key. Readable with
numpy + json alone; ``hw_model/schema/core-v1.schema.json`` documents the JSON (JSON Schema).

- Versioned: ``format`` = "mtsnn-core", ``format_version`` = 1. The reader refuses other formats
  and newer versions; older versions would go through ``MIGRATIONS`` (none exist yet).
- Deterministic: the same network gives byte-identical files (sorted npz members, fixed zip
  timestamps, stored uncompressed; JSON with a fixed key order).
- Atomic: each file is written to a temporary file in the target folder, then renamed. The JSON
  (written last) records the SHA-256 of its npz, so a pair from two different writes (a crash
  between the two renames) is detected on reading instead of silently mixed.
- Checked: the reader validates every field (type, range, shape, dtype) and raises
  ``CoreFormatError`` with one line naming the file, the field, what was expected and found.
  The writer applies the same structural rules to what it is about to write, so it never
  writes a pair the reader refuses.

Limits: broken or hostile input is refused with ``CoreFormatError`` before any large
allocation or long computation. All are module constants.

- JSON file (``MAX_JSON_BYTES``, 64 MiB): strict UTF-8 JSON; arrays and objects nested at most
  ``MAX_JSON_DEPTH`` (64) deep; integer literals of at most ``MAX_INT_DIGITS`` (30) digits; no
  ``NaN`` / ``Infinity`` and no float literal that overflows to infinity, anywhere (provenance
  included); no duplicate key in an object.
- Keys: every object has exactly the keys the JSON Schema lists (unknown keys are refused
  wherever the schema says ``additionalProperties: false``; only the two ``provenance`` objects
  are free-form). Integers must be JSON integer literals (``2``, not ``2.0`` and not ``true``).
- Names (``NAME_PATTERN``): a layer name is 1..64 printable ASCII characters (space to ``~``,
  so no control character, escape sequence, surrogate or other non-ASCII character), unique
  within the network. An array key (``KEY_PATTERN``) is 1..128 such characters. ``arrays``
  (``FILE_NAME_PATTERN``) is a bare file name of 1..255 characters: no ``/`` or ``\\``, no
  control character, no surrogate, not ``.`` or ``..``.
- Sizes, from the JSON alone, before the npz is opened: at most ``MAX_LAYERS`` (1024) layers;
  shapes of 1..``MAX_DIMS`` (8) dimensions, each 1..``MAX_ELEMENTS``; the input image, every
  layer's input, neurons, weights and biases at most ``MAX_ELEMENTS`` (2**28) elements each,
  and the input plus all layers' neurons, weights and biases together at most ``MAX_ELEMENTS``.
- npz (``MAX_NPZ_BYTES``, 4 GiB): a zip archive whose central directory holds at most
  ``MAX_NPZ_MEMBERS`` (4096) members in at most ``MAX_ZIP_DIRECTORY_BYTES`` (1 MiB), checked
  from the end records before ``zipfile`` parses it; members named ``*.npy``, unique, not
  encrypted, stored or deflated. Only the members the JSON references are opened. For each,
  the declared uncompressed size is bounded first, then the npy header (format 1.0 or 2.0, at
  most ``MAX_NPY_HEADER_BYTES`` = 16 KiB) is read and checked: a plain little-endian (or
  single-byte) integer dtype, exactly the shape the JSON implies, and a declared size equal to
  header + data. Only then are exactly that many data bytes read (and the member's CRC-32
  checked by ``zipfile`` at its end).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import reprlib
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InputError, one_line
from .fileio import atomic_write_bytes
from .network import (
    ConvLayer,
    DenseLayer,
    InputEncoder,
    IntegerNetwork,
    LAYER_TYPES,
    NetworkError,
    NeuronParams,
    PoolLayer,
    conv_output_hw,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CoreFormatError",
    "CoreDescription",
    "write_core",
    "read_core",
    "core_paths",
    "network_to_document",
    "atomic_write_bytes",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_LAYERS",
    "MAX_DIMS",
    "MAX_ELEMENTS",
    "MAX_NPZ_BYTES",
    "MAX_NPZ_MEMBERS",
    "MAX_ZIP_DIRECTORY_BYTES",
    "MAX_NPY_HEADER_BYTES",
    "NAME_PATTERN",
    "KEY_PATTERN",
    "FILE_NAME_PATTERN",
    "SHA256_PATTERN",
]

FORMAT_NAME = "mtsnn-core"
FORMAT_VERSION = 1
# version -> function(document) -> document of version + 1
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

MAX_JSON_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 30
MAX_LAYERS = 1024
MAX_DIMS = 8
MAX_ELEMENTS = 2**28
MAX_NPZ_BYTES = 2**32
MAX_NPZ_MEMBERS = 4096
MAX_ZIP_DIRECTORY_BYTES = 2**20
MAX_NPY_HEADER_BYTES = 16 * 2**10
MAX_MESSAGE_CHARS = 1000

# Regular expressions shared with the JSON Schema (the schema holds these exact strings).
# ``(?![\s\S])`` is a true end of string in both Python and ECMA-262 regexes (``$`` would let a
# trailing newline through in Python's).
NAME_PATTERN = r"^[ -~]{1,64}(?![\s\S])"
KEY_PATTERN = r"^[ -~]{1,128}(?![\s\S])"
FILE_NAME_PATTERN = r"^[^/\\\u0000-\u001f\u007f\ud800-\udfff]{1,255}(?![\s\S])"
SHA256_PATTERN = r"^[0-9a-f]{64}(?![\s\S])"
_NAME_RE, _KEY_RE = re.compile(NAME_PATTERN), re.compile(KEY_PATTERN)
_FILE_NAME_RE, _SHA256_RE = re.compile(FILE_NAME_PATTERN), re.compile(SHA256_PATTERN)
_NAME_RULE = "1..64 printable ASCII characters (space to ~)"
_KEY_RULE = "1..128 printable ASCII characters (space to ~)"

# the keys of every closed object of the format (the JSON Schema's required = properties)
_TOP_KEYS = ("format", "format_version", "arrays", "arrays_sha256", "timesteps", "n_classes", "encoder", "layers",
             "provenance", "placement")
_ENCODER_KEYS = ("kind", "shape", "smax")
_NEURON_KEYS = ("theta_int", "delta", "smax", "acc_bits")
_ARRAY_REF_KEYS = ("array", "shape")
_COMMON_LAYER_KEYS = ("type", "name", "in_shape", "out_shape", "readout", "neuron", "provenance")
_LAYER_KEYS = {
    "conv": _COMMON_LAYER_KEYS + ("kernel", "stride", "padding", "weight_bits", "weight", "bias"),
    "pool": _COMMON_LAYER_KEYS + ("kernel", "stride"),
    "dense": _COMMON_LAYER_KEYS + ("weight_bits", "weight", "bias"),
}


class CoreFormatError(InputError):
    """A core description file is malformed; the message names file, field, expected, found.

    The message is always one printable line (``one_line``), whatever the file held."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(message, limit=MAX_MESSAGE_CHARS), *args)


@dataclass(frozen=True, eq=False)
class CoreDescription:
    network: IntegerNetwork
    placement: dict | None = None  # filled by hw_model's mapper when a target is chosen


def core_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``X.core.json`` -> (X.core.json, X.core.npz); accepts either name or the stem."""
    path = Path(path)
    name = path.name
    for suffix in (".json", ".npz"):
        if name.endswith(".core" + suffix):
            name = name[: -len(suffix)]
            break
    if not name.endswith(".core"):
        name += ".core"
    return path.with_name(name + ".json"), path.with_name(name + ".npz")


# ----------------------------------------------------------------------------- writing


def _storage_dtype(values: np.ndarray) -> np.dtype:
    """Smallest signed integer dtype that holds the values (keeps files small, exact)."""
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    raise AssertionError("int64 holds every int64")


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def _neuron_doc(p: NeuronParams) -> dict:
    return {"theta_int": p.theta_int, "delta": p.delta, "smax": p.smax, "acc_bits": p.acc_bits}


def _layer_doc(layer, arrays: dict[str, np.ndarray]) -> dict:
    doc: dict[str, Any] = {
        "type": layer.type_tag,
        "name": layer.name,
        "in_shape": list(layer.in_shape),
        "out_shape": list(layer.out_shape),
        "readout": layer.readout,
        "neuron": _neuron_doc(layer.neuron),
    }
    if isinstance(layer, PoolLayer):
        doc["kernel"] = layer.kernel
        doc["stride"] = layer.stride
    else:
        if isinstance(layer, ConvLayer):
            doc.update(kernel=layer.kernel, stride=layer.stride, padding=layer.padding)
        doc["weight_bits"] = layer.weight_bits
        for part in ("weight", "bias"):
            key = f"{layer.name}.{part}"
            values = getattr(layer, part)
            arrays[key] = values.astype(_storage_dtype(values))
            doc[part] = {"array": key, "shape": list(values.shape)}
    doc["provenance"] = layer.provenance
    return doc


def network_to_document(net: IntegerNetwork, arrays_name: str, placement: dict | None = None):
    """(JSON document, arrays) for a network; the document references arrays by key."""
    document, arrays, _ = _document_and_npz(net, arrays_name, placement)
    return document, arrays


def _document_and_npz(net: IntegerNetwork, arrays_name: str, placement: dict | None):
    arrays: dict[str, np.ndarray] = {}
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "arrays": arrays_name,
        "arrays_sha256": None,
        "timesteps": net.timesteps,
        "n_classes": net.n_classes,
        "encoder": {"kind": net.encoder.kind, "shape": list(net.encoder.shape), "smax": net.encoder.smax},
        "layers": [_layer_doc(layer, arrays) for layer in net.layers],
        "provenance": net.provenance,
        "placement": placement,
    }
    npz_bytes = _npz_bytes(arrays)
    document["arrays_sha256"] = hashlib.sha256(npz_bytes).hexdigest()
    return document, arrays, npz_bytes


def write_core(path: str | os.PathLike, net: IntegerNetwork, placement: dict | None = None) -> tuple[Path, Path]:
    """Write ``X.core.json`` and ``X.core.npz`` atomically. Returns both paths.

    The network part of the document is checked with the reader's rules first (names, sizes,
    nesting depth, integer literals): a network the reader would refuse raises
    ``CoreFormatError`` and nothing is written. The placement is stored as given (its checker,
    ``hw_model.placement.check_placement``, runs on reading)."""
    json_path, npz_path = core_paths(path)
    document, _, npz_bytes = _document_and_npz(net, npz_path.name, placement)
    reader = _Reader(json_path)
    _check_tree(reader, document)
    _check_keys(reader, document, _TOP_KEYS, "", "a core description")
    _check_file_name(reader, document, "arrays")
    _plan_network(reader, document)
    text = json.dumps(document, indent=2, allow_nan=False, sort_keys=True) + "\n"
    data = text.encode("utf-8")
    if len(data) > MAX_JSON_BYTES:
        raise CoreFormatError(f"{json_path}: (document): expected at most {MAX_JSON_BYTES} bytes of JSON, "
                              f"found {len(data)}")
    atomic_write_bytes(npz_path, npz_bytes)
    atomic_write_bytes(json_path, data)
    return json_path, npz_path


# ----------------------------------------------------------------------------- reading


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def _short(found: Any, limit: int = 80) -> str:
    """A bounded, printable, one-line rendering of any JSON value (strings as they are)."""
    text = found if isinstance(found, str) else _REPR.repr(found)
    return one_line(text[: 4 * limit], limit=limit)


class _Reader:
    """Field access with one-line errors: '<file>: <field>: expected <x>, found <y>'."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, field: str, expected: str, found: Any) -> CoreFormatError:
        return CoreFormatError(f"{one_line(self.path, 300)}: {one_line(field, 200)}: "
                               f"expected {one_line(expected, 300)}, found {_short(found)}")

    def get(self, obj: dict, key: str, field: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise self.fail(field, "a value (missing field)", "nothing")
        return obj[key]

    def integer(self, obj: dict, key: str, field: str, lo: int | None = None, hi: int | None = None) -> int:
        value = self.get(obj, key, field)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(field, "an integer", value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            wanted = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
            raise self.fail(field, wanted, value)
        return value

    def boolean(self, obj: dict, key: str, field: str) -> bool:
        value = self.get(obj, key, field)
        if not isinstance(value, bool):
            raise self.fail(field, "true or false", value)
        return value

    def shape(self, obj: dict, key: str, field: str, ndim: int | None = None) -> tuple[int, ...]:
        value = self.get(obj, key, field)
        ok = (isinstance(value, list) and 1 <= len(value) <= MAX_DIMS
              and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_ELEMENTS for d in value))
        if not ok or (ndim is not None and len(value) != ndim):
            count = "1 integer" if ndim == 1 else f"{ndim if ndim is not None else f'1..{MAX_DIMS}'} integers"
            raise self.fail(field, f"a list of {count} in 1..{MAX_ELEMENTS}", value)
        return tuple(value)

    def string(self, obj: dict, key: str, field: str) -> str:
        value = self.get(obj, key, field)
        if not isinstance(value, str) or not value:
            raise self.fail(field, "a non-empty string", value)
        return value

    def matching(self, obj: dict, key: str, field: str, pattern: re.Pattern, rule: str) -> str:
        value = self.get(obj, key, field)
        if not isinstance(value, str) or not pattern.search(value):
            raise self.fail(field, rule, value)
        return value

    def mapping(self, obj: dict, key: str, field: str) -> dict:
        value = self.get(obj, key, field)
        if not isinstance(value, dict):
            raise self.fail(field, "an object", value)
        return value


def _check_keys(reader: _Reader, obj: dict, keys: tuple, field: str, what: str) -> None:
    """``obj`` has exactly ``keys``: an unknown key or a missing one names the field."""
    prefix = f"{field}." if field else ""
    for key in obj:
        if key not in keys:
            raise reader.fail(f"{prefix}{_short(key, 60)}", f"no such field (not part of {what})", "an unknown key")
    for key in keys:
        if key not in obj:
            raise reader.fail(f"{prefix}{key}", "a value (missing field)", "nothing")


def _check_file_name(reader: _Reader, document: dict, key: str) -> str:
    name = reader.matching(document, key, key, _FILE_NAME_RE,
                           "a file name in the same folder (1..255 characters, no / or \\ or control character)")
    if name in (".", ".."):
        raise reader.fail(key, "a file name in the same folder", name)
    return name


class _Refused(ValueError):
    """A JSON construct refused while parsing (the message says what)."""


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer literal of {digits} digits (at most {MAX_INT_DIGITS} allowed)")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} (it overflows to infinity; only finite numbers are allowed)")
    return value


def _parse_constant(text: str) -> Any:
    raise _Refused(f"{text} (NaN and Infinity are not JSON numbers; only finite numbers are allowed)")


def _unique_keys(pairs: list) -> dict:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"the key {_short(key, 60)!s} twice in one object (keys must be unique)")
            seen.add(key)
    return document


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_int=_parse_int, parse_float=_parse_float,
                            parse_constant=_parse_constant, strict=True)


def _check_tree(reader: _Reader, document: Any) -> None:
    """Nesting at most MAX_JSON_DEPTH, finite numbers, short integers, string keys (iterative)."""
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list, tuple)):
            if depth > MAX_JSON_DEPTH:
                raise reader.fail("(document)", f"arrays and objects nested at most {MAX_JSON_DEPTH} deep",
                                  "deeper nesting")
            if isinstance(node, dict):
                for key in node:
                    if not isinstance(key, str):
                        raise reader.fail("(document)", "string keys", key)
                children = node.values()
            else:
                children = node
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(node, float) and not math.isfinite(node):
            raise reader.fail("(document)", "finite numbers only (no NaN or Infinity)", node)
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) >= 10**MAX_INT_DIGITS:
            raise reader.fail("(document)", f"integers of at most {MAX_INT_DIGITS} digits", "a longer integer")
        elif node is not None and not isinstance(node, (str, int, float)):  # what the writer cannot store
            raise reader.fail("(document)", "JSON values (objects, arrays, strings, numbers, true, false, null)",
                              f"a {type(node).__name__}")


def _read_regular_file(path: Path, limit: int, what: str) -> bytes:
    try:
        if not path.is_file():
            raise CoreFormatError(f"{path}: not found: expected {what}")
        with open(path, "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CoreFormatError(f"{path}: expected {what} (a regular file), found another kind of file")
            if info.st_size > limit:
                raise CoreFormatError(f"{path}: file size: expected at most {limit} bytes, found {info.st_size}")
            data = stream.read(limit + 1)
    except OSError as exc:
        raise CoreFormatError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:
        raise CoreFormatError(f"{path}: file size: expected at most {limit} bytes, found more")
    return data


def _load_json(path: Path) -> dict:
    data = _read_regular_file(path, MAX_JSON_BYTES, "a core description (.core.json)")
    reader = _Reader(path)
    try:
        document = _DECODER.decode(data.decode("utf-8"))
    except _Refused as exc:
        raise CoreFormatError(f"{path}: not valid JSON for a core description: found {exc}") from None
    except RecursionError:
        raise CoreFormatError(f"{path}: not valid JSON for a core description: arrays and objects nested deeper "
                              f"than {MAX_JSON_DEPTH} (found far deeper nesting)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CoreFormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CoreFormatError(f"{path}: (document): expected a JSON object, found {type(document).__name__}")
    _check_tree(reader, document)
    return document


def _migrate(reader: _Reader, document: dict) -> dict:
    name = document.get("format")
    if name != FORMAT_NAME:
        raise reader.fail("format", repr(FORMAT_NAME), name)
    version = reader.integer(document, "format_version", "format_version", 1)
    if version > FORMAT_VERSION:
        raise reader.fail("format_version", f"<= {FORMAT_VERSION} (this mtsnn reads up to v{FORMAT_VERSION})", version)
    while version < FORMAT_VERSION:
        if version not in MIGRATIONS:
            raise reader.fail("format_version", f"a version with a migration to v{FORMAT_VERSION}", version)
        document = MIGRATIONS[version](document)
        version += 1
    return document


# ----------------------------------------------------------------------------- the plan (JSON only)


@dataclass(frozen=True)
class _ArrayRef:
    field: str  # e.g. "layers[0] (conv1).weight"
    key: str  # npz key (member KEY.npy)
    shape: tuple  # the shape the layer's fields imply


@dataclass
class _LayerPlan:
    cls: type
    name: str
    kwargs: dict
    refs: dict = dataclass_field(default_factory=dict)  # part ("weight" / "bias") -> _ArrayRef
    elements: int = 0  # neurons + weights + biases


@dataclass
class _NetworkPlan:
    encoder: InputEncoder
    layers: list
    timesteps: int
    n_classes: int
    provenance: dict

    @property
    def refs(self) -> list:
        return [ref for plan in self.layers for ref in plan.refs.values()]


def _elements(reader: _Reader, field: str, shape: tuple, what: str) -> int:
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise reader.fail(field, f"at most {MAX_ELEMENTS} {what}", f"{list(shape)} = {count}")
    return count


def _neuron(reader: _Reader, doc: dict, field: str) -> NeuronParams:
    n = reader.mapping(doc, "neuron", field)
    _check_keys(reader, n, _NEURON_KEYS, field, "the neuron parameters")
    acc_bits = reader.integer(n, "acc_bits", f"{field}.acc_bits", 8, 32)
    return NeuronParams(
        theta_int=reader.integer(n, "theta_int", f"{field}.theta_int", 1, 2 ** (acc_bits - 1) - 1),
        delta=reader.integer(n, "delta", f"{field}.delta", 0, 4096),
        smax=reader.integer(n, "smax", f"{field}.smax", 1, 31),
        acc_bits=acc_bits,
    )


def _array_ref(reader: _Reader, layer_doc: dict, part: str, field: str, shape: tuple) -> _ArrayRef:
    ref = reader.mapping(layer_doc, part, field)
    _check_keys(reader, ref, _ARRAY_REF_KEYS, field, "an array reference")
    key = reader.matching(ref, "array", f"{field}.array", _KEY_RE, f"an npz key of {_KEY_RULE}")
    declared = reader.shape(ref, "shape", f"{field}.shape", len(shape))
    if declared != shape:
        raise reader.fail(f"{field}.shape", f"{list(shape)} (from the layer's shapes)", list(declared))
    return _ArrayRef(field, key, shape)


def _plan_layer(reader: _Reader, doc: Any, index: int) -> _LayerPlan:
    field = f"layers[{index}]"
    if not isinstance(doc, dict):
        raise reader.fail(field, "an object", doc)
    kind = reader.string(doc, "type", f"{field}.type")
    if kind not in LAYER_TYPES:
        raise reader.fail(f"{field}.type", f"one of {', '.join(LAYER_TYPES)}", kind)
    name = reader.matching(doc, "name", f"{field}.name", _NAME_RE, _NAME_RULE)
    field = f"layers[{index}] ({name})"
    _check_keys(reader, doc, _LAYER_KEYS[kind], field, f"a {kind} layer")
    spatial = kind != "dense"
    in_shape = reader.shape(doc, "in_shape", f"{field}.in_shape", 3 if spatial else None)
    out_shape = reader.shape(doc, "out_shape", f"{field}.out_shape", 3 if spatial else 1)
    _elements(reader, f"{field}.in_shape", in_shape, "input elements")
    kwargs = dict(
        name=name,
        in_shape=in_shape,
        readout=reader.boolean(doc, "readout", f"{field}.readout"),
        neuron=_neuron(reader, doc, f"{field}.neuron"),
        provenance=reader.mapping(doc, "provenance", f"{field}.provenance"),
    )
    refs: dict[str, _ArrayRef] = {}
    if kind == "pool":
        kernel = reader.integer(doc, "kernel", f"{field}.kernel", 1, 64)
        stride = reader.integer(doc, "stride", f"{field}.stride", 1, 64)
        if stride != kernel:
            raise reader.fail(f"{field}.stride", f"{kernel} (pool stride equals its kernel)", stride)
        c, h, w = in_shape
        if h < kernel or w < kernel:
            raise reader.fail(f"{field}.kernel", f"at most the input's height and width ({h}, {w})", kernel)
        expected_out, cls, weights = (c, h // kernel, w // kernel), PoolLayer, 0
        kwargs["kernel"] = kernel
    else:
        kwargs["weight_bits"] = reader.integer(doc, "weight_bits", f"{field}.weight_bits", 2, 16)
        outputs = out_shape[0]
        if kind == "conv":
            kernel = reader.integer(doc, "kernel", f"{field}.kernel", 1, 64)
            stride = reader.integer(doc, "stride", f"{field}.stride", 1, 64)
            padding = reader.integer(doc, "padding", f"{field}.padding", 0, kernel - 1)
            c, h, w = in_shape
            oh, ow = conv_output_hw(h, w, kernel, stride, padding)
            if oh < 1 or ow < 1:
                raise reader.fail(f"{field}.kernel", f"at most the padded input's height and width "
                                  f"({h + 2 * padding}, {w + 2 * padding})", kernel)
            expected_out, weight_shape, cls = (outputs, oh, ow), (outputs, c, kernel, kernel), ConvLayer
            kwargs.update(stride=stride, padding=padding)
        else:
            expected_out, weight_shape, cls = (outputs,), (outputs, math.prod(in_shape)), DenseLayer
        weights = _elements(reader, f"{field}.weight.shape", weight_shape, "weights")
        refs["weight"] = _array_ref(reader, doc, "weight", f"{field}.weight", weight_shape)
        refs["bias"] = _array_ref(reader, doc, "bias", f"{field}.bias", (outputs,))
    if out_shape != expected_out:
        raise reader.fail(f"{field}.out_shape", f"{list(expected_out)} (from in_shape and kernel)", list(out_shape))
    neurons = _elements(reader, f"{field}.out_shape", out_shape, "neurons")
    elements = neurons + weights + (out_shape[0] if refs else 0)
    return _LayerPlan(cls=cls, name=name, kwargs=kwargs, refs=refs, elements=elements)


def _plan_network(reader: _Reader, document: dict) -> _NetworkPlan:
    """Every JSON field of the network checked (types, ranges, keys, names, sizes); no npz yet."""
    enc = reader.mapping(document, "encoder", "encoder")
    _check_keys(reader, enc, _ENCODER_KEYS, "encoder", "the encoder")
    kind = reader.string(enc, "kind", "encoder.kind")
    if kind != "rate_count":
        raise reader.fail("encoder.kind", "'rate_count'", kind)
    shape = reader.shape(enc, "shape", "encoder.shape", 3)
    encoder = InputEncoder(shape=shape, smax=reader.integer(enc, "smax", "encoder.smax", 1, 31), kind=kind)
    total = _elements(reader, "encoder.shape", shape, "input elements")
    layer_docs = reader.get(document, "layers", "layers")
    if not isinstance(layer_docs, list) or not layer_docs or len(layer_docs) > MAX_LAYERS:
        found = f"a list of {len(layer_docs)}" if isinstance(layer_docs, list) else layer_docs
        raise reader.fail("layers", f"a list of 1..{MAX_LAYERS} layers", found)
    plans, names = [], set()
    for index, doc in enumerate(layer_docs):
        plan = _plan_layer(reader, doc, index)
        if plan.name in names:
            raise reader.fail(f"layers[{index}].name", "a name unique within the network", plan.name)
        names.add(plan.name)
        total += plan.elements
        if total > MAX_ELEMENTS:
            raise reader.fail(f"layers[{index}] ({plan.name})", f"at most {MAX_ELEMENTS} elements in all (input, "
                              "neurons, weights and biases of every layer)", f"{total} up to this layer")
        plans.append(plan)
    return _NetworkPlan(
        encoder=encoder,
        layers=plans,
        timesteps=reader.integer(document, "timesteps", "timesteps", 1, 64),
        n_classes=reader.integer(document, "n_classes", "n_classes", 1, MAX_ELEMENTS),
        provenance=reader.mapping(document, "provenance", "provenance"),
    )


# ----------------------------------------------------------------------------- the npz


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record (22 bytes)
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record (56 bytes)
_ZIP64_LOCATOR_SIZE = 20
_UNSUPPORTED_FLAGS = 0x1 | 0x20 | 0x40 | 0x2000  # encrypted, compressed patch, strong encryption, masked directory
_NPY_MAGIC = b"\x93NUMPY"


def _check_zip_directory(npz: _Reader, stream, size: int) -> None:
    """Bound the central directory from the end records, where ``zipfile`` will look for them."""
    if size < _EOCD.size:
        raise npz.fail("(archive)", "a zip archive (npz)", f"{size} bytes")
    stream.seek(size - _EOCD.size)
    tail = stream.read(_EOCD.size)
    if tail[:4] == b"PK\x05\x06" and tail[-2:] == b"\0\0":
        where, record = size - _EOCD.size, tail
    else:  # an archive comment: the last record signature in the last 64 KiB, as zipfile does
        start = max(size - _EOCD.size - 65535, 0)
        stream.seek(start)
        data = stream.read(size - start)
        pos = data.rfind(b"PK\x05\x06")
        if pos < 0 or len(data) - pos < _EOCD.size:
            raise npz.fail("(archive)", "a zip archive (npz)", "no end-of-central-directory record")
        where, record = start + pos, data[pos: pos + _EOCD.size]
    entries, directory = _EOCD.unpack(record)[4:6]
    if where >= _ZIP64_LOCATOR_SIZE + _ZIP64_EOCD.size:
        stream.seek(where - _ZIP64_LOCATOR_SIZE)
        if stream.read(4) == b"PK\x06\x07":
            stream.seek(where - _ZIP64_LOCATOR_SIZE - _ZIP64_EOCD.size)
            record64 = stream.read(_ZIP64_EOCD.size)
            if record64[:4] == b"PK\x06\x06":
                fields = _ZIP64_EOCD.unpack(record64)
                entries, directory = max(entries, fields[7]), max(directory, fields[8])
    if entries > MAX_NPZ_MEMBERS:
        raise npz.fail("(archive)", f"at most {MAX_NPZ_MEMBERS} members", entries)
    if directory > MAX_ZIP_DIRECTORY_BYTES:
        raise npz.fail("(archive)", f"a central directory of at most {MAX_ZIP_DIRECTORY_BYTES} bytes", directory)


def _check_members(npz: _Reader, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_NPZ_MEMBERS:
        raise npz.fail("(archive)", f"at most {MAX_NPZ_MEMBERS} members", len(infos))
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        where = f"member {_short(repr(name), 80)}"
        if not name.endswith(".npy"):
            raise npz.fail(where, "a .npy member (an npz holds only arrays)", name)
        if name in members:
            raise npz.fail(where, "unique member names", "the name twice")
        if info.flag_bits & _UNSUPPORTED_FLAGS:
            raise npz.fail(where, "an unencrypted member", f"general purpose flags 0x{info.flag_bits:04x}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise npz.fail(where, "compression 0 (stored) or 8 (deflated)", f"compression {info.compress_type}")
        members[name] = info
    return members


class _Short(Exception):
    """Fewer bytes than needed before the member ended."""


def _read_exact(stream, n: int) -> np.ndarray:
    """Exactly ``n`` bytes as a uint8 array; memory grows only as real data arrives."""
    buffer = np.empty(n, dtype=np.uint8)
    pos = 0
    while pos < n:
        chunk = stream.read(min(n - pos, 1 << 24))
        if not chunk:
            raise _Short(f"{pos} of {n} bytes")
        buffer[pos: pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        pos += len(chunk)
    return buffer


def _read_member(reader: _Reader, archive: zipfile.ZipFile, info: zipfile.ZipInfo, ref: _ArrayRef) -> np.ndarray:
    label = f"{ref.field} ({ref.key})"
    count = math.prod(ref.shape)
    largest = 12 + MAX_NPY_HEADER_BYTES + 8 * count
    if info.file_size > largest:
        raise reader.fail(label, f"an npy member of at most {largest} bytes (shape {list(ref.shape)})",
                          f"a declared size of {info.file_size} bytes")
    with archive.open(info) as member:
        try:
            prefix = _read_exact(member, 8).tobytes()
            if prefix[:6] != _NPY_MAGIC:
                raise reader.fail(label, "an npy array (magic \\x93NUMPY)", repr(prefix[:6]))
            version = (prefix[6], prefix[7])
            if version not in ((1, 0), (2, 0)):
                raise reader.fail(label, "npy format version 1.0 or 2.0", f"version {version[0]}.{version[1]}")
            length_bytes = _read_exact(member, 2 if version == (1, 0) else 4).tobytes()
            header_length = int.from_bytes(length_bytes, "little")
            if header_length > MAX_NPY_HEADER_BYTES:
                raise reader.fail(label, f"an npy header of at most {MAX_NPY_HEADER_BYTES} bytes",
                                  f"{header_length} bytes")
            header = _read_exact(member, header_length).tobytes()
        except _Short as exc:
            raise reader.fail(label, "a complete npy header", f"the member ends after {exc}") from None
        buffer = io.BytesIO(prefix + length_bytes + header)
        try:
            np.lib.format.read_magic(buffer)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran_order, dtype = read_header(buffer, max_header_size=MAX_NPY_HEADER_BYTES + 16)
        except Exception as exc:  # numpy's header parser: any failure means a malformed header
            raise reader.fail(label, "a valid npy header", f"{type(exc).__name__}: {exc}") from None
        plain = (dtype.kind in "iu" and dtype.names is None and dtype.subdtype is None
                 and dtype.newbyteorder("<") == dtype)
        if not plain:
            raise reader.fail(label, "an integer array (plain little-endian integer dtype)", f"dtype {dtype}")
        if tuple(shape) != ref.shape:
            raise reader.fail(label, f"shape {list(ref.shape)}", f"shape {list(shape)}")
        data_bytes = count * dtype.itemsize
        declared = len(prefix) + len(length_bytes) + header_length + data_bytes
        if info.file_size != declared:
            raise reader.fail(label, f"a member of {declared} bytes (npy header + {data_bytes} data bytes)",
                              f"a declared size of {info.file_size} bytes")
        try:
            data = _read_exact(member, data_bytes)
        except _Short as exc:
            raise reader.fail(label, f"{data_bytes} data bytes", f"the member ends after {exc}") from None
    values = data.view(dtype)
    return values.reshape(ref.shape, order="F" if fortran_order else "C")


def _sha256_of(stream) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _load_arrays(reader: _Reader, path: Path, sha256: str, refs: list) -> dict[str, np.ndarray]:
    """The arrays ``refs`` name, read from the npz with every size checked before reading."""
    npz = _Reader(path)
    try:
        if not path.is_file():
            raise CoreFormatError(f"{path}: not found: expected the core description's arrays (.core.npz)")
        stream = open(path, "rb")
    except OSError as exc:
        raise CoreFormatError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    with stream:
        try:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_NPZ_BYTES:
                raise npz.fail("file size", f"at most {MAX_NPZ_BYTES} bytes", size)
            found = _sha256_of(stream)
            if found != sha256:
                raise CoreFormatError(
                    f"{path}: arrays_sha256: expected {sha256} (recorded in the .core.json), found {found}: "
                    "the npz does not belong to this core description (modified, truncated or from another write)")
            _check_zip_directory(npz, stream, size)
            stream.seek(0)
            with zipfile.ZipFile(stream) as archive:
                members = _check_members(npz, archive)
                arrays: dict[str, np.ndarray] = {}
                for ref in refs:
                    info = members.get(ref.key + ".npy")
                    if info is None:
                        keys = sorted(name[: -len(".npy")] for name in members)
                        listed = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
                        raise reader.fail(f"{ref.field}.array", f"a key of the npz ({listed or 'none'})", ref.key)
                    if ref.key in arrays:  # one array referenced twice: the shapes must agree
                        if arrays[ref.key].shape != ref.shape:
                            raise reader.fail(f"{ref.field} ({ref.key})", f"shape {list(ref.shape)}",
                                              f"shape {list(arrays[ref.key].shape)}")
                        continue
                    arrays[ref.key] = _read_member(reader, archive, info, ref)
                return arrays
        except CoreFormatError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, zlib.error,
                NotImplementedError, RuntimeError, struct.error, OverflowError) as exc:
            raise CoreFormatError(f"{path}: unreadable npz (truncated or corrupt): {type(exc).__name__}: "
                                  f"{one_line(exc, 200)}") from None


# ----------------------------------------------------------------------------- read_core


def read_core(path: str | os.PathLike) -> CoreDescription:
    """Read and check a core description (either file name of the pair, or the stem).

    Every problem raises ``CoreFormatError`` (one line: file, field, expected, found); the
    limits in the module docstring bound the time and memory any input can cost."""
    try:
        json_path, _ = core_paths(path)
    except ValueError as exc:  # e.g. an empty path: no file name to derive the pair from
        raise CoreFormatError(f"{path}: expected the path of a core description (.core.json), found {exc}") from None
    reader = _Reader(json_path)
    document = _migrate(reader, _load_json(json_path))
    _check_keys(reader, document, _TOP_KEYS, "", "a core description")
    arrays_name = _check_file_name(reader, document, "arrays")
    sha256 = reader.matching(document, "arrays_sha256", "arrays_sha256", _SHA256_RE, "64 lowercase hex digits")
    try:
        plan = _plan_network(reader, document)
    except NetworkError as exc:
        raise CoreFormatError(f"{json_path}: {exc}") from None
    placement = document["placement"]
    if placement is not None and not isinstance(placement, dict):
        raise reader.fail("placement", "an object or null", placement)
    arrays = _load_arrays(reader, json_path.with_name(arrays_name), sha256, plan.refs)
    try:
        layers = [p.cls(**p.kwargs, **{part: arrays[ref.key] for part, ref in p.refs.items()}) for p in plan.layers]
        network = IntegerNetwork(encoder=plan.encoder, layers=tuple(layers), timesteps=plan.timesteps,
                                 n_classes=plan.n_classes, provenance=plan.provenance)
    except NetworkError as exc:
        raise CoreFormatError(f"{json_path}: {exc}") from None
    if placement is not None:
        from .placement import check_placement  # the mapper's section, checked by its owner

        try:
            check_placement(placement, network)
        except ValueError as exc:
            raise CoreFormatError(f"{json_path}: placement: {exc}") from None
    return CoreDescription(network=network, placement=placement)
