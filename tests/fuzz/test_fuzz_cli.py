"""Every command's options against hostile values (mtsnn/cli.py: main, train_main, export_main,
sim_main, validate_main).

Random argument lists are drawn from each command's real options (read from its argparse
parser, so a new option is fuzzed as soon as it exists) with hostile values (negative, zero,
huge, nan, inf, empty, unicode, very long, paths that are folders, files, FIFOs, links,
unwritable or missing) and valid small ones, and run in-process. Each run must end as
docs/cli.md says: exit 0/1/2/3 (SystemExit 0 only for --help/--version, 2 for a usage error),
on exit 2/3 exactly one ``PROG: error: ...`` line, last on stderr, never a traceback; an output
that is a folder, under a file or unwritable is refused before any data set is loaded;
``--golden`` below 0 is refused; a run that succeeds wrote what it says (a checkpoint that loads,
a verified export, a JSON report, a core description). Training is kept cheap: valid values
are drawn only from small settings, and a run that would train gets ``--epochs 1 --arch
4C3p1-P2-16 --batch-size 256`` when it lacks them. A handful of runs are repeated as real
subprocesses of the installed scripts, to see real tracebacks and exit codes.
"""

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

import mtsnn
import mtsnn.toolchain.datasets as datasets_module
from fuzz_harness import HANG_S, TINY_TRAIN, Inconsistent, cli_call, fuzz_cases, fuzz_seed
from mtsnn import cli

ENTRIES = {  # entry function, the command it runs, its program name for errors
    "mtsnn-train": (cli.train_main, "train"),
    "mtsnn-export": (cli.export_main, "export"),
    "mtsnn-sim": (cli.sim_main, "sim"),
    "mtsnn-validate": (cli.validate_main, "validate"),
    "mtsnn train": (cli.main, "train"),
    "mtsnn evaluate": (cli.main, "evaluate"),
    "mtsnn export": (cli.main, "export"),
    "mtsnn sim": (cli.main, "sim"),
    "mtsnn validate": (cli.main, "validate"),
    "mtsnn targets": (cli.main, "targets"),
}

INTS = ["-1", "0", "-0", "+1", "1", "2", "3", "7", "8", "16", "17", "31", "32", "33", "64", "65", "255", "1024",
        "100000", "2147483648", "9223372036854775808", "1" + "0" * 30, "1" + "0" * 5000, "nan", "inf", "", " ",
        "1.5", "1e3", "0x10", "\u0663", "1_0", "five", "\x1b[2J", "5\n"]
FLOATS = ["nan", "-nan", "inf", "-inf", "infinity", "1e400", "-1e400", "1e-400", "0", "-0", "-1", "1e-300", "1e30",
          "1e300", "0.5", "3", "", "x", "1,5", "0x1p3", "1_0.5"]
WEIRD = ["", " ", "-", "--", "\x1b[2J", "a\nb", "\u202eevil", "\u00e9\U0001F600", "x" * 300, "\udcff", "..", "~",
         "~nobody-here/x"]

# values of train's options that keep a run cheap (or are invalid): an honest but slow request
# (--epochs 1000, --batch-size 1) is not what this test hunts; huge --augment and --a values hit
# slow failures tested once each (tests/fuzz/test_fuzz_checkpoint.py), so they are not drawn
TRAIN_VALUES = {
    "epochs": ["1", "1", "2", "0", "-1", "x", "1.5", "nan", ""],
    "batch_size": ["256", "1437", "100000", "9" * 30, "0", "-5", "x", "1e3", "nan", ""],
    "timesteps": ["1", "2", "3", "0", "-1", "65", "100000", "x", "nan", ""],
    "threads": ["1", "2", "0", "-1", "1025", "9" * 30, "x", ""],
    "augment": ["0", "1", "2", "-1", "x", "1.5", ""],
    "a": ["1", "0.5", "1e-30", "20", "0", "-1", "nan", "inf", "-inf", "1e400", "x", ""],
    "b": ["1", "20", "1e3", "1e-30", "0", "-1", "nan", "inf", "x", ""],
    "lr": ["3e-3", "1e-9", "1", "1e30", "0", "-1", "nan", "inf", "x", ""],
    "seed": ["0", "1", "4294967295", "4294967296", "-1", "x", ""],
    "smax": ["1", "15", "31", "0", "32", "-1", "x"],
    "bits": ["0", "2", "8", "16", "1", "17", "-1", "x"],
    "acc_bits": ["8", "20", "32", "7", "33", "-1", "x"],
    "arch": ["4C3p1-P2-16", "16", "4C3-16", "P2-16", "4C3p1-P2", "", "x", "4C3p1-P2-16\n", "4C99-16", "0C3-16",
             "4C3p1-P2-16-" * 40, "\x1b[2J", "4C3p1-P9-16", "4c3p1-p2-16"],  # huge channel counts: a known bug
}
SIM_VALUES = {
    "batch_size": ["1", "7", "128", "100000", "0", "-1", "x", ""],
    "detailed_samples": ["0", "1", "16", "100000", "-1", "x", ""],
    "crosscheck_samples": ["1", "10", "0", "-1", "100000", "x"],
}
SAMPLES = ["1", "5", "12", "360", "100000", "0", "-1", "x", "nan", "", "9" * 30]
GOLDEN = ["0", "1", "3", "100000", "100001", "-1", "-100", "x", "", "9" * 30, "1.5"]
EXPORT_BITS = ["2", "4", "8", "16", "0", "1", "17", "-1", "x", "", "9" * 30]

