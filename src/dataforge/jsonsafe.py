"""JSON parsing that a hostile file cannot crash: nesting is bounded before parsing, and NaN/Infinity are refused.

Python's `json` recurses once per level and raises `RecursionError` somewhere past ~1,000 levels; Arrow's JSON
reader segfaults past ~10,000. Both are reached by one crafted line, so every parser entry in dataforge checks the
nesting depth of the bytes first. The check is a byte count when the text holds fewer brackets than the limit (the
common case, a C-speed `bytes.count`) and an exact, vectorised scan of brackets outside strings otherwise.

`NaN`, `Infinity` and `-Infinity` are accepted by Python's parser but are not JSON (RFC 8259), and a number such
as `1e999` overflows to infinity: a row holding one would be written back as invalid JSON, so they are refused here
with the path of the field that holds them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

# Deep enough for any real tool schema or argument object (the deepest seen in public tool-calling sets is ~12),
# shallow enough that our own recursive walkers, jsonschema and Arrow stay far from their stack limits.
MAX_DEPTH = 200

_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_CHUNK = 1 << 24  # the exact scan's working set: 16 MiB of bytes at a time, a few small arrays per byte


class JsonValueError(ValueError):
    """A JSON text that parses in Python but must not be used; `reason` is its rejects-table code."""

    reason = "invalid_json"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class TooDeep(JsonValueError):
    """Nesting deeper than MAX_DEPTH (a crafted or corrupt value; parsing it would exhaust the stack)."""

    reason = "too_deep"

    def __init__(self, depth: int, limit: int = MAX_DEPTH, *, field: str | None = None) -> None:
        where = f" in {field}" if field else ""
        super().__init__(
            f"JSON nested {depth if depth > limit else f'more than {limit}'} levels deep{where} "
            f"(dataforge reads at most {limit} levels)",
            field=field,
        )
        self.depth = depth
        self.limit = limit


class NonFinite(JsonValueError):
    """A `NaN`/`Infinity` literal, which Python accepts and JSON does not."""

    reason = "non_finite_number"

    def __init__(self, literal: str, field: str | None) -> None:
        where = f" at {field}" if field else ""
        super().__init__(
            f"`{literal}`{where} is not a JSON number (RFC 8259 has no NaN or Infinity); write a number or null",
            field=field,
        )
        self.literal = literal


def _as_bytes(text: str | bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    return text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text


def could_exceed(text: str | bytes | bytearray | memoryview, limit: int = MAX_DEPTH) -> bool:
    """False when `text` cannot nest deeper than `limit` (it holds too few brackets); True means scan it."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") > limit
    if isinstance(text, memoryview):  # counted in place: a file's buffer is not copied to be checked
        data = np.frombuffer(text, dtype=np.uint8)
        return int(np.count_nonzero(data == _OPEN[0])) + int(np.count_nonzero(data == _OPEN[1])) > limit
    return text.count(b"[") + text.count(b"{") > limit


