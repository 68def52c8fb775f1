"""Files written safely: atomic writes, output locations checked before long work, digests.

- ``atomic_write_bytes``: a temporary file beside the target, fsync, then ``os.replace``: a
  reader sees the old file or the new one, never half of one. Temporary names carry the
  writer's process id (``.NAME.PID.RANDOM.mtsnn-tmp``); ones left behind by a process that no
  longer runs (killed mid-write) are removed by the next write into the same folder.
- ``check_output_file`` / ``check_output_dir``: called before any long work, so that a training
  run never ends in "is a directory" with the model lost. They create missing parent folders
  and prove the folder writable by creating and removing a probe file.
- ``sha256_file``: the hex SHA-256 of a file, read in chunks (bounded memory).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from .errors import InputError, one_line

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write_bytes",
    "check_output_file",
    "check_output_dir",
    "remove_stale_temporaries",
    "sha256_file",
    "sha256_bytes",
]

TEMP_SUFFIX = ".mtsnn-tmp"
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # exists (another user's), or not a pid at all
        return pid > 0 and not isinstance(pid, bool)
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove ``.*.PID.*.mtsnn-tmp`` files in ``folder`` whose writer process is gone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match and not _process_alive(int(match.group(1))):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _probe_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".probe.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"{folder}: {what}: expected a writable folder, found {one_line(reason)}") from None


def _check_parents(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` is a folder (not a file)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{path}: {what}: expected a folder at {parent}, found a file")
            return


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Check, before long work, that ``path`` can be written as a file (parents are created)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: {what}: expected a file path, found a directory")
    _check_parents(path, what)
    _probe_writable(path.parent, what)
    return path


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Check, before long work, that ``path`` is (or can be made) a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: {what}: expected a folder, found a file")
    _check_parents(path, what)
    _probe_writable(path, what)
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
