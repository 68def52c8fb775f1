"""End to end: mtsnn export / mtsnn-export and mtsnn validate / mtsnn-validate."""

import json
from pathlib import Path
import shutil

import numpy as np
import onnx
import pytest

from mtsnn.cli import export_main, validate_main
from mtsnn.hw_model.coredesc import read_core, write_core
from mtsnn.hw_model.network import ConvLayer
from mtsnn.toolchain.checkpoint import load_checkpoint
from mtsnn.cli import main as mtsnn_main


def _reseal(out):
    """Rewrite the manifest's file digests to match the folder as it is now."""
    from mtsnn.hw_model.fileio import sha256_file

    manifest = out / "model.export.json"
    document = json.loads(manifest.read_text())
    document["files"] = {name: sha256_file(out / name) for name in document["files"]}
    manifest.write_text(json.dumps(document))


def _export(model, out, *extra):
    return export_main([str(model), "--bits", "8", "-o", str(out), *extra])


def test_export_writes_every_artifact_and_validate_is_bit_exact(trained_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert _export(trained_model, out, "--golden", "5") == 0
    for name in ("model.onnx", "model.core.json", "model.core.npz", "model.golden.npz", "model.export.json"):
        assert (out / name).is_file(), name
    onnx.checker.check_model(onnx.load(out / "model.onnx"), full_check=True)
    core = read_core(out / "model.core.json")
    assert core.network.provenance["export_bits"] == 8 and core.network.provenance["requantized"] is False
    capsys.readouterr()
    code = validate_main([str(trained_model), str(out), "--json", "--no-sim"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["bit_exact"] is True and report["mismatches"] == 0 and report["samples"] == 360
    assert set(report["accuracy"]) == {"reference", "qat", "onnxruntime"}
    assert len(set(report["accuracy"].values())) == 1  # identical logits give identical accuracy


def test_golden_vectors_match_the_reference(trained_model, tmp_path):
    out = tmp_path / "g"
    assert _export(trained_model, out, "--golden", "4") == 0
    from mtsnn.hw_model.reference import run_reference

    golden = np.load(out / "model.golden.npz")
    net = read_core(out / "model.core.json").network
    result = run_reference(net, golden["images"])
    assert golden["images"].shape == (4, 1, 8, 8) and golden["images"].dtype == np.uint8
    np.testing.assert_array_equal(golden["logits"], result.logits)
    for layer in net.layers[:-1]:
        np.testing.assert_array_equal(golden[f"spikes_{layer.name}"], result.spikes[layer.name])


def test_export_at_other_bits_requantizes_and_reports_the_accuracy_change(trained_model, tmp_path, capsys):
    out = tmp_path / "q4"
    assert export_main([str(trained_model), "--bits", "4", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "post-training re-quantization" in err and "trained at 8" in err and "pp" in err
    report = json.loads((out / "model.export.json").read_text())
    assert report["bits"] == 4 and "accuracy_change" in report
    assert report["accuracy_change"] == pytest.approx(report["integer_accuracy"] - report["trained_accuracy"])
    net = read_core(out / "model.core.json").network
    assert all(abs(l.weight).max() <= 7 for l in net.layers if hasattr(l, "weight"))
    # validation loads the model at the exported bits, so it is still bit-exact
    assert validate_main([str(trained_model), str(out), "--no-sim"]) == 0


def test_umbrella_command_exports_too(trained_model, tmp_path):
    assert mtsnn_main(["export", str(trained_model), "--bits", "8", "-o", str(tmp_path / "u")]) == 0
    assert (tmp_path / "u" / "model.core.json").is_file()


def test_validate_names_the_first_divergence_and_exits_1(trained_model, tmp_path, capsys):
    out = tmp_path / "tampered"
    assert _export(trained_model, out) == 0
    core = read_core(out / "model.core.json")
    net = core.network
    first = net.layers[0]
    assert isinstance(first, ConvLayer)
    weight = first.weight.copy()
    weight[0, 0, 1, 1] = -weight[0, 0, 1, 1] if weight[0, 0, 1, 1] else 5  # one synapse changed
    tampered = ConvLayer(name=first.name, in_shape=first.in_shape, neuron=first.neuron, readout=False,
                         weight=weight, bias=first.bias, stride=first.stride, padding=first.padding,
                         weight_bits=first.weight_bits, provenance=first.provenance)
    from mtsnn.hw_model.network import IntegerNetwork

    bad = IntegerNetwork(encoder=net.encoder, layers=(tampered,) + net.layers[1:], timesteps=net.timesteps,
                         n_classes=net.n_classes, provenance=net.provenance)
    write_core(out / "model.core.json", bad)  # the core description no longer matches model.pt / ONNX
    capsys.readouterr()
    assert validate_main([str(trained_model), str(out), "--no-sim"]) == 2  # refused: changed after the export
    err = capsys.readouterr().err.strip()
    assert "model.core.json: sha256" in err and "modified after the export" in err and "\n" not in err
    _reseal(out)  # what a buggy exporter would write: consistent digests, wrong integers
    assert validate_main([str(trained_model), str(out), "--no-sim"]) == 1
    text = capsys.readouterr().out
    assert "first divergence" in text and f"layer {first.name}" in text and "time step 0" in text
    assert "bit-exact: " in text and "/360 samples" in text and not text.startswith("bit-exact: 360/360")


@pytest.mark.parametrize("argv, needle", [
    (["missing.pt", "--bits", "8"], "missing.pt: not found"),
    (["{model}", "--bits", "1"], "--bits: expected 2..16"),
    (["{model}", "--bits", "8", "--dataset", "mnist:/nonexistent"], "/nonexistent"),
])
def test_export_errors_are_one_line_exit_2(trained_model, tmp_path, capsys, argv, needle):
    argv = [a.replace("{model}", str(trained_model)) for a in argv] + ["-o", str(tmp_path / "e")]
    assert export_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtsnn-export: error:") and needle in err and "\n" not in err
    assert not (tmp_path / "e" / "model.onnx").exists()


def test_validate_errors_are_one_line_exit_2(trained_model, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert validate_main([str(trained_model), str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtsnn-validate: error:") and "expected model.export.json" in err and "\n" not in err
    assert validate_main([str(trained_model), str(tmp_path / "nope")]) == 2
    assert "expected the output folder of mtsnn-export, found nothing" in capsys.readouterr().err


def test_a_non_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    fake = tmp_path / "model.pt"
    fake.write_text("not a checkpoint")
    assert export_main([str(fake), "--bits", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an mtsnn checkpoint" in err and "\n" not in err


def test_lints_report_smax_clipping_on_a_hot_network(trained_model, tmp_path):
    """Re-export at 2 bits saturates differently; the report always carries one lint per layer."""
    out = tmp_path / "lint"
    assert export_main([str(trained_model), "--bits", "8", "-o", str(out)]) == 0
    report = json.loads((out / "model.export.json").read_text())
    model, _ = load_checkpoint(trained_model)
    assert [l["layer"] for l in report["lints"]] == model.layer_names
    for lint in report["lints"]:
        assert 0.0 <= lint["smax_clipped_fraction"] <= 1.0 and lint["accumulator_saturations"] >= 0


def test_validate_includes_the_simulator_on_both_targets(trained_model, tmp_path, capsys):
    out = tmp_path / "sim"
    assert _export(trained_model, out) == 0
    for target in ("loihi", "truenorth"):
        capsys.readouterr()
        relax = ["--relax", "axon-types"] if target == "truenorth" else []
        assert validate_main([str(trained_model), str(out), "--json", "--samples", "40", "--target", target]
                             + relax) == 0
        report = json.loads(capsys.readouterr().out)
        assert f"simulator[{target}]" in report["paths"] and report["bit_exact"] and report["samples"] == 40


def test_validate_fails_with_exit_3_when_the_requested_simulator_cannot_map(trained_model, tmp_path, capsys):
    """A target whose cores hold too few axons and no partial sums: the simulator path the user
    asked for cannot run, which is a failure of its own (exit 3), never a note with exit 0."""
    out = tmp_path / "nomap"
    assert _export(trained_model, out) == 0
    text = (Path(__file__).resolve().parents[2] / "hw_model" / "targets" / "truenorth.toml").read_text()
    small = tmp_path / "tiny.toml"
    import re

    text = text.replace('axon_types_rule = "enforce"', 'axon_types_rule = "relax"')
    small.write_text(re.sub(r"(?m)^axons_in\s*=\s*\d+", "axons_in = 16", text, count=1))
    capsys.readouterr()
    assert validate_main([str(trained_model), str(out), "--samples", "10", "--target", str(small)]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mtsnn-validate: error: simulator path") and "fan-in" in err and "\n" not in err
    assert validate_main([str(trained_model), str(out), "--samples", "10", "--target", str(small), "--no-sim"]) == 0


def test_float_baseline_trains_and_exports_with_post_training_quantization(tmp_path, capsys):
    path = tmp_path / "float.pt"
    assert mtsnn_main(["train", "--arch", "8C3p1-P2-32", "--epochs", "1", "--bits", "0", "--no-progress",
                       "-o", str(path)]) == 0
    model, payload = load_checkpoint(path)
    assert model.config.bits == 0 and not model.config.quantized
    assert export_main([str(path), "-o", str(tmp_path / "f")]) == 2  # a float model needs --bits
    assert "post-training quantization" in capsys.readouterr().err
    assert export_main([str(path), "--bits", "8", "-o", str(tmp_path / "f")]) == 0
    report = json.loads((tmp_path / "f" / "float.export.json").read_text())
    assert report["trained_bits"] == 0 and report["bits"] == 8 and "accuracy_change" in report
    assert validate_main([str(path), str(tmp_path / "f"), "--no-sim"]) == 0
