"""Render worker processes that fail loudly: a worker that dies ends the stage with a message, never a hang.

`concurrent.futures.ProcessPoolExecutor` can hang when a worker is killed (by the kernel's OOM killer, say): its
feeder thread blocks writing a large task to the dead worker's pipe and shutting the pool down waits on that
thread, so a build sat for over an hour beside a zombie worker. Here each worker has its own connection and gets
a batch only when it is idle (so a send never waits on a busy reader), and the parent waits on the results *and*
on every busy worker's process sentinel at once: a death is seen the moment it happens.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import pyarrow as pa

from ..engine.executor import _portable, describe_exit
from .engine import Rendered, RenderOptions, render_rows
from .spans import SpanError
from .target import LoadedTarget

# How long a worker told to stop may take to exit before it is killed.
_STOP_S = 5.0


class WorkerDied(Exception):
    """A render worker process ended while it had a batch (`batch`, its index) or while starting (`batch` None);
    `how` says how it ended."""

    def __init__(self, how: str, batch: int | None) -> None:
        super().__init__(f"a render worker process died ({how})")
        self.how = how
        self.batch = batch


def _serve(conn: Connection, target: LoadedTarget, options: RenderOptions) -> None:
    """A worker's main loop: (index, batch) in, (index, kind, payload) out, until None or the parent goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        index, batch = item
        try:
            conn.send((index, "ok", render_rows(batch.to_pylist(), target, options)))
        except SpanError as exc:  # SpanError's constructor takes more than its args: sent as its parts
            conn.send((index, "span", (exc.reason, exc.message, exc.field)))
        except Exception as exc:
            conn.send((index, "error", _portable(exc)))


class RenderWorkers:
    """`count` spawned processes rendering batches for one target; use as a context manager."""

    def __init__(self, count: int, target: LoadedTarget, options: RenderOptions) -> None:
        context = multiprocessing.get_context("spawn")  # fork after Arrow/tokenizers threads can deadlock
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        try:
            for _ in range(count):
                parent, child = context.Pipe(duplex=True)
                proc = context.Process(
                    target=_serve, args=(child, target, options), daemon=True, name="dataforge-render"
                )
                self._procs.append(proc)
                self._conns.append(parent)
                try:
                    proc.start()  # writes the target to the new process: fails if it dies before reading it
                except OSError:
                    raise self._died(len(self._procs) - 1, None) from None
                finally:
                    child.close()  # only the worker holds its end: its death closes the connection
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RenderWorkers:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(kill=exc_type is not None)  # after a failure the busy workers' results are not wanted

    def map(self, batches: list[pa.Table]) -> Iterator[Rendered]:
        """Each batch rendered, in order; raises WorkerDied when a worker ends while it holds a batch."""
        todo = iter(enumerate(batches))
        busy: dict[int, int] = {}  # worker → the batch it holds
        done: dict[int, Rendered] = {}
        for worker in range(len(self._procs)):
            self._feed(worker, todo, busy)
        for want in range(len(batches)):
            while want not in done:
                self._collect(busy, done, todo)
            yield done.pop(want)

    def _feed(self, worker: int, todo: Iterator[tuple[int, pa.Table]], busy: dict[int, int]) -> None:
        item = next(todo, None)
        if item is None:
            return
        busy[worker] = item[0]
        try:
            self._conns[worker].send(item)
        except OSError:  # BrokenPipeError, ConnectionResetError: the worker is gone
            raise self._died(worker, item[0]) from None

    def _collect(self, busy: dict[int, int], done: dict[int, Rendered], todo: Iterator[tuple[int, pa.Table]]) -> None:
        """Wait for the next result or death among the busy workers; hand the next batch to a worker that is done."""
        conns = {self._conns[w]: w for w in busy}
        sentinels = {self._procs[w].sentinel: w for w in busy}
        ready = wait([*conns, *sentinels])
        for conn in [r for r in ready if r in conns]:  # results first: a worker may send, then die
            worker = conns[conn]
            try:
                index, kind, payload = conn.recv()
            except (EOFError, OSError):
                raise self._died(worker, busy[worker]) from None
            del busy[worker]
            if kind == "span":
                raise SpanError(payload[0], payload[1], field=payload[2])
            if kind == "error":
                raise payload
            done[index] = payload
            self._feed(worker, todo, busy)
        for sentinel in [r for r in ready if r in sentinels]:
            worker = sentinels[sentinel]
            if worker in busy:
                raise self._died(worker, busy[worker])

    def _died(self, worker: int, batch: int | None) -> WorkerDied:
        proc = self._procs[worker]
        if proc.pid is not None:
            proc.join(1.0)  # a worker whose connection broke is exiting: give it a moment, to say how it ended
        return WorkerDied(describe_exit(proc.exitcode), batch)

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
