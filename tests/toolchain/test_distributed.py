"""Data-parallel training: torchrun with 2 CPU processes (gloo) on the digits.

The checkpoint rank 0 writes is a valid mtsnn checkpoint, its integer forward is bit-exact with
the numpy reference (hw_model.reference on the exported integer network), and it learned.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mtsnn.export.integer import to_integer_network
from mtsnn.hw_model.reference import run_reference
from mtsnn.toolchain.checkpoint import load_checkpoint, read_checkpoint
from mtsnn.toolchain.datasets import load_dataset

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")


def _torchrun(args, tmp_path, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "mtsnn.train", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_train_a_valid_bit_exact_model(tmp_path):
    out = tmp_path / "ddp.pt"
    done = _torchrun(["--epochs", "3", "--threads", "1", "-o", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 0 alone prints: one header, one line per epoch, the result
    lines = done.stdout.strip().splitlines()
    assert sum(line.startswith("training ") for line in lines) == 1, lines
    assert sum(line.startswith("epoch ") for line in lines) == 3, lines
    assert "2 processes (gloo)" in lines[0]

    model, _ = load_checkpoint(out)
    training = read_checkpoint(out).training
    assert training["world_size"] == 2 and training["complete"] is True
    assert training["test_accuracy"] > 0.5, training["history"]

    images = np.ascontiguousarray(load_dataset("digits").test.images)
    qat = model.integer_forward(torch.tensor(images))
    reference = run_reference(to_integer_network(model), images)
    assert np.array_equal(qat.logits.numpy().astype(np.int64), reference.logits)
    accuracy = float((reference.predictions == load_dataset("digits").test.labels).mean())
    assert accuracy == pytest.approx(training["test_accuracy"])


def test_an_error_is_one_line_from_rank_0(tmp_path):
    done = _torchrun(["--smax", "40", "-o", str(tmp_path / "m.pt")], tmp_path)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("mtsnn.train: error:")]
    assert errors == ["mtsnn.train: error: smax: expected 1..31, found 40"], done.stderr[-2000:]


def test_resume_needs_as_many_processes_as_trained_the_run(tmp_path):
    """A per-epoch checkpoint records the world size; resuming with another is refused up front
    (the data shards and the schedule's steps per epoch depend on it)."""
    import types

    import mtsnn
    from mtsnn.hw_model.errors import InputError

    class Stop(Exception):
        pass

    def stop(line: str) -> None:
        if line.startswith("epoch 1/2"):
            raise Stop

    path = tmp_path / "cut.pt"
    with pytest.raises(Stop):
        mtsnn.train(epochs=2, arch="4C3p1-P2-16", batch_size=128, threads=1, out=path, log=stop)
    assert read_checkpoint(path).training["world_size"] == 1
    two = types.SimpleNamespace(rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")
    with pytest.raises(InputError, match="training.world_size: expected 2 .*found 1"):
        mtsnn.resume(path, progress=False, dist=two)


def test_importing_the_entry_point_keeps_mtsnn_train_callable(tmp_path):
    import mtsnn
    import mtsnn.train  # noqa: F401 - the submodule becomes the attribute mtsnn.train

    run = mtsnn.train(epochs=1, arch="4C3p1-P2-16", threads=1, out=tmp_path / "m.pt", progress=False)
    assert run.checkpoint.is_file()
