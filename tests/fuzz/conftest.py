"""Fixtures of the fuzz suite (the harness itself is fuzz_harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz_harness import Fuzz, train_tiny as _train_tiny


@pytest.fixture
def fuzz(request):
    """A ``Fuzz`` named after the test, with the limits in force while the test body runs."""
    run = Fuzz(request.node.name)
    with run.limits():
        yield run


# ----------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A complete 8-bit checkpoint of a tiny network (one epoch on the digits)."""
    path = tmp_path_factory.mktemp("fuzz-ckpt") / "tiny.pt"
    _train_tiny(path)
    return path


@pytest.fixture(scope="session")
def tiny_float_checkpoint(tmp_path_factory) -> Path:
    """A float baseline (bits 0) of the same tiny network."""
    path = tmp_path_factory.mktemp("fuzz-ckpt") / "tinyfloat.pt"
    _train_tiny(path, bits=0)
    return path


@pytest.fixture(scope="session")
def tiny_resumable(tmp_path_factory) -> Path:
    """An unfinished run (epoch 1 of 2) of the tiny network: a checkpoint with a resume section."""
    import shutil

    folder = tmp_path_factory.mktemp("fuzz-resume")
    full, partial = folder / "run.pt", folder / "resumable.pt"

    def log(line: str) -> None:
        if line.startswith("epoch 1/"):
            shutil.copy(full, partial)

    _train_tiny(full, epochs=2, progress=True, log=log)
    assert partial.is_file()
    return partial
