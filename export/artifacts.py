"""The files of one export, tied together: export id, checkpoint digest, and a manifest.

An export of ``model.pt`` into ``OUT/`` writes::

    OUT/model.onnx                       ONNX (metadata: export_id, checkpoint_sha256)
    OUT/model.core.json + .core.npz      core description (provenance: export_id, checkpoint_sha256)
    OUT/model.golden.npz                 with --golden N (member ``export_id``)
    OUT/model.export.json                the manifest and report, written LAST

The manifest (``format`` "mtsnn-export") records the export id, the SHA-256 of the checkpoint
the export came from, and the SHA-256 of every other file. Every reader of an export folder
checks it (``verify_export``): a file modified after the export, a set left mixed by a kill
between two renames, or two concurrent exports into one folder are refused, never silently
used. Exports into one folder also take an exclusive lock on it (``export_lock``), so two
concurrent exports run one after the other.

The export id is deterministic: the SHA-256 of the checkpoint's digest and the export's
parameters, so the same export of the same checkpoint gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mtsnn.hw_model.errors import one_line
from mtsnn.hw_model.fileio import atomic_write_bytes, sha256_bytes, sha256_file
from .errors import ExportError

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "MANIFEST_SUFFIX",
    "ExportPaths",
    "ExportManifest",
    "export_id_for",
    "export_lock",
    "write_manifest",
    "read_manifest",
    "verify_export",
    "find_export",
    "manifest_beside_core",
]

EXPORT_FORMAT = "mtsnn-export"
EXPORT_VERSION = 1
MANIFEST_SUFFIX = ".export.json"
MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True)
class ExportPaths:
    """Where the files of export ``stem`` live in ``folder``."""

    folder: Path
    stem: str

    @property
    def onnx(self) -> Path:
        return self.folder / f"{self.stem}.onnx"

    @property
    def core_json(self) -> Path:
        return self.folder / f"{self.stem}.core.json"

    @property
    def core_npz(self) -> Path:
        return self.folder / f"{self.stem}.core.npz"

    @property
    def golden(self) -> Path:
        return self.folder / f"{self.stem}.golden.npz"

    @property
    def nir(self) -> Path:
        return self.folder / f"{self.stem}.nir"

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.stem}{MANIFEST_SUFFIX}"

    @classmethod
    def for_checkpoint(cls, checkpoint: str | os.PathLike, folder: str | os.PathLike | None) -> "ExportPaths":
        checkpoint = Path(checkpoint)
        return cls(Path(folder) if folder else checkpoint.parent, checkpoint.stem)


def _error(text: str) -> ExportError:
    """An ExportError of one printable line (paths and names from files may hold anything)."""
    return ExportError(one_line(text, 1000))


def export_id_for(checkpoint_sha256: str, parameters: dict) -> str:
    """A 32-hex-digit id that names one export: the checkpoint's digest plus the parameters."""
    text = json.dumps({"checkpoint_sha256": checkpoint_sha256, "parameters": parameters}, sort_keys=True)
    return sha256_bytes(text.encode("utf-8"))[:32]


