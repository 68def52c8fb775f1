"""toolchain.datasets against broken and hostile files: bounded reads, bounded unpickling, and
every OSError turned into a one-line DatasetError naming the path."""

from __future__ import annotations

import builtins
import gzip
import os
import pickle
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import mtsnn.toolchain.datasets as datasets
from mtsnn.toolchain.datasets import DatasetError, load_dataset

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_header(magic: int, dims) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in dims)


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    return idx_header(0x800 | array.ndim, array.shape) + array.tobytes()


def make_idx_dir(directory: Path, compress: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": np.zeros((6, 5, 7), np.uint8),
        "train-labels-idx1-ubyte": np.arange(6, dtype=np.uint8),
        "t10k-images-idx3-ubyte": np.zeros((4, 5, 7), np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(4, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)


def gzip_of_zeros(prefix: bytes, zeros: int) -> bytes:
    """A gzip stream of ``prefix`` + ``zeros`` zero bytes, built incrementally (a small bomb)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(prefix)]
    block = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(bytes(zeros & ((1 << 20) - 1))))
    parts.append(compressor.flush())
    return b"".join(parts)


def error_for(spec: str) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message and message.isprintable(), message
    return message


@pytest.fixture()
def count_gzip_reads(monkeypatch):
    """Total bytes the loader pulls out of gzip streams."""
    total = [0]
    real_read = gzip.GzipFile.read

    def counting(self, size=-1):
        assert size is not None and size >= 0, "an unbounded read"
        data = real_read(self, size)
        total[0] += len(data)
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counting)
    return total


# --------------------------------------------------------------------------- 9: IDX headers first


def test_gzip_whose_header_claims_too_much_is_refused_before_inflating(tmp_path, count_gzip_reads):
    """The header (16 bytes) says 65536 x 65536 x 65536 images: refused from the header alone."""
    make_idx_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_of_zeros(idx_header(0x803, (65536, 65536, 65536)), 32 << 20))
    message = error_for(f"mnist:{tmp_path}")
    assert str(path) in message and f"at most {datasets.MAX_IDX_PAYLOAD_BYTES} bytes per file" in message
    assert count_gzip_reads[0] <= 16


def test_gzip_bomb_behind_a_small_header_reads_only_what_the_header_says(tmp_path, count_gzip_reads):
    """A 6 x 5 x 7 header followed by 48 MiB of inflated zeros: 210 bytes are read, then at most
    1 MiB of the rest is counted, never the whole stream."""
    make_idx_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_of_zeros(idx_header(0x803, (6, 5, 7)), 48 << 20))
    assert path.stat().st_size < (1 << 20)
    start = time.monotonic()
    message = error_for(f"mnist:{tmp_path}")
    assert "too long" in message and "found more than" in message and str(path) in message
    assert count_gzip_reads[0] <= 16 + 210 + (1 << 20) + 1
    assert time.monotonic() - start < 2.0


def test_gzip_with_a_little_trailing_data_reports_the_exact_length(tmp_path):
    make_idx_dir(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(4, dtype=np.uint8)) + b"\0\0\0"))
    assert error_for(f"mnist:{tmp_path}") == f"mnist: {path}: too long: header says 4 = 4 bytes, found 7"


def test_plain_file_size_is_checked_from_the_file_system(tmp_path, monkeypatch):
    """A plain file whose header claims more than the file holds is refused without reading the
    payload (a sparse 1 GiB file here: no time, no memory)."""
    make_idx_dir(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    with open(path, "wb") as f:
        f.write(idx_header(0x803, (60000, 28, 28)))
        f.truncate(1 << 30)
    message = error_for(f"mnist:{tmp_path}")
    assert message == (f"mnist: {path}: too long: header says 60000x28x28 = 47040000 bytes, "
                       f"found {(1 << 30) - 16}")


def test_plain_header_over_the_limit(tmp_path):
    make_idx_dir(tmp_path, compress=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_header(0x801, (2**32 - 1,)))
    message = error_for(f"mnist:{tmp_path}")
    assert f"header says {2**32 - 1} = {2**32 - 1} bytes, expected at most" in message


@pytest.mark.parametrize("dims", [(6, 0, 7), (6, 5, 0)])
def test_zero_image_sizes_are_refused(tmp_path, dims):
    make_idx_dir(tmp_path, compress=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_header(0x803, dims))
    assert "expected sizes of at least 1" in error_for(f"mnist:{tmp_path}")


# --------------------------------------------------------------------------- 10: CIFAR pickles


def make_cifar_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=4))


class _Reduce:
    """Pickles as ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


RECONSTRUCT = np.zeros(1, np.uint8).__reduce__()[0]


def test_oversized_batch_is_refused_before_unpickling(tmp_path, monkeypatch):
    make_cifar_dir(tmp_path)
    path = tmp_path / "data_batch_1"
    with open(path, "r+b") as f:
        f.truncate(datasets.MAX_CIFAR_BATCH_BYTES + 1)  # sparse
    monkeypatch.setattr(datasets._NumpyOnlyUnpickler, "load", lambda self: pytest.fail("unpickled"))
    message = error_for(f"cifar10:{tmp_path}")
    assert str(path) in message and f"at most {datasets.MAX_CIFAR_BATCH_BYTES} bytes" in message


@pytest.mark.parametrize("payload", [
    _Reduce(RECONSTRUCT, np.ndarray, (800_000, 3072), b"B"),  # 2.4 GB from a 200-byte file
    _Reduce(RECONSTRUCT, np.ndarray, (10**12,), b"B"),
    _Reduce(RECONSTRUCT, np.ndarray, (1,), np.dtype(("u1", (10**9,)))),
    _Reduce(np.ndarray, (800_000, 3072), "u1"),  # calling ndarray directly
    _Reduce(RECONSTRUCT, np.matrix, (0,), b"B"),
], ids=["reconstruct-2.4GB", "reconstruct-1e12", "huge-subarray-dtype", "ndarray-call", "ndarray-subclass"])
def test_crafted_array_pickles_cannot_allocate_more_than_the_file(tmp_path, payload):
    make_cifar_dir(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": payload, b"labels": [0]}, protocol=4))
    assert path.stat().st_size < 400
    start = time.monotonic()
    message = error_for(f"cifar10:{tmp_path}")
    assert message.startswith(f"cifar10: {path}: cannot unpickle")
    assert time.monotonic() - start < 1.0


def test_setstate_claiming_a_bigger_shape_than_its_bytes_is_refused(tmp_path):
    make_cifar_dir(tmp_path)
    state = (1, (800_000, 3072), np.dtype("u1"), False, b"\0" * 3072)

    class Built:
        def __reduce__(self):
            return RECONSTRUCT, (np.ndarray, (0,), b"B"), state

    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": Built(), b"labels": [0]}, protocol=4))
    assert error_for(f"cifar10:{tmp_path}").startswith(f"cifar10: {path}: cannot unpickle")


def test_real_layout_batches_still_load(tmp_path):
    make_cifar_dir(tmp_path)
    dataset = load_dataset(f"cifar10:{tmp_path}")
    assert dataset.train.images.shape == (5, 3, 32, 32)


# --------------------------------------------------------------------------- 11: OSError -> DatasetError


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), IsADirectoryError(21, "Is a directory"),
                                   OSError(5, "Input/output error")], ids=["permission", "directory", "io"])