# paths, relative to each case's own working folder (made by _case_folder)
CHECKPOINTS = ["model.pt", "model.pt", "float.pt", "resumable.pt", "missing.pt", ".", "export", "empty.pt",
               "text.pt", "fifo.pt", "export/model.core.json", "/proc/self/status", "/dev/null", "loop.pt",
               "\u00e9\U0001F600.pt", "x" * 300 + ".pt", "a\nb.pt"]
CORES = ["export", "export", "export/model.core.json", "bare.core.json", "missing.core.json", "model.pt", "empty_dir",
         ".", "export/model.onnx", "fifo.pt", "x" * 300]
DIRS = ["export", "export", "export", ".", "missing", "model.pt", "export/model.core.json", "empty_dir", "/proc"]
TARGETS = ["loihi", "loihi", "truenorth", "target.toml", "bad.toml", "missing.toml", "export", "", "LOIHI",
           "model.pt", "/dev/null", "fifo.pt", "x" * 300]
DATASETS = ["digits", "mnist:mnist8", "fashion-mnist:mnist8", "cifar10:cifar", "mnist:missing", "mnist:model.pt",
            "mnist:", "digits:x", "", "x", "mnist:\x1b[2J", "cifar10:mnist8", "mnist:/proc/self"]
# output paths: the good ones, and the bad ones (must be refused before any data set is loaded)
GOOD_FILES = ["out/new.json", "new.pt", "existing.txt", "dangling", "loop.pt", "\u00e9\U0001F600.json",
              "\u202eevil.json", "a\nb.json"]
BAD_FILES = ["empty_dir", ".", "model.pt/x.json", "/proc/self/x.json", "x" * 300 + ".json"]
GOOD_DIRS = ["out_dir", "new/deeper", "\u00e9\U0001F600", "export", "."]
BAD_DIRS = ["existing.txt", "model.pt/x", "/proc/self/x", "x" * 300]
OUTPUT_FILES = {"out", "json_out", "placement_out"}
OUTPUT_DIRS = {"output", "plots"}


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _parser_actions(command: str):
    parser = cli._parser("x", "y")
    cli.COMMANDS[command][1](parser)
    return [a for a in parser._actions if a.dest not in ("help", "version")]


VALID = {  # the valid values of each option (a case draws most of its values from these, or few)
    "model": ["model.pt"], "init": ["model.pt", "float.pt"], "resume": ["resumable.pt"],
    "core": ["export", "export/model.core.json", "bare.core.json"], "dir": ["export"],
    "target": ["loihi", "truenorth", "target.toml"],
    "dataset": ["digits", "mnist:mnist8", "fashion-mnist:mnist8"],
    "samples": ["1", "5", "12"], "golden": ["0", "1", "3"],
}
TRAIN_VALID = {"epochs": ["1"], "batch_size": ["256", "1437", "100000"], "timesteps": ["1", "2", "3"],
               "threads": ["1", "2"], "augment": ["0", "1", "2"], "a": ["1", "0.5", "20"], "b": ["1", "20", "1e3"],
               "lr": ["3e-3", "1e-9", "1"], "seed": ["0", "4294967295"], "smax": ["1", "15", "31"],
               "bits": ["0", "2", "8", "16"], "acc_bits": ["20", "32"], "arch": ["4C3p1-P2-16", "16", "4C3-16"],
               "tau": ["0", "1", "10", "inf"], "theta": ["0.5", "1", "1e30"]}
