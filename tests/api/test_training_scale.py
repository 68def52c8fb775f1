"""Training at scale and on every Smax (issue 11).

* the defaults per Smax (theta, surrogate b) train the digits well above chance at Smax 1, 3, 15;
* values the user gives win over the defaults.
"""

from __future__ import annotations

import pytest
import torch

import mtsnn
from mtsnn.toolchain.checkpoint import load_checkpoint
from mtsnn.toolchain.model import default_surrogate_b, default_theta


def test_default_rule_values():
    assert [default_theta(s) for s in (1, 2, 3, 7, 8, 15, 31)] == [0.125, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5]
    assert [default_surrogate_b(s) for s in (1, 2, 3, 4, 15, 31)] == [2.0, 8.0, 18.0, 20.0, 20.0, 20.0]
    for smax in range(1, 32):  # powers of two: theta_int = theta * 2**f is exact
        theta = default_theta(smax)
        assert theta == 2.0 ** round(torch.log2(torch.tensor(theta)).item())


@pytest.mark.parametrize("smax", [1, 3, 15])
def test_defaults_train_every_smax(smax, tmp_path):
    """5 epochs of the default digits CNN (~2-5 s each): far above the 10 % of a dead network."""
    torch.set_num_threads(2)
    run = mtsnn.train(smax=smax, epochs=5, out=tmp_path / "model.pt", progress=False)
    print(f"Smax {smax}: test accuracy {run.test_accuracy:.4f} after {run.seconds:.1f} s")
    assert run.test_accuracy > 0.5, (smax, run.history)
    model, _ = load_checkpoint(run.checkpoint)
    assert model.config.theta == default_theta(smax)
    assert model.config.surrogate.b == default_surrogate_b(smax)


def test_explicit_values_win(tmp_path):
    run = mtsnn.train(smax=1, theta=1.0, b=20.0, a=0.5, epochs=1, arch="4C3p1-P2-16", out=tmp_path / "m.pt",
                      progress=False)
    model, _ = load_checkpoint(run.checkpoint)
    assert (model.config.theta, model.config.surrogate.a, model.config.surrogate.b) == (1.0, 0.5, 20.0)


def test_training_data_is_shared_not_copied_on_the_cpu():
    """The training set becomes a tensor once per run; on the CPU it is the data set's own memory."""
    import numpy as np

    from mtsnn.toolchain.datasets import load_dataset
    from mtsnn.toolchain.train import _device_tensor

    data = load_dataset("digits")
    images = _device_tensor(data.train.images, torch.device("cpu"))
    assert np.shares_memory(images.numpy(), data.train.images)


def test_flip_is_recorded_and_resumed(tmp_path):
    from mtsnn.toolchain.checkpoint import read_checkpoint

    class Stop(Exception):
        pass

    def stop(line: str) -> None:
        if line.startswith("epoch 1/2"):
            raise Stop

    path = tmp_path / "flip.pt"
    with pytest.raises(Stop):
        mtsnn.train(epochs=2, arch="4C3p1-P2-16", batch_size=128, threads=1, flip=True, out=path, log=stop)
    assert read_checkpoint(path).training["flip"] is True
    run = mtsnn.resume(path, progress=False)
    assert read_checkpoint(run.checkpoint).training["flip"] is True
    with pytest.raises(mtsnn.MtsnnError, match="--flip: expected true or false"):
        mtsnn.train(flip="yes", out=tmp_path / "x.pt", progress=False)


def test_compile_auto_compiles_long_runs_only():
    from mtsnn.toolchain.model import MTSNN, ModelConfig
    from mtsnn.toolchain.train import use_fused_kernels

    digits = MTSNN(ModelConfig(arch="24C3p1-P2-28C3p1-P2-256", input_shape=(1, 8, 8), n_classes=10))
    mnist = MTSNN(ModelConfig(arch="15C5-P2-40C5-P2-300", input_shape=(1, 28, 28), n_classes=10))
    assert not use_fused_kernels("auto", digits, 1437 * 30)  # the default digits run
    assert not use_fused_kernels("auto", mnist, 7000 * 5)
    assert use_fused_kernels("auto", mnist, 60000 * 15)  # full MNIST
    assert use_fused_kernels("on", digits, 1) and not use_fused_kernels("off", mnist, 10**9)
    with pytest.raises(mtsnn.MtsnnError, match="--compile: expected one of auto, on, off"):
        use_fused_kernels("always", digits, 1)


def test_compile_on_trains_the_digits(tmp_path):
    run = mtsnn.train(epochs=3, compile="on", out=tmp_path / "fused.pt", progress=False)
    model, _ = load_checkpoint(run.checkpoint)
    assert run.test_accuracy > 0.5 and read_training(run.checkpoint)["compile"] == "on"


def read_training(path):
    from mtsnn.toolchain.checkpoint import read_checkpoint

    return read_checkpoint(path).training
