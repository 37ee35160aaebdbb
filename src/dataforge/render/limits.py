"""Bounds on what rendering one row with a chat template may cost: time, and the size of what it builds.

A chat template is code from the hub or the recipe's author, run by Jinja's sandbox. The sandbox stops escapes,
not runaway work: nested loops run forever (`range` is capped at 100,000 items, loops inside loops are not) and
`'x' * 10**10` allocates ten gigabytes in one C call. So:

- time: `deadline` arms a SIGALRM timer around a row's renders; its handler raises `TemplateTimeout`, which ends
  the Jinja code between two bytecodes (every loop is Python bytecode). Signals reach only the main thread, which is
  where dataforge renders (the build's own process, or the main thread of each spawned render worker); elsewhere no
  timer is armed.
- size: `*`, `+` and `**` in templates are checked before they run (Jinja's `intercepted_binops` hook), refusing a
  string, list or integer past `MAX_TEMPLATE_OUTPUT` characters / `MAX_INT_BITS` bits with `TemplateTooLarge`;
  a rendering longer than `MAX_TEMPLATE_OUTPUT` characters is refused after the fact.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Per row, all of its renders together; generous: real templates render a long conversation in milliseconds.
TEMPLATE_TIMEOUT_S = 10.0
# Characters one rendering may hold: ~2.5M tokens, far past any max_length, far below what exhausts memory.
MAX_TEMPLATE_OUTPUT = 10_000_000
# Bits of an integer a template may compute (real templates count turns and indices).
MAX_INT_BITS = 65_536
# When a TemplateTimeout is swallowed (raised inside a `__del__` or a weakref callback, where Python only prints
# it), the alarm repeats after this long, so a runaway template cannot outlive its deadline by much.
_REPEAT_S = 0.25


class TemplateTimeout(BaseException):
    """A row's renders outlived their deadline.

    A BaseException (like KeyboardInterrupt) so that no `except Exception` on the way, in transformers, Jinja or
    our own template-error handling, swallows it; the owner of the deadline catches it.
    """


class TemplateTooLarge(Exception):
    """An operation in a template would build a value past the size bounds; `message` says which and how big."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_armed = False  # whether a deadline is running (so an alarm that arrives late raises nothing)


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed:
        raise TemplateTimeout()


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise TemplateTimeout inside the block once it has run `seconds`.

    Re-entrant: inside a running deadline it adds nothing (the outer one, a row's, governs the renders it holds).
    A timer someone else had set (e.g. a test runner's) is put back, less the time spent, when the block ends.
    """
    global _armed
    if (
        _armed
        or not seconds
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds, _REPEAT_S)
    started = time.monotonic()
    _armed = True
    try:
        yield
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3), interval)


def check_output(text: str) -> None:
    """Raise TemplateTooLarge for a rendering longer than MAX_TEMPLATE_OUTPUT characters."""
    if len(text) > MAX_TEMPLATE_OUTPUT:
        raise TemplateTooLarge(
            f"the chat template rendered {len(text):,} characters for the row "
            f"(at most {MAX_TEMPLATE_OUTPUT:,} are rendered)"
        )


def _sized(value: Any) -> bool:
    return isinstance(value, (str, list, tuple))


def _refuse(value: Any, size: int, operator: str) -> TemplateTooLarge:
    what = f"a string of {size:,} characters" if isinstance(value, str) else f"a list of {size:,} items"
    return TemplateTooLarge(
        f"the chat template would build {what} with `{operator}` (at most {MAX_TEMPLATE_OUTPUT:,} characters are "
        "rendered)"
    )


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Raise TemplateTooLarge when `left <operator> right` would build a value past the bounds, before it runs."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _sized(seq) and isinstance(n, int) and len(seq) * n > MAX_TEMPLATE_OUTPUT:
                raise _refuse(seq, len(seq) * n, "*")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateTooLarge(f"the chat template would compute an integer of over {MAX_INT_BITS:,} bits (`*`)")
    elif operator == "+":
        if _sized(left) and _sized(right) and len(left) + len(right) > MAX_TEMPLATE_OUTPUT:
            raise _refuse(left, len(left) + len(right), "+")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if right * math.log2(abs(left)) > MAX_INT_BITS:
            raise TemplateTooLarge(f"the chat template would compute an integer of over {MAX_INT_BITS:,} bits (`**`)")


def _bounded_call_binop(self: Any, context: Any, operator: str, left: Any, right: Any) -> Any:
    check_binop(operator, left, right)
    return self.binop_table[operator](left, right)


def bound_template_operators() -> None:
    """Make every sandboxed Jinja environment check `*`, `+` and `**` with `check_binop` (idempotent).

    transformers builds its own `ImmutableSandboxedEnvironment` for chat templates and offers no way to pass one
    in, so the bound is set on the sandbox class, through the hook Jinja documents for it (`intercepted_binops`
    and `call_binop`). The operators are chosen when a template is compiled: this runs when the render engine is
    imported, before any template is compiled in the process (render workers import it too).
    """
    try:
        from jinja2.sandbox import SandboxedEnvironment
    except ImportError:  # rendering will say jinja2 is missing (deps.as_missing_dependency); nothing to bound
        return
    if getattr(SandboxedEnvironment, "_dataforge_bounded", False):
        return
    SandboxedEnvironment.intercepted_binops = frozenset({"*", "+", "**"}) | SandboxedEnvironment.intercepted_binops
    SandboxedEnvironment.call_binop = _bounded_call_binop  # type: ignore[method-assign]
    SandboxedEnvironment._dataforge_bounded = True  # type: ignore[attr-defined]
