"""RayExecutor against a real local Ray cluster, started inside a loopback-only network namespace.

Ray binds to the host's address, so it is never started in this process: the module-scoped fixture runs this file
as a script (`python test_ray_executor.py OUT.json`) inside `unshare --net` (tests/netns.py), where it starts one
local cluster, runs every scenario against it and writes what it saw to OUT.json; the tests assert on that. The
script itself refuses to start Ray unless loopback is the only interface. Tests skip, saying why, when Ray is not
installed or no such namespace can be made here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dataforge.deps import MissingDependency
from dataforge.engine.executor import LocalExecutor, SerialExecutor, WorkerDied
from dataforge.engine.ray_executor import INSTALL_HINT, RayExecutor
from dataforge.errors import DataError

SCRIPT_TIMEOUT_S = 240
KILLED_SHARD = 3


# ---- shard functions (top-level: spawned processes and Ray workers run them) -------------------------------------


@dataclass(frozen=True)
class Params:
    offset: int
    pickles: list[int] | None = None  # the driver counts how often it is pickled (None on the workers)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.pickles is not None:
            self.pickles.append(1)
        return (Params, (self.offset, None))


def square(params: Params, task: int) -> tuple[int, int]:
    """Later tasks finish first (shorter sleeps), so completion order is not task order."""
    time.sleep(max(0, 25 - task) * 0.004)
    return task, task * task + params.offset


def reject_row(params: Params, task: int) -> int:
    if task == 2:
        raise DataError(f"shard.jsonl line {task + 1}: field 'messages' is missing", hint="add a messages field")
    return task


def buggy(params: Params, task: int) -> int:
    if task == 1:
        raise ValueError("a bug in a shard function")
    return task


def kill_own_worker(params: str, task: int) -> int:
    """Shard KILLED_SHARD kills its own worker; every start is recorded under the directory `params` names."""
    with open(Path(params, f"{task}.starts"), "a") as starts:
        starts.write("started\n")
    if task == KILLED_SHARD:
        os.kill(os.getpid(), 9)
    time.sleep(0.5)
    return task


def timed(params: str, task: int) -> int:
    """Records when it ran, in a file under the directory `params` names."""
    start = time.monotonic()
    time.sleep(0.4)
    Path(params, f"{task}.json").write_text(json.dumps([start, time.monotonic()]))
    return task


def describe(i: int) -> str:
    return f"{i} (part-{i:05d}.parquet)"


# ---- the script: runs inside the namespace ------------------------------------------------------------------------


def _caught(call: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        value = call()
        return {"value": value, "seconds": time.monotonic() - started}
    except BaseException as exc:  # noqa: BLE001 - what was raised is the observation
        return {
            "type": type(exc).__name__,
            "mro": [cls.__name__ for cls in type(exc).__mro__],
            "message": getattr(exc, "message", str(exc)),
            "hint": getattr(exc, "hint", None),
            "notes": getattr(exc, "__notes__", []),
            "seconds": time.monotonic() - started,
        }


def _property_same_as_serial() -> dict[str, Any]:
    """Hypothesis: any task list, any worker cap, gives SerialExecutor's results in task order."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    examples: list[Any] = []

    @settings(max_examples=12, deadline=None, database=None, derandomize=True)
    @given(tasks=st.lists(st.integers(0, 25), max_size=25), workers=st.integers(1, 4), offset=st.integers(-5, 5))
    def check(tasks: list[int], workers: int, offset: int) -> None:
        examples.append(len(tasks))
        got = RayExecutor(workers=workers).map(square, Params(offset), tasks, describe=describe)
        assert got == SerialExecutor().map(square, Params(offset), tasks, describe=describe), (tasks, workers)

    outcome = _caught(check)
    outcome["examples"] = examples
    return outcome


