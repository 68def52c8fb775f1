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
naming the spec or file and what was expected; that includes every ``OSError`` met while
looking at or reading the files (a folder or file without read permission, a folder where a
file was expected ...), reported with the path and the system's reason.

Limits (hostile or broken files cost bounded time and memory):

- IDX files: the header is read first (from the gzip stream for ``.gz`` files: 16 bytes for
  images, 8 for labels) and the exact payload size is computed from its dimensions; a payload
  above ``MAX_IDX_PAYLOAD_BYTES`` (2 GiB per file; MNIST's largest is 47 MB) is refused before
  anything else is read or inflated. A plain file's size is compared with it from the file
  system; otherwise exactly that many bytes are read (in chunks, so memory follows the data
  actually present) and the stream must end there (trailing data is counted up to 1 MiB).
  Nothing is ever read unbounded.
- CIFAR-10 batches: a file above ``MAX_CIFAR_BATCH_BYTES`` (256 MiB; a real batch is about
  31 MB) is refused before unpickling. The restricted unpickler never lets a pickle call
  ``numpy.ndarray`` itself, and its array-reconstruction entry point refuses any array larger
  than the file, so no allocation exceeds what the file could contain; the arrays' dtypes and
  shapes are checked as soon as the batch is loaded.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mtsnn.hw_model.errors import InputError, one_line

__all__ = ["DatasetError", "Split", "Dataset", "load_dataset", "dataset_name", "load_matching_dataset",
           "first_samples", "MAX_IDX_PAYLOAD_BYTES", "MAX_CIFAR_BATCH_BYTES"]

MAX_IDX_PAYLOAD_BYTES = 2**31  # per IDX file, after the header (MNIST's largest payload: 47 MB)
MAX_CIFAR_BATCH_BYTES = 256 * 2**20  # per pickled CIFAR-10 batch (a real one: about 31 MB)
_CHUNK = 1 << 24  # bytes read at a time
_TRAILING_COUNT_LIMIT = 1 << 20  # trailing bytes counted after an IDX payload before giving up


class DatasetError(InputError):
    """A data set could not be loaded; the message is one line, meant for the user.

    Every message goes through ``one_line``: paths or file contents holding control
    characters or terminal escapes are printed escaped."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(message, limit=1000), *args)


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
    """One printable line (whitespace collapsed, control characters escaped), at most 300 characters."""
    return one_line(text, limit=300)


def _os_reason(exc: OSError) -> str:
    return _one_line(exc.strerror or exc)


def _path_test(name: str, path: Path, test: Callable[[Path], bool]) -> bool:
    """``test(path)`` (exists / is_file / is_dir), an OSError (e.g. no permission to look into a
    folder) becoming a DatasetError naming the path."""
    try:
        return test(path)
    except OSError as exc:
        raise DatasetError(f"{name}: {path}: cannot read: {_os_reason(exc)}") from exc


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
        try:
            if name == "cifar10":
                return _load_cifar10(path)
            return _load_idx_dataset(name, path)
        except OSError as exc:  # a safety net: the readers turn the ones they meet into DatasetError
            where = exc.filename if exc.filename is not None else path
            raise DatasetError(f"{name}: {where}: cannot read: {_os_reason(exc)}") from exc
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
    try:
        path = Path(directory).expanduser()
    except RuntimeError as exc:  # "~user" with no such user
        raise DatasetError(f"{name}: directory {directory}: {_one_line(exc)}") from exc
    wanted = _CIFAR_EXPECTED_FILES if name == "cifar10" else f"expected {_IDX_EXPECTED}"
    if not _path_test(name, path, Path.exists):
        raise DatasetError(f"{name}: directory {path} does not exist: {wanted}")
    if not _path_test(name, path, Path.is_dir):
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
        if _path_test(name, candidate, Path.is_file):
            return candidate
    raise DatasetError(
        f"{name}: {directory / stem}(.gz) not found in {directory}: expected {_IDX_EXPECTED}"
    )


def _open_binary(name: str, path: Path):
    """The file opened for reading, through a gzip decoder when its name ends in ``.gz``."""
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise DatasetError(f"{name}: {path}: cannot read: {_os_reason(exc)}") from exc
    if path.suffix == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _read_up_to(stream, count: int) -> bytearray:
    """At most ``count`` bytes, fewer only where the stream ends; read in chunks, so memory
    follows the data actually present (never an unbounded read)."""
    data = bytearray()
    while len(data) < count:
        chunk = stream.read(min(count - len(data), _CHUNK))
        if not chunk:
            break
        data += chunk
    return data


def _count_rest(stream) -> int:
    """Bytes left in the stream, counted up to _TRAILING_COUNT_LIMIT + 1."""
    rest = 0
    while rest <= _TRAILING_COUNT_LIMIT:
        chunk = stream.read(min(_TRAILING_COUNT_LIMIT + 1 - rest, 1 << 16))
        if not chunk:
            break
        rest += len(chunk)
    return rest


def _read_idx(name: str, path: Path, magic: int, what: str) -> np.ndarray:
    """The uint8 payload of an IDX file shaped by its header, which is read and checked first."""
    stream, raw = _open_binary(name, path)
    try:
        with raw, stream:
            return _read_idx_stream(name, path, stream, raw, magic, what)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{name}: {path}: corrupt gzip stream: {_one_line(exc)}") from exc
    except OSError as exc:
        raise DatasetError(f"{name}: {path}: cannot read: {_os_reason(exc)}") from exc


def _read_idx_stream(name: str, path: Path, stream, raw, magic: int, what: str) -> np.ndarray:
    n_dims = magic & 0xFF
    header_size = 4 + 4 * n_dims
    header = _read_up_to(stream, header_size)
    if len(header) < 4:
        raise DatasetError(
            f"{name}: {path}: truncated: {len(header)} bytes, expected an IDX header "
            f"starting with magic 0x{magic:08x} ({what})"
        )
    found_magic = int.from_bytes(header[:4], "big")
    if found_magic != magic:
        raise DatasetError(
            f"{name}: {path}: bad magic 0x{found_magic:08x}, expected 0x{magic:08x} ({what})"
        )
    if len(header) < header_size:
        raise DatasetError(
            f"{name}: {path}: truncated: IDX header needs {header_size} bytes, found {len(header)}"
        )
    dims = tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    expected = math.prod(dims)
    says = f"header says {'x'.join(map(str, dims))} = {expected} bytes"
    if expected > MAX_IDX_PAYLOAD_BYTES:
        raise DatasetError(
            f"{name}: {path}: {says}, expected at most {MAX_IDX_PAYLOAD_BYTES} bytes per file"
        )
    if stream is raw:  # a plain file: its size says everything before any payload is read
        found = os.fstat(raw.fileno()).st_size - header_size
        if found != expected:
            problem = "truncated" if found < expected else "too long"
            raise DatasetError(f"{name}: {path}: {problem}: {says}, found {found}")
    payload = _read_up_to(stream, expected)
    if len(payload) < expected:
        raise DatasetError(f"{name}: {path}: truncated: {says}, found {len(payload)}")
    rest = _count_rest(stream)  # also makes gzip check its trailer (CRC, length)
    if rest:
        found = (f"{expected + rest}" if rest <= _TRAILING_COUNT_LIMIT
                 else f"more than {expected + _TRAILING_COUNT_LIMIT}")
        raise DatasetError(f"{name}: {path}: too long: {says}, found {found}")
    if dims[0] == 0:
        raise DatasetError(f"{name}: {path}: header says 0 items, expected at least one")
    if 0 in dims:
        raise DatasetError(f"{name}: {path}: header says {'x'.join(map(str, dims))}, expected sizes of at least 1")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _load_idx_images(name: str, path: Path) -> np.ndarray:
    images = _read_idx(name, path, IDX_IMAGES_MAGIC, "uint8 images")
    return images.reshape(images.shape[0], 1, images.shape[1], images.shape[2])


def _load_idx_labels(name: str, path: Path) -> np.ndarray:
    labels = _read_idx(name, path, IDX_LABELS_MAGIC, "uint8 labels")
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


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: it may be passed to ``_reconstruct`` (as every
    numpy pickle does) but not called, so a pickle cannot allocate an array of any shape."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayToken()


def _numpy_pickle_globals(budget: int) -> dict[tuple[str, str], Callable[..., Any]]:
    """The only globals a pickled uint8 ndarray refers to, resolved from numpy itself.

    ``_reconstruct`` lives in ``numpy.core.multiarray`` (numpy 1.x pickles, e.g. the real
    CIFAR batches) or ``numpy._core.multiarray`` (numpy 2.x); ``_frombuffer`` is what
    numpy emits for pickle protocol 5. All are taken from live objects, so neither the
    deprecated ``numpy.core`` module nor any name from the file is ever imported.
    ``_reconstruct`` is wrapped: it builds only plain ndarrays of at most ``budget`` bytes (the
    file's size; numpy itself always asks for an empty one and fills it from the file's bytes).
    """
    probe = np.zeros(1, dtype=np.uint8)
    reconstruct = probe.__reduce__()[0]
    frombuffer = probe.__reduce_ex__(5)[0]

    def bounded_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _NDARRAY:
            raise pickle.UnpicklingError(f"refusing to reconstruct a {type(subtype).__name__} (only numpy.ndarray)")
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims) or len(dims) > 32:
            raise pickle.UnpicklingError(f"refusing an array of shape {_one_line(repr(dims))[:80]}")
        nbytes = math.prod(dims) * np.dtype(dtype).itemsize
        if nbytes > budget:
            raise pickle.UnpicklingError(
                f"refusing to allocate an array of {nbytes} bytes from a {budget}-byte file")
        return reconstruct(np.ndarray, dims, dtype)

    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = bounded_reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except the few numpy arrays need; no array it
    builds may be larger than ``budget`` bytes (the file's size)."""

    def __init__(self, file, *, budget: int, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allowed = _numpy_pickle_globals(budget)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} (only numpy arrays are allowed)"
            ) from None


