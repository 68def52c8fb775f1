"""mtsnn.engines: every task once, results by index, bad options and an unreachable Ray as one line."""

from __future__ import annotations

import pytest

from mtsnn.engines import check_engine, run_tasks
from mtsnn.hw_model.errors import CheckUnavailable, InputError


def _square(x):  # module level: a spawned process pool pickles it by name
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_the_local_engine_runs_every_task_once(workers):
    results = dict(run_tasks(_square, [(i,) for i in range(7)], engine="local", workers=workers))
    assert results == {i: i * i for i in range(7)}


@pytest.mark.parametrize("engine, workers, address, message", [
    ("spark", None, None, "--engine: expected one of local, ray, found 'spark'"),
    ("local", 0, None, "--workers: expected an integer >= 1, found 0"),
    ("local", None, "auto", "--address: expected only with --engine ray"),
    (None, 2, None, "--workers: expected only with --engine (local or ray), found 2 without it"),
    ("ray", None, "host name:1", "--address: expected a Ray cluster address"),
])
def test_bad_engine_options_are_one_line(engine, workers, address, message):
    with pytest.raises(InputError) as caught:
        check_engine(engine, workers, address)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_ray_that_cannot_start_is_check_unavailable(monkeypatch):
    ray = pytest.importorskip("ray")

    def refuse(**options):
        raise Exception("The current node timed out during startup.")  # what Ray raises, untyped

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(CheckUnavailable, match="--engine ray: could not start or reach a local Ray"):
        list(run_tasks(_square, [(1,), (2,)], engine="ray", workers=2))