def _max_overlap(folder: Path) -> int:
    spans = [json.loads(p.read_text()) for p in folder.iterdir()]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def script(out: Path, demo_recipe: Path) -> None:
    # Never start Ray where it could bind to anything but loopback, even if this file is run by hand.
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        raise SystemExit(f"refusing to start Ray: interfaces {names}, expected only lo (run via tests/netns.py)")
    seen: dict[str, Any] = {"interfaces": names}
    tasks = list(range(20))
    seen["no_cluster"] = _caught(lambda: RayExecutor("auto").start() and None)  # first: nothing to find yet
    if importlib.util.find_spec("grpc") is None:  # without Ray Client; with it, this would wait for a connection
        seen["no_client"] = _caught(lambda: RayExecutor("ray://127.0.0.1:10001").start() and None)

    started = time.monotonic()
    ray = RayExecutor(workers=4, init_options={"object_store_memory": 100 * 2**20}).start()
    seen["start_s"] = time.monotonic() - started
    seen["node_ip"] = ray.util.get_node_ip_address()
    seen["cluster_cpus"] = ray.cluster_resources().get("CPU")

    done: list[int] = []
    seen["ray"] = _caught(
        lambda: RayExecutor(workers=4).map(
            square, Params(7), tasks, describe=describe, on_done=lambda i, r: done.append(i)
        )
    )
    seen["on_done"] = done
    seen["local"] = _caught(lambda: LocalExecutor(2).map(square, Params(7), tasks, describe=describe))
    seen["serial"] = _caught(lambda: SerialExecutor().map(square, Params(7), tasks, describe=describe))
    seen["default_workers"] = RayExecutor().workers
    seen["empty"] = _caught(lambda: RayExecutor().map(square, Params(0), [], describe=describe))
    seen["property"] = _property_same_as_serial()

    pickles: list[int] = []
    seen["params_run"] = _caught(
        lambda: RayExecutor(workers=4).map(square, Params(1, pickles), tasks, describe=describe)
    )
    seen["params_pickles"] = len(pickles)

    with tempfile.TemporaryDirectory() as folder:
        seen["capped_run"] = _caught(
            lambda: RayExecutor(workers=2).map(timed, folder, list(range(6)), describe=describe)
        )
        seen["capped_overlap"] = _max_overlap(Path(folder))

    seen["data_error"] = _caught(lambda: RayExecutor().map(reject_row, Params(0), tasks, describe=describe))
    seen["bug"] = _caught(lambda: RayExecutor().map(buggy, Params(0), tasks, describe=describe))
    with tempfile.TemporaryDirectory() as folder:
        seen["killed"] = _caught(lambda: RayExecutor(workers=2).map(kill_own_worker, folder, tasks, describe=describe))
        seen["killed_starts"] = len(Path(folder, f"{KILLED_SHARD}.starts").read_text().splitlines())
    seen["after_kill"] = _caught(lambda: RayExecutor().map(square, Params(0), [1, 2, 3], describe=describe))

    started = time.monotonic()
    RayExecutor().shutdown()
    seen["shutdown_s"] = time.monotonic() - started
    seen["joined"], seen["demo"] = _join_a_cluster(tasks, demo_recipe)
    out.write_text(json.dumps(seen))


