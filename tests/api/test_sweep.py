"""mtsnn sweep: a tiny grid end to end on the embedded digits, resumable and deterministic, the
same table from the local and the Ray engine, refused points named, bad input as one line."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from mtsnn.cli import main
from mtsnn.hw_model.errors import InputError
from mtsnn.sweep import SPEC_FILE, SweepSpec, pareto_front, run_sweep

TINY = dict(dataset="digits", bits=(4, 8), smax=(1,), timesteps=(1,), targets=("loihi", "truenorth"), epochs=1,
            baseline_epochs=1, samples=40, batch_size=64)


def _strip(rows):
    return [{k: v for k, v in row.items()} for row in rows]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    return run_sweep(SweepSpec(**TINY), out, workers=1, progress=False)


def test_a_tiny_sweep_writes_its_table_and_plots(local_sweep):
    result = local_sweep
    assert [r["key"] for r in result.points] == ["b4-s1-t1", "b8-s1-t1"]
    ok = [r for r in result.rows if r["status"] == "ok"]
    refused = [r for r in result.rows if r["status"] == "refused"]
    assert {(r["bits"], r["target"]) for r in ok} == {(4, "loihi"), (8, "loihi")}
    assert all(r["bit_exact"] and r["static"] == "chip" for r in ok)
    for row in ok:  # energy is dynamic + static, and the figures are real measurements
        assert row["energy_j"] == pytest.approx(row["dynamic_energy_j"] + row["static_energy_j"])
        assert row["sops"] > 0 and row["latency_p99_s"] >= row["latency_s"] > 0 and row["cores"] >= 1
    # TrueNorth's axon-type rule refuses 4- and 8-bit weights, and the row names the rule
    assert {r["bits"] for r in refused} == {4, 8}
    assert all("axon types per core on target truenorth" in r["refused_by"] for r in refused)
    with open(result.files["csv"], newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(result.rows) and table[0]["bits"] == "4"
    document = json.loads(result.files["json"].read_text())
    assert document["rows"] == json.loads(json.dumps(result.rows))
    assert set(document["fronts"]) == {"loihi/energy_j", "loihi/latency_s", "truenorth/energy_j",
                                       "truenorth/latency_s"}
    for name in ("pareto_energy", "pareto_latency"):
        assert result.files[name].stat().st_size > 5000


def test_a_finished_point_is_never_recomputed_and_reruns_are_identical(local_sweep, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(local_sweep.out, out)
    again = run_sweep(SweepSpec(**TINY), out, workers=1, progress=False)
    assert again.work_seconds == 0.0 and again.rows == local_sweep.rows  # nothing recomputed
    (out / "points" / "b8-s1-t1" / "result.json").unlink()  # as if interrupted before that point ended
    resumed = run_sweep(SweepSpec(**TINY), out, workers=1, progress=False)
    assert resumed.work_seconds > 0
    assert resumed.rows == local_sweep.rows  # deterministic: the recomputed point gives the same figures


def test_the_ray_engine_gives_the_same_table(local_sweep, tmp_path):
    pytest.importorskip("ray")
    result = run_sweep(SweepSpec(**TINY), tmp_path / "ray", engine="ray", workers=2, progress=False)
    assert result.rows == local_sweep.rows


def test_pareto_front():
    rows = [{"energy_j": 1.0, "accuracy": 0.5}, {"energy_j": 2.0, "accuracy": 0.9}, {"energy_j": 3.0, "accuracy": 0.8},
            {"energy_j": 1.0, "accuracy": 0.4}]
    assert pareto_front(rows) == [rows[0], rows[1]]


@pytest.mark.parametrize("args,needle", [
    (["--target", "loihi,nosuchchip"], "nosuchchip"),
    (["--bits", ""], "--bits: expected a comma-separated list"),
    (["--bits", "4,x"], "--bits: expected a comma-separated list of integers"),
    (["--smax", "0"], "--smax: expected integers 1..255, found 0"),
    (["--timesteps", "1,1"], "--timesteps: expected distinct values"),
    (["--static", "some"], "--static: expected chip, used-cores, none"),
    (["--engine", "local", "--address", "ray://x:1"], "--address: expected only with --engine ray"),
    (["--epochs", "0"], "--epochs: expected an integer 1..10000"),
])
def test_bad_sweep_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    assert main(["sweep", "-o", str(tmp_path / "s"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "s" / SPEC_FILE).exists()  # refused before any work


def test_a_folder_holding_another_sweep_is_refused(local_sweep, tmp_path, capsys):
    out = tmp_path / "other"
    shutil.copytree(local_sweep.out, out)
    with pytest.raises(InputError, match="expected the same sweep to resume, found a different one"):
        run_sweep(SweepSpec(**{**TINY, "bits": (4,)}), out, workers=1, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["sweep", "-o", str(tmp_path / "busy"), "--no-progress"]) == 2
    assert "expected a new or empty folder" in capsys.readouterr().err


def test_simulation_shards_merge_into_the_same_report(local_sweep):
    """mtsnn-sim over an engine: the samples in shards, merged, give the report of one run."""
    pytest.importorskip("ray")
    import mtsnn

    export = local_sweep.out / "points" / "b8-s1-t1" / "export"
    one = mtsnn.simulate(export, target="loihi", samples=200, detailed_samples=0)
    for engine, workers in (("local", 2), ("ray", 2)):
        sharded = mtsnn.simulate(export, target="loihi", samples=200, detailed_samples=0, engine=engine,
                                 workers=workers)
        for key in ("total", "layers", "stats", "cores", "input"):  # counts exact, energies up to float rounding
            _same(sharded.report[key], one.report[key], f"{engine}: {key}")
        assert (sharded.result.logits == one.result.logits).all()
        assert sharded.result.core_counts.keys() == one.result.core_counts.keys()
        for kind, counts in one.result.core_counts.items():
            assert (sharded.result.core_counts[kind] == counts).all(), kind


def _same(a, b, where):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-30), where
    else:
        assert a == b, where
