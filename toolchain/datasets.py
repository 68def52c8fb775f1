"""Data-set loading for training and evaluation (numpy + standard library + scikit-learn).

Every loader returns a :class:`Dataset` whose splits hold ``(N, C, H, W)`` uint8 images
(0..255, C-contiguous, read-only) and ``(N,)`` int64 labels (read-only). Nothing here
imports torch: the training code converts the arrays to tensors itself (copy them first,
e.g. ``torch.tensor(split.images)``, because the arrays are read-only).

Data sets, selected by a spec string passed to :func:`load_dataset`:

``None`` or ``"digits"`` (the embedded default)
    scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``): 1,797
    grey-scale 8x8 images, 10 classes, no download needed. The original values 0..16 are
    rescaled to uint8 with the integer formula ``(v * 255 + 8) // 16`` (0 -> 0, 16 -> 255)
    and shaped ``(N, 1, 8, 8)``. The split is fixed, seeded and stratified:
    ``train_test_split(images, labels, test_size=0.2, random_state=0, stratify=labels)``
    gives 1,437 training and 360 test images, identical on every call, with every class
    present in both splits in (nearly) the original proportions.

``"mnist:DIR"`` and ``"fashion-mnist:DIR"``
    The standard IDX files in ``DIR``: ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
    each either plain or gzip-compressed with a ``.gz`` suffix (the plain file wins when
    both exist). Headers are parsed and checked (magic number, dimensions, payload length,
    image/label counts, labels 0..9). Images come out as ``(N, 1, H, W)`` with ``H, W``
    from the header (28x28 for both data sets), 10 classes. The train/test split is the
    one the files define.

``"cifar10:DIR"``
    The python-pickle batches of ``cifar-10-batches-py``: ``data_batch_1`` ..
    ``data_batch_5`` (training, concatenated in that order) and ``test_batch``. ``DIR`` may
    be that directory or its parent. Each batch is a dict with ``b"data"`` (N x 3072 uint8:
    the R, G and B planes of a 32x32 image, each row-major) and ``b"labels"`` (N ints
    0..9). Images come out as ``(N, 3, 32, 32)``, 10 classes. Batches are read with a
    restricted unpickler that only resolves the numpy names an array needs, so a crafted
    file cannot run code.

Every problem with a spec or a file raises :class:`DatasetError` with a one-line message
naming the spec or file and what was expected.
"""

from __future__ import annotations

import gzip
import math
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mtsnn.hw_model.errors import InputError

__all__ = ["DatasetError", "Split", "Dataset", "load_dataset", "dataset_name", "load_matching_dataset",
           "first_samples"]


class DatasetError(InputError):
    """A data set could not be loaded; the message is one line, meant for the user."""


# --------------------------------------------------------------------------- containers


