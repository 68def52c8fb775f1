"""The command line's conventions: --version, one-line errors with documented exit codes,
Ctrl-C, output locations checked first, notes instead of silent shortfalls, the targets list."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mtsnn
from mtsnn import cli
from mtsnn.hw_model.errors import EXIT_CODES

SCRIPTS = {"mtsnn": cli.main, "mtsnn-train": cli.train_main, "mtsnn-export": cli.export_main,
           "mtsnn-sim": cli.sim_main, "mtsnn-validate": cli.validate_main}


def _one_error_line(capsys, prog: str) -> str:
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note:")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("prog", sorted(SCRIPTS))
def test_version_on_every_command(prog, capsys):
    with pytest.raises(SystemExit) as info:
        SCRIPTS[prog](["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"{prog} {mtsnn.__version__}"


def test_installed_scripts_print_the_version():
    bin_dir = Path(sys.executable).parent
    for prog in SCRIPTS:
        proc = subprocess.run([str(bin_dir / prog), "--version"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == f"{prog} {mtsnn.__version__}", proc.stderr


def test_exit_codes_are_documented_once():
    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} |" in text, code


@pytest.mark.parametrize("argv, needle", [
    (["train", "--smax", "many"], "argument --smax: invalid int value"),
    (["sim"], "the following arguments are required"),
    (["nonsense"], "invalid choice"),
])
def test_usage_errors_are_one_line_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and err.startswith("mtsnn")


def test_targets_lists_every_preset_one_line_each(capsys):
    assert cli.main(["targets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == [t.name for t in mtsnn.list_targets()] and {"loihi", "truenorth"} <= set(names)
    assert cli.main(["targets", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in listed] == names and all(Path(t["file"]).is_file() for t in listed)


# ----------------------------------------------------------------------------- output checks


def test_training_refuses_an_unwritable_output_before_any_work(tmp_path, capsys, monkeypatch):
    import mtsnn.toolchain.datasets as datasets

    def never(*args, **kwargs):
        raise AssertionError("the data set must not even be loaded")

    monkeypatch.setattr(datasets, "load_dataset", never)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert cli.train_main(["-o", str(folder), "--no-progress"]) == 2
    assert "expected a file path, found a directory" in _one_error_line(capsys, "mtsnn-train")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.train_main(["-o", str(blocker / "model.pt"), "--no-progress"]) == 2
    assert "found a file" in _one_error_line(capsys, "mtsnn-train")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_training_refuses_a_read_only_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert cli.train_main(["-o", str(folder / "model.pt"), "--no-progress"]) == 2
        assert "expected a writable folder" in _one_error_line(capsys, "mtsnn-train")
    finally:
        folder.chmod(0o700)


def test_export_and_sim_refuse_outputs_that_are_files_or_folders(trained_model, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert cli.export_main([str(trained_model), "-o", str(blocker)]) == 2
    assert "export folder: expected a folder, found a file" in _one_error_line(capsys, "mtsnn-export")
    out = tmp_path / "out"
    assert cli.export_main([str(trained_model), "-o", str(out)]) == 0
    capsys.readouterr()
    assert cli.sim_main([str(out), "--target", "loihi", "--json", str(tmp_path), "--no-progress"]) == 2
    assert "--json: expected a file path, found a directory" in _one_error_line(capsys, "mtsnn-sim")
    assert cli.sim_main([str(out), "--target", "loihi", "--plots", str(blocker), "--no-progress"]) == 2
    assert "--plots: expected a folder, found a file" in _one_error_line(capsys, "mtsnn-sim")


# ----------------------------------------------------------------------------- notes and labels


def test_samples_beyond_the_data_set_say_how_many_were_used(trained_model, capsys):
    assert cli.main(["evaluate", str(trained_model), "--samples", "5000", "--json"]) == 0
    captured = capsys.readouterr()
    assert "note: --samples 5000 > the 360 test samples available: using all 360" in captured.err
    assert json.loads(captured.out)["samples"] == 360
    assert cli.main(["evaluate", str(trained_model), "--samples", "7", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["samples"] == 7 and "note:" not in captured.err


def test_float_baseline_is_labelled_float_and_epoch_lines_show_both_times(tmp_path, capsys):
    path = tmp_path / "float.pt"
    assert cli.train_main(["--arch", "4C3p1-P2-16", "--epochs", "2", "--bits", "0", "-o", str(path),
                           "--batch-size", "128"]) == 0
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    for line in epoch_lines:
        assert "test acc (float)" in line and " s, total " in line  # the epoch's own time, then the total
    assert "test accuracy (float baseline, not integer-exact)" in out and "integer-exact forward" not in out
    assert cli.main(["evaluate", str(path)]) == 0
    assert "accuracy (float)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- Ctrl-C


def _interrupt(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, delivered as KeyboardInterrupt
    raise AssertionError("SIGINT did not interrupt")


@pytest.mark.parametrize("prog, argv, patched", [
    ("mtsnn-train", ["--no-progress", "-o", "{tmp}/m.pt"], "train"),
    ("mtsnn-export", ["{model}", "-o", "{tmp}/e"], "export"),
    ("mtsnn-sim", ["{tmp}/nothing", "--target", "loihi", "--no-progress"], "simulate"),
    ("mtsnn-validate", ["{model}", "{tmp}"], "validate"),
    ("mtsnn", ["evaluate", "{model}"], "evaluate"),
])
def test_ctrl_c_prints_one_line_and_exits_130(prog, argv, patched, trained_model, tmp_path, capsys, monkeypatch):
    from mtsnn import api

    monkeypatch.setattr(api, patched, _interrupt)
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{model}", str(trained_model)) for a in argv]
    assert SCRIPTS[prog](argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{prog if prog != 'mtsnn' else 'mtsnn evaluate'}: interrupted"]


def test_ctrl_c_in_a_real_training_process_exits_130_without_traceback(tmp_path):
    """A separate process receives SIGINT while training: one line, exit 130, a resumable file."""
    script = tmp_path / "run.py"
    script.write_text(
        "import os, signal, sys\n"
        "import mtsnn.api as api\n"
        "from mtsnn.cli import train_main\n"
        "original = api._epoch_line\n"
        "def line(record, kind):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return original(record, kind)\n"
        "api._epoch_line = line\n"
        f"sys.exit(train_main(['--arch', '4C3p1-P2-16', '--epochs', '3', '--threads', '1', '-o', r'{tmp_path / 'm.pt'}']))\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "mtsnn-train: interrupted" in proc.stderr.splitlines()[-1]
    assert f"continue with --resume {tmp_path / 'm.pt'}" in proc.stderr
    assert (tmp_path / "m.pt").is_file()
