"""Image, video and audio inputs: found and named, because dataforge does not carry them yet.

Multimodal rows come in a few spellings:

* media columns beside the conversation: LLaMA-Factory's and ms-swift's `images` / `videos` / `audios` (lists of
  paths or URLs, one `<image>` / `<video>` / `<audio>` placeholder in the text per item), LLaVA's `image`;
* media parts in a message's content: LLaMA-Factory's typed (v1) `{"type": "image_url", "value": …}`, OpenAI's
  `{"type": "image_url", "image_url": {"url": …}}` and `{"type": "input_audio", …}`, trl's `{"type": "image"}`.

The canonical record has no place for media. Carried as an unmodelled column, `images` was written back beside
the text while the trainer's dataset description mapped only the messages: the model would have trained on a
bare `<image>` placeholder with no image. So a row with media is rejected in the convert stage (build,
`convert` and `validate` alike) with the reason `multimodal_unsupported`, naming the field and the media, and
every writer refuses such a row (counted) should one reach it another way.

Formats whose content is a string (OpenAI, trl) cannot hold a list of parts in their Arrow columns: their
`coerce` moves a content list holding media out of the message (`lift_parts`), keeping the text, and records
the original parts under the metadata key `PARTS`, so the convert stage finds them like a media column.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import jsonsafe

REASON = "multimodal_unsupported"
KINDS = ("image", "video", "audio")
# Columns that hold media, and the kind they hold.
COLUMNS = {
    "images": "image",
    "videos": "video",
    "audios": "audio",
    "image": "image",
    "video": "video",
    "audio": "audio",
}
PLACEHOLDERS = {kind: f"<{kind}>" for kind in KINDS}
PARTS = "__media_parts"  # metadata key: field of a message's content (`messages[0].content`) → its original parts
NOT_WRITTEN = "rows with image, video or audio inputs (not written)"

_CANDIDATE = '"(?:' + "|".join(re.escape(k) for k in [*COLUMNS, PARTS]) + ')": '
_SHOWN = 48  # characters of a path or URL shown in a message


@dataclass(frozen=True)
class Medium:
    """One image, video or audio input of a row: its kind, the field holding it, and how to show it."""

    kind: str
    field: str
    shown: str


def part_kind(part: Any) -> str | None:
    """`image`, `video` or `audio` for a content part of that kind (`image_url`, `input_audio`, `video`…)."""
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(kind, str):
        return None
    lowered = kind.lower()
    return next((k for k in KINDS if k in lowered), None)


def _part_value(part: dict[str, Any]) -> Any:
    """What a media part points at: typed `value`, OpenAI's `image_url.url` / `input_audio`, trl's `image`."""
    for key in ("value", part.get("type"), "image", "video", "audio", "url", "path", "data"):
        if isinstance(key, str) and part.get(key) not in (None, ""):
            return part[key]
    return None


def shown(value: Any) -> str:
    """A path, URL or inline data as one short quoted phrase for a message."""
    if isinstance(value, dict):
        data = value.get("data")
        if isinstance(data, str) and data:
            return f"{value.get('format') or 'inline'} data ({len(data):,} chars)"
        for key in ("url", "path", "value"):
            if isinstance(value.get(key), str) and value[key]:
                return shown(value[key])
        return "an object"
    if not isinstance(value, str):
        return type(value).__name__
    if value.startswith("data:"):
        return f"'{value.split(',', 1)[0]},…' ({len(value):,} chars)"
    if len(value) > _SHOWN:
        return repr(value[: _SHOWN - 1] + "…")
    return repr(value)


def in_columns(extra: dict[str, Any]) -> list[Medium]:
    """The media held by media columns (`images`, `videos`, `audios`, `image`, …) of one row's unmodelled columns."""
    found: list[Medium] = []
    for column, kind in COLUMNS.items():
        value = extra.get(column)
        if isinstance(value, list):
            found += [Medium(kind, f"{column}[{i}]", shown(v)) for i, v in enumerate(value) if v not in (None, "")]
        elif value not in (None, "", {}) and not isinstance(value, bool | int | float):
            found.append(Medium(kind, column, shown(value)))
    return found


def in_parts(content: list[Any], field: str) -> tuple[list[Medium], Counter[str]]:
    """Media parts of one message's content list (`field` names it), and parts that only mark where a medium
    goes (trl's `{"type": "image"}`, whose image is in the `images` column) counted as placeholders."""
    found: list[Medium] = []
    marks: Counter[str] = Counter()
    for j, part in enumerate(content):
        kind = part_kind(part)
        if kind is None:
            continue
        value = _part_value(part)
        if value is None:
            marks[kind] += 1
        else:
            found.append(Medium(kind, f"{field}[{j}]", shown(value)))
    return found, marks


