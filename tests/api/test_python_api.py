"""The Python API (mtsnn.train / resume / evaluate / export / simulate / validate): typed records,
resumable training that is bit-identical to an uninterrupted run, and a validate that cannot be
fooled by a checkpoint and an export that do not belong together."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mtsnn
from mtsnn.cli import sim_main, validate_main
from mtsnn.hw_model.errors import CheckUnavailable, InputError
from mtsnn.toolchain.checkpoint import load_checkpoint, read_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = dict(arch="4C3p1-P2-16", batch_size=128, threads=1, progress=False)


class _Stop(Exception):
    pass


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    whole = mtsnn.train(epochs=3, out=tmp_path / "whole.pt", **TINY)

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/3"):
            raise _Stop  # like a kill right after the first epoch's checkpoint was written

    with pytest.raises(_Stop):
        mtsnn.train(epochs=3, out=tmp_path / "cut.pt", **{**TINY, "progress": True}, log=stop_after_first_epoch)
    interrupted = read_checkpoint(tmp_path / "cut.pt")
    assert interrupted.resume["epoch"] == 1 and interrupted.training["complete"] is False
    resumed = mtsnn.resume(tmp_path / "cut.pt", progress=False)
    assert resumed.checkpoint == tmp_path / "cut.pt" and resumed.epochs == 3
    a, pa = load_checkpoint(whole.checkpoint)
    b, pb = load_checkpoint(resumed.checkpoint)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    strip = lambda history: [{k: v for k, v in h.items() if "seconds" not in k} for h in history]  # noqa: E731
    assert strip(pa["training"]["history"]) == strip(pb["training"]["history"])
    assert whole.test_accuracy == resumed.test_accuracy
    assert pa["resume"] is None and pb["resume"] is None and pb["training"]["complete"] is True
    with pytest.raises(InputError, match="expected an unfinished run"):
        mtsnn.resume(resumed.checkpoint, progress=False)


def test_resume_from_the_command_line_takes_no_other_training_option(tmp_path, capsys):
    from mtsnn.cli import train_main

    path = tmp_path / "m.pt"
    with pytest.raises(_Stop):
        mtsnn.train(epochs=2, out=path, **{**TINY, "progress": True},
                    log=lambda line: (_ for _ in ()).throw(_Stop) if line.startswith("epoch 1/2") else None)
    assert train_main(["--resume", str(path), "--smax", "3"]) == 2
    assert "expected no other training option, found --smax" in capsys.readouterr().err
    assert train_main(["--resume", str(path), "--no-progress", "--threads", "1"]) == 0
    assert read_checkpoint(path).training["complete"] is True


def test_the_api_flow_returns_typed_records(trained_model, tmp_path):
    evaluation = mtsnn.evaluate(trained_model, samples=50)
    assert isinstance(evaluation, mtsnn.Evaluation) and evaluation.samples == 50
    assert evaluation.accuracy_kind == "integer-exact" and 0 <= evaluation.accuracy <= 1
    exported = mtsnn.export(trained_model, bits=8, out=tmp_path / "out", samples=50)
    assert len(exported.export_id) == 32 and exported.files[-1].name == "model.export.json"
    assert exported.checkpoint_sha256 == read_checkpoint(trained_model).sha256
    sim = mtsnn.simulate(tmp_path / "out", target="loihi", samples=20)
    assert isinstance(sim, mtsnn.SimulationReport) and sim.report["samples"] == 20
    assert sim.total["sops"] > 0 and sim.dataset == "digits"
    report = mtsnn.validate(trained_model, tmp_path / "out", samples=20)
    assert report.bit_exact and report.export_id == exported.export_id
    assert report.paths == ["reference", "qat", "onnxruntime", "simulator[loihi]"]


def test_every_artifact_of_an_export_carries_its_id(trained_model, tmp_path):
    exported = mtsnn.export(trained_model, out=tmp_path, samples=20, golden=2)
    import onnx

    from mtsnn.hw_model.coredesc import read_core

    core = read_core(tmp_path / "model.core.json").network.provenance
    meta = {p.key: p.value for p in onnx.load(tmp_path / "model.onnx").metadata_props}
    golden = np.load(tmp_path / "model.golden.npz")
    manifest = json.loads((tmp_path / "model.export.json").read_text())
    ids = {core["export_id"], meta["export_id"], str(golden["export_id"]), manifest["export_id"]}
    assert ids == {exported.export_id}
    assert core["checkpoint_sha256"] == meta["checkpoint_sha256"] == manifest["checkpoint_sha256"]
    assert set(manifest["files"]) == {"model.onnx", "model.core.json", "model.core.npz", "model.golden.npz"}
    again = mtsnn.export(trained_model, out=tmp_path, samples=20, golden=2)  # deterministic id and files
    assert again.export_id == exported.export_id
    assert json.loads((tmp_path / "model.export.json").read_text())["files"] == manifest["files"]


# ----------------------------------------------------------------------------- validate cannot be fooled


def _error(capsys) -> str:
    """The one error line (progress lines before it are allowed; nothing after it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


def test_validate_refuses_the_export_of_another_model(trained_model, tmp_path, capsys):
    mtsnn.export(trained_model, out=tmp_path / "out", samples=10)
    other = mtsnn.train(epochs=1, out=tmp_path / "other" / "model.pt", seed=5,
                        **{**TINY, "arch": "8C3p1-P2-12C3p1-P2-32"})
    assert validate_main([str(other.checkpoint), str(tmp_path / "out"), "--samples", "10"]) == 2
    line = _error(capsys)
    assert "do not belong together" in line and "first divergence" not in line


def test_validate_finds_a_renamed_checkpoints_export_by_its_digest(trained_model, tmp_path, capsys):
    mtsnn.export(trained_model, out=tmp_path / "out", samples=10)
    renamed = tmp_path / "renamed.pt"
    shutil.copy(trained_model, renamed)
    assert validate_main([str(renamed), str(tmp_path / "out"), "--samples", "10", "--no-sim"]) == 0
    stranger = tmp_path / "out" / "stranger.core.json"  # a lone core of another stem is never picked silently
    shutil.copy(tmp_path / "out" / "model.core.json", stranger)
    other = mtsnn.train(epochs=1, out=tmp_path / "x" / "renamed.pt", seed=9, **TINY)
    assert validate_main([str(other.checkpoint), str(tmp_path / "out"), "--no-sim"]) == 2
    assert "expected renamed.export.json (an export made from this checkpoint), found 0 matching" in _error(capsys)


def _reseal(folder: Path) -> None:
    from mtsnn.hw_model.fileio import sha256_file

    manifest = folder / "model.export.json"
    document = json.loads(manifest.read_text())
    document["files"] = {name: sha256_file(folder / name) for name in document["files"]}
    manifest.write_text(json.dumps(document))


def _rewrite_core(folder: Path, edit) -> None:
    from mtsnn.hw_model.coredesc import read_core, write_core
    from mtsnn.hw_model.network import IntegerNetwork

    net = read_core(folder / "model.core.json").network
    fields = dict(encoder=net.encoder, layers=net.layers, timesteps=net.timesteps, n_classes=net.n_classes,
                  provenance=dict(net.provenance))
    write_core(folder / "model.core.json", IntegerNetwork(**edit(fields)))
    _reseal(folder)


def test_validate_names_each_input_mismatch_in_one_line(trained_model, tmp_path, capsys):
    import dataclasses

    out = tmp_path / "out"
    mtsnn.export(trained_model, out=out, samples=10)
    saved = {p.name: p.read_bytes() for p in out.iterdir()}

    def renamed_layers(fields):
        layers = list(fields["layers"])
        layers[1] = dataclasses.replace(layers[1], name="pool9")
        return {**fields, "layers": tuple(layers)}

    _rewrite_core(out, renamed_layers)
    assert validate_main([str(trained_model), str(out), "--no-sim"]) == 2
    assert "layer names: expected ['conv1', 'pool1'" in _error(capsys)
    for name, data in saved.items():
        (out / name).write_bytes(data)
    _rewrite_core(out, lambda fields: {**fields, "provenance": {**fields["provenance"], "export_id": "0" * 32}})
    assert validate_main([str(trained_model), str(out), "--no-sim"]) == 2
    assert "provenance.export_id: expected" in _error(capsys)
    for name, data in saved.items():
        (out / name).write_bytes(data)
    (out / "model.onnx").unlink()
    assert validate_main([str(trained_model), str(out), "--no-sim"]) == 2
    assert "model.onnx: not found: expected the file listed in model.export.json" in _error(capsys)


def test_validate_refuses_a_data_set_of_another_shape(trained_model, tmp_path, capsys):
    mtsnn.export(trained_model, out=tmp_path / "out", samples=10)
    data = _idx_dataset(tmp_path / "mnist", size=6)
    assert validate_main([str(trained_model), str(tmp_path / "out"), "--dataset", f"mnist:{data}"]) == 2
    assert "dataset: expected inputs (1, 8, 8) and 10 classes (the network's), found mnist:" in _error(capsys)


def test_a_requested_simulator_path_that_cannot_run_is_exit_3(trained_model, tmp_path):
    mtsnn.export(trained_model, out=tmp_path / "out", samples=10)
    # TrueNorth's axon-type rule: 8-bit weights need more than 4 distinct weights per neuron
    with pytest.raises(CheckUnavailable) as info:
        mtsnn.validate(trained_model, tmp_path / "out", target="truenorth", samples=5)
    assert info.value.exit_code == 3 and "axon types" in str(info.value) and "--relax axon-types" in str(info.value)


# ----------------------------------------------------------------------------- sim defaults


def _idx_dataset(folder: Path, size: int = 8, n: int = 30) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)

    def idx(array):
        magic = 0x800 | array.ndim
        return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()

    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(labels)))
    return folder


def test_sim_takes_the_export_folder_and_its_recorded_data_set(trained_model, tmp_path, capsys):
    data = _idx_dataset(tmp_path / "mnist8")
    out = tmp_path / "out"
    mtsnn.export(trained_model, out=out, dataset=f"mnist:{data}")
    capsys.readouterr()
    assert sim_main([str(out), "--target", "loihi", "--json", str(tmp_path / "r.json"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["dataset"] == f"mnist:{data}" and report["samples"] == 30
    assert sim_main([str(out / "model.core.json"), "--target", "loihi", "--json", str(tmp_path / "s.json"),
                     "--no-progress"]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["total"] == report["total"]
    (out / "model.core.npz").write_bytes((out / "model.core.npz").read_bytes() + b"x")  # changed after the export
    assert sim_main([str(out), "--target", "loihi", "--no-progress"]) == 2
    assert "model.core.npz: sha256" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the example


def test_the_python_api_example_runs(tmp_path):
    env = {**os.environ, "MTSNN_EXAMPLE_EPOCHS": "1", "MTSNN_EXAMPLE_OUT": str(tmp_path / "run")}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "python_api.py")], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bit-exact: True" in proc.stdout and (tmp_path / "run" / "model.export.json").is_file()