SIM_VALID = {"batch_size": ["1", "7", "128", "100000"], "detailed_samples": ["0", "1", "16", "100000"],
             "crosscheck_samples": ["1", "10"]}


def _value(rng, command: str, action, bad_outputs: list, valid: bool) -> str:
    dest = action.dest
    if command == "export" and dest == "output" or dest == "plots":
        value = _pick(rng, GOOD_DIRS if valid else GOOD_DIRS + BAD_DIRS)
        if value in BAD_DIRS:
            bad_outputs.append(value)
        return value
    if dest in OUTPUT_FILES:
        value = _pick(rng, GOOD_FILES if valid else GOOD_FILES + BAD_FILES)
        if value in BAD_FILES:
            bad_outputs.append(value)
        return value
    if command == "train" and dest in TRAIN_VALUES:
        return _pick(rng, TRAIN_VALID[dest] if valid and dest in TRAIN_VALID else TRAIN_VALUES[dest])
    if command == "train" and valid and dest in TRAIN_VALID:
        return _pick(rng, TRAIN_VALID[dest])
    if command == "sim" and dest in SIM_VALUES:
        return _pick(rng, SIM_VALID[dest] if valid else SIM_VALUES[dest])
    if valid and dest in VALID:
        return _pick(rng, VALID[dest])
    if dest in ("model", "init", "resume"):
        return _pick(rng, CHECKPOINTS)
    if dest == "core":
        return _pick(rng, CORES)
    if dest == "dir":
        return _pick(rng, DIRS)
    if dest == "target":
        return _pick(rng, TARGETS)
    if dest == "dataset":
        return _pick(rng, DATASETS)
    if dest == "samples":
        return _pick(rng, SAMPLES)
    if dest == "golden":
        return _pick(rng, GOLDEN)
    if command == "export" and dest == "bits":
        return _pick(rng, EXPORT_BITS[:4] if valid else EXPORT_BITS)
    if action.choices:
        choices = [str(c) for c in action.choices]
        return _pick(rng, choices if valid else choices * 3 + ["", "X", choices[0].upper()])
    if action.type is int:
        return _pick(rng, ["1", "2", "8"] if valid else INTS)
    if action.type is float:
        return _pick(rng, ["0.5", "1"] if valid else FLOATS)
    return _pick(rng, WEIRD)


def _draw_argv(rng, command: str) -> tuple[list, list]:
    """(argv after the command, bad output paths in it)."""
    actions = _parser_actions(command)
    positionals = [a for a in actions if not a.option_strings]
    options = [a for a in actions if a.option_strings]
    bad: list = []
    p_valid = _pick(rng, [0.95, 0.8, 0.3])  # mostly valid runs, mixed ones, mostly hostile ones
    argv = [_value(rng, command, a, bad, rng.random() < p_valid) for a in positionals]
    for action in options:
        if action.required and rng.random() < 0.97:  # e.g. sim's --target
            argv += [action.option_strings[-1], _value(rng, command, action, bad, rng.random() < p_valid)]
    for _ in range(int(rng.integers(0, 5))):
        if not options:
            break
        action = _pick(rng, options)
        flag = _pick(rng, action.option_strings)
        if action.nargs == 0:
            argv.append(flag)
            continue
        value = _value(rng, command, action, bad, rng.random() < p_valid)
        if rng.random() < 0.15 and flag.startswith("--"):
            argv.append(f"{flag}={value}")
        else:
            argv += [flag, value]
    extra = rng.random()
    if extra < 0.03:
        argv.append(_pick(rng, ["--help", "-h", "--version"]))
    elif extra < 0.08:
        argv.insert(int(rng.integers(len(argv) + 1)), _pick(rng, ["--nope", "extra", "--", "-x", "--sam", "--samples"]))
    elif extra < 0.1 and argv:
        del argv[int(rng.integers(len(argv)))]
    return argv, bad


