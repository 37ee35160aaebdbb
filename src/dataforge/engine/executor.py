"""Executors: run one shard function over many shards, in this process, in worker processes, or on Ray.

A shard function is a top-level function `fn(params, task) -> result`; `params` (the stage's settings, shared by
every shard) and `task` (one shard's inputs: paths, offsets) are picklable, and so is the result, which is small
(row counts, stats, the paths written). Results come back in task order whatever order the workers finish in, so
what a stage builds from them does not depend on the number of workers.

`LocalExecutor` spawns its processes once per map call and feeds each a task only when it is idle; it waits on the
results *and* on every busy worker's process at once, so a worker that dies (killed, out of memory) ends the map with
a DataError naming the shard it held — never a hang (the failure `concurrent.futures` shows: a feeder thread blocked
on a dead worker's pipe).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from ..errors import DataError

ShardFn = Callable[[Any, Any], Any]
Describe = Callable[[int], str]
OnDone = Callable[[int, Any], None]

# How long a worker told to stop may take to exit before it is killed.
_STOP_S = 5.0


class Executor(Protocol):
    """Runs `fn(params, task)` for every task; results in task order."""

    workers: int

    def map(
        self,
        fn: ShardFn,
        params: Any,
        tasks: Sequence[Any],
        *,
        describe: Describe,
        on_done: OnDone | None = None,
        parallel: bool = True,
    ) -> list[Any]: ...


def default_workers() -> int:
    """Every core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class WorkerDied(DataError):
    """A worker process ended while it held a shard: `task` (its index, None while starting), `how` in words."""

    task: int | None = None
    how: str = ""


def describe_exit(exitcode: int | None) -> str:
    """How a worker process ended, in words: a signal (SIGKILL most likely the OOM killer), a status, or neither."""
    if exitcode is None:
        return "it closed its connection"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "an unknown signal"
        oom = ", likely out of memory" if -exitcode == signal.SIGKILL else ""
        return f"killed by signal {-exitcode} ({name}){oom}"
    return f"exited with status {exitcode}"


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling, else a RuntimeError holding its traceback."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError("".join(traceback.format_exception(exc)))