def _read_batch_file(name: str, path: Path) -> bytes:
    """The file's bytes, refused above MAX_CIFAR_BATCH_BYTES before anything is unpickled."""
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_CIFAR_BATCH_BYTES:
                raise DatasetError(
                    f"{name}: {path}: {size} bytes, expected at most {MAX_CIFAR_BATCH_BYTES} bytes for one "
                    "CIFAR-10 batch (a real batch is about 31 MB)")
            data = stream.read(MAX_CIFAR_BATCH_BYTES + 1)  # bytes as present (the size may have changed)
    except OSError as exc:
        raise DatasetError(f"{name}: {path}: cannot read: {_os_reason(exc)}") from exc
    if len(data) > MAX_CIFAR_BATCH_BYTES:
        raise DatasetError(f"{name}: {path}: more than {MAX_CIFAR_BATCH_BYTES} bytes, expected at most that "
                           "for one CIFAR-10 batch (a real batch is about 31 MB)")
    return data


def _unpickle_restricted(name: str, path: Path) -> Any:
    data = _read_batch_file(name, path)
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), budget=len(data), encoding="bytes").load()
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
    name = "cifar10"
    if not _path_test(name, directory / _CIFAR_TRAIN_BATCHES[0], Path.exists) and _path_test(name, nested, Path.is_dir):
        return nested
    return directory


def _find_cifar_file(name: str, directory: Path, file_name: str) -> Path:
    path = directory / file_name
    if not _path_test(name, path, Path.is_file):
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