def _cheapen(command: str, argv: list) -> list:
    """Runs that would train get the tiny settings; data-heavy runs get at most 12 samples."""
    argv = list(argv)
    text = " ".join(argv)
    if command == "train" and "--resume" not in text:
        for flag, value in zip(TINY_TRAIN[::2], TINY_TRAIN[1::2]):
            if flag not in text:
                argv += [flag, value]
    if command in ("sim", "validate") and "--samples" not in text and "--sam" not in text:
        argv += ["--samples", "12"]
    return argv


# ----------------------------------------------------------------------------- the working folders


@pytest.fixture(scope="module")
def resources(tmp_path_factory, tiny_checkpoint, tiny_float_checkpoint, tiny_resumable):
    from mtsnn.hw_model.coredesc import write_core
    from mtsnn.hw_model.synthetic import random_network
    from mtsnn.hw_model.target import PRESET_DIR

    root = tmp_path_factory.mktemp("fuzz-cli-resources")
    shutil.copy(tiny_checkpoint, root / "model.pt")
    shutil.copy(tiny_float_checkpoint, root / "float.pt")
    shutil.copy(tiny_resumable, root / "resumable.pt")
    mtsnn.export(root / "model.pt", out=root / "export", samples=20, golden=3)
    net = random_network(np.random.default_rng(3), input_shape=(1, 8, 8), n_classes=10)
    write_core(root / "bare", net)
    shutil.copy(PRESET_DIR / "loihi.toml", root / "target.toml")
    (root / "bad.toml").write_text("[target]\nname = 5\n")
    (root / "empty.pt").write_bytes(b"")
    (root / "text.pt").write_text("hello\n")
    (root / "existing.txt").write_text("old\n")
    (root / "empty_dir").mkdir()
    mnist = root / "mnist8"
    mnist.mkdir()
    rng = np.random.default_rng(4)
    for stem, shape in (("train-images-idx3-ubyte", (40, 8, 8)), ("t10k-images-idx3-ubyte", (10, 8, 8))):
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
        (mnist / f"{stem}.gz").write_bytes(gzip.compress(header + array.tobytes()))
    for stem, n in (("train-labels-idx1-ubyte", 40), ("t10k-labels-idx1-ubyte", 10)):
        labels = bytes([i % 10 for i in range(n)])
        (mnist / stem).write_bytes((0x801).to_bytes(4, "big") + n.to_bytes(4, "big") + labels)
    cifar = root / "cifar"
    cifar.mkdir()
    import pickle

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [1, 2, 3]}
        (cifar / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def _case_folder(resources: Path, folder: Path) -> None:
    """A fresh copy of the resources (a run may overwrite a checkpoint or an export)."""
    shutil.copytree(resources, folder, symlinks=True)
    os.mkfifo(folder / "fifo.pt")
    (folder / "loop.pt").symlink_to(folder / "loop.pt")
    (folder / "dangling").symlink_to(folder / "nowhere" / "x")


# ----------------------------------------------------------------------------- consistency


def _consistent(command: str, argv: list, out: str, folder: Path) -> None:
    """What a successful run says it wrote is there and readable."""
    from mtsnn.export.artifacts import find_export
    from mtsnn.hw_model.coredesc import read_core
    from mtsnn.toolchain.checkpoint import load_checkpoint

    def option(*flags):
        found = None
        for i, token in enumerate(argv):
            for flag in flags:
                if token == flag and i + 1 < len(argv):
                    found = argv[i + 1]
                elif token.startswith(flag + "="):
                    found = token.split("=", 1)[1]
        return found

    if any(a in ("-h", "--help", "--version") for a in argv):
        return
    if command == "train":
        resume = option("--resume")
        path = option("-o", "--output") or resume or "model.pt"
        model, payload = load_checkpoint(folder / path)
        if payload.get("resume") is not None or payload["training"].get("complete") is not True:
            raise Inconsistent(f"train exit 0 but {path} is not a complete run")
    elif command == "export":
        model = argv[0] if argv and not argv[0].startswith("-") else None
        written = [line[len("wrote "):] for line in out.splitlines() if line.startswith("wrote ")]
        manifests = [Path(p) for p in written if p.endswith(".export.json")]
        if not manifests:
            raise Inconsistent("export exit 0 without writing a manifest")
        manifest = manifests[0] if manifests[0].is_absolute() else folder / manifests[0]
        find_export(manifest.parent, stem=manifest.name[: -len(".export.json")])
    elif command == "sim":
        json_out = option("--json")
        if json_out:
            target = folder / json_out
            report = json.loads(target.read_text(encoding="utf-8"))
            if not isinstance(report, dict) or "total" not in report:
                raise Inconsistent("sim --json wrote no report")
        placement = option("--placement-out")
        if placement:
            written = [line[len("wrote "):] for line in out.splitlines() if line.startswith("wrote ")
                       and line.endswith(".core.json")]
            core = Path(written[-1]) if written else None
            if core is None:
                raise Inconsistent("sim --placement-out wrote nothing")
            read_core(core if core.is_absolute() else folder / core)
    elif command == "evaluate" and "--json" in argv:
        result = json.loads(out.strip().splitlines()[-1])
        if not 0.0 <= result["accuracy"] <= 1.0:
            raise Inconsistent(f"evaluate accuracy {result['accuracy']}")
    elif command == "targets" and "--json" in argv:
        if not json.loads(out):
            raise Inconsistent("targets --json printed no target")


def _parsed(command: str, argv: list):
    """The namespace the command's own parser makes of ``argv`` (None: a usage error or --help)."""
    import contextlib
    import io

    parser = cli._parser("x", "y")
    cli.COMMANDS[command][1](parser)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(argv)
    except SystemExit:
        return None


def _expectations(command: str, argv: list) -> tuple[list, bool]:
    """(the unusable outputs the run must refuse, whether --golden is below 0), from the values
    argparse keeps (the last of a repeated option, abbreviations, --opt=value)."""
    args = _parsed(command, argv)
    if args is None:
        return [], False
    bad = []
    for dest in ("out", "json_out", "placement_out"):
        if getattr(args, dest, None) in BAD_FILES:
            bad.append(getattr(args, dest))
    for dest in ("output", "plots"):
        if getattr(args, dest, None) in BAD_DIRS and (dest == "plots" or command == "export"):
            bad.append(getattr(args, dest))
    golden = getattr(args, "golden", None)
    return bad, isinstance(golden, int) and golden < 0


# work whose honest cost exceeds the harness's default 10 s: starting a local Ray (about 7 s
# here) or spawned worker processes that import torch, and a cold torch.compile (about 18 s)
SLOW_OPTIONS = {"--engine": {"ray": 90.0, "local": 60.0}, "--compile": {"on": 60.0, "auto": 60.0}}


def _time_limit(argv: list) -> float:
    limit = HANG_S
    for i, arg in enumerate(argv):
        option, _, value = arg.partition("=")
        if option in SLOW_OPTIONS:
            value = value if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            limit = max(limit, SLOW_OPTIONS[option].get(value, HANG_S))
    return limit


def test_command_line_fuzz(fuzz, resources, tmp_path, capsys, monkeypatch):
    import torch

    cases = fuzz_cases(160)
    seed = fuzz_seed()
    threads = torch.get_num_threads()
    loads = []
    real_load = datasets_module.load_dataset

    def counting_load(spec):
        loads.append(spec)
        return real_load(spec)

    monkeypatch.setattr(datasets_module, "load_dataset", counting_load)
    names = sorted(ENTRIES)
    for case in range(cases):
        rng = np.random.default_rng([seed, 7, case])
        name = _pick(rng, names)
        entry, command = ENTRIES[name]
        argv, _ = _draw_argv(rng, command)
        argv = _cheapen(command, argv)
        bad_outputs, golden_below_zero = _expectations(command, argv)
        full = ([command] if entry is cli.main else []) + argv
        folder = tmp_path / f"c{case}"
        _case_folder(resources, folder)
        monkeypatch.chdir(folder)
        loads.clear()

        def run():
            torch.set_num_threads(1)  # one thread unless --threads says otherwise: fast on a busy machine
            try:
                verdict, rc, out, err = cli_call(entry, full, capsys, name)
            finally:
                torch.set_num_threads(threads)
            if bad_outputs and rc == 0:
                raise Inconsistent(f"an unusable output {bad_outputs[0][:40]!r} was accepted")
            if bad_outputs and loads:
                raise Inconsistent(f"a data set was loaded before refusing the output {bad_outputs[0][:40]!r}: "
                                   f"{err.strip()[-200:]!r}")
            if golden_below_zero and rc == 0:
                raise Inconsistent("--golden below 0 was accepted")
            if rc == 0:
                _consistent(command, argv, out, folder)
            return verdict if verdict != "divergence" else "accepted_divergence"

        verdict = fuzz.case(f"case {case}: {name} {' '.join(repr(a)[:60] for a in argv)}", run,
                            limit_s=_time_limit(argv))
        fuzz.bump(f"{name}: {verdict}")
        monkeypatch.chdir(tmp_path)
        shutil.rmtree(folder, ignore_errors=True)
    fuzz.finish()


# ----------------------------------------------------------------------------- fixed expectations


@pytest.mark.parametrize("argv", [
    ["export", "model.pt", "--golden", "-1"],
    ["export", "model.pt", "--golden", "-1", "-o", "out"],
    ["export", "model.pt", "--golden=-5"],
])
def test_golden_below_zero_is_refused(resources, tmp_path, capsys, monkeypatch, argv):
    _case_folder(resources, tmp_path / "c")
    monkeypatch.chdir(tmp_path / "c")
    verdict, rc, out, err = cli_call(cli.main, argv, capsys, "mtsnn export")
    assert rc == 2 and "--golden" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, prog, option", [
    (["train", "-o", "empty_dir"], "mtsnn train", "checkpoint"),
    (["train", "-o", "model.pt/x.pt"], "mtsnn train", "checkpoint"),
    (["train", "-o", "/proc/self/x.pt"], "mtsnn train", "checkpoint"),
    (["export", "model.pt", "-o", "existing.txt"], "mtsnn export", "export folder"),
    (["export", "model.pt", "-o", "/proc/self/x"], "mtsnn export", "export folder"),
    (["sim", "export", "--target", "loihi", "--json", "empty_dir"], "mtsnn sim", "--json"),
    (["sim", "export", "--target", "loihi", "--plots", "existing.txt"], "mtsnn sim", "--plots"),
    (["sim", "export", "--target", "loihi", "--placement-out", "/proc/self/x.core.json"], "mtsnn sim",
     "--placement-out"),
])
def test_unusable_outputs_are_refused_before_any_work(resources, tmp_path, capsys, monkeypatch, argv, prog, option):
    _case_folder(resources, tmp_path / "c")
    monkeypatch.chdir(tmp_path / "c")
    loads = []
    monkeypatch.setattr(datasets_module, "load_dataset", lambda spec: loads.append(spec))
    verdict, rc, out, err = cli_call(cli.main, argv, capsys, prog)
    assert rc == 2 and option in err and loads == [], (rc, err)