def depth(text: str | bytes | bytearray | memoryview) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counting only brackets outside strings.

    Works on any bytes (valid JSON or not): a string's quotes are found by the parity of the backslashes before
    them, so `"\\\\"` ends a string and `"\\""` does not. Processed in chunks, carrying whether the scan is inside
    a string, the run of backslashes and the depth across chunk boundaries.
    """
    data = np.frombuffer(_as_bytes(text), dtype=np.uint8)
    deepest, level, in_string, run = 0, 0, False, 0
    for start in range(0, len(data), _CHUNK):
        chunk = data[start : start + _CHUNK]
        n = len(chunk)
        quotes = np.flatnonzero(chunk == _QUOTE)
        slashes = np.flatnonzero(chunk == _BACKSLASH)
        if len(quotes) and (len(slashes) or run):
            # A quote is real when the run of backslashes just before it is even; the run is found from the
            # position of the last non-backslash byte before the quote (the previous chunk's run continues).
            is_slash = np.zeros(n + 1, dtype=bool)
            is_slash[slashes + 1] = True  # shifted by one: is_slash[i] says byte i-1 is a backslash
            last_other = np.maximum.accumulate(np.where(~is_slash, np.arange(n + 1), 0))
            before = quotes - last_other[quotes]  # backslashes directly before each quote in this chunk
            before = np.where(last_other[quotes] == 0, before + run, before)
            quotes = quotes[before % 2 == 0]
        brackets = np.flatnonzero(
            (chunk == _OPEN[0]) | (chunk == _OPEN[1]) | (chunk == _CLOSE[0]) | (chunk == _CLOSE[1])
        )
        if len(brackets):
            # Outside a string when an even number of real quotes precede the bracket (plus the carried state).
            outside = (np.searchsorted(quotes, brackets) + int(in_string)) % 2 == 0
            kept = brackets[outside]
            if len(kept):
                step = np.where((chunk[kept] == _OPEN[0]) | (chunk[kept] == _OPEN[1]), 1, -1)
                levels = np.cumsum(step) + level
                deepest = max(deepest, int(levels.max()))
                level = int(levels[-1])
        in_string = in_string != bool(len(quotes) % 2)
        if n and chunk[-1] == _BACKSLASH:  # carry the run of backslashes that ends the chunk
            others = np.flatnonzero(chunk != _BACKSLASH)
            run = run + n if not len(others) else n - 1 - int(others[-1])
        else:
            run = 0
    return deepest


def check_depth(
    text: str | bytes | bytearray | memoryview, limit: int = MAX_DEPTH, *, field: str | None = None
) -> None:
    """Raise TooDeep when `text` nests deeper than `limit`; cheap for the common shallow text."""
    if could_exceed(text, limit):
        found = depth(text)
        if found > limit:
            raise TooDeep(found, limit, field=field)


class _Constant:
    """Stands in for a NaN/Infinity literal during the second parse that finds which field holds it."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _refuse(literal: str) -> Any:
    raise NonFinite(literal, None)


def _finite_float(literal: str) -> float:
    # `1e999` is valid JSON text but overflows to infinity, which no JSON writer can write back.
    value = float(literal)
    if math.isinf(value):
        raise NonFinite(literal, None)
    return value


def _marked_float(literal: str) -> float | _Constant:
    value = float(literal)
    return _Constant(literal) if math.isinf(value) else value


def loads(text: str | bytes | bytearray, *, field: str | None = None, limit: int = MAX_DEPTH) -> Any:
    """`json.loads`, with nesting bounded first and NaN/Infinity refused (naming the field that holds one).

    Raises TooDeep or NonFinite (both JsonValueError, a ValueError) or json.JSONDecodeError (also a ValueError),
    so a caller that already turns ValueError into a reject stays correct, and one that wants the precise
    reason reads `.reason`.
    """
    check_depth(text, limit, field=field)
    try:
        return json.loads(text, parse_constant=_refuse, parse_float=_finite_float)
    except NonFinite:
        found = _find_constant(json.loads(text, parse_constant=_Constant, parse_float=_marked_float), ())
        assert found is not None  # the first parse refused a constant, so the second one holds it
        path, literal = found
        inner = ".".join(str(p) for p in path)
        raise NonFinite(literal, ".".join(p for p in (field, inner) if p) or None) from None


def _find_constant(value: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    # Iterative, so the walk itself has no depth limit (the value's depth is already bounded, but be safe).
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _Constant):
            return where, item.literal
        if isinstance(item, dict):
            stack.extend((v, (*where, k)) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, (*where, i)) for i, v in reversed(list(enumerate(item))))
    return None


def value_depth(value: Any) -> int:
    """How deeply a Python value (from Parquet, Arrow or a parser) nests lists and dicts; iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            level += 1
            stack.extend((v, level) for v in item.values())
        elif isinstance(item, (list, tuple)):
            level += 1
            stack.extend((v, level) for v in item)
        deepest = max(deepest, level)
    return deepest


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` that can only write JSON: a NaN or Infinity raises instead of being written as `NaN`."""
    return json.dumps(value, allow_nan=False, **kwargs)
