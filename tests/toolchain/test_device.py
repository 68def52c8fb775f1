"""--device: resolution, one-line errors, the device path of the integer forward.

The CUDA-vs-CPU comparison runs where CUDA exists and is skipped (with the reason) elsewhere;
the CPU checks the device path itself (thresholds computed on the device, no host reads).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mtsnn
from mtsnn import cli
from mtsnn.hw_model.errors import InputError
from mtsnn.toolchain.checkpoint import load_checkpoint
from mtsnn.toolchain.device import resolve_device, using_device
from mtsnn.toolchain.model import MTSNN, ModelConfig

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = f"no CUDA device here (torch {torch.__version__}, cuda {torch.version.cuda}); bench/gpu_check.sh runs it"


def test_resolve_device_words():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if HAS_CUDA else torch.device("cpu"))
    assert resolve_device(None) == resolve_device("auto")
    for bad in ("gpu", "cpu:0", "cuda:x", "", "auto:1", 3):
        with pytest.raises(InputError, match="--device: expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present: asking for it is no error")
@pytest.mark.parametrize("argv", [
    ["train", "--device", "cuda", "--epochs", "1"],
    ["evaluate", "MODEL", "--device", "cuda:0"],
    ["export", "MODEL", "--device", "cuda"],
    ["validate", "MODEL", "DIR", "--device", "cuda"],
])
def test_cuda_asked_for_and_absent_is_one_line_exit_2(argv, trained_model, tmp_path, capsys):
    argv = [str(trained_model) if a == "MODEL" else str(tmp_path) if a == "DIR" else a for a in argv]
    if argv[0] == "train":
        argv += ["-o", str(tmp_path / "m.pt")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mtsnn {argv[0]}: error: --device: expected a CUDA device"), err
    assert not (tmp_path / "m.pt").exists()


def test_device_cpu_everywhere(trained_model, tmp_path, capsys):
    assert cli.main(["evaluate", str(trained_model), "--device", "cpu", "--samples", "50"]) == 0
    out = tmp_path / "export"
    assert cli.main(["export", str(trained_model), "--device", "cpu", "--samples", "50", "-o", str(out)]) == 0
    assert cli.main(["validate", str(trained_model), str(out), "--device", "cpu", "--samples", "50", "--no-sim"]) == 0
    assert "bit-exact: 50/50" in capsys.readouterr().out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(smax=st.integers(1, 31), bits=st.sampled_from([2, 4, 8, 12]), acc_bits=st.sampled_from([12, 16, 20, 24, 32]),
       tau=st.sampled_from([0.0, 2.0, 10.0]), theta=st.sampled_from([0.125, 0.3, 1.0, 2.5]), seed=st.integers(0, 99))
def test_thresholds_on_the_device_are_the_same_integers(smax, bits, acc_bits, tau, theta, seed):
    """The path CUDA takes (theta_int computed on the device, hw_model's update rewritten for a
    tensor threshold) gives the CPU path's integers and gradients, bit for bit."""
    torch.manual_seed(seed)
    config = ModelConfig(arch="4C3p1-P2-6", input_shape=(1, 8, 8), n_classes=3, timesteps=3, smax=smax, bits=bits,
                         acc_bits=acc_bits, tau=tau, theta=theta)
    model = MTSNN(config)
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    runs, grads = [], []
    for on_device in (False, True):
        model.theta_on_device = on_device
        runs.append(model.integer_forward(images))
        model.zero_grad()
        model(images).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert torch.equal(runs[0].logits, runs[1].logits)
    for name in runs[0].spikes:
        assert torch.equal(runs[0].spikes[name], runs[1].spikes[name]), name
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_using_device_runs_the_integer_forward_there_and_returns_cpu_tensors(trained_model):
    model, _ = load_checkpoint(trained_model)
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    plain = model.integer_forward(images)
    with using_device(torch.device("cpu")):
        again = model.integer_forward(images)
    assert torch.equal(plain.logits, again.logits) and again.logits.device.type == "cpu"


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_cuda_integer_forward_is_bit_exact_with_the_cpu(tmp_path):
    """Train on CUDA; the integer forward on CUDA equals the CPU's bit for bit (logits and every
    layer's spike counts), and the checkpoint validates against the numpy reference."""
    run = mtsnn.train(epochs=2, device="cuda", out=tmp_path / "model.pt", progress=False)
    assert run.test_accuracy > 0.5
    model, _ = load_checkpoint(run.checkpoint)
    data = np.random.default_rng(0).integers(0, 256, (256, 1, 8, 8), dtype=np.uint8)
    images = torch.from_numpy(data)
    cpu = model.integer_forward(images)
    gpu_model, _ = load_checkpoint(run.checkpoint)
    gpu = gpu_model.to("cuda").integer_forward(images.to("cuda"))
    assert torch.equal(cpu.logits, gpu.logits.cpu())
    for name in cpu.spikes:
        assert torch.equal(cpu.spikes[name], gpu.spikes[name].cpu()), name
    gpu_model.fused = True  # the fused kernels on CUDA (Triton): the same integers again
    fused_run = gpu_model.integer_forward(images.to("cuda"))
    assert torch.equal(cpu.logits, fused_run.logits.cpu())
    for name in cpu.spikes:
        assert torch.equal(cpu.spikes[name], fused_run.spikes[name].cpu()), name
    compiled = mtsnn.train(epochs=2, device="cuda", compile="on", out=tmp_path / "fused.pt", progress=False)
    assert compiled.test_accuracy > 0.5
    export = mtsnn.export(run.checkpoint, out=tmp_path / "export", samples=200, device="cuda")
    report = mtsnn.validate(run.checkpoint, tmp_path / "export", samples=200, simulate=False, device="cuda")
    assert report.bit_exact, [d.sentence() for d in report.divergences]
    assert export.integer_accuracy == pytest.approx(report.accuracy["reference"])