def lift_parts(record: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """`record` with every message content list that holds media parts replaced by its text (text parts joined)
    and the original parts kept under `PARTS` (a `coerce` step: such a row is then rejected, naming the parts).

    Content lists without media are left as they are (the format's schema decides about them)."""
    lifted: dict[str, Any] = {}
    out = record
    for column in columns:
        msgs = record.get(column)
        if not isinstance(msgs, list):
            continue
        for i, m in enumerate(msgs):
            content = m.get("content") if isinstance(m, dict) else None
            if not isinstance(content, list) or not any(part_kind(p) for p in content):
                continue
            texts = [p.get("text", p.get("value")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
            text = "".join(t for t in texts if isinstance(t, str)) or None
            lifted[f"{column}[{i}].content"] = content
            if out is record:
                out = dict(record)
            if out[column] is msgs:
                out[column] = list(msgs)
            out[column][i] = {**m, "content": text}
    if not lifted:
        return record
    return {**out, PARTS: {**(record.get(PARTS) or {}), **lifted}}


def placeholders(value: Any, counts: Counter[str] | None = None) -> Counter[str]:
    """`<image>`, `<video>` and `<audio>` placeholders in every string of `value`, by kind."""
    counts = Counter() if counts is None else counts
    if isinstance(value, str):
        for kind, tag in PLACEHOLDERS.items():
            if tag in value:
                counts[kind] += value.count(tag)
    elif isinstance(value, dict):
        for item in value.values():
            placeholders(item, counts)
    elif isinstance(value, list):
        for item in value:
            placeholders(item, counts)
    return counts


def _plural(kind: str, n: int) -> str:
    return f"{n} {kind}" + ("s" if n != 1 else "")


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe(media: list[Medium], marks: Counter[str]) -> str:
    """The reject message for a row with `media` whose text holds `marks` placeholders, e.g. "row has 1 image
    (images[0] 'a.jpg'): dataforge does not carry image, video or audio inputs yet; the row is left out rather
    than trained on a bare <image> placeholder"."""
    per_kind = Counter(m.kind for m in media)
    counted = _joined([_plural(k, per_kind[k]) for k in KINDS if per_kind[k]])
    named = ", ".join(f"{m.field} {m.shown}" for m in media[:2]) + (
        f", … {len(media) - 2} more" if len(media) > 2 else ""
    )
    tags = [PLACEHOLDERS[k] for k in KINDS if marks[k]]
    if tags:
        many = sum(marks.values()) > 1
        instead = f"{'' if many else 'a '}bare {_joined(tags)} placeholder{'s' if many else ''}"
    elif len(per_kind) == 1:
        kind = next(iter(per_kind))
        instead = f"its text without the {kind}{'s' if per_kind[kind] > 1 else ''}"
    else:
        instead = "its text without its media"
    return (
        f"row has {counted} ({named}): dataforge does not carry image, video or audio inputs yet; "
        f"the row is left out rather than trained on {instead}"
    )


def of_record(data: dict[str, Any], extra: dict[str, Any]) -> tuple[list[Medium], Counter[str]]:
    """The media of one raw row (its format columns `data`, its unmodelled columns `extra`) and its placeholders."""
    media = in_columns(extra)
    marks = placeholders(data)
    for field, content in (extra.get(PARTS) or {}).items():
        found, parts_marks = in_parts(content, field)
        media += found
        marks.update(parts_marks)
        marks.update(placeholders(content))
    return media, marks


def candidates(extra: pa.Array) -> np.ndarray:
    """Rows whose unmodelled columns (JSON text) may hold media: a cheap pre-filter before parsing."""
    if extra.null_count == len(extra):
        return np.zeros(len(extra), dtype=bool)
    hit = pc.match_substring_regex(extra, _CANDIDATE)
    return pc.fill_null(hit, False).to_numpy(zero_copy_only=False)


def in_metadata(metadata: str | None) -> bool:
    """Whether a canonical row's metadata (JSON text) carries media: such a row must never be written."""
    if not metadata or not any(f'"{column}"' in metadata for column in (*COLUMNS, PARTS)):
        return False
    extra = jsonsafe.loads(metadata, field="metadata")
    return bool(in_columns(extra)) or bool(extra.get(PARTS))


def original(data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A raw row as the file held it: format columns and unmodelled ones, lifted content parts put back, and
    without the nulls Arrow gives the fields a record did not have."""
    record = _without_nulls(data)
    record.update({k: v for k, v in extra.items() if k != PARTS})
    for field, content in (extra.get(PARTS) or {}).items():
        match = re.fullmatch(r"(\w+)\[(\d+)\]\.content", field)
        if match and isinstance(record.get(match[1]), list) and int(match[2]) < len(record[match[1]]):
            msgs = record[match[1]] = list(record[match[1]])
            msgs[int(match[2])] = {**msgs[int(match[2])], "content": content}
    return record


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
