"""Where independent tasks run: a local process pool (the default) or a Ray cluster.

``run_tasks(fn, tasks, engine=..., workers=..., address=...)`` calls ``fn(*args)`` for every
``args`` in ``tasks`` and yields ``(index, result)`` as each finishes. ``fn`` must be a
module-level function whose arguments and result pickle (a process pool and Ray both ship them).
``mtsnn sweep`` runs its points this way, ``mtsnn-sim --engine`` its data-set shards.

- ``local``: ``workers`` processes (spawned, so torch and BLAS start clean); one worker runs the
  tasks in this process, one after the other.
- ``ray`` (``pip install 'mtsnn[ray]'``): Ray tasks of one CPU each, on a Ray started here for
  the call (``workers`` CPUs) or on an existing cluster (``address``, e.g. ``ray://host:10001``
  or ``auto`` on a cluster node). A Ray already initialised by the caller is used as it is. A
  Ray that cannot start or be reached is ``CheckUnavailable`` (exit 3), one line.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator

from mtsnn.hw_model.errors import CheckUnavailable, InputError, one_line

__all__ = ["ENGINES", "check_engine", "contiguous_shards", "run_tasks"]

ENGINES = ("local", "ray")
_ADDRESS = re.compile(r"auto|local|(ray://)?[A-Za-z0-9._\-\[\]:]+:[0-9]{1,5}")  # what ray.init accepts


def check_engine(engine: str | None, workers: int | None, address: str | None) -> None:
    """One line for a bad engine, worker count or address (exit 2 on the command line); engine
    None (run in this process) takes neither."""
    if engine is None:
        for option, value in (("--workers", workers), ("--address", address)):
            if value is not None:
                raise InputError(f"{option}: expected only with --engine (local or ray), found {value!r} without it")
        return
    if engine not in ENGINES:
        raise InputError(f"--engine: expected one of {', '.join(ENGINES)}, found {engine!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"--workers: expected an integer >= 1, found {workers!r}")
    if address is not None and engine != "ray":
        raise InputError("--address: expected only with --engine ray")
    if address is not None and not _ADDRESS.fullmatch(str(address)):
        raise InputError(f"--address: expected a Ray cluster address (auto, HOST:PORT or ray://HOST:PORT), "
                         f"found {str(address)[:80]!r}")


def contiguous_shards(n: int, workers: int, largest: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of contiguous, non-empty shards of ``n`` samples in order: one per worker,
    more when a shard would hold over ``largest`` samples (bounded memory per task)."""
    n_shards = max(workers, -(-n // largest))
    bounds = [n * k // n_shards for k in range(n_shards + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def run_tasks(fn: Callable, tasks: list, *, engine: str = "local", workers: int | None = None,
              address: str | None = None) -> Iterator[tuple[int, object]]:
    """``(index, fn(*tasks[index]))`` for every task, as each finishes."""
    check_engine(engine, workers, address)
    workers = workers or max(1, min(len(tasks), os.cpu_count() or 1))
    if engine == "ray":
        yield from _ray(fn, tasks, workers, address)
    else:
        yield from _local(fn, tasks, workers)


def _local(fn: Callable, tasks: list, workers: int):
    if workers == 1 or len(tasks) <= 1:
        for index, args in enumerate(tasks):
            yield index, fn(*args)
        return
    import multiprocessing

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, *args): index for index, args in enumerate(tasks)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _ray(fn: Callable, tasks: list, workers: int, address: str | None):
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray: expected the ray package (pip install 'mtsnn[ray]'), found none") from None
    started = not ray.is_initialized()
    if started:
        options = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
        try:
            ray.init(**options, log_to_driver=False, logging_level="ERROR")
        except Exception as exc:  # noqa: BLE001 - Ray raises assorted types: no cluster there, a node that did not start
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise CheckUnavailable(f"--engine ray: could not start or reach {where} ({one_line(exc, 160)}); "
                                   "use --engine local, or check the cluster") from None
    try:
        remote = ray.remote(num_cpus=1)(fn)
        pending = {remote.remote(*args): index for index, args in enumerate(tasks)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray.get(done[0])
    finally:
        if started:
            ray.shutdown()
