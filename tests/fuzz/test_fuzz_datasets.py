"""Data sets against broken and hostile files (toolchain/datasets.py).

- IDX (MNIST layout), plain and gzip: bytes flipped in the header and the payload, files cut
  and extended, dimensions rewritten (huge, zero, mismatched), magic numbers and labels changed,
  gzip streams corrupted, cut, concatenated and turned into small bombs, files replaced by
  folders, links and FIFOs, plain and .gz twins that disagree;
- CIFAR-10 batches: pickles flipped, cut and extended, and hand-built ones with the wrong
  types, dtypes, shapes, labels, keys, globals, reductions and nesting.

Every case must be a clean one-line ``DatasetError`` (an ``MtsnnError``) or load; a loaded data
set must hold exactly what an independent parse of the files says (images, labels, shapes).
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from fuzz_harness import Inconsistent, fuzz_cases, fuzz_seed
from mtsnn.toolchain.datasets import load_dataset

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x800 | array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _reference_idx(directory: Path):
    """An independent reading of the four IDX files as the loader should see them (None if invalid)."""
    arrays = {}
    for stem in IDX_STEMS:
        plain, packed = directory / stem, directory / f"{stem}.gz"
        if plain.is_file():
            data = plain.read_bytes()
        elif packed.is_file():
            try:
                data = gzip.decompress(packed.read_bytes())
            except (OSError, EOFError, zlib.error):
                return None
        else:
            return None
        n_dims = 3 if "images" in stem else 1
        if len(data) < 4 + 4 * n_dims or int.from_bytes(data[:4], "big") != 0x800 | n_dims:
            return None
        dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
        payload = data[4 + 4 * n_dims:]
        if len(payload) != int(np.prod(dims, dtype=object)) or 0 in dims:
            return None
        arrays[stem] = np.frombuffer(payload, np.uint8).reshape(dims)
    return arrays


def _check_idx(directory: Path) -> str:
    data = load_dataset(f"mnist:{directory}")
    expected = _reference_idx(directory)
    if expected is None:
        raise Inconsistent("loaded IDX files that an independent parse finds invalid")
    for split, (images, labels) in (("train", IDX_STEMS[:2]), ("test", IDX_STEMS[2:])):
        got = getattr(data, split)
        want_images = expected[images][:, None]
        if got.images.shape != want_images.shape or not np.array_equal(got.images, want_images):
            raise Inconsistent(f"{split} images differ from the files")
        if not np.array_equal(got.labels, expected[labels].astype(np.int64)) or got.labels.max() > 9:
            raise Inconsistent(f"{split} labels differ from the files or exceed 9")
    return "accepted"


# ----------------------------------------------------------------------------- IDX mutations


def _idx_dir(rng, directory: Path) -> None:
    h, w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    arrays = {IDX_STEMS[0]: rng.integers(0, 256, (12, h, w), dtype=np.uint8),
              IDX_STEMS[1]: rng.integers(0, 10, 12, dtype=np.uint8),
              IDX_STEMS[2]: rng.integers(0, 256, (5, h, w), dtype=np.uint8),
              IDX_STEMS[3]: rng.integers(0, 10, 5, dtype=np.uint8)}
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if rng.random() < 0.5:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (directory / stem).write_bytes(data)


def _idx_file(directory: Path, stem: str) -> Path:
    plain = directory / stem
    return plain if plain.exists() or plain.is_symlink() else directory / f"{stem}.gz"


def _raw(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _store(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def idx_mutation(rng, directory: Path) -> str:
    stem = _pick(rng, IDX_STEMS)
    path = _idx_file(directory, stem)
    kind = _pick(rng, ["flip", "flip header", "cut", "extend", "dims", "magic", "label", "gz corrupt", "gz cut",
                       "gz concat", "gz bomb", "gz trailing", "folder", "link", "fifo", "twin", "missing",
                       "swap dims", "empty"])
    if not path.is_file() or path.is_symlink():  # never read a FIFO left by an earlier mutation
        return f"skipped:{path.name}"
    data = _raw(path)
    if not data:  # emptied by an earlier mutation
        return f"skipped:{path.name}"
    if kind == "flip":
        data = bytearray(data)
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        _store(path, bytes(data))
    elif kind == "flip header":
        data = bytearray(data)
        data[int(rng.integers(min(16, len(data))))] ^= 1 << int(rng.integers(8))
        _store(path, bytes(data))
    elif kind == "cut":
        _store(path, data[: int(rng.integers(len(data)))])
    elif kind == "extend":
        _store(path, data + bytes(int(rng.integers(1, 3000))))
    elif kind == "dims":
        n_dims = 3 if "images" in stem else 1
        i = int(rng.integers(n_dims))
        value = _pick(rng, [0, 1, 2**31, 2**32 - 1, 65536, 46341, 10**9])
        data = data[: 4 + 4 * i] + value.to_bytes(4, "big") + data[8 + 4 * i:]
        _store(path, data)
    elif kind == "magic":
        _store(path, _pick(rng, [b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x00\x00\x0d\x03",
                                 b"\x00\x00\x08\x04", b"\x1f\x8b\x08\x00"]) + data[4:])
    elif kind == "label":
        if "labels" in stem and len(data) > 8:
            data = bytearray(data)
            data[8 + int(rng.integers(len(data) - 8))] = _pick(rng, [10, 255, 128])
            _store(path, bytes(data))
    elif kind.startswith("gz"):
        packed = gzip.compress(data, mtime=0)
        if kind == "gz corrupt":
            packed = bytearray(packed)
            packed[10 + int(rng.integers(len(packed) - 10))] ^= 0xFF
        elif kind == "gz cut":
            packed = packed[: int(rng.integers(len(packed)))]
        elif kind == "gz concat":
            packed = packed + gzip.compress(data[:7], mtime=0)
        elif kind == "gz bomb":  # a header claiming 2 GiB, then zeros that inflate far beyond the file
            compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
            head = data[:4] + (2**31 // 784).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 if "images" in stem \
                else data[:4] + (2**31 - 1).to_bytes(4, "big")
            packed = compressor.compress(head) + compressor.compress(bytes(64 << 20)) + compressor.flush()
        else:
            packed = packed + b"trailing garbage"
        if path.suffix != ".gz":
            path.unlink()
            path = path.with_name(path.name + ".gz")
        path.write_bytes(bytes(packed))
    elif kind == "folder":
        path.unlink()
        path.mkdir()
    elif kind == "link":
        path.unlink()
        path.symlink_to(_pick(rng, [directory / "nowhere", path, directory / IDX_STEMS[(IDX_STEMS.index(stem) + 2) % 4],
                                    Path("/proc/self/mem"), Path("/dev/zero")]))
    elif kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif kind == "twin":  # plain and .gz both present, disagreeing (the plain file wins)
        twin = directory / f"{stem}.gz" if path.suffix != ".gz" else directory / stem
        twin.write_bytes(gzip.compress(data[:-1], mtime=0) if twin.suffix == ".gz" else data[:-1])
    elif kind == "missing":
        path.unlink()
    elif kind == "swap dims":  # train and test images of different sizes
        if "images" in stem and len(data) >= 16:
            n, h, w = (int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(3))
            if h != w:
                _store(path, data[:4] + n.to_bytes(4, "big") + w.to_bytes(4, "big") + h.to_bytes(4, "big") + data[16:])
    else:
        _store(path, b"")
    return f"{kind}:{path.name}"


def test_idx_mutation_fuzz(fuzz, tmp_path):
    cases = fuzz_cases(200)
    seed = fuzz_seed()
    for case in range(cases):
        rng = np.random.default_rng([seed, 5, case])
        directory = tmp_path / f"idx{case}"
        _idx_dir(rng, directory)
        ops = []
        for _ in range(int(rng.integers(0, 3))):
            try:
                ops.append(idx_mutation(rng, directory))
            except (OSError, EOFError, zlib.error):  # an earlier mutation broke what this one reads
                pass
        fuzz.case(f"case {case} ({', '.join(ops) or 'none'})", lambda: _check_idx(directory))
        shutil.rmtree(directory, ignore_errors=True)
    fuzz.finish()


# ----------------------------------------------------------------------------- CIFAR-10


class _Reduce:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _batch(rng, n: int) -> dict:
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [int(v) for v in
                                                                            rng.integers(0, 10, n)]}


def _hostile_batch(rng, batch: dict):
    kind = int(rng.integers(18))
    n = len(batch[b"labels"])
    if kind == 0:
        batch[b"data"] = batch[b"data"].astype(_pick(rng, [np.int16, np.float32, np.int64, np.bool_]))
    elif kind == 1:
        batch[b"data"] = batch[b"data"].reshape(-1)[: _pick(rng, [3071, 3073, 6144, 0])].copy()
    elif kind == 2:
        batch[b"data"] = batch[b"data"].reshape(n, 3, 32, 32)
    elif kind == 3:
        batch[b"labels"] = _pick(rng, [[-1] * n, [10] * n, [2**70] * n, [1.5] * n, ["1"] * n, [None] * n, [[1]] * n,
                                       list(range(n + 1)), [], np.zeros(n, np.float64), np.zeros((n, 1), np.int64),
                                       [True] * n, b"\x00" * n])
    elif kind == 4:
        del batch[_pick(rng, [b"data", b"labels"])]
    elif kind == 5:
        batch = {k.decode(): v for k, v in batch.items()}  # str keys (accepted)
    elif kind == 6:
        batch = _pick(rng, [[batch], (batch[b"data"], batch[b"labels"]), "batch", 5, None])
    elif kind == 7:
        batch[b"data"] = _Reduce(os.system, "echo pwned")
    elif kind == 8:
        batch[b"data"] = _Reduce(eval, "1+1")
    elif kind == 9:  # an array pickle claiming a huge shape
        reconstruct = np.zeros(1, np.uint8).__reduce__()[0]
        batch[b"data"] = _Reduce(reconstruct, np.ndarray, (10**6, 3072), b"B")
    elif kind == 10:
        batch[b"data"] = np.asfortranarray(batch[b"data"])
    elif kind == 11:
        nested = []
        for _ in range(5000):
            nested = [nested]
        batch[b"labels"] = nested
    elif kind == 12:
        batch[b"data"] = batch[b"data"].view(np.int8)
    elif kind == 13:
        batch[b"data"] = np.ma.masked_array(batch[b"data"])
    elif kind == 14:
        batch[b"data"] = batch[b"data"][:, ::-1]  # non-contiguous view
    elif kind == 15:
        batch[b"data"] = batch[b"data"].astype(">u2").astype(np.uint8)  # same values, via big-endian
    elif kind == 16:
        batch[b"extra"] = _Reduce(print, "side effect")
    else:
        batch[b"labels"] = np.asarray(batch[b"labels"], dtype=_pick(rng, [np.uint8, np.int32, np.uint64]))
    return batch, kind


def _cifar_dir(rng, directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in CIFAR:
        batches[name] = _batch(rng, int(rng.integers(1, 4)))
        (directory / name).write_bytes(pickle.dumps(batches[name], protocol=int(rng.integers(2, 6))))
    return batches


class _NumpyUnpickler(pickle.Unpickler):
    """The test's own reading of a batch the loader accepted (numpy's array globals only)."""

    def find_class(self, module, name):
        if module.split(".")[0] == "numpy" and name in ("_reconstruct", "ndarray", "dtype", "_frombuffer"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def _reference_batch(path: Path) -> dict:
    import io

    batch = _NumpyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    return {(k.encode() if isinstance(k, str) else k): v for k, v in batch.items()}


def _check_cifar(directory: Path, batches: dict) -> str:
    data = load_dataset(f"cifar10:{directory}")
    folder = directory if (directory / CIFAR[0]).exists() else directory / "cifar-10-batches-py"
    batches = {name: _reference_batch(folder / name) for name in CIFAR}
    train = [batches[name] for name in CIFAR[:5]]
    want = np.concatenate([np.asarray(b[b"data"]).reshape(-1, 3, 32, 32) for b in train])
    if data.train.images.shape != want.shape or not np.array_equal(data.train.images, want):
        raise Inconsistent("train images differ from the batches")
    labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in train])
    if not np.array_equal(data.train.labels, labels):
        raise Inconsistent("train labels differ from the batches")
    test = np.asarray(batches["test_batch"][b"data"]).reshape(-1, 3, 32, 32)
    if not np.array_equal(data.test.images, test) or data.input_shape != (3, 32, 32):
        raise Inconsistent("test images differ from the batch")
    return "accepted"


def test_cifar_mutation_fuzz(fuzz, tmp_path):
    cases = fuzz_cases(200)
    seed = fuzz_seed()
    for case in range(cases):
        rng = np.random.default_rng([seed, 6, case])
        directory = tmp_path / f"c{case}" / "cifar-10-batches-py"
        batches = _cifar_dir(rng, directory)
        name = _pick(rng, CIFAR)
        path = directory / name
        what = "none"
        kind = int(rng.integers(4))
        if kind == 0:
            batch, hostile = _hostile_batch(rng, batches[name])
            try:
                path.write_bytes(pickle.dumps(batch, protocol=int(rng.integers(2, 6))))
            except (pickle.PicklingError, TypeError, AttributeError, RecursionError):
                continue
            batches[name] = batch if isinstance(batch, dict) else batches[name]
            if isinstance(batch, dict) and "data" in batch:
                batches[name] = {k.encode(): v for k, v in batch.items()}
            what = f"hostile {hostile}"
        elif kind == 1:
            data = bytearray(path.read_bytes())
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
            path.write_bytes(bytes(data))
            what = "flip"
        elif kind == 2:
            data = path.read_bytes()
            path.write_bytes(data[: int(rng.integers(len(data)))] if rng.random() < 0.5 else data + b"junk")
            what = "cut/extend"
        elif rng.random() < 0.5:
            path.unlink()
            _pick(rng, [lambda: path.mkdir(), lambda: os.mkfifo(path), lambda: path.symlink_to(path), lambda: None])()
            what = "not a file"
        root = directory.parent if rng.random() < 0.5 else directory
        fuzz.case(f"case {case} ({name}: {what})", lambda: _check_cifar(root, batches))
        shutil.rmtree(directory.parent, ignore_errors=True)
    fuzz.finish()


@pytest.mark.parametrize("spec", ["mnist", "mnist:", "cifar10:/proc/self", "fashion-mnist:/dev/null", "digits:x",
                                  "~nobody-here/x", "mnist:~nobody-here/x", "mnist:\x1b[2J", "cifar10:\ud800",
                                  "mnist:" + "x" * 5000, "x" * 5000, "", "\x00", "cifar10:/proc/self/fd/0"])
def test_hostile_specs_are_one_line_errors(spec):
    from mtsnn.hw_model.errors import MtsnnError

    with pytest.raises(MtsnnError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert "\n" not in message and message.isprintable() and len(message) <= 1000