@contextlib.contextmanager
def export_lock(folder: Path):
    """An exclusive advisory lock on ``folder`` for as long as the block runs (Linux/macOS flock)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def write_manifest(paths: ExportPaths, export_id: str, checkpoint_sha256: str, files: list[Path],
                   report: dict) -> Path:
    """Write ``STEM.export.json`` last: the report plus the digest of every file of the export."""
    document = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "export_id": export_id,
        "checkpoint_sha256": checkpoint_sha256,
        "files": {path.name: sha256_file(path) for path in files},
        **report,
    }
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(paths.manifest, text.encode("utf-8"))
    return paths.manifest


@dataclass(frozen=True)
class ExportManifest:
    """A checked ``STEM.export.json``: the export id, the checkpoint digest, the file digests."""

    path: Path
    export_id: str
    checkpoint_sha256: str
    files: dict  # file name (in the same folder) -> hex SHA-256
    document: dict

    @property
    def paths(self) -> ExportPaths:
        return ExportPaths(self.path.parent, self.path.name[: -len(MANIFEST_SUFFIX)])

    @property
    def dataset(self) -> str | None:
        value = self.document.get("dataset")
        return value if isinstance(value, str) else None


def _is_hex(value, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


def read_manifest(path: str | os.PathLike) -> ExportManifest:
    """Read and check an export manifest's structure (not yet the files: ``verify_export``)."""
    path = Path(path)
    if not path.is_file():
        raise _error(f"{path}: not found: expected the manifest written last by mtsnn-export")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise _error(f"{path}: size: expected at most {MAX_MANIFEST_BYTES} bytes, found {path.stat().st_size}")
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _error(f"{path}: expected a JSON export manifest, found unreadable content "
                          f"({one_line(exc, 120)})") from None

    def fail(field: str, expected: str, found) -> ExportError:
        return _error(f"{path}: {field}: expected {expected}, found {one_line(repr(found), 80)}")

    if not isinstance(document, dict):
        raise fail("(document)", "a JSON object", type(document).__name__)
    if document.get("format") != EXPORT_FORMAT:
        raise fail("format", f"{EXPORT_FORMAT!r} (an export by mtsnn >= 0.2; re-export the checkpoint)",
                   document.get("format"))
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > EXPORT_VERSION or version < 1:
        raise fail("format_version", f"1..{EXPORT_VERSION}", version)
    if not _is_hex(document.get("export_id"), 32):
        raise fail("export_id", "32 hex digits", document.get("export_id"))
    if not _is_hex(document.get("checkpoint_sha256"), 64):
        raise fail("checkpoint_sha256", "64 hex digits", document.get("checkpoint_sha256"))
    files = document.get("files")
    if not isinstance(files, dict) or not files:
        raise fail("files", "an object of file name -> SHA-256", files)
    for name, digest in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise fail("files", "plain file names in the manifest's folder", name)
        try:
            too_long = len(os.fsencode(name)) > 255
        except (UnicodeError, ValueError):  # a lone surrogate from a \ud800 escape, or a NUL
            raise fail("files", "file names the file system can hold", name) from None
        if too_long or "\x00" in name:
            raise fail("files", "file names the file system can hold (at most 255 bytes)", name)
        if not _is_hex(digest, 64):
            raise fail(f"files.{name}", "64 hex digits", digest)
    if not path.name.endswith(MANIFEST_SUFFIX):
        raise fail("(file name)", f"STEM{MANIFEST_SUFFIX}", path.name)
    stem = path.name[: -len(MANIFEST_SUFFIX)]
    for required in (f"{stem}.onnx", f"{stem}.core.json", f"{stem}.core.npz"):  # what every reader uses
        if required not in files:
            raise fail("files", f"the digest of {required} (every export writes it)", sorted(files)[:4])
    return ExportManifest(path=path, export_id=document["export_id"], checkpoint_sha256=document["checkpoint_sha256"],
                          files=dict(files), document=document)


def verify_export(manifest: ExportManifest) -> None:
    """Every file the manifest lists exists and has the recorded SHA-256."""
    for name, digest in manifest.files.items():
        path = manifest.path.parent / name
        try:
            found = sha256_file(path) if path.is_file() else None
        except OSError as exc:  # e.g. no permission, or it vanished between the two calls
            raise _error(f"{path}: cannot read the file listed in {manifest.path.name}: "
                         f"{exc.strerror or type(exc).__name__}") from None
        if found is None:
            raise _error(f"{path}: not found: expected the file listed in {manifest.path.name} "
                         f"(export {manifest.export_id[:12]})")
        if found != digest:
            raise _error(f"{path}: sha256: expected {digest[:16]}... (recorded in {manifest.path.name}), "
                         f"found {found[:16]}...: the file was modified after the export or comes from "
                         "another export (incomplete or concurrent write)")


def manifest_beside_core(core_json: Path) -> Path:
    """``X.core.json`` -> ``X.export.json`` (the manifest of the export it belongs to, if any)."""
    name = core_json.name
    stem = name[: -len(".core.json")] if name.endswith(".core.json") else core_json.stem
    return core_json.with_name(stem + MANIFEST_SUFFIX)


def _manifests_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(f"*{MANIFEST_SUFFIX}") if p.is_file())


def find_export(folder: str | os.PathLike, *, stem: str | None = None,
                checkpoint_sha256: str | None = None) -> ExportManifest:
    """The verified export in ``folder``: by ``stem`` when its manifest exists; otherwise the one
    export whose manifest records ``checkpoint_sha256`` (or the only export, when no digest is
    given). Anything ambiguous or missing is an ``ExportError`` naming what was found."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "a file" if folder.exists() else "nothing"
        raise _error(f"{folder}: export folder: expected the output folder of mtsnn-export, found {what}")
    if stem is not None and ExportPaths(folder, stem).manifest.is_file():
        manifest = read_manifest(ExportPaths(folder, stem).manifest)
    else:
        candidates = _manifests_in(folder)
        if checkpoint_sha256 is not None:
            matching = []
            for path in candidates:
                try:
                    if read_manifest(path).checkpoint_sha256 == checkpoint_sha256:
                        matching.append(path)
                except ExportError:
                    continue
            candidates = matching
        wanted = f"{stem}{MANIFEST_SUFFIX}" if stem else f"one *{MANIFEST_SUFFIX}"
        if len(candidates) != 1:
            found = ", ".join(p.name for p in _manifests_in(folder)[:5]) or "no export manifest"
            qualifier = " made from this checkpoint" if checkpoint_sha256 else ""
            raise _error(f"{folder}: export: expected {wanted} (an export{qualifier}), found "
                              f"{len(candidates)} matching ({one_line(found, 200)})")
        manifest = read_manifest(candidates[0])
    verify_export(manifest)
    return manifest
