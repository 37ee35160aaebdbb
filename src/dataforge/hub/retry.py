"""Retries with exponential backoff around a hub call, for failures that may pass (network, 5xx, 429).

Both clients resume partial downloads from the files they leave behind (`.incomplete`), so retrying a
whole snapshot download only fetches what is still missing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
ATTEMPTS = 4
# Seconds before the first retry, doubling after each; the environment variable exists so tests need not wait.
DELAY_ENV = "DATAFORGE_HUB_RETRY_DELAY"


def base_delay() -> float:
    try:
        return max(0.0, float(os.environ.get(DELAY_ENV, "2")))
    except ValueError:
        return 2.0


def with_retries(
    call: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    what: str,
    say: Callable[[str], None],
    attempts: int = ATTEMPTS,
) -> T:
    """`call()`, retried up to `attempts` times while it fails with a transient error; the last error is raised."""
    delay = base_delay()
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not transient(exc):
                raise
            say(f"{what}: {type(exc).__name__}: {_first_line(exc)}; retrying in {delay:g}s ({attempt}/{attempts - 1})")
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