def _read_only(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, read-only view of ``array`` (the caller's array keeps its flags)."""
    view = np.ascontiguousarray(array).view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class Split:
    """One split of a data set: ``images`` (N, C, H, W) uint8 and ``labels`` (N,) int64.

    Both arrays are stored as C-contiguous read-only views.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DatasetError(f"Split images must be a (N, C, H, W) uint8 array, got {_describe(images)}")
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
            raise DatasetError(f"Split labels must be a (N,) int64 array, got {_describe(labels)}")
        if images.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"Split has {images.shape[0]} images but {labels.shape[0]} labels"
            )
        object.__setattr__(self, "images", _read_only(images))
        object.__setattr__(self, "labels", _read_only(labels))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A named data set: training and test splits, class count and per-image shape (C, H, W)."""

    name: str
    train: Split
    test: Split
    n_classes: int
    input_shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        for split_name, split in (("train", self.train), ("test", self.test)):
            if tuple(split.images.shape[1:]) != tuple(self.input_shape):
                raise DatasetError(
                    f"{self.name}: {split_name} images have shape {split.images.shape[1:]}, "
                    f"expected {tuple(self.input_shape)}"
                )


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _one_line(text: object) -> str:
    """Collapse any whitespace (newlines included) so wrapped messages stay on one line."""
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- spec parsing

_ACCEPTED_FORMS = "digits, mnist:DIR, fashion-mnist:DIR or cifar10:DIR"
_DIRECTORY_DATASETS = ("mnist", "fashion-mnist", "cifar10")
_N_CLASSES = 10  # digits, MNIST, Fashion-MNIST and CIFAR-10 all have ten classes


def load_dataset(spec: str | None) -> Dataset:
    """Load the data set named by ``spec``: ``None``/``"digits"``, ``"mnist:DIR"``,
    ``"fashion-mnist:DIR"`` or ``"cifar10:DIR"`` (see the module docstring)."""
    if spec is None:
        return _load_digits()
    if not isinstance(spec, str):
        raise DatasetError(
            f"dataset spec must be a string, got {type(spec).__name__}: expected {_ACCEPTED_FORMS}"
        )
    name, has_colon, directory = spec.partition(":")
    if name == "digits":
        if has_colon:
            raise DatasetError(
                f"dataset 'digits' is embedded and takes no directory, got {spec!r}: "
                f"expected {_ACCEPTED_FORMS}"
            )
        return _load_digits()
    if name in _DIRECTORY_DATASETS:
        if not directory:
            raise DatasetError(
                f"dataset {spec!r} needs a directory: expected {name}:DIR "
                f"(accepted forms: {_ACCEPTED_FORMS})"
            )
        path = _existing_directory(name, directory)
        if name == "cifar10":
            return _load_cifar10(path)
        return _load_idx_dataset(name, path)
    raise DatasetError(f"unknown dataset {spec!r}: expected {_ACCEPTED_FORMS}")


def dataset_name(spec: str | None) -> str:
    """The spec as recorded in checkpoints and exports: ``"digits"`` for the default."""
    return "digits" if spec in (None, "", "digits") else spec


def load_matching_dataset(spec: str | None, input_shape: tuple, n_classes: int, origin: str) -> Dataset:
    """``load_dataset(spec)``, checked to fit a network of ``input_shape`` and ``n_classes``."""
    dataset = load_dataset(None if spec in (None, "", "digits") else spec)
    if tuple(dataset.input_shape) != tuple(input_shape) or dataset.n_classes != n_classes:
        raise DatasetError(
            f"{origin}: dataset: expected inputs {tuple(input_shape)} and {n_classes} classes (the network's), "
            f"found {dataset_name(spec)} with {tuple(dataset.input_shape)} and {dataset.n_classes}"
        )
    return dataset


def first_samples(split: Split, samples: int | None) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The first ``samples`` images and labels of ``split`` (all when None), and a note when
    fewer exist than were asked for (the caller prints it: never a silent shortfall)."""
    if samples is None:
        return split.images, split.labels, None
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DatasetError(f"--samples: expected an integer >= 1, found {samples!r}")
    available = len(split)
    note = None
    if samples > available:
        note = f"--samples {samples} > the {available} test samples available: using all {available}"
    return split.images[:samples], split.labels[:samples], note


def _existing_directory(name: str, directory: str) -> Path:
    path = Path(directory).expanduser()
    wanted = _CIFAR_EXPECTED_FILES if name == "cifar10" else f"expected {_IDX_EXPECTED}"
    if not path.exists():
        raise DatasetError(f"{name}: directory {path} does not exist: {wanted}")
    if not path.is_dir():
        raise DatasetError(f"{name}: {path} is not a directory: {wanted}")
    return path


# --------------------------------------------------------------------------- digits

DIGITS_TEST_SIZE = 0.2
DIGITS_RANDOM_STATE = 0


def _digits_to_uint8(values: np.ndarray) -> np.ndarray:
    """Rescale digits' integer values 0..16 to 0..255 with ``(v * 255 + 8) // 16``."""
    as_int = values.astype(np.int64)
    return ((as_int * 255 + 8) // 16).astype(np.uint8)


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = _digits_to_uint8(bunch.images).reshape(-1, 1, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_images, test_images, train_labels, test_labels = train_test_split(
        images,
        labels,
        test_size=DIGITS_TEST_SIZE,
        random_state=DIGITS_RANDOM_STATE,
        stratify=labels,
    )
    return Dataset(
        name="digits",
        train=Split(train_images, train_labels),
        test=Split(test_images, test_labels),
        n_classes=10,
        input_shape=(1, 8, 8),
    )


# --------------------------------------------------------------------------- IDX (MNIST)

IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions (N, H, W)
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dimension (N,)
_IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_EXPECTED = ", ".join(f"{stem}[.gz]" for stem in _IDX_STEMS)


def _find_idx_file(name: str, directory: Path, stem: str) -> Path:
    """``DIR/stem`` if it is a file, else ``DIR/stem.gz``, else a DatasetError."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{name}: {directory / stem}(.gz) not found in {directory}: expected {_IDX_EXPECTED}"
    )


def _read_file_bytes(name: str, path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                return stream.read()
        return path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{name}: {path}: corrupt gzip stream: {_one_line(exc)}") from exc
    except OSError as exc:
        raise DatasetError(f"{name}: {path}: cannot read: {_one_line(exc)}") from exc


def _parse_idx(name: str, path: Path, data: bytes, magic: int, what: str) -> np.ndarray:
    """Check an IDX header against ``magic`` and return the uint8 payload shaped by its dims."""
    if len(data) < 4:
        raise DatasetError(
            f"{name}: {path}: truncated: {len(data)} bytes, expected an IDX header "
            f"starting with magic 0x{magic:08x} ({what})"
        )
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise DatasetError(
            f"{name}: {path}: bad magic 0x{found_magic:08x}, expected 0x{magic:08x} ({what})"
        )
    n_dims = magic & 0xFF
    header_size = 4 + 4 * n_dims
    if len(data) < header_size:
        raise DatasetError(
            f"{name}: {path}: truncated: IDX header needs {header_size} bytes, found {len(data)}"
        )
    dims = tuple(
        int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims)
    )
    expected = math.prod(dims)
    found = len(data) - header_size
    if found != expected:
        problem = "truncated" if found < expected else "too long"
        raise DatasetError(
            f"{name}: {path}: {problem}: header says {'x'.join(map(str, dims))} = "
            f"{expected} bytes, found {found}"
        )
    if dims[0] == 0:
        raise DatasetError(f"{name}: {path}: header says 0 items, expected at least one")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _load_idx_images(name: str, path: Path) -> np.ndarray:
    images = _parse_idx(name, path, _read_file_bytes(name, path), IDX_IMAGES_MAGIC, "uint8 images")
    return images.reshape(images.shape[0], 1, images.shape[1], images.shape[2])


def _load_idx_labels(name: str, path: Path) -> np.ndarray:
    labels = _parse_idx(name, path, _read_file_bytes(name, path), IDX_LABELS_MAGIC, "uint8 labels")
    highest = int(labels.max())
    if highest >= _N_CLASSES:
        raise DatasetError(
            f"{name}: {path}: label {highest} out of range, expected 0..{_N_CLASSES - 1}"
        )
    return labels.astype(np.int64)


def _load_idx_split(name: str, images_path: Path, labels_path: Path) -> Split:
    images = _load_idx_images(name, images_path)
    labels = _load_idx_labels(name, labels_path)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{name}: {images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels: expected the same count"
        )
    return Split(images, labels)


def _load_idx_dataset(name: str, directory: Path) -> Dataset:
    train_images, train_labels, test_images, test_labels = (
        _find_idx_file(name, directory, stem) for stem in _IDX_STEMS
    )
    train = _load_idx_split(name, train_images, train_labels)
    test = _load_idx_split(name, test_images, test_labels)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DatasetError(
            f"{name}: {test_images} has images of shape {test.images.shape[2:]}, expected "
            f"{train.images.shape[2:]} like {train_images}"
        )
    channels, height, width = train.images.shape[1:]
    return Dataset(
        name=name,
        train=train,
        test=test,
        n_classes=_N_CLASSES,
        input_shape=(int(channels), int(height), int(width)),
    )


# --------------------------------------------------------------------------- CIFAR-10

_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_SUBDIR = "cifar-10-batches-py"
_CIFAR_EXPECTED_FILES = (
    f"expected data_batch_1 .. data_batch_5 and test_batch "
    f"(the {_CIFAR_SUBDIR} layout, or its parent directory)"
)
_CIFAR_EXPECTED_CONTENT = (
    "expected a pickled dict with b'data' (N x 3072 uint8: R, G, B planes of 32x32) "
    "and b'labels' (N ints 0..9)"
)
_CIFAR_SHAPE = (3, 32, 32)
_CIFAR_ROW = 3 * 32 * 32


def _numpy_pickle_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The only globals a pickled uint8 ndarray refers to, resolved from numpy itself.

    ``_reconstruct`` lives in ``numpy.core.multiarray`` (numpy 1.x pickles, e.g. the real
    CIFAR batches) or ``numpy._core.multiarray`` (numpy 2.x); ``_frombuffer`` is what
    numpy emits for pickle protocol 5. All are taken from live objects, so neither the
    deprecated ``numpy.core`` module nor any name from the file is ever imported.
    """
    probe = np.zeros(1, dtype=np.uint8)
    reconstruct = probe.__reduce__()[0]
    frombuffer = probe.__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except the few numpy arrays need."""

    _allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} (only numpy arrays are allowed)"
            ) from None


def _unpickle_restricted(name: str, path: Path) -> Any:
    try:
        with path.open("rb") as stream:
            return _NumpyOnlyUnpickler(stream, encoding="bytes").load()
    except OSError as exc:
        raise DatasetError(f"{name}: {path}: cannot read: {_one_line(exc)}") from exc
    except Exception as exc:  # any failure while unpickling means a corrupt/foreign file
        raise DatasetError(
            f"{name}: {path}: cannot unpickle ({type(exc).__name__}: {_one_line(exc)}): "
            f"{_CIFAR_EXPECTED_CONTENT}"
        ) from exc


def _batch_entry(name: str, path: Path, batch: dict, key: str) -> Any:
    """``batch[b"key"]`` (or ``batch["key"]`` for pickles written with str keys)."""
    for candidate in (key.encode("ascii"), key):
        if candidate in batch:
            return batch[candidate]
    raise DatasetError(f"{name}: {path}: missing key b'{key}': {_CIFAR_EXPECTED_CONTENT}")


def _cifar_images(name: str, path: Path, data: Any) -> np.ndarray:
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _CIFAR_ROW
        or data.shape[0] == 0
    ):
        raise DatasetError(
            f"{name}: {path}: b'data' is a {_describe(data)}, expected an N x {_CIFAR_ROW} "
            f"uint8 array (R, G, B planes of 32x32)"
        )
    return data.reshape(data.shape[0], *_CIFAR_SHAPE)


def _cifar_labels(name: str, path: Path, raw: Any, count: int) -> np.ndarray:
    try:
        labels = np.asarray(raw)
    except Exception as exc:  # ragged or exotic objects
        raise DatasetError(
            f"{name}: {path}: b'labels' is not a list of ints: {_CIFAR_EXPECTED_CONTENT}"
        ) from exc
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{name}: {path}: b'labels' is a {_describe(labels)}, expected {count} ints 0..9"
        )
    if labels.shape[0] != count:
        raise DatasetError(
            f"{name}: {path}: {count} images but {labels.shape[0]} labels, expected the same count"
        )
    if labels.min() < 0 or labels.max() >= _N_CLASSES:
        raise DatasetError(
            f"{name}: {path}: labels range {labels.min()}..{labels.max()}, expected 0..9"
        )
    return labels.astype(np.int64)


def _load_cifar_batch(name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle_restricted(name, path)
    if not isinstance(batch, dict):
        raise DatasetError(
            f"{name}: {path}: holds a {type(batch).__name__}: {_CIFAR_EXPECTED_CONTENT}"
        )
    images = _cifar_images(name, path, _batch_entry(name, path, batch, "data"))
    labels = _cifar_labels(name, path, _batch_entry(name, path, batch, "labels"), images.shape[0])
    return images, labels


def _cifar_batches_directory(directory: Path) -> Path:
    """``DIR`` itself, or ``DIR/cifar-10-batches-py`` when DIR is its parent."""
    nested = directory / _CIFAR_SUBDIR
    if not (directory / _CIFAR_TRAIN_BATCHES[0]).exists() and nested.is_dir():
        return nested
    return directory


def _find_cifar_file(name: str, directory: Path, file_name: str) -> Path:
    path = directory / file_name
    if not path.is_file():
        raise DatasetError(f"{name}: {path} not found in {directory}: {_CIFAR_EXPECTED_FILES}")
    return path


def _load_cifar_split(name: str, paths: list[Path]) -> Split:
    batches = [_load_cifar_batch(name, path) for path in paths]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return Split(images, labels)


def _load_cifar10(directory: Path) -> Dataset:
    name = "cifar10"
    batches_dir = _cifar_batches_directory(directory)
    train_paths = [_find_cifar_file(name, batches_dir, f) for f in _CIFAR_TRAIN_BATCHES]
    test_path = _find_cifar_file(name, batches_dir, _CIFAR_TEST_BATCH)
    return Dataset(
        name=name,
        train=_load_cifar_split(name, train_paths),
        test=_load_cifar_split(name, [test_path]),
        n_classes=_N_CLASSES,
        input_shape=_CIFAR_SHAPE,
    )