SUBPROCESS_RUNS = [  # (script, argv, expected exit code, a word of the error)
    ("mtsnn-sim", ["missing-folder", "--target", "loihi"], 2, "missing-folder"),
    ("mtsnn-sim", ["export", "--target", "bad.toml", "--samples", "3"], 2, "bad.toml"),
    ("mtsnn-sim", ["export", "--target", "loihi", "--samples", "0"], 2, "--samples"),
    ("mtsnn-sim", ["export", "--target", "loihi", "--batch-size", "\u0663x"], 2, "--batch-size"),
    ("mtsnn-export", ["model.pt", "--golden", "-1"], 2, "--golden"),
    ("mtsnn-validate", ["float.pt", "export", "--samples", "3"], 2, "export"),
]


def test_a_handful_as_real_processes(resources, tmp_path):
    """The installed scripts, as a user runs them: the exit code and one error line, no traceback."""
    folder = tmp_path / "c"
    _case_folder(resources, folder)
    bin_dir = Path(sys.executable).parent
    processes = [(script, argv, code, word, subprocess.Popen([str(bin_dir / script), *argv], cwd=folder,
                                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                             text=True, errors="backslashreplace"))
                 for script, argv, code, word in SUBPROCESS_RUNS]
    for script, argv, code, word, process in processes:
        out, err = process.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert "Traceback" not in err, (script, argv, err)
        assert process.returncode == code, (script, argv, process.returncode, err)
        assert len(lines) == 1 and lines[0].startswith(f"{script}: error:") and word in lines[0], (script, argv, err)


@pytest.mark.parametrize("arch", ["9" * 30 + "C3-16", "100000C3-16", "4C3-100000000"])
def test_huge_architectures_are_refused_before_anything_is_allocated(arch):
    """Regression: toolchain/arch.py bounds neurons and weights per layer."""
    from mtsnn.hw_model.errors import MtsnnError
    from mtsnn.toolchain.model import ModelConfig

    with pytest.raises(MtsnnError):
        ModelConfig(arch=arch, input_shape=(1, 8, 8), n_classes=10)