def test_a_training_step_reads_nothing_back_to_the_host(monkeypatch):
    """With the thresholds on the device (CUDA's path), an epoch reads a fixed handful of values
    back (loss, accuracy, test accuracy), not one per step; Adam's step counter is a CPU tensor."""
    import collections
    import traceback

    from mtsnn.toolchain.datasets import load_dataset
    from mtsnn.toolchain.train import TrainSettings, train_model

    monkeypatch.setattr(MTSNN, "theta_on_device", True)
    reads = collections.Counter()
    for name in ("__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            caller = traceback.extract_stack(limit=2)[0].filename
            if not caller.endswith(("adam.py", "optimizer.py")):
                reads[caller.rsplit("/", 1)[-1]] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    data = load_dataset("digits")
    config = ModelConfig(arch="4C3p1-P2-16", input_shape=data.input_shape, n_classes=10, smax=3, theta=0.25)
    epochs, batch = 2, 64
    train_model(config, data, TrainSettings(epochs=epochs, batch_size=batch, progress=False))
    monkeypatch.undo()
    steps = epochs * -(-len(data.train) // batch)
    assert sum(reads.values()) <= 3 * epochs < steps, reads


def test_the_fused_kernels_read_nothing_back_either(monkeypatch):
    """The same check with the fused kernels (CUDA's path: thresholds as device tensors)."""
    import collections
    import traceback

    from mtsnn.toolchain.datasets import load_dataset
    from mtsnn.toolchain.train import TrainSettings, train_model

    monkeypatch.setattr(MTSNN, "theta_on_device", True)
    data = load_dataset("digits")
    config = ModelConfig(arch="4C3p1-P2-16", input_shape=data.input_shape, n_classes=10, smax=3, theta=0.25)
    train_model(config, data, TrainSettings(epochs=1, batch_size=64, progress=False), compile="on")  # compiles
    reads = collections.Counter()
    for name in ("__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            caller = traceback.extract_stack(limit=2)[0].filename
            # dynamo's guards ("<string>") read 0-dim CPU tensors to hand them to the compiled code
            # as numbers (a CUDA tensor goes as a pointer): not a read back from a device
            if not caller.endswith(("adam.py", "optimizer.py", "<string>")):
                reads[caller.rsplit("/", 1)[-1]] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    result = train_model(config, data, TrainSettings(epochs=2, batch_size=64, progress=False), compile="on")
    monkeypatch.undo()
    assert result.model.fused
    assert sum(reads.values()) <= 6, reads