def _serve(conn: Connection) -> None:
    """A worker's loop until None or the parent goes: ("use", fn, params) sets the function of the map call that
    follows (so a pool serves every stage of a build); (index, task) runs it and sends (index, ok, result)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    fn: ShardFn | None = None
    params: Any = None
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        if item[0] == "use":
            _, fn, params = item
            continue
        index, task = item
        try:
            assert fn is not None
            conn.send((index, True, fn(params, task)))
        except BaseException as exc:  # noqa: BLE001 - every failure is the parent's to report
            conn.send((index, False, _portable(exc)))


class SerialExecutor:
    """Every task in this process, in order (one worker, or one task: starting processes would cost more)."""

    workers = 1

    def map(
        self,
        fn: ShardFn,
        params: Any,
        tasks: Sequence[Any],
        *,
        describe: Describe,
        on_done: OnDone | None = None,
        parallel: bool = True,
    ) -> list[Any]:
        out = []
        for i, task in enumerate(tasks):
            result = fn(params, task)
            out.append(result)
            if on_done is not None:
                on_done(i, result)
        return out


class LocalExecutor:
    """`workers` spawned processes on this machine (default: every core), started at the first map call that is
    worth them and kept for the next ones (each costs about a second to start); `close()` stops them."""

    def __init__(self, workers: int | None = None, num_partitions: int | None = None, *, spawn_one: bool = False):
        self.workers = workers or default_workers()
        self.num_partitions = num_partitions  # of the near-dedup band-key shuffle (None: from the row count)
        # A single task in a process of its own too (the write stage's exports run beside this process's work).
        self.spawn_one = spawn_one
        self._pool: _Pool | None = None

    def map(
        self,
        fn: ShardFn,
        params: Any,
        tasks: Sequence[Any],
        *,
        describe: Describe,
        on_done: OnDone | None = None,
        parallel: bool = True,
    ) -> list[Any]:
        """Results in task order. `parallel=False` (work too small to pay for starting processes, about a second
        each) runs every task here."""
        count = min(self.workers, len(tasks)) if parallel else 1
        if count < 1 or (count == 1 and not (self.spawn_one and parallel)):
            return SerialExecutor().map(fn, params, tasks, describe=describe, on_done=on_done)
        if self._pool is None:
            self._pool = _Pool(self.workers)
        try:
            return self._pool.run(fn, params, tasks, describe, on_done)
        except BaseException:
            self.close(kill=True)  # a worker died or a shard failed: the pool's state is not worth keeping
            raise

    def close(self, *, kill: bool = False) -> None:
        if self._pool is not None:
            self._pool.close(kill=kill)
            self._pool = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(kill=exc_type is not None)


class _Pool:
    """Spawned processes serving map calls; closing never hangs."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")  # fork after Arrow/tokenizers threads can deadlock
        self._describe: Describe = str
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        try:
            for _ in range(count):
                parent, child = context.Pipe(duplex=True)
                proc = context.Process(target=_serve, args=(child,), daemon=True, name="dataforge-shard")
                self._procs.append(proc)
                self._conns.append(parent)
                try:
                    proc.start()
                except OSError:
                    raise self._died(len(self._procs) - 1, None) from None
                finally:
                    child.close()  # only the worker holds its end: its death closes the connection
        except BaseException:
            self.close(kill=True)
            raise

    def run(
        self, fn: ShardFn, params: Any, tasks: Sequence[Any], describe: Describe, on_done: OnDone | None
    ) -> list[Any]:
        self._describe = describe
        todo = iter(enumerate(tasks))
        busy: dict[int, int] = {}  # worker → the task it holds
        results: dict[int, Any] = {}
        use = ("use", fn, params)
        for worker in range(len(self._procs)):
            try:
                self._conns[worker].send(use)  # params once per worker per map call, not once per task
            except OSError:
                raise self._died(worker, None) from None
            self._feed(worker, todo, busy)
        while busy:
            conns = {self._conns[w]: w for w in busy}
            sentinels = {self._procs[w].sentinel: w for w in busy}
            ready = wait([*conns, *sentinels])
            for conn in [r for r in ready if r in conns]:  # results first: a worker may send, then die
                worker = conns[conn]
                try:
                    index, ok, payload = conn.recv()
                except (EOFError, OSError):
                    raise self._died(worker, busy[worker]) from None
                del busy[worker]
                if not ok:
                    raise payload
                results[index] = payload
                if on_done is not None:
                    on_done(index, payload)
                self._feed(worker, todo, busy)
            for sentinel in [r for r in ready if r in sentinels]:
                worker = sentinels[sentinel]
                if worker in busy:
                    raise self._died(worker, busy[worker])
        return [results[i] for i in range(len(tasks))]

    def _feed(self, worker: int, todo: Any, busy: dict[int, int]) -> None:
        item = next(todo, None)
        if item is None:
            return
        busy[worker] = item[0]
        try:
            self._conns[worker].send(item)
        except OSError:  # BrokenPipeError, ConnectionResetError: the worker is gone
            raise self._died(worker, item[0]) from None

    def _died(self, worker: int, task: int | None) -> WorkerDied:
        proc = self._procs[worker]
        if proc.pid is not None:
            proc.join(1.0)  # a worker whose connection broke is exiting: give it a moment, to say how it ended
        how = describe_exit(proc.exitcode)
        what = f"shard {self._describe(task)}" if task is not None else "no shard (it was starting)"
        died = WorkerDied(
            f"the worker process holding {what} died ({how})",
            hint="a worker killed for memory: lower `engine.workers` or `shard_mb` in the recipe",
        )
        died.task, died.how = task, how  # for callers that say it in their own words (`dataforge render`)
        return died

    def close(self, *, kill: bool = False) -> None:
        """Stop every worker: asked first (unless `kill`), killed when it does not exit in time; never hangs."""
        for conn in self._conns:
            try:
                if not kill:
                    conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            if proc.pid is None:  # never started
                continue
            proc.join(0 if kill else _STOP_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()


class Hinted:
    """An executor whose map calls all carry one `parallel` hint (a stage that knows its work is small passes this
    to code that maps several times)."""

    def __init__(self, executor: Executor, parallel: bool) -> None:
        self._executor = executor
        self.parallel = parallel
        self.workers = executor.workers
        self.num_partitions = getattr(executor, "num_partitions", None)

    def map(
        self,
        fn: ShardFn,
        params: Any,
        tasks: Sequence[Any],
        *,
        describe: Describe,
        on_done: OnDone | None = None,
        parallel: bool = True,
    ) -> list[Any]:
        return self._executor.map(
            fn, params, tasks, describe=describe, on_done=on_done, parallel=parallel and self.parallel
        )


def hinted_for(executor: Executor, parts: Sequence[Any]) -> Executor:
    """`executor`, told to run in this process when `parts` (Parquet files) are too small to pay for workers."""
    from .runner import parallel_bytes

    big = len(parts) > 1 and sum(os.path.getsize(p) for p in parts) >= parallel_bytes()
    return Hinted(executor, big)