@pytest.mark.parametrize("kind", ["mnist-gz", "mnist-plain", "cifar10"])
def test_errors_opening_a_file_name_the_file(tmp_path, monkeypatch, error, kind):
    if kind == "cifar10":
        make_cifar_dir(tmp_path)
        victim = tmp_path / "data_batch_3"
    else:
        make_idx_dir(tmp_path, compress=kind == "mnist-gz")
        victim = tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if kind == "mnist-gz" else ""))
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if Path(file) == victim:
            raise type(error)(error.errno, error.strerror, str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(datasets, "open", refusing_open, raising=False)
    message = error_for(f"{kind.split('-')[0]}:{tmp_path}")
    assert message == f"{kind.split('-')[0]}: {victim}: cannot read: {error.strerror}"


@pytest.mark.parametrize("method", ["exists", "is_dir", "is_file"])
@pytest.mark.parametrize("spec", ["mnist", "cifar10"])
def test_a_folder_that_cannot_be_searched_is_a_dataset_error(tmp_path, monkeypatch, method, spec):
    """Without execute permission on a folder, stat() on anything inside fails with EACCES,
    which Path.exists / is_file / is_dir raise (simulated: the tests run as root)."""
    (make_cifar_dir if spec == "cifar10" else make_idx_dir)(tmp_path)
    real = getattr(Path, method)

    def refusing(self, *args, **kwargs):
        if self == tmp_path or tmp_path in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, refusing)
    message = error_for(f"{spec}:{tmp_path}")
    assert str(tmp_path) in message and "cannot read: Permission denied" in message


def test_an_os_error_while_reading_mid_stream_is_a_dataset_error(tmp_path, monkeypatch):
    make_idx_dir(tmp_path)
    monkeypatch.setattr(gzip.GzipFile, "read", lambda self, size=-1: (_ for _ in ()).throw(OSError(5, "I/O error")))
    message = error_for(f"mnist:{tmp_path}")
    assert message == f"mnist: {tmp_path / 'train-images-idx3-ubyte.gz'}: cannot read: I/O error"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file; the monkeypatched tests cover it")
def test_real_unreadable_folder(tmp_path):  # pragma: no cover - runs only as a normal user
    make_idx_dir(tmp_path / "data")
    (tmp_path / "data").chmod(0)
    try:
        assert "Permission denied" in error_for(f"mnist:{tmp_path / 'data'}")
    finally:
        (tmp_path / "data").chmod(0o755)


def test_hostile_folder_names_are_escaped(tmp_path):
    folder = tmp_path / "x\x1b[2J\nname"
    message = error_for(f"mnist:{folder}")
    assert "\x1b" not in message and "does not exist" in message


def test_unknown_home_directory_is_a_dataset_error():
    assert "mnist" in error_for("mnist:~no_such_user_for_mtsnn_tests/data")
