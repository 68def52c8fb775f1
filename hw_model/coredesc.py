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
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InputError
from .fileio import atomic_write_bytes, sha256_bytes
from .network import (
    ConvLayer,
    DenseLayer,
    InputEncoder,
    IntegerNetwork,
    LAYER_TYPES,
    NetworkError,
    NeuronParams,
    PoolLayer,
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
]

FORMAT_NAME = "mtsnn-core"
FORMAT_VERSION = 1
# version -> function(document) -> document of version + 1
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class CoreFormatError(InputError):
    """A core description file is malformed; the message names file, field, expected, found."""


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
    """Write ``X.core.json`` and ``X.core.npz`` atomically. Returns both paths."""
    json_path, npz_path = core_paths(path)
    document, _, npz_bytes = _document_and_npz(net, npz_path.name, placement)
    text = json.dumps(document, indent=2, allow_nan=False, sort_keys=True) + "\n"
    atomic_write_bytes(npz_path, npz_bytes)
    atomic_write_bytes(json_path, text.encode("utf-8"))
    return json_path, npz_path


# ----------------------------------------------------------------------------- reading


class _Reader:
    """Field access with one-line errors: '<file>: <field>: expected <x>, found <y>'."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, field: str, expected: str, found: Any) -> CoreFormatError:
        found_text = found if isinstance(found, str) else repr(found)
        found_text = found_text.replace("\r", "\\r").replace("\n", "\\n")
        if len(found_text) > 80:
            found_text = found_text[:77] + "..."
        return CoreFormatError(f"{self.path}: {field}: expected {expected}, found {found_text}")

    def get(self, obj: dict, key: str, field: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise self.fail(field, "a value (missing field)", "nothing")
        return obj[key]

    def integer(self, obj: dict, key: str, field: str, lo: int | None = None, hi: int | None = None) -> int:
        value = self.get(obj, key, field)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(field, "an integer", value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.fail(field, f"an integer in {lo}..{hi}", value)
        return value

    def shape(self, obj: dict, key: str, field: str, ndim: int | None = None) -> tuple[int, ...]:
        value = self.get(obj, key, field)
        ok = isinstance(value, list) and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value)
        if not ok or (ndim is not None and len(value) != ndim):
            raise self.fail(field, f"a list of {ndim or 'N'} positive integers", value)
        return tuple(value)

    def string(self, obj: dict, key: str, field: str) -> str:
        value = self.get(obj, key, field)
        if not isinstance(value, str) or not value:
            raise self.fail(field, "a non-empty string", value)
        return value

    def mapping(self, obj: dict, key: str, field: str) -> dict:
        value = self.get(obj, key, field)
        if not isinstance(value, dict):
            raise self.fail(field, "an object", value)
        return value


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise CoreFormatError(f"{path}: not found: expected a core description (.core.json)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CoreFormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CoreFormatError(f"{path}: (document): expected a JSON object, found {type(document).__name__}")
    return document


def _load_arrays(path: Path, sha256: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CoreFormatError(f"{path}: not found: expected the core description's arrays (.core.npz)")
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != sha256:
        raise CoreFormatError(f"{path}: arrays_sha256: expected {sha256} (recorded in the .core.json), found {found}: "
                              "the npz does not belong to this core description (modified, truncated or from another write)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CoreFormatError(f"{path}: unreadable npz (truncated or corrupt): {exc}") from None


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


def _array(reader: _Reader, layer_doc: dict, part: str, field: str, arrays: dict, shape: tuple) -> np.ndarray:
    ref = reader.mapping(layer_doc, part, field)
    key = reader.string(ref, "array", f"{field}.array")
    declared = reader.shape(ref, "shape", f"{field}.shape")
    if declared != shape:
        raise reader.fail(f"{field}.shape", f"{list(shape)} (from the layer's shapes)", list(declared))
    if key not in arrays:
        raise reader.fail(f"{field}.array", f"a key of the npz ({', '.join(sorted(arrays)) or 'none'})", key)
    values = arrays[key]
    if values.dtype.kind not in "iu":
        raise reader.fail(f"{field} ({key})", "an integer array", f"dtype {values.dtype}")
    if values.shape != shape:
        raise reader.fail(f"{field} ({key})", f"shape {list(shape)}", f"shape {list(values.shape)}")
    return values


def _neuron(reader: _Reader, doc: dict, field: str) -> NeuronParams:
    n = reader.mapping(doc, "neuron", field)
    acc_bits = reader.integer(n, "acc_bits", f"{field}.acc_bits", 8, 32)
    return NeuronParams(
        theta_int=reader.integer(n, "theta_int", f"{field}.theta_int", 1, 2 ** (acc_bits - 1) - 1),
        delta=reader.integer(n, "delta", f"{field}.delta", 0, 4096),
        smax=reader.integer(n, "smax", f"{field}.smax", 1, 31),
        acc_bits=acc_bits,
    )


def _layer(reader: _Reader, doc: Any, index: int, arrays: dict):
    field = f"layers[{index}]"
    if not isinstance(doc, dict):
        raise reader.fail(field, "an object", doc)
    kind = reader.string(doc, "type", f"{field}.type")
    if kind not in LAYER_TYPES:
        raise reader.fail(f"{field}.type", f"one of {', '.join(LAYER_TYPES)}", kind)
    name = reader.string(doc, "name", f"{field}.name")
    field = f"layers[{index}] ({name})"
    common = dict(
        name=name,
        in_shape=reader.shape(doc, "in_shape", f"{field}.in_shape"),
        neuron=_neuron(reader, doc, f"{field}.neuron"),
        readout=doc.get("readout"),
        provenance=reader.mapping(doc, "provenance", f"{field}.provenance"),
    )
    if not isinstance(common["readout"], bool):
        raise reader.fail(f"{field}.readout", "true or false", common["readout"])
    out_shape = reader.shape(doc, "out_shape", f"{field}.out_shape")
    if kind == "pool":
        kernel = reader.integer(doc, "kernel", f"{field}.kernel", 1, 64)
        stride = doc.get("stride", kernel)
        if stride != kernel:
            raise reader.fail(f"{field}.stride", f"{kernel} (pool stride equals its kernel)", stride)
        layer = PoolLayer(kernel=reader.integer(doc, "kernel", f"{field}.kernel", 1, 64), **common)
    else:
        weight_bits = reader.integer(doc, "weight_bits", f"{field}.weight_bits", 2, 16)
        if kind == "conv":
            kernel = reader.integer(doc, "kernel", f"{field}.kernel", 1, 64)
            in_c = common["in_shape"][0]
            weight_shape = (out_shape[0], in_c, kernel, kernel)
            layer_cls, extra = ConvLayer, dict(
                stride=reader.integer(doc, "stride", f"{field}.stride", 1, 64),
                padding=reader.integer(doc, "padding", f"{field}.padding", 0, kernel - 1),
            )
        else:
            fan_in = int(np.prod(common["in_shape"]))
            weight_shape = (out_shape[0], fan_in)
            layer_cls, extra = DenseLayer, {}
        weight = _array(reader, doc, "weight", f"{field}.weight", arrays, weight_shape)
        bias = _array(reader, doc, "bias", f"{field}.bias", arrays, (out_shape[0],))
        layer = layer_cls(weight=weight, bias=bias, weight_bits=weight_bits, **extra, **common)
    if tuple(layer.out_shape) != out_shape:
        raise reader.fail(f"{field}.out_shape", f"{list(layer.out_shape)} (from in_shape and kernel)", list(out_shape))
    return layer


def _network(reader: _Reader, document: dict, arrays: dict) -> IntegerNetwork:
    enc = reader.mapping(document, "encoder", "encoder")
    encoder = InputEncoder(
        shape=reader.shape(enc, "shape", "encoder.shape", 3),
        smax=reader.integer(enc, "smax", "encoder.smax", 1, 31),
        kind=reader.string(enc, "kind", "encoder.kind"),
    )
    layer_docs = reader.get(document, "layers", "layers")
    if not isinstance(layer_docs, list) or not layer_docs:
        raise reader.fail("layers", "a non-empty list", layer_docs)
    layers = [_layer(reader, doc, i, arrays) for i, doc in enumerate(layer_docs)]
    return IntegerNetwork(
        encoder=encoder,
        layers=tuple(layers),
        timesteps=reader.integer(document, "timesteps", "timesteps", 1, 64),
        n_classes=reader.integer(document, "n_classes", "n_classes", 1),
        provenance=reader.mapping(document, "provenance", "provenance"),
    )


def read_core(path: str | os.PathLike) -> CoreDescription:
    """Read and check a core description (either file name of the pair, or the stem)."""
    json_path, default_npz = core_paths(path)
    reader = _Reader(json_path)
    document = _migrate(reader, _load_json(json_path))
    arrays_name = reader.string(document, "arrays", "arrays")
    if Path(arrays_name).name != arrays_name:
        raise reader.fail("arrays", "a file name in the same folder", arrays_name)
    npz_path = json_path.with_name(arrays_name)
    sha256 = reader.string(document, "arrays_sha256", "arrays_sha256")
    arrays = _load_arrays(npz_path, sha256)
    try:
        network = _network(reader, document, arrays)
    except NetworkError as exc:
        raise CoreFormatError(f"{json_path}: {exc}") from None
    placement = document.get("placement")
    if placement is not None and not isinstance(placement, dict):
        raise reader.fail("placement", "an object or null", placement)
    if placement is not None:
        from .placement import check_placement  # the mapper's section, checked by its owner

        try:
            check_placement(placement, network)
        except ValueError as exc:
            raise CoreFormatError(f"{json_path}: placement: {exc}") from None
    return CoreDescription(network=network, placement=placement)
