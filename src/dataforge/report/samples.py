"""A few rendered rows, decoded into runs of trained and untrained text, to check a loss mask by eye."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..recipe import LoadedRecipe, RenderTarget

SAMPLES_PER_TARGET = 3
MAX_TOKENS = 400  # a sample shows this many tokens at most; the report stays small


def pick(rendered: pa.Table, n: int = SAMPLES_PER_TARGET) -> list[dict[str, Any]]:
    """The first rendered row of each source (in source order), then following rows, up to `n`: one of each
    source first, because a mask problem is usually a per-format problem."""
    chosen: list[int] = []
    sources = rendered["source"].to_pylist()
    for s in dict.fromkeys(sources):
        chosen.append(sources.index(s))
    chosen += [i for i in range(len(sources)) if i not in chosen]
    return rendered.take(pa.array(sorted(chosen[:n]), pa.int64())).to_pylist() if chosen else []


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


def rendered_samples(loaded: LoadedRecipe, spec: RenderTarget, rendered: pa.Table) -> list[dict[str, Any]]:
    """A few of a target's rendered train rows as trained/untrained text runs, with their token counts."""
    from ..render.target import load_target

    rows = pick(rendered.filter(pc.is_valid(rendered["input_ids"])))
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
