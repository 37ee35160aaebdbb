"""The local executor: results in task order, failures and dead workers reported, one pool for many map calls."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dataforge.engine.executor import LocalExecutor, SerialExecutor, WorkerDied
from dataforge.errors import DataError


def scaled(params: int, task: int) -> tuple[int, int]:
    """Slow for the first tasks, so that later ones finish first: order must still follow the tasks."""
    time.sleep(0.05 if task < 2 else 0.0)
    return params * task, os.getpid()


def fails_on_three(params: None, task: int) -> int:
    if task == 3:
        raise DataError(f"bad shard {task}", hint="look at it")
    return task


def dies_on_five(params: None, task: int) -> int:
    if task == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return task


def test_results_follow_the_tasks_and_one_pool_serves_every_map_call():
    with LocalExecutor(2) as executor:
        first = executor.map(scaled, 3, list(range(12)), describe=str)
        second = executor.map(scaled, 5, list(range(12)), describe=str)
    assert [r[0] for r in first] == [3 * i for i in range(12)]
    assert [r[0] for r in second] == [5 * i for i in range(12)]
    pids = {r[1] for r in first} | {r[1] for r in second}
    assert os.getpid() not in pids and len(pids) == 2  # the same two workers, reused
    assert SerialExecutor().map(scaled, 3, list(range(12)), describe=str)[5][0] == 15


def test_work_too_small_for_processes_runs_here():
    executor = LocalExecutor(2)
    done = []
    results = executor.map(scaled, 2, [1, 2, 3], describe=str, parallel=False, on_done=lambda i, r: done.append(i))
    assert {pid for _, pid in results} == {os.getpid()} and done == [0, 1, 2]


def test_a_failing_shard_raises_its_own_error_with_its_hint():
    with LocalExecutor(2) as executor, pytest.raises(DataError) as caught:
        executor.map(fails_on_three, None, list(range(8)), describe=lambda i: f"part {i}")
    assert caught.value.message == "bad shard 3" and caught.value.hint == "look at it"


def test_a_worker_that_dies_fails_the_map_naming_its_shard_without_hanging():
    started = time.monotonic()
    with LocalExecutor(2) as executor, pytest.raises(WorkerDied) as caught:
        executor.map(dies_on_five, None, list(range(10)), describe=lambda i: f"convert:a part {i + 1} of 10")
    assert time.monotonic() - started < 30
    assert caught.value.message == (
        "the worker process holding shard convert:a part 6 of 10 died (killed by signal 9 (SIGKILL), likely out of "
        "memory)"
    )
    # The executor starts a fresh pool for the next call.
    with LocalExecutor(2) as executor:
        assert [r[0] for r in executor.map(scaled, 1, [0, 1, 2, 3], describe=str)] == [0, 1, 2, 3]