def _join_a_cluster(tasks: list[int], demo_recipe: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a cluster as an operator does (`ray start --head`), join it with address "auto", then build the demo
    on it with `dataforge build` (its recipe says `engine: {name: ray, address: auto}`)."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    started = time.monotonic()
    head = [ray_cli, "start", "--head", "--num-cpus=3", "--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(head, check=True, capture_output=True, timeout=120)
    try:
        joined = RayExecutor("auto")
        seen = {"workers": joined.workers}
        seen |= _caught(lambda: joined.map(square, Params(2), tasks, describe=describe))
        joined.shutdown()
        seen["total_s"] = time.monotonic() - started
        started = time.monotonic()
        build = [sys.executable, "-m", "dataforge", "build", "-q", str(demo_recipe)]
        done = subprocess.run(build, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
        demo = {"rc": done.returncode, "stderr": done.stderr[-4000:], "seconds": time.monotonic() - started}
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=60)
    return seen, demo


if __name__ == "__main__":
    try:
        script(Path(sys.argv[1]), Path(sys.argv[2]))
    except BaseException:
        traceback.print_exc()
        raise


# ---- the tests ----------------------------------------------------------------------------------------------------


def _ray_skip_reason() -> str | None:
    if importlib.util.find_spec("ray") is None:
        return f"Ray is not installed ({INSTALL_HINT})"
    from netns import loopback_namespace_available

    reason = loopback_namespace_available()
    return None if reason is None else f"Ray tests run only in a loopback-only network namespace: {reason}"


def _ray_env(scratch: Path) -> dict[str, str]:
    """Ray's session files (short paths: its sockets live there) and its auth token (~/.ray) under `scratch`."""
    env = {**os.environ, "RAY_TMPDIR": str(scratch / "ray"), "HOME": str(scratch), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # a local cluster, never one this machine's environment points at
    return env


REPO = Path(__file__).resolve().parents[2]
DEMO_ON_RAY = "\nengine:\n  name: ray\n  address: auto\n  workers: 2\n  num_partitions: 3\n"


def _demo_copy(root: Path, engine: str) -> Path:
    shutil.copytree(REPO / "data" / "raw" / "demo", root / "data" / "raw" / "demo")
    shutil.copytree(REPO / "data" / "tokenizers" / "demo-chatml", root / "data" / "tokenizers" / "demo-chatml")
    (root / "pipelines").mkdir()
    recipe = root / "pipelines" / "demo.yaml"
    recipe.write_text((REPO / "pipelines" / "demo.yaml").read_text() + engine)
    return recipe


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """What the script saw; also builds the demo locally (here, meanwhile) and on Ray (in the script)."""
    reason = _ray_skip_reason()
    if reason is not None:
        _skip_or_fail(reason)
    from netns import run_in_loopback_namespace

    demo = tmp_path_factory.mktemp("demo")
    local = subprocess.Popen(  # no Ray in this one: it runs here, while the script runs in the namespace
        [sys.executable, "-m", "dataforge", "build", "-q", str(_demo_copy(demo / "local", ""))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    scratch = Path(tempfile.mkdtemp(prefix="df-ray-"))  # short: Ray's socket paths live under RAY_TMPDIR
    try:
        out = scratch / "seen.json"
        argv = [sys.executable, __file__, str(out), str(_demo_copy(demo / "ray", DEMO_ON_RAY))]
        started = time.monotonic()
        done = run_in_loopback_namespace(argv, env=_ray_env(scratch), timeout=SCRIPT_TIMEOUT_S, cwd=scratch)
        wall = time.monotonic() - started
        assert done.returncode == 0 and out.exists(), (
            f"the Ray script failed:\n{done.stdout[-3000:]}{done.stderr[-6000:]}"
        )
        result = json.loads(out.read_text())
        _, local_stderr = local.communicate(timeout=SCRIPT_TIMEOUT_S)
        result["local_demo"] = {"rc": local.returncode, "stderr": local_stderr[-4000:]}
        result["demo_dir"] = str(demo)
        print(
            f"\nRay script: {wall:.1f} s wall; local cluster start {result['start_s']:.1f} s, "
            f"join + map {result['joined']['total_s']:.1f} s, demo build on it {result['demo']['seconds']:.1f} s",
            file=sys.stderr,
        )
        yield result
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
        shutil.rmtree(scratch, ignore_errors=True)


ray_mark = pytest.mark.ray


@ray_mark
def test_ray_runs_on_loopback_only(seen: dict[str, Any]) -> None:
    assert seen["interfaces"] == ["lo"]
    assert seen["node_ip"] == "127.0.0.1"
    assert seen["cluster_cpus"] == 4


@ray_mark
def test_same_results_in_task_order_as_local_and_serial(seen: dict[str, Any]) -> None:
    expected = [[i, i * i + 7] for i in range(20)]
    assert seen["serial"]["value"] == expected
    assert seen["local"]["value"] == expected
    assert seen["ray"]["value"] == expected
    assert sorted(seen["on_done"]) == list(range(20))
    assert seen["on_done"] != list(range(20)), "later tasks finish first: on_done follows completion, not task order"


@ray_mark
def test_any_tasks_any_workers_same_as_serial(seen: dict[str, Any]) -> None:
    outcome = seen["property"]
    assert "type" not in outcome, outcome
    assert len(outcome["examples"]) >= 10 and max(outcome["examples"]) > 5


@ray_mark
def test_no_tasks_and_default_workers(seen: dict[str, Any]) -> None:
    assert seen["empty"]["value"] == []
    assert seen["default_workers"] == 4  # the cluster's CPUs


@ray_mark
def test_params_pickled_once_per_map(seen: dict[str, Any]) -> None:
    assert seen["params_run"]["value"] == [[i, i * i + 1] for i in range(20)]
    assert seen["params_pickles"] == 1


@ray_mark
def test_workers_caps_tasks_in_flight(seen: dict[str, Any]) -> None:
    assert seen["capped_run"]["value"] == list(range(6))
    assert seen["capped_overlap"] == 2  # on a 4-CPU cluster: at most 2 by the cap, and 2 do run at once


@ray_mark
def test_joins_an_existing_cluster(seen: dict[str, Any]) -> None:
    assert seen["joined"]["value"] == [[i, i * i + 2] for i in range(20)]
    assert seen["joined"]["workers"] == 3  # that cluster's CPUs, not this executor's guess


@ray_mark
def test_no_cluster_to_join_is_one_line_naming_the_address(seen: dict[str, Any]) -> None:
    got = seen["no_cluster"]
    assert got["type"] == "DataError"
    assert got["message"].startswith("could not join the Ray cluster at 'auto': ") and "\n" not in got["message"]
    assert "engine.address" in got["hint"]


@ray_mark
def test_ray_client_address_without_ray_client_says_how_to_install(seen: dict[str, Any]) -> None:
    if "no_client" not in seen:
        pytest.skip("Ray Client (grpcio) is installed here: a ray:// address would try to connect")
    got = seen["no_client"]
    assert got["type"] == "MissingDependency", got
    assert (
        got["message"]
        == "engine.address 'ray://127.0.0.1:10001' is a Ray Client address, which needs Ray Client (grpcio)"
    )
    assert got["hint"].startswith('pip install "ray[client]"')


@ray_mark
def test_data_error_arrives_as_itself(seen: dict[str, Any]) -> None:
    got = seen["data_error"]
    assert got["type"] == "DataError"
    assert got["message"] == "shard.jsonl line 3: field 'messages' is missing"
    assert got["hint"] == "add a messages field"


@ray_mark
def test_bug_arrives_as_itself_with_the_remote_traceback(seen: dict[str, Any]) -> None:
    got = seen["bug"]
    assert got["type"] == "ValueError" and got["message"] == "a bug in a shard function"
    assert any("shard 1 (part-00001.parquet)" in n and "buggy" in n for n in got["notes"]), got["notes"]


@ray_mark
def test_killed_worker_is_a_data_error_naming_the_shard(seen: dict[str, Any]) -> None:
    got = seen["killed"]
    assert got["type"] == WorkerDied.__name__ and "DataError" in got["mro"], got
    assert got["message"].startswith(f"the Ray worker holding shard {describe(KILLED_SHARD)} died (WorkerCrashedError")
    assert "\n" not in got["message"]
    assert got["seconds"] < 30, "a dead worker must fail the map promptly, never hang it"
    assert seen["killed_starts"] == 1, "no retries: a shard that kills its worker runs once"
    assert seen["after_kill"]["value"] == [[1, 1], [2, 4], [3, 9]], "the cluster still runs tasks afterwards"


# Build bookkeeping that names the recipe file or its digest (which the engine section changes), not its outputs.
BOOKKEEPING = {"manifest.json", ".dataforge-build", ".dataforge-lock"}


def _outputs(build: Path) -> dict[str, bytes]:
    return {str(p.relative_to(build)): p.read_bytes() for p in sorted(build.rglob("*")) if p.is_file()}


@ray_mark
@pytest.mark.integration
def test_demo_on_a_ray_cluster_is_byte_identical_to_local(seen: dict[str, Any]) -> None:
    assert seen["local_demo"]["rc"] == 0, seen["local_demo"]["stderr"]
    assert seen["demo"]["rc"] == 0, seen["demo"]["stderr"]
    want = _outputs(Path(seen["demo_dir"], "local", "data", "processed", "demo"))
    got = _outputs(Path(seen["demo_dir"], "ray", "data", "processed", "demo"))
    assert sorted(got) == sorted(want)
    assert "train.parquet" in want and len(want) > 10
    assert [n for n in want if n not in BOOKKEEPING and got[n] != want[n]] == []
    manifests = [json.loads(outputs["manifest.json"]) for outputs in (want, got)]
    for manifest in manifests:
        del manifest["recipe"], manifest["build_key"]  # the recipe's text differs by its engine section
    assert manifests[0] == manifests[1]


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError; no Ray starts
    executor = RayExecutor(workers=2)
    with pytest.raises(MissingDependency) as caught:
        executor.map(square, Params(0), [1], describe=describe)
    assert "engine: ray needs the Python package 'ray'" in caught.value.message
    assert caught.value.hint == INSTALL_HINT
    assert RayExecutor().map(square, Params(0), [], describe=describe) == []  # nothing to run: Ray not needed


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        RayExecutor(workers=0)
    with pytest.raises(ValueError, match="num_partitions must be at least 1"):
        RayExecutor(num_partitions=0)


# ---- the namespace helper itself ----------------------------------------------------------------------------------


def _netns_skip() -> None:
    from netns import loopback_namespace_available

    reason = loopback_namespace_available()
    if reason is not None:
        _skip_or_fail(reason)


def _skip_or_fail(reason: str) -> None:
    """Skip, saying why — or fail where DATAFORGE_REQUIRE_RAY is set (CI, which installs the ray extra as root)."""
    if os.environ.get("DATAFORGE_REQUIRE_RAY"):
        pytest.fail(f"DATAFORGE_REQUIRE_RAY is set but the Ray tests cannot run: {reason}")
    pytest.skip(reason)


def test_namespace_has_only_loopback_and_reaches_nothing_else() -> None:
    _netns_skip()
    from netns import run_in_loopback_namespace

    probe = (
        "import socket\n"
        "print(sorted(n for _, n in socket.if_nameindex()))\n"
        "s = socket.socket(); s.settimeout(5)\n"
        "try:\n    s.connect(('192.0.2.1', 9))\nexcept OSError as e:\n    print('unreachable', e.errno)\n"
    )
    done = run_in_loopback_namespace([sys.executable, "-c", probe], timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['lo']"
    assert lines[1].startswith("unreachable"), lines  # TEST-NET-1: no route out of the namespace at all


def _running(argv: list[str]) -> list[int]:
    """Host PIDs of processes whose command line is exactly `argv`."""
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == want:
                found.append(int(proc.name))
        except OSError:  # it ended meanwhile
            pass
    return found


def test_nothing_started_in_the_namespace_outlives_it() -> None:
    _netns_skip()
    from netns import run_in_loopback_namespace

    left = ["sleep", "317.25"]  # an odd duration, to find exactly these processes
    done = run_in_loopback_namespace(["sh", "-c", f"{' '.join(left)} & sleep 0.2; exit 3"], timeout=30)
    assert done.returncode == 3
    stuck = ["sleep", "318.25"]
    with pytest.raises(subprocess.TimeoutExpired):
        run_in_loopback_namespace(stuck, timeout=1)
    deadline = time.monotonic() + 5
    while (_running(left) or _running(stuck)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(left) == [] and _running(stuck) == []


def test_namespace_check_refuses_any_other_interface() -> None:
    _netns_skip()
    from netns import LOOPBACK_ONLY_CHECK

    # In a throwaway namespace, add a veth pair, then run the check: it must refuse to start the command.
    setup = 'ip link add df0 type veth peer name df1 || exit 55; exec sh -c "$0" sh echo started'
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", setup, LOOPBACK_ONLY_CHECK], capture_output=True, text=True, timeout=30
    )
    if done.returncode == 55:
        pytest.skip(f"cannot add a veth interface in a namespace here: {done.stderr.strip()}")
    assert done.returncode == 97, (done.returncode, done.stdout, done.stderr)
    assert "started" not in done.stdout
    assert "not a loopback-only namespace" in done.stderr and "df0" in done.stderr
