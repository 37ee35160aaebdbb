"""A few rendered rows, decoded into runs of trained and untrained text, to check a loss mask by eye."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..recipe import LoadedRecipe, RenderTarget
from ..streams import Tables, as_tables

SAMPLES_PER_TARGET = 3
MAX_TOKENS = 400  # a sample shows this many tokens at most; the report stays small


SAMPLE_COLUMNS = ["id", "source", "kind", "n_tokens", "n_trained", "input_ids", "labels"]


def pick(rendered: pa.Table | Tables, n: int = SAMPLES_PER_TARGET, columns: list[str] | None = None) -> list[dict]:
    """The first rendered row of each source (in source order), then following rows, up to `n`: one of each
    source first, because a mask problem is usually a per-format problem.

    One pass, a piece at a time, keeping only candidates: the first row of each of the first `n` sources and
    the first 2·`n` rows (the rows that fill up when there are fewer sources than `n`)."""
    firsts: dict[Any, int] = {}  # source → index of its first row, in first-seen order
    candidates: dict[int, dict[str, Any]] = {}
    offset = 0
    for table in as_tables(rendered)(columns):
        sources = table["source"].to_pylist()
        take = [i for i in range(min(len(sources), max(0, 2 * n - offset)))]
        for i, s in enumerate(sources):
            if s not in firsts and len(firsts) < n:
                firsts[s] = offset + i
                take.append(i)
        if take:
            rows = table.take(pa.array(sorted(set(take)), pa.int64())).to_pylist()
            candidates.update(zip((offset + i for i in sorted(set(take))), rows, strict=True))
        offset += len(sources)
    chosen = list(firsts.values())
    chosen += [i for i in range(min(offset, 2 * n)) if i not in chosen]
    return [candidates[i] for i in sorted(chosen[:n])]


def segments(tok: Any, ids: list[int], labels: list[int]) -> list[dict[str, Any]]:
    """The row as consecutive runs of text, each marked trained (label != -100) or not."""
    out: list[dict[str, Any]] = []
    run: list[int] = []
    state: bool | None = None
    for token, label in [*zip(ids, labels, strict=True), (None, None)]:
        trained = label is not None and label != -100
        if token is None or (state is not None and trained != state):
            if run:
                out.append({"text": tok.decode(run), "trained": bool(state)})
            run = []
        if token is not None:
            run.append(token)
            state = trained
    return out


def rendered_samples(loaded: LoadedRecipe, spec: RenderTarget, rendered: pa.Table | Tables) -> list[dict[str, Any]]:
    """A few of a target's rendered train rows as trained/untrained text runs, with their token counts."""
    from ..render.target import load_target

    rows = pick(_valid(as_tables(rendered)), columns=SAMPLE_COLUMNS)
    if not rows:
        return []
    # Loaded again here (the render stage may have been cached): decoding needs the tokenizer itself.
    target = load_target(
        spec.name,
        spec.tokenizer,
        loaded.root,
        revision=spec.revision,
        chat_template=spec.chat_template,
        trust_remote_code=spec.trust_remote_code,
    )
    return [
        {
            "id": r["id"],
            "source": r["source"],
            "kind": r["kind"],
            "n_tokens": r["n_tokens"],
            "n_trained": r["n_trained"],
            "shown_tokens": min(r["n_tokens"], MAX_TOKENS),
            "segments": segments(target.tokenizer, r["input_ids"][:MAX_TOKENS], r["labels"][:MAX_TOKENS]),
        }
        for r in rows
    ]


def _valid(rendered: Tables) -> Tables:
    """The rendered rows that have input_ids (the rows a policy dropped have none)."""

    def read(columns: list[str] | None) -> Iterator[pa.Table]:
        needed = None if columns is None else list(dict.fromkeys([*columns, "input_ids"]))
        for table in rendered(needed):
            kept = table.filter(pc.is_valid(table["input_ids"]))
            yield kept if columns is None else kept.select([c for c in columns if c in kept.column_names])

    return Tables(read, rendered.column_names, rendered.num_rows)
