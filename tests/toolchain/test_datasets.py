"""Tests for toolchain.datasets: embedded digits, IDX (MNIST) and CIFAR-10 pickle loading."""

from __future__ import annotations

import gzip
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from mtsnn.toolchain.datasets import Dataset, DatasetError, Split, load_dataset

MNIST_SUBSET = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist-subset"


# --------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array as an IDX file (magic 0x0000080<ndim>, big-endian dims)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x00000800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_file(path: Path, payload: bytes, compress: bool) -> Path:
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_idx_dir(
    directory: Path,
    n_train: int = 6,
    n_test: int = 4,
    height: int = 5,
    width: int = 7,
    compress: bool = True,
) -> dict[str, np.ndarray]:
    """Write the four MNIST IDX files with deterministic content; return the arrays written."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, height, width), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, height, width), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) + 3) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_file(directory / stem, idx_bytes(array), compress)
    return arrays


def cifar_batch(n: int, first_label: int) -> dict[bytes, object]:
    data = np.zeros((n, 3072), dtype=np.uint8)
    data[:, 1:] = (np.arange(3071) % 251).astype(np.uint8)  # recognisable filler
    labels = [(first_label + i) % 10 for i in range(n)]
    return {b"batch_label": b"test batch", b"data": data, b"labels": labels}


def make_cifar_dir(directory: Path, n: int = 2, protocol: int = 4) -> dict[str, dict]:
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    for index, name in enumerate(names):
        batch = cifar_batch(n, first_label=index)
        batch[b"data"][:, 0] = 10 * index + np.arange(n)  # R plane, pixel (0, 0)
        (directory / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches[name] = batch
    return batches


def error_for(spec: str | None) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(None)


def test_digits_shapes_dtypes_and_counts(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert digits.n_classes == 10
    assert digits.input_shape == (1, 8, 8)
    assert digits.train.images.shape == (1437, 1, 8, 8)
    assert digits.test.images.shape == (360, 1, 8, 8)
    assert digits.train.labels.shape == (1437,)
    assert digits.test.labels.shape == (360,)
    for split in (digits.train, digits.test):
        assert split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64
        assert split.images.flags["C_CONTIGUOUS"]


def test_digits_value_range_uses_full_uint8_scale(digits: Dataset) -> None:
    images = np.concatenate([digits.train.images, digits.test.images])
    assert images.min() == 0
    assert images.max() == 255
    # (v * 255 + 8) // 16 for v in 0..16 is the only set of values that can appear
    allowed = {(v * 255 + 8) // 16 for v in range(17)}
    assert set(np.unique(images).tolist()) <= allowed


def test_digits_matches_sklearn_source_values(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    source = load_digits()
    # every source image, rescaled, appears in exactly one split: compare sorted multisets
    expected = ((source.images.astype(np.int64) * 255 + 8) // 16).astype(np.uint8)
    ours = np.concatenate([digits.train.images, digits.test.images])[:, 0]
    key = lambda a: sorted(map(bytes, a))  # noqa: E731
    assert key(ours) == key(expected)


def test_digits_split_is_stratified(digits: Dataset) -> None:
    train_counts = np.bincount(digits.train.labels, minlength=10)
    test_counts = np.bincount(digits.test.labels, minlength=10)
    assert (test_counts > 0).all()
    assert (train_counts > 0).all()
    # each class's test share is close to 20 %
    share = test_counts / (train_counts + test_counts)
    assert np.all(np.abs(share - 0.2) < 0.02)


def test_digits_is_deterministic(digits: Dataset) -> None:
    again = load_dataset("digits")
    assert np.array_equal(digits.train.images, again.train.images)
    assert np.array_equal(digits.train.labels, again.train.labels)
    assert np.array_equal(digits.test.images, again.test.images)
    assert np.array_equal(digits.test.labels, again.test.labels)


def test_digits_arrays_are_read_only(digits: Dataset) -> None:
    for array in (digits.train.images, digits.train.labels, digits.test.images, digits.test.labels):
        assert not array.flags.writeable
        with pytest.raises(ValueError):
            array[0] = 0


def test_split_rejects_mismatched_counts() -> None:
    with pytest.raises(DatasetError, match="3 images but 2 labels"):
        Split(np.zeros((3, 1, 2, 2), np.uint8), np.zeros(2, np.int64))


def test_split_does_not_freeze_the_callers_array() -> None:
    images = np.zeros((2, 1, 2, 2), np.uint8)
    split = Split(images, np.zeros(2, np.int64))
    assert images.flags.writeable
    assert not split.images.flags.writeable


# --------------------------------------------------------------------------- real MNIST subset


@pytest.fixture(scope="module")
def mnist_subset() -> Dataset:
    if not MNIST_SUBSET.is_dir():
        pytest.skip(f"MNIST subset not present at {MNIST_SUBSET}")
    return load_dataset(f"mnist:{MNIST_SUBSET}")


def test_mnist_subset_counts_and_shapes(mnist_subset: Dataset) -> None:
    assert mnist_subset.name == "mnist"
    assert mnist_subset.n_classes == 10
    assert mnist_subset.input_shape == (1, 28, 28)
    assert mnist_subset.train.images.shape == (7000, 1, 28, 28)
    assert mnist_subset.test.images.shape == (1000, 1, 28, 28)
    assert mnist_subset.train.labels.shape == (7000,)
    assert mnist_subset.test.labels.shape == (1000,)
    assert mnist_subset.train.images.dtype == np.uint8
    assert mnist_subset.train.labels.dtype == np.int64


def test_mnist_subset_labels_and_pixels_are_plausible(mnist_subset: Dataset) -> None:
    for split in (mnist_subset.train, mnist_subset.test):
        assert set(np.unique(split.labels).tolist()) == set(range(10))
        assert 20 < float(split.images.mean()) < 60
        assert split.images.max() == 255
        assert not split.images.flags.writeable


# --------------------------------------------------------------------------- generated IDX files


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_idx_round_trip(tmp_path: Path, compress: bool) -> None:
    arrays = make_idx_dir(tmp_path, compress=compress)
    dataset = load_dataset(f"fashion-mnist:{tmp_path}")
    assert dataset.name == "fashion-mnist"
    assert dataset.input_shape == (1, 5, 7)  # taken from the header, not assumed 28x28
    assert dataset.n_classes == 10
    np.testing.assert_array_equal(dataset.train.images[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(dataset.train.labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(dataset.test.images[:, 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(dataset.test.labels, arrays["t10k-labels-idx1-ubyte"])
    assert dataset.train.labels.dtype == np.int64
    assert not dataset.train.images.flags.writeable


def test_idx_prefers_plain_file_over_gz(tmp_path: Path) -> None:
    make_idx_dir(tmp_path, compress=True)
    plain_labels = np.full(6, 9, dtype=np.uint8)
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(plain_labels), compress=False)
    dataset = load_dataset(f"mnist:{tmp_path}")
    np.testing.assert_array_equal(dataset.train.labels, plain_labels)


def test_idx_truncated_payload(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    images = np.zeros((6, 5, 7), np.uint8)
    path = write_file(tmp_path / "train-images-idx3-ubyte", idx_bytes(images)[:-10], True)
    message = error_for(f"mnist:{tmp_path}")
    assert message == f"mnist: {path}: truncated: header says 6x5x7 = 210 bytes, found 200"


def test_idx_payload_too_long(tmp_path: Path) -> None:
    make_idx_dir(tmp_path, compress=False)
    labels = np.zeros(4, np.uint8)
    path = write_file(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(labels) + b"\0\0", False)
    message = error_for(f"mnist:{tmp_path}")
    assert message == f"mnist: {path}: too long: header says 4 = 4 bytes, found 6"


def test_idx_truncated_header(tmp_path: Path) -> None:
    make_idx_dir(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((6, 5, 7), np.uint8))[:10])
    message = error_for(f"mnist:{tmp_path}")
    assert message.startswith(f"mnist: {path}: truncated")


def test_idx_bad_magic(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    labels_as_images = idx_bytes(np.zeros(6, np.uint8))  # a 1-D label file in the images slot
    path = write_file(tmp_path / "train-images-idx3-ubyte", labels_as_images, True)
    message = error_for(f"mnist:{tmp_path}")
    assert message == (
        f"mnist: {path}: bad magic 0x00000801, expected 0x00000803 (uint8 images)"
    )


def test_idx_wrong_dimension_count_is_rejected(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    four_d = idx_bytes(np.zeros((6, 1, 5, 7), np.uint8))
    write_file(tmp_path / "t10k-images-idx3-ubyte", four_d, True)
    assert "bad magic 0x00000804, expected 0x00000803" in error_for(f"mnist:{tmp_path}")


def test_idx_count_mismatch(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    labels_path = write_file(
        tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(5, np.uint8)), True
    )
    message = error_for(f"mnist:{tmp_path}")
    assert "has 6 images but" in message
    assert f"{labels_path} has 5 labels" in message


def test_idx_label_out_of_range(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    path = write_file(
        tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 12, 3], np.uint8)), True
    )
    message = error_for(f"mnist:{tmp_path}")
    assert str(path) in message
    assert "label 12 out of range, expected 0..9" in message


def test_idx_missing_file_names_path_and_expected_files(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    message = error_for(f"mnist:{tmp_path}")
    assert message == (
        f"mnist: {tmp_path / 't10k-labels-idx1-ubyte'}(.gz) not found in {tmp_path}: expected "
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
    )


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda good: good[: len(good) // 2],  # truncated stream -> EOFError
        lambda good: b"not gzip at all, just text",  # bad header -> BadGzipFile
        lambda good: good[:12] + bytes(b ^ 0xFF for b in good[12:-8]) + good[-8:],  # zlib.error
        lambda good: good[:-8] + b"\0" * 8,  # CRC mismatch
    ],
    ids=["truncated", "not-gzip", "deflate-garbage", "bad-crc"],
)
def test_idx_corrupt_gzip(tmp_path: Path, corrupt) -> None:
    make_idx_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(corrupt(path.read_bytes()))
    message = error_for(f"mnist:{tmp_path}")
    assert message.startswith(f"mnist: {path}: corrupt gzip stream")


def test_idx_nonexistent_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    message = error_for(f"mnist:{missing}")
    assert str(missing) in message
    assert "does not exist" in message


def test_idx_directory_that_is_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    message = error_for(f"fashion-mnist:{a_file}")
    assert message.startswith(f"fashion-mnist: {a_file} is not a directory")


@pytest.mark.parametrize("spec", ["mnist", "mnist:", "fashion-mnist", "cifar10"])
def test_directory_dataset_without_dir(spec: str) -> None:
    message = error_for(spec)
    assert repr(spec) in message
    assert "needs a directory" in message


@pytest.mark.parametrize("spec", ["foo", "MNIST:/x", "", "digits:/x", "cifar:/x"])
def test_unknown_or_malformed_spec(spec: str) -> None:
    message = error_for(spec)
    assert repr(spec) in message
    assert "digits, mnist:DIR, fashion-mnist:DIR or cifar10:DIR" in message


def test_unknown_dataset_message_exactly() -> None:
    assert error_for("foo") == (
        "unknown dataset 'foo': expected digits, mnist:DIR, fashion-mnist:DIR or cifar10:DIR"
    )


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


# --------------------------------------------------------------------------- generated CIFAR-10


def test_cifar_round_trip_and_plane_layout(tmp_path: Path) -> None:
    batches = make_cifar_dir(tmp_path, n=2)
    first = batches["data_batch_1"][b"data"]
    first[0, 0] = 200  # R plane, pixel (0, 0)
    first[0, 1024] = 100  # G plane, pixel (0, 0)
    first[0, 2048 + 32 + 5] = 77  # B plane, pixel (row 1, col 5)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batches["data_batch_1"], protocol=4))

    dataset = load_dataset(f"cifar10:{tmp_path}")
    assert dataset.name == "cifar10"
    assert dataset.n_classes == 10
    assert dataset.input_shape == (3, 32, 32)
    assert dataset.train.images.shape == (10, 3, 32, 32)
    assert dataset.test.images.shape == (2, 3, 32, 32)
    assert dataset.train.images.dtype == np.uint8
    assert dataset.train.labels.dtype == np.int64
    assert dataset.train.images[0, 0, 0, 0] == 200
    assert dataset.train.images[0, 1, 0, 0] == 100
    assert dataset.train.images[0, 2, 1, 5] == 77
    # batches are concatenated in order data_batch_1 .. data_batch_5
    assert dataset.train.images[:, 0, 0, 0].tolist() == [200, 1, 10, 11, 20, 21, 30, 31, 40, 41]
    expected_labels = [label for i in range(1, 6) for label in batches[f"data_batch_{i}"][b"labels"]]
    assert dataset.train.labels.tolist() == expected_labels
    assert dataset.test.labels.tolist() == batches["test_batch"][b"labels"]
    np.testing.assert_array_equal(
        dataset.test.images.reshape(2, 3072), batches["test_batch"][b"data"]
    )
    assert not dataset.train.images.flags.writeable
    assert dataset.train.images.flags["C_CONTIGUOUS"]


def test_cifar_accepts_parent_directory(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path / "cifar-10-batches-py", n=1)
    dataset = load_dataset(f"cifar10:{tmp_path}")
    assert dataset.train.images.shape == (5, 3, 32, 32)


def test_cifar_accepts_legacy_numpy_core_pickles(tmp_path: Path) -> None:
    """Real CIFAR batches were pickled by numpy 1.x: numpy.core.multiarray._reconstruct."""
    make_cifar_dir(tmp_path, n=1)
    batch = cifar_batch(3, first_label=7)
    raw = pickle.dumps(batch, protocol=3)  # protocol 3 names globals as text lines
    legacy = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in legacy
    (tmp_path / "test_batch").write_bytes(legacy)
    dataset = load_dataset(f"cifar10:{tmp_path}")
    assert dataset.test.labels.tolist() == [7, 8, 9]
    np.testing.assert_array_equal(dataset.test.images.reshape(3, 3072), batch[b"data"])


def test_cifar_accepts_protocol_5_pickles(tmp_path: Path) -> None:
    """numpy pickles arrays through _frombuffer under protocol 5; that must load too."""
    batches = make_cifar_dir(tmp_path, n=1, protocol=5)
    dataset = load_dataset(f"cifar10:{tmp_path}")
    np.testing.assert_array_equal(
        dataset.test.images.reshape(1, 3072), batches["test_batch"][b"data"]
    )


def test_cifar_python3_protocol_2_pickle_is_refused(tmp_path: Path) -> None:
    """Python 3 protocol-2 pickles encode bytes via _codecs.encode, which is not allowed
    (real Python 2 CIFAR batches never need it)."""
    make_cifar_dir(tmp_path, n=1, protocol=2)
    assert "refusing to load global _codecs.encode" in error_for(f"cifar10:{tmp_path}")


def test_cifar_missing_batch(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path, n=1)
    (tmp_path / "data_batch_4").unlink()
    message = error_for(f"cifar10:{tmp_path}")
    assert message.startswith(f"cifar10: {tmp_path / 'data_batch_4'} not found in {tmp_path}")
    assert "data_batch_1 .. data_batch_5 and test_batch" in message


def test_cifar_missing_key(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path, n=1)
    path = tmp_path / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}, protocol=4))
    message = error_for(f"cifar10:{tmp_path}")
    assert message.startswith(f"cifar10: {path}: missing key b'labels'")


def test_cifar_wrong_data_shape(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path, n=1)
    path = tmp_path / "test_batch"
    bad = {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}
    path.write_bytes(pickle.dumps(bad, protocol=4))
    message = error_for(f"cifar10:{tmp_path}")
    assert str(path) in message
    assert "(2, 1024)" in message
    assert "N x 3072 uint8" in message


def test_cifar_label_count_mismatch(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path, n=1)
    path = tmp_path / "test_batch"
    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}
    path.write_bytes(pickle.dumps(bad, protocol=4))
    assert "2 images but 1 labels" in error_for(f"cifar10:{tmp_path}")


def test_cifar_garbage_file(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path, n=1)
    path = tmp_path / "data_batch_5"
    path.write_bytes(b"\x80\x04this is not a pickle")
    message = error_for(f"cifar10:{tmp_path}")
    assert message.startswith(f"cifar10: {path}: cannot unpickle")


class _RunsShellCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_cifar_malicious_pickle_is_rejected_without_running(tmp_path: Path) -> None:
    make_cifar_dir(tmp_path, n=1)
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_3"
    payload = {b"data": _RunsShellCommand(f"touch {marker}"), b"labels": [0]}
    path.write_bytes(pickle.dumps(payload, protocol=4))
    message = error_for(f"cifar10:{tmp_path}")
    assert message.startswith(f"cifar10: {path}: cannot unpickle")
    assert re.search(r"refusing to load global (posix|nt|os)\.system", message)
    assert not marker.exists()


def test_cifar_rejects_other_harmless_looking_globals(tmp_path: Path) -> None:
    from collections import OrderedDict

    make_cifar_dir(tmp_path, n=1)
    path = tmp_path / "test_batch"
    batch = OrderedDict(cifar_batch(1, first_label=0))
    path.write_bytes(pickle.dumps(batch, protocol=4))
    assert "refusing to load global collections.OrderedDict" in error_for(f"cifar10:{tmp_path}")
