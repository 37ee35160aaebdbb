"""`engine: ray`: the same shard functions as `LocalExecutor`, run as Ray tasks on a Ray cluster.

`RayExecutor(address=None)` starts a local Ray cluster on this machine (its head binds to this host's address);
`RayExecutor("auto")` or `RayExecutor("ray://head:10001")` joins an existing one. Ray is started once per process
and reused by every executor after it. Each `map` puts `params` in the object store once and submits one task per
shard, at most `workers` in flight; results come back in task order, so outputs do not depend on the cluster.

Tasks are not retried: a shard function raising is a verdict on the data (its exception reaches the caller as
itself, a DataError with its message), and a worker that dies (killed, out of memory, its node lost) fails the map
with a DataError naming the shard, as under `LocalExecutor`. Ray is optional (`pip install "dataforge[ray]"`):
nothing imports it until a RayExecutor first needs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from ..deps import MissingDependency
from ..errors import DataError, DataforgeError
from .executor import Describe, OnDone, ShardFn, WorkerDied

INSTALL_HINT = 'pip install "dataforge[ray]"'

# Ray errors (in ray.exceptions) that mean the process running a task is gone, not that the task failed: named as a
# death, like the local executor's. OutOfMemoryError is Ray's memory monitor killing the worker.
_DEATHS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "OutOfMemoryError",
    "LocalRayletDiedError",
    "ObjectLostError",
    "OwnerDiedError",
    "ObjectReconstructionFailedError",
)


def import_ray() -> ModuleType:
    """The `ray` module, or a MissingDependency saying how to install the extra."""
    try:
        import ray
        import ray.exceptions  # noqa: F401 - used by name below
    except ImportError as exc:
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingDependency(
            f"engine: ray needs the Python package 'ray', which is not installed or is too old ({said})",
            hint=INSTALL_HINT,
        ) from None
    return ray


class RayExecutor:
    """Shard functions as Ray tasks: a local cluster (no `address`) or an existing one (`"auto"`, `"ray://…"`).

    `workers` caps the tasks in flight (default: every CPU the cluster has, asked when first needed); for a local
    cluster it is also the CPUs Ray is given. `num_partitions` is the number of hash partitions the global stages'
    partitioned steps use on this engine (None: theirs). `init_options` go to `ray.init` as they are (e.g.
    `object_store_memory`, `runtime_env`).
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        num_partitions: int | None = None,
        *,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if num_partitions is not None and num_partitions < 1:
            raise ValueError(f"num_partitions must be at least 1, got {num_partitions}")
        self.address = address
        self.num_partitions = num_partitions
        self._workers = workers
        self._init_options = dict(init_options or {})

    @property
    def workers(self) -> int:
        """The most tasks in flight at once: as given, else the cluster's CPUs (starting or joining Ray to ask)."""
        if self._workers is None:
            ray = self.start()
            self._workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self._workers

    def start(self) -> ModuleType:
        """Ray, started (or joined) if this process has not done so yet; returns the `ray` module."""
        ray = import_ray()
        if ray.is_initialized():  # once per process: a second executor, or a caller who set Ray up itself
            return ray
        options: dict[str, Any] = {
            "logging_level": logging.ERROR,
            "log_to_driver": False,  # workers' output stays in the session's log files, not on our progress bars
            **self._init_options,
        }
        if self.address is None:
            # "local", not None: None would join whatever cluster RAY_ADDRESS or /tmp/ray names.
            options.setdefault("num_cpus", self._workers)
            options.setdefault("include_dashboard", False)
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a cluster we start reports nowhere
            address = "local"
        else:
            address = self.address
        try:
            ray.init(address=address, **options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            if "ray[client]" in str(exc):  # a ray:// address with the minimal Ray: Ray Client is an extra of Ray's
                raise MissingDependency(
                    f"engine.address {address!r} is a Ray Client address, which needs Ray Client (grpcio)",
                    hint='pip install "ray[client]"  (or run the build on a node of the cluster with address: auto)',
                ) from None
            if self.address is None:
                raise DataError(f"could not start a local Ray cluster: {_first_line(exc)}") from None
            raise DataError(
                f"could not join the Ray cluster at {address!r}: {_first_line(exc)}",
                hint="check `engine.address` (e.g. ray://head:10001 or auto) and that the cluster is up (`ray status`)",
            ) from None
        return ray

    def shutdown(self) -> None:
        """Disconnect from Ray (and stop the local cluster if this process started one)."""
        try:
            import ray
        except ImportError:
            return
        if ray.is_initialized():
            ray.shutdown()

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
        """`fn(params, task)` for every task as a Ray task; results in task order, `on_done` as each one finishes.

        `parallel` is the local executor's hint that the work is too small for worker processes: on a cluster every
        task runs remotely regardless (the driver may not see the data)."""
        if not tasks:
            return []
        ray = self.start()
        limit = self.workers
        remote = ray.remote(max_retries=0, retry_exceptions=False)(fn)  # no retries: see the module's docstring
        params_ref = ray.put(params)  # once, shared by every task (a top-level ObjectRef arrives as its value)
        todo = iter(enumerate(tasks))
        pending: dict[Any, int] = {}  # ObjectRef → task index
        results: dict[int, Any] = {}
        try:
            while True:
                while len(pending) < limit and (item := next(todo, None)) is not None:
                    pending[remote.remote(params_ref, item[1])] = item[0]
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    results[index] = result = _result(ray, ref, index, describe)
                    if on_done is not None:
                        on_done(index, result)
        except BaseException:
            for ref in pending:  # stop the shards still running: their results are no longer wanted
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - a task that already ended cannot be cancelled; nothing to do
                    pass
            raise
        return [results[i] for i in range(len(tasks))]


def _result(ray: ModuleType, ref: Any, index: int, describe: Describe) -> Any:
    """The value of a finished task; its own exception re-raised as itself, a dead worker as WorkerDied."""
    errors = ray.exceptions
    try:
        return ray.get(ref)
    except errors.RayTaskError as err:
        cause = err.cause
        if not isinstance(cause, BaseException) or isinstance(cause, errors.RayError):
            raise DataError(f"shard {describe(index)} failed on Ray: {_first_line(err)}") from None
        if not isinstance(cause, DataforgeError):  # a bug: keep where it happened, on the worker
            cause.add_note(f"raised in the Ray task for shard {describe(index)}:\n{err}")
        raise cause from None
    except errors.RayError as err:
        kind = type(err).__name__
        if isinstance(err, tuple(getattr(errors, name) for name in _DEATHS if hasattr(errors, name))):
            raise WorkerDied(
                f"the Ray worker holding shard {describe(index)} died ({kind}: {_first_line(err)})",
                hint="a worker killed for memory: lower `engine.workers` or `shard_mb` in the recipe, or give the "
                "Ray nodes more memory",
            ) from None
        raise DataError(f"Ray could not run shard {describe(index)} ({kind}: {_first_line(err)})") from None


def _first_line(exc: BaseException) -> str:
    """The first line of what `exc` says, without a trailing full stop (it goes inside parentheses)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return first.split(". ")[0].rstrip(".")
