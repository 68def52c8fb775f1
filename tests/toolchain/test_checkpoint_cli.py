"""Checkpoints (toolchain.checkpoint) and the training CLI (``mtsnn train|evaluate``, ``mtsnn-train``)."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch

from mtsnn.toolchain.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from mtsnn.cli import main, train_main
from mtsnn.toolchain.datasets import Dataset, Split, load_dataset
from mtsnn.toolchain.model import MTSNN, ModelConfig
from mtsnn.toolchain.train import TrainSettings, train_model

torch.set_num_threads(1)

SMALL_ARCH = "8C3p1-P2-32"


def _images(n=16, seed=0):
    return torch.tensor(np.random.default_rng(seed).integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8))


def _model(bits=8, seed=0, **kwargs):
    torch.manual_seed(seed)
    config = ModelConfig(arch="4C3p1-P2-16", input_shape=(1, 8, 8), n_classes=10, bits=bits, **kwargs)
    return MTSNN(config).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = _model(timesteps=3, smax=7, tau=4.0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, {"dataset": "digits", "note": "unit test"})
    return model, path


# --------------------------------------------------------------------------- round trip


def test_round_trip_identical_integer_forward(saved):
    model, path = saved
    loaded, payload = load_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    images = _images()
    before, after = model.integer_forward(images), loaded.integer_forward(images)
    assert torch.equal(before.logits, after.logits)
    assert before.spikes.keys() == after.spikes.keys()
    for name in before.spikes:
        assert torch.equal(before.spikes[name], after.spikes[name]), name
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert payload["training"] == {"dataset": "digits", "note": "unit test"}


def test_loads_with_weights_only(saved):
    _, path = saved
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT == "mtsnn-checkpoint"
    assert payload["format_version"] == CHECKPOINT_VERSION == 2
    assert payload["config"]["arch"] == "4C3p1-P2-16"
    assert payload["config"]["input_shape"] == [1, 8, 8]
    assert payload["config"]["surrogate"] == {"curve": 2, "a": 1.0, "b": 20.0}
    assert payload["encoder"] == {"kind": "rate_count", "smax": 7}
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())


def test_save_overwrites_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _model(seed=1), {})
    save_checkpoint(path, _model(seed=2), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.integer_forward(_images()).logits, _model(seed=2).integer_forward(_images()).logits)


@pytest.mark.parametrize("bits", [4, 2])
def test_load_requantizes(saved, bits):
    model, path = saved
    loaded, _ = load_checkpoint(path, bits=bits)
    assert loaded.config.bits == bits
    limit = 2 ** (bits - 1) - 1
    for name, synapse in loaded.synapses.items():
        weight_int = synapse.quantized().weight_int
        assert float(weight_int.abs().max()) <= limit, name
        assert float(weight_int.abs().max()) > 0, name
        assert torch.equal(weight_int, torch.round(weight_int))
    # the float weights are untouched; only their quantization changed
    assert torch.equal(loaded.synapses["conv1"].layer.weight, model.synapses["conv1"].layer.weight)
    run = loaded.integer_forward(_images())
    assert torch.isfinite(run.logits).all()
    # and the 8-bit reload is the original
    same, _ = load_checkpoint(path, bits=8)
    assert torch.equal(same.integer_forward(_images()).logits, model.integer_forward(_images()).logits)


# --------------------------------------------------------------------------- errors


def _save_sealed(payload, path):
    """torch.save with a correct content digest: an internally consistent file from a buggy writer
    (the digest alone would otherwise refuse every hand-edited payload first)."""
    from mtsnn.toolchain.checkpoint import content_digest

    if isinstance(payload, dict):
        payload["content_sha256"] = content_digest(payload)
    torch.save(payload, path)


def _checkpoint_error(path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    assert isinstance(info.value, ValueError)
    return message


def test_missing_file(tmp_path):
    assert "not found" in _checkpoint_error(tmp_path / "nope.pt")


def test_directory(tmp_path):
    _checkpoint_error(tmp_path)


TEXT_BUG = (
    "BUG toolchain/checkpoint.py _read_payload: torch.load(weights_only=True) on some non-pickle bytes raises "
    "KeyError/IndexError/struct.error from torch's weights-only unpickler (e.g. a text file starting with 'h', "
    "'a', 'q' or 'J' is read as BINGET/APPEND/... opcodes), which the except clause does not catch: the user "
    "gets a traceback (and `mtsnn evaluate` no exit 2) instead of a one-line CheckpointError"
)
_TEXTS_OK = [b"Hello world\n", b'{"a": 1}\n', b"12345\n", b"not a checkpoint\n", b"\xff\xfe\x00", bytes(100)]
_TEXTS_BUG = [b"hello\nthis is not a checkpoint\n", b"abc\n", b"q", b"Just text\n"]


@pytest.mark.parametrize("content", _TEXTS_OK + [c
                                                 for c in _TEXTS_BUG])
def test_text_file(tmp_path, content):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    assert "not an mtsnn checkpoint" in _checkpoint_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    _checkpoint_error(path)


def test_plain_tensor(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    message = _checkpoint_error(path)
    assert "format" in message and "Tensor" in message


def test_wrong_format_tag(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "something-else", "format_version": 1, "config": {}, "state_dict": {}, "training": {}}, path)
    message = _checkpoint_error(path)
    assert "'something-else'" in message and "mtsnn-checkpoint" in message


def test_dict_without_format(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(_model().state_dict(), path)  # a bare state_dict, a common mistake
    assert "format" in _checkpoint_error(path)


def test_wrong_version(tmp_path, saved):
    _, good = saved
    payload = torch.load(good, weights_only=True)
    payload["format_version"] = 99
    path = tmp_path / "future.pt"
    _save_sealed(payload, path)
    message = _checkpoint_error(path)
    assert "format_version" in message and "99" in message


def test_truncated(tmp_path, saved):
    _, good = saved
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 100, 10):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        _checkpoint_error(path)


class _NotAllowed:  # module-level so pickling works; weights_only=True must refuse it
    pass


def test_arbitrary_pickle_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "object": _NotAllowed()}, path, pickle_protocol=2)
    assert "weights_only" in _checkpoint_error(path)
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(_NotAllowed(), protocol=2))
    _checkpoint_error(path)


def test_inconsistent_config_and_state(tmp_path, saved):
    _, good = saved
    payload = torch.load(good, weights_only=True)
    payload["config"]["arch"] = "8C3p1-P2-16"  # the state_dict does not fit
    path = tmp_path / "mismatch.pt"
    _save_sealed(payload, path)
    assert "state_dict.synapses.conv1.layer.weight: expected shape [8, 1, 3, 3], found [4, 1, 3, 3]" in _checkpoint_error(path)
    payload = torch.load(good, weights_only=True)
    payload["config"]["smax"] = 99
    _save_sealed(payload, path)
    assert "smax" in _checkpoint_error(path)
    payload = torch.load(good, weights_only=True)
    payload["config"]["unknown_field"] = 1
    _save_sealed(payload, path)
    _checkpoint_error(path)
    payload = torch.load(good, weights_only=True)
    payload["state_dict"] = [1, 2]
    _save_sealed(payload, path)
    assert "state_dict" in _checkpoint_error(path)


def test_corrupt_surrogate_config(tmp_path, saved):
    _, good = saved
    payload = torch.load(good, weights_only=True)
    payload["config"]["surrogate"] = None
    path = tmp_path / "surrogate.pt"
    _save_sealed(payload, path)
    _checkpoint_error(path)


def test_bad_requantization_bits(saved):
    _, path = saved
    assert "bits" in _checkpoint_error(path, bits=1)


# --------------------------------------------------------------------------- training is reproducible


def _subset(n_train=96, n_test=40):
    digits = load_dataset(None)
    return Dataset(name="digits-subset", train=Split(digits.train.images[:n_train], digits.train.labels[:n_train]),
                   test=Split(digits.test.images[:n_test], digits.test.labels[:n_test]),
                   n_classes=digits.n_classes, input_shape=digits.input_shape)


def test_same_seed_same_model():
    dataset = _subset()
    config = ModelConfig(arch="4C3p1-P2-16", input_shape=dataset.input_shape, n_classes=10)

    def run(seed):
        settings = TrainSettings(epochs=1, batch_size=32, seed=seed, augment=1, progress=False)
        return train_model(config, dataset, settings)

    first, second, other = run(3), run(3), run(4)
    a, b, c = first.model.state_dict(), second.model.state_dict(), other.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert first.test_accuracy == second.test_accuracy
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    assert any(not torch.equal(a[key], c[key]) for key in a)  # the seed matters


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "m.pt"
    code = main(["train", "--epochs", "2", "--no-progress", "-o", str(path), "--arch", SMALL_ARCH])
    assert code == 0
    return path


def test_cli_train_then_evaluate_json(trained, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--json"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    assert 0.0 <= report["accuracy"] <= 1.0
    assert report["samples"] == 360
    assert report["dataset"] == "digits" and report["arch"] == SMALL_ARCH and report["bits"] == 8
    # evaluate agrees with what training measured (both the integer-exact forward)
    _, payload = load_checkpoint(trained)
    assert payload["training"]["test_accuracy"] == report["accuracy"]
    assert payload["training"]["epochs"] == 2 and len(payload["training"]["history"]) == 2
    assert payload["config"]["arch"] == SMALL_ARCH


def test_cli_evaluate_text(trained, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "360" in out


def test_cli_default_arch_learns_digits(tmp_path, capsys):
    """4 epochs of the default digits arch (seeded): ~0.92 measured; well above chance (0.10)."""
    path = tmp_path / "default.pt"
    assert main(["train", "--epochs", "4", "--no-progress", "-o", str(path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arch"] == "24C3p1-P2-28C3p1-P2-256"
    assert report["accuracy"] >= 0.80, report


def _one_error_line(capsys, prog="mtsnn") -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}") and ": error: " in lines[0], lines[0]
    return lines[0]


def test_cli_bad_arch(tmp_path, capsys):
    out = tmp_path / "x.pt"
    code = main(["train", "--epochs", "1", "--no-progress", "-o", str(out), "--arch", "8C3-15X5"])
    assert code == 2
    line = _one_error_line(capsys)
    assert line.startswith("mtsnn train: error:")
    assert "15X5" in line and "token 2" in line
    assert not out.exists()


def test_cli_arch_too_big_for_input(tmp_path, capsys):
    assert main(["train", "--no-progress", "-o", str(tmp_path / "x.pt"), "--arch", "8C9"]) == 2
    assert "8x8" in _one_error_line(capsys)


@pytest.mark.parametrize("spec", ["nosuchset", "mnist:/nonexistent/dir", "digits:/tmp"])
def test_cli_bad_dataset(tmp_path, capsys, spec):
    out = tmp_path / "x.pt"
    assert main(["train", "--epochs", "1", "--no-progress", "-o", str(out), "--dataset", spec]) == 2
    assert _one_error_line(capsys).startswith("mtsnn train: error:")
    assert not out.exists()


def test_cli_evaluate_missing(tmp_path, capsys):
    path = tmp_path / "missing.pt"
    assert main(["evaluate", str(path)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("mtsnn evaluate: error:") and str(path) in line


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b""])
def test_cli_evaluate_not_a_checkpoint(tmp_path, capsys, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    assert main(["evaluate", str(path), "--json"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("mtsnn evaluate: error:") and str(path) in line
    assert capsys.readouterr().out == ""


def test_cli_evaluate_text_file_starting_with_h(tmp_path, capsys):
    path = tmp_path / "README.pt"
    path.write_text("hello, this is a text file\n")
    assert main(["evaluate", str(path)]) == 2
    assert _one_error_line(capsys).startswith("mtsnn evaluate: error:")


def test_cli_evaluate_tensor_file(tmp_path, capsys):
    path = tmp_path / "tensor.pt"
    torch.save(torch.ones(2), path)
    assert main(["evaluate", str(path)]) == 2
    assert "mtsnn evaluate: error:" in _one_error_line(capsys)


def test_cli_evaluate_wrong_dataset(trained, capsys):
    assert main(["evaluate", str(trained), "--dataset", "mnist:/nonexistent/dir"]) == 2
    _one_error_line(capsys)


OPTION_BUG = (
    "BUG toolchain/cli.py run_train: out-of-range numeric options reach ModelConfig/TrainSettings, whose plain "
    "ValueError is not among user_errors(), so the user gets a traceback instead of one line and exit 2"
)


@pytest.mark.parametrize("option", [["--smax", "99"], ["--bits", "1"], ["-T", "0"], ["--epochs", "-1"], ["--lr", "0"],
                                    ["--tau", "0.5"], ["--batch-size", "0"]])
def test_cli_out_of_range_options(tmp_path, capsys, option):
    code = main(["train", "--no-progress", "-o", str(tmp_path / "x.pt"), "--arch", SMALL_ARCH, *option])
    assert code == 2
    assert _one_error_line(capsys).startswith("mtsnn train: error:")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("option", [["--epochs", "0"], ["--acc-bits", "0"]])
def test_cli_explicit_zero_not_replaced_by_default(tmp_path, capsys, monkeypatch, option):
    import mtsnn.toolchain.train

    seen = []

    def fake_train_model(config, dataset, settings, *args, **kwargs):  # never train: record what would have run
        seen.append((settings.epochs, config.acc_bits))
        raise _Stop

    monkeypatch.setattr(mtsnn.toolchain.train, "train_model", fake_train_model)
    try:
        code = main(["train", "--no-progress", "-o", str(tmp_path / "x.pt"), "--arch", SMALL_ARCH, *option])
    except _Stop:
        code = None
    assert code == 2, f"ran training with (epochs, acc_bits) = {seen}"


def test_train_main_entry_point(tmp_path, capsys):
    path = tmp_path / "tm.pt"
    assert train_main(["--epochs", "1", "--no-progress", "-o", str(path), "--arch", SMALL_ARCH, "--bits", "4",
                       "-T", "1", "--smax", "7", "--surrogate", "3"]) == 0
    assert "saved" in capsys.readouterr().out
    model, payload = load_checkpoint(path)
    assert model.config.arch == SMALL_ARCH
    assert (model.config.bits, model.config.timesteps, model.config.smax, model.config.surrogate.curve) == (4, 1, 7, 3)
    assert payload["training"]["epochs"] == 1


def test_train_main_errors(tmp_path, capsys):
    assert train_main(["--no-progress", "-o", str(tmp_path / "x.pt"), "--arch", "8C3--32"]) == 2
    line = _one_error_line(capsys, prog="mtsnn-train")
    assert line.startswith("mtsnn-train: error:") and "token 2" in line
    assert train_main(["--no-progress", "-o", str(tmp_path / "x.pt"), "--dataset", "nosuchset"]) == 2
    assert _one_error_line(capsys, prog="mtsnn-train").startswith("mtsnn-train: error:")


def test_init_starts_from_another_checkpoints_weights(tmp_path, capsys):
    """--init loads a float baseline's weights for QAT fine-tuning; an architecture mismatch is one line."""
    from mtsnn.toolchain.checkpoint import load_checkpoint
    from mtsnn.cli import main

    float_path, qat_path = tmp_path / "float.pt", tmp_path / "qat.pt"
    arch = ["--arch", "8C3p1-P2-32", "--no-progress", "--batch-size", "64"]
    assert main(["train", *arch, "--epochs", "2", "--bits", "0", "-o", str(float_path)]) == 0
    start, _ = load_checkpoint(float_path)
    assert main(["train", *arch, "--epochs", "1", "--lr", "1e-9", "--init", str(float_path), "-o", str(qat_path)]) == 0
    tuned, payload = load_checkpoint(qat_path)
    assert payload["training"]["init"] == str(float_path) and tuned.config.bits == 8
    # with a negligible learning rate the float weights come through (almost) unchanged
    for name, value in start.state_dict().items():
        if name.endswith(".weight"):
            assert torch.allclose(tuned.state_dict()[name], value, atol=1e-6), name
    capsys.readouterr()
    code = main(["train", "--arch", "4C3p1-P2-32", "--epochs", "1", "--no-progress", "--init", str(float_path),
                 "-o", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--init: arch: expected '4C3p1-P2-32'" in err and "\n" not in err
