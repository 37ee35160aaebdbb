"""Run a command in a network namespace of its own where loopback is the only interface.

Tests that start servers which bind to the host's network address (a local Ray cluster) run that way, so nothing
they start can listen on, or reach, any address but 127.0.0.1. The namespace is made with `unshare --net` (root, or
CAP_SYS_ADMIN); loopback is brought up with `ip link set lo up`, and before the command runs the namespace is
checked to hold only `lo` — the command never starts otherwise.

The command also gets a PID namespace of its own (`--pid --fork --mount-proc --kill-child`): when it ends, or is
killed for running past its timeout, the kernel kills everything it started (Ray's daemons included), so nothing
outlives a test.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]

# Exit status and message of the check that runs inside the namespace before the command; both must match for the
# run to count as "not loopback-only" (a command may exit 97 by itself).
_NOT_LOOPBACK_STATUS = 97
_NOT_LOOPBACK_MARK = "netns: not a loopback-only namespace:"

# Inside the new namespace (sh -c LOOPBACK_ONLY_CHECK sh ARGV...): loopback up, then every link and every address
# must be lo's, then ARGV, as a child: PID 1 of a namespace ignores signals it has no handler for, so ARGV is not it.
LOOPBACK_ONLY_CHECK = f"""
ip link set lo up || {{ echo "{_NOT_LOOPBACK_MARK} 'ip link set lo up' failed" >&2; exit {_NOT_LOOPBACK_STATUS}; }}
links=$(ip -o link show | awk -F': ' '{{print $2}}' | sort -u | tr '\\n' ' ')
addrs=$(ip -o addr show | awk '{{print $2}}' | sort -u | tr '\\n' ' ')
if [ "$links" != "lo " ] || [ "$addrs" != "lo " ]; then
  echo "{_NOT_LOOPBACK_MARK} links [$links] addresses [$addrs]: $(ip -o addr show)" >&2
  exit {_NOT_LOOPBACK_STATUS}
fi
"$@"
exit $?
"""


@functools.cache
def loopback_namespace_available() -> str | None:
    """None when `run_in_loopback_namespace` can run here, else why not (for a skip reason)."""
    if not sys.platform.startswith("linux"):
        return f"a loopback-only network namespace needs Linux (this is {sys.platform})"
    for tool in ("unshare", "ip", "awk"):
        if shutil.which(tool) is None:
            return f"a loopback-only network namespace needs `{tool}`, which is not on PATH"
    try:
        done = subprocess.run(
            [*UNSHARE, "sh", "-c", LOOPBACK_ONLY_CHECK, "sh", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{' '.join(UNSHARE)}` could not run: {exc}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        who = "as root" if os.geteuid() == 0 else f"as uid {os.geteuid()} (needs root or CAP_SYS_ADMIN)"
        return f"`{' '.join(UNSHARE)}` failed {who}: {said[-1] if said else f'exit status {done.returncode}'}"
    return None


def run_in_loopback_namespace(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside a new loopback-only network namespace (and PID namespace); its output is captured as text.

    Fails loudly (AssertionError) when the namespace cannot be made or holds any interface but `lo`: the command is
    then never started. A run past `timeout` seconds raises subprocess.TimeoutExpired (the process is killed).
    """
    reason = loopback_namespace_available()
    if reason is not None:
        raise AssertionError(f"no loopback-only network namespace here: {reason}")
    done = subprocess.run(
        [*UNSHARE, "sh", "-c", LOOPBACK_ONLY_CHECK, "sh", *argv],
        env=None if env is None else dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode == _NOT_LOOPBACK_STATUS and _NOT_LOOPBACK_MARK in done.stderr:
        raise AssertionError(done.stderr.strip())
    return done
