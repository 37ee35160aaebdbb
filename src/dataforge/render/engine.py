"""render: canonical Examples → token ids and labels through a model's own chat template.

Per row: the conversation is rendered with the template (`apply_chat_template(tokenize=False)`), the trained
character spans are located and checked (`spans.py`: a second render with sentinel values says where each
message lies), and the whole batch is tokenized at once (`tokens.py`: tiktoken for byte-level BPE
vocabularies once it has reproduced the tokenizer's ids, else the fast tokenizer with offsets); a token is
trained when it overlaps a trained span (a boundary token reaching into the answer too, unless it is one of
the template's own tokens), and every sequence is decoded back and compared with its text. `input_ids` therefore
equal `apply_chat_template(..., tokenize=True)` for the same messages, and `labels` are -100 everywhere
except the assistant content and its end-of-turn token.

Which assistant turns train is the target's `train_on` (`spans.assistant_turns`): `all`, `last`, `first_n`
(the first N, counted from a preference row's completion start; a turn of weight 0 counts and does not
train) or `weighted` (every turn of weight != 0, each trained token's loss scaled by its turn's weight, written
per token as `loss_weights`: float32, the weight on trained tokens (null weight = 1.0), 0.0 where labels are
-100; null in the other modes). Outside `weighted` a fractional weight trains at full weight, counted per row
as the note `fractional_weight_ignored`; a negative or non-finite weight rejects the row
(`invalid_loss_weight`). Each rendered batch also counts its trained tokens per role and per assistant-turn
position (`Rendered.turns`, summed over shards into the report's "Loss per turn").
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from .. import jsonsafe
from ..deps import as_missing_dependency
from ..formats.tooling import openai_tools
from .labels import token_labels
from .limits import (
    TEMPLATE_TIMEOUT_S,
    TemplateTimeout,
    TemplateTooLarge,
    bound_template_operators,
    check_output,
    deadline,
)
from .spans import SpanError, Tail, derive, end_of_turn, history_stable, prompt_tail
from .target import LoadedTarget
from .tokens import encoder_choice, tokenize

IGNORE = -100
Overflow = Literal["drop", "truncate", "keep", "error"]

# Before any chat template is compiled in this process: `*`, `+` and `**` in templates are size-checked.
bound_template_operators()

RENDERED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("input_ids", pa.list_(pa.int32())),  # preference: prompt + chosen
        pa.field("labels", pa.list_(pa.int32())),
        pa.field("rejected_input_ids", pa.list_(pa.int32())),  # preference only: prompt + rejected
        pa.field("rejected_labels", pa.list_(pa.int32())),
        pa.field("label", pa.bool_()),  # kto only
        pa.field("n_tokens", pa.int32()),  # before any truncation (preference: the longer side)
        pa.field("n_trained", pa.int32()),  # after truncation: what the trainer will learn from
        pa.field("n_prompt", pa.int32()),  # tokens before the first trained token
        pa.field("truncated", pa.bool_()),
        # `train_on: weighted` only (else null): per token of input_ids, the loss weight of the turn it trains in
        # (a null message weight is 1.0), 0.0 where labels are -100.
        pa.field("loss_weights", pa.list_(pa.float32())),
    ]
)
TurnMode = Literal["all", "last", "first_n", "weighted"]
TURN_BUCKETS = ("1", "2", "3", "4+")  # assistant-turn positions in the per-turn counts; the 4th and later share one


@dataclass(frozen=True)
class RenderOptions:
    """How a target renders: length limit and what to do past it, which turns train, reasoning policy."""

    max_length: int = 4096
    overflow: Overflow = "drop"
    train_on: TurnMode = "all"
    first_n: int | None = None  # with train_on="first_n": how many assistant turns, from the first, train
    reasoning: Literal["keep", "strip"] = "keep"
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    # "auto": tiktoken for byte-level BPE vocabularies once it has reproduced the tokenizer's ids, else the
    # tokenizer; "tokenizers": always the tokenizer's own encoder (same output, slower; for comparison).
    tokenizer_backend: Literal["auto", "tokenizers"] = "auto"
    # A trained turn whose tool calls / reasoning the template does not render: reject the row (the trained
    # reply would not be the one in the data) or keep it (train what is rendered; counted as a row note).
    unrendered_tool_calls: Literal["reject", "keep"] = "reject"
    unrendered_reasoning: Literal["reject", "keep"] = "reject"
    # Seconds one row's renders may take together before the row is rejected `template_timeout`.
    template_timeout_s: float = TEMPLATE_TIMEOUT_S

    @property
    def unrendered(self) -> dict[str, str]:
        return {"tool_calls": self.unrendered_tool_calls, "reasoning": self.unrendered_reasoning}


@dataclass
class Rendered:
    """Rendered rows, the rows that could not be rendered (id, reason, message), per-row notes, and the trained
    tokens of the rendered rows per role and assistant-turn position (`empty_turns` has its shape)."""

    table: pa.Table
    problems: list[dict[str, Any]]
    notes: dict[str, int]
    turns: dict[str, Any] = field(default_factory=lambda: empty_turns())


@dataclass
class Sequence:
    """One sequence of a row to tokenize: its text, trained character spans, and per span the loss weight and
    the assistant-turn position (0 = the first assistant turn; -1 for a document's single span)."""

    text: str
    spans: list[tuple[int, int]]
    weights: list[float]
    positions: list[int]
    assistant_turns: int = 0  # assistant turns in the sequence (from the completion start for preference rows)


def empty_turns() -> dict[str, Any]:
    """Trained-token counts with nothing counted: `by_role` (trained tokens per role: `assistant` for chat rows'
    turns, `text` for pretrain documents) and `by_turn` (per assistant-turn position bucket: the turns there,
    how many trained, their trained tokens and the sum of those tokens' loss weights). Only numbers and dicts,
    so shards add up with `engine.shards.sum_stats`."""
    return {
        "by_role": {"assistant": 0, "text": 0},
        "by_turn": {b: {"turns": 0, "trained_turns": 0, "tokens": 0, "weight": 0.0} for b in TURN_BUCKETS},
    }


def chat_messages(row: dict[str, Any], reasoning: str) -> list[dict[str, Any]]:
    """The row's messages in the shape chat templates expect (OpenAI-style, `reasoning_content`)."""
    return _chat(row["messages"] or (), reasoning)


def _chat(messages, reasoning: str, side: str = "messages") -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(messages):
        msg: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("reasoning") and reasoning == "keep":
            msg["reasoning_content"] = m["reasoning"]
        if m.get("tool_calls"):
            msg["tool_calls"] = [
                {
                    "type": "function",
                    "id": c.get("id"),
                    "function": {
                        "name": c["name"],
                        "arguments": _arguments(c["arguments"], f"{side}[{i}].tool_calls[{j}].arguments"),
                    },
                }
                for j, c in enumerate(m["tool_calls"])
            ]
        if m.get("tool_call_id"):
            msg["tool_call_id"] = m["tool_call_id"]
        if m.get("name"):
            msg["name"] = m["name"]
        out.append(msg)
    return out


def _arguments(text: str, field: str) -> Any:
    """A tool call's arguments parsed (depth-bounded, NaN refused), or SpanError naming the field."""
    try:
        return jsonsafe.loads(text, field=field)
    except jsonsafe.JsonValueError as exc:
        raise SpanError(exc.reason, exc.message, field=field) from None
    except ValueError as exc:
        raise SpanError("invalid_json", f"{field} is not JSON ({exc})", field=field) from None


def render_rows(rows: list[dict[str, Any]], target: LoadedTarget, options: RenderOptions) -> Rendered:
    """Render EXAMPLE_SCHEMA rows (as dicts) for `target`; rows that cannot be rendered become problems.

    sft rows train their assistant turns; kto rows their last assistant turn (the completion), with the
    label kept; pretrain rows every token; preference rows render the prompt + chosen completion as
    `input_ids`/`labels` and the prompt + rejected one as `rejected_input_ids`/`rejected_labels`.
    """
    tok = target.tokenizer
    if target.template is None:
        raise SpanError("no_chat_template", f"target {target.name!r}: the tokenizer has no chat template")
    try:
        eot = target_end_of_turn(target, options)
        history = target_history_stable(target, options)
        tail = target_prompt_tail(target, options)
    except TemplateTimeout:
        raise SpanError(
            "template_timeout",
            f"the chat template did not finish rendering one of dataforge's probe conversations within "
            f"template_timeout_s ({options.template_timeout_s:g} s)",
        ) from None
    injection = target_special_tokens(target)
    texts: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    metas: list[Sequence] = []
    kept: list[tuple[dict[str, Any], int]] = []  # (row, how many sequences it has in `texts`)
    problems: list[dict[str, Any]] = []
    notes: dict[str, int] = {}
    for row in rows:
        found = _injected(row, injection)
        if found is not None:
            where, path, token = found
            problems.append(
                {
                    "id": row["id"],
                    "reason": f"special_token_in_{where}",
                    "field": path,
                    "message": f"{path} contains the template's special token {token!r}",
                }
            )
            continue
        try:
            with deadline(options.template_timeout_s):  # every render of the row, together
                sequences, row_notes = _row_sequences(row, tok, options, eot, history, tail)
        except SpanError as exc:
            problem = {"id": row["id"], "reason": exc.reason, "message": exc.message}
            problems.append({**problem, "field": exc.field} if exc.field else problem)
            continue
        except TemplateTimeout:
            problems.append({"id": row["id"], "reason": "template_timeout", "message": _timeout(target, options)})
            continue
        for note in row_notes:
            notes[note] = notes.get(note, 0) + 1
        for sequence in sequences:
            texts.append(sequence.text)
            spans.append(sequence.spans)
            metas.append(sequence)
        kept.append((row, len(sequences)))
    # Ids and labels for the whole batch at once, in flat int32 arrays (Arrow takes those without a per-token loop).
    encoded = tokenize(tok, target.tokenizer_digest, texts, spans, fast=options.tokenizer_backend == "auto")
    if encoded.disagreed:
        notes["fast_tokenizer_disagreed"] = encoded.disagreed
    flat_ids, mask, starts = encoded.ids, encoded.mask, encoded.starts
    if encoded.straddled is not None and encoded.straddled.any():
        # A boundary token that is one of the template's own tokens is a header that swallowed the whitespace
        # opening the answer (Phi-3's `<|assistant|>`, rstrip): prompt, not trained.
        at = np.flatnonzero(encoded.straddled)
        header = at[np.isin(flat_ids[at], target_added_ids(target))]
        mask[header] = False
        encoded.straddled[header] = False
    flat_labels = np.where(mask, flat_ids, np.int32(IGNORE))
    # Every sequence is decoded back and compared with its text (not a sample).
    lossless = _round_trip_all(tok, texts, flat_ids, starts, encoded.lossless)
    straddled = (
        np.add.reduceat(encoded.straddled.astype(np.int64), starts[:-1]) > 0
        if encoded.straddled is not None and len(flat_ids)
        else np.zeros(len(texts), bool)
    )
    straddled &= starts[1:] > starts[:-1]
    columns: dict[str, list[Any]] = {name: [] for name in RENDERED_SCHEMA.names}
    markers = target.has_generation_markers  # a property that scans the template: once per batch, not per row
    owners = Owners.of(tok, texts, metas, flat_ids, mask, starts)
    at = 0
    for row, count in kept:
        labelled = []
        if straddled[at : at + count].any():
            notes["boundary_token_trained"] = notes.get("boundary_token_trained", 0) + 1
        for i in range(at, at + count):
            lo, hi = int(starts[i]), int(starts[i + 1])
            if not lossless[i]:
                notes["round_trip_failure"] = notes.get("round_trip_failure", 0) + 1
            if (
                markers
                and row["kind"] == "sft"
                and not _markers_agree(tok, row, flat_ids[lo:hi].tolist(), mask[lo:hi].tolist(), options)
            ):
                # The template's own markers say otherwise on more than whitespace: trust neither silently.
                notes["generation_markers_disagree"] = notes.get("generation_markers_disagree", 0) + 1
            labelled.append((flat_ids[lo:hi], flat_labels[lo:hi], owners.weights[lo:hi]))
        problem = _fit(row, labelled, options, columns)
        if problem is None:
            owners.count(at, None if not columns["truncated"][-1] else len(columns["input_ids"][-1]))
        at += count
        if problem is not None:
            problems.append(problem)
    return Rendered(pa.table(columns, schema=RENDERED_SCHEMA), problems, notes, owners.totals(metas))


@dataclass
class Owners:
    """Which trained span each token of a batch trains in, the spans' loss weights per token, and the spans
    counted for the per-turn statistics.

    `owner` holds, per token, the batch-wide index of its span (sequence i's spans are `base[i]` to
    `base[i + 1] - 1`), -1 where not trained; `weights` the token's loss weight (0.0 where not trained);
    `position` / `weight` per span its assistant-turn position (-1: a document) and loss weight."""

    owner: np.ndarray
    weights: np.ndarray
    starts: np.ndarray
    base: np.ndarray
    position: np.ndarray
    weight: np.ndarray
    tokens: np.ndarray  # trained tokens per span, as counted (truncation cuts them)
    counted: list[int] = field(default_factory=list)  # sequences of the rendered rows (their first sequence)

    @classmethod
    def of(
        cls, tok: Any, texts: list[str], metas: list[Sequence], ids: np.ndarray, mask: np.ndarray, starts: np.ndarray
    ) -> Owners:
        """Owners of a tokenized batch (`mask`: trained tokens; `starts`: where each sequence begins).

        A span's trained tokens are one unbroken run (tokens overlapping a character range are consecutive),
        and spans come in text order, so the k-th run of trained tokens in a sequence is its span k: one pass
        over the batch. A sequence where the runs do not match its spans (one token reaching into two spans
        joins their runs; a span of whitespace a header token swallowed has none) goes through `span_owners`.
        """
        n = len(metas)
        sizes = np.fromiter((len(m.spans) for m in metas), np.int64, n)
        base = np.zeros(n + 1, np.int64)
        np.cumsum(sizes, out=base[1:])
        owner = np.full(len(mask), -1, np.int64)
        trained = np.flatnonzero(mask)
        if len(trained):
            seq = np.searchsorted(starts, trained, side="right") - 1
            new_run = np.ones(len(trained), bool)
            new_run[1:] = (np.diff(trained) > 1) | (np.diff(seq) != 0)
            run = np.cumsum(new_run) - 1
            runs = np.bincount(seq[new_run], minlength=n)
            first_run = np.zeros(n, np.int64)
            np.cumsum(runs[:-1], out=first_run[1:])
            good = (runs == sizes)[seq]
            owner[trained[good]] = base[seq[good]] + run[good] - first_run[seq[good]]
            for i in np.flatnonzero((runs != sizes) & (runs > 0)):
                lo, hi = int(starts[i]), int(starts[i + 1])
                local = span_owners(tok, texts[i], metas[i].spans, ids[lo:hi], mask[lo:hi])
                owner[lo:hi] = np.where(local >= 0, local + base[i], -1)
        position = np.fromiter((p for m in metas for p in m.positions), np.int64, int(base[-1]))
        weight = np.fromiter((w for m in metas for w in m.weights), np.float32, int(base[-1]))
        weights = np.where(owner >= 0, weight[np.maximum(owner, 0)] if len(weight) else 0.0, 0.0).astype(np.float32)
        tokens = np.bincount(owner[owner >= 0], minlength=int(base[-1]))
        return cls(owner, weights, starts, base, position, weight, tokens)

    def count(self, sequence: int, cut: int | None) -> None:
        """Count sequence `sequence` (a rendered row's first) in the totals; `cut`: its length after truncation."""
        self.counted.append(sequence)
        if cut is not None:
            start, first = int(self.starts[sequence]), int(self.base[sequence])
            owner = self.owner[start : start + cut]
            n_spans = int(self.base[sequence + 1]) - first
            self.tokens[first : first + n_spans] = np.bincount(owner[owner >= 0] - first, minlength=n_spans)

    def totals(self, metas: list[Sequence]) -> dict[str, Any]:
        """The counted sequences' trained tokens per role and assistant-turn position (`empty_turns`' shape)."""
        out = empty_turns()
        if not self.counted:
            return out
        rows = np.asarray(self.counted, np.int64)
        spans = np.concatenate([np.arange(self.base[i], self.base[i + 1]) for i in rows]).astype(np.int64)
        tokens, position = self.tokens[spans], self.position[spans]
        chat = position >= 0
        out["by_role"]["assistant"] = int(tokens[chat].sum())
        out["by_role"]["text"] = int(tokens[~chat].sum())
        last = len(TURN_BUCKETS) - 1
        bucket = np.minimum(position[chat], last)
        size = len(TURN_BUCKETS)
        per_bucket = np.bincount(bucket, weights=tokens[chat], minlength=size)
        trained_turns = np.bincount(bucket, weights=tokens[chat] > 0, minlength=size)
        weight = np.bincount(bucket, weights=tokens[chat] * self.weight[spans][chat].astype(np.float64), minlength=size)
        turns = np.fromiter((metas[i].assistant_turns for i in rows), np.int64, len(rows))
        for b, name in enumerate(TURN_BUCKETS):
            cell = out["by_turn"][name]
            cell["turns"] = int((turns > b).sum()) if b < last else int(np.maximum(turns - last, 0).sum())
            cell["trained_turns"] = int(trained_turns[b])
            cell["tokens"] = int(per_bucket[b])
            cell["weight"] = float(weight[b])
        return out


def span_owners(tok: Any, text: str, spans: list[tuple[int, int]], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """For each token of one sequence, the index of the trained span it trains in (-1: not trained).

    The k-th run of trained tokens is span k when there are as many runs as spans (`Owners.of` does this for a
    whole batch at once). Where that does not hold (one token reaching into two spans joins their runs; a span
    of whitespace a header token swallowed has none) the tokenizer's own character offsets decide, span by
    span, with the rule of `labels.token_labels`.
    """
    owner = np.full(len(mask), -1, np.int32)
    trained = np.flatnonzero(mask)
    if not len(trained):
        return owner
    breaks = np.flatnonzero(np.diff(trained) > 1) + 1
    if len(breaks) + 1 == len(spans):
        owner[trained] = np.repeat(np.arange(len(spans), dtype=np.int32), np.diff(np.r_[0, breaks, len(trained)]))
        return owner
    encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in encoded["offset_mapping"]]
    if list(encoded["input_ids"]) != ids.tolist():  # the ids came from tiktoken and differ: keep the run order
        owner[trained] = np.minimum(np.cumsum(np.r_[1, np.diff(trained) > 1]) - 1, len(spans) - 1)
        return owner
    for k in range(len(spans) - 1, -1, -1):  # the earliest span wins a token two spans share
        inside = np.asarray(token_labels(offsets, [spans[k]]), dtype=bool) & mask
        owner[inside] = k
    return owner


def _timeout(target: LoadedTarget, options: RenderOptions) -> str:
    return (
        f"rendering the row with the chat template of target {target.name!r} took longer than template_timeout_s "
        f"({options.template_timeout_s:g} s); the template may loop without end on it"
    )


def _fit(
    row: dict[str, Any],
    labelled: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    options: RenderOptions,
    columns: dict[str, list[Any]],
) -> dict[str, Any] | None:
    """Apply the overflow policy to a row's sequences (ids, labels, loss weight per token) and append it to
    `columns`; a problem if it is dropped."""
    n_tokens = max(len(ids) for ids, _, _ in labelled)
    truncated = n_tokens > options.max_length
    if truncated and options.overflow in ("drop", "error"):
        reason = "overflow" if options.overflow == "drop" else "overflow_error"
        action = " (dropped)" if options.overflow == "drop" else ""
        return {
            "id": row["id"],
            "reason": reason,
            "n_tokens": n_tokens,
            "message": f"{n_tokens} tokens > max_length {options.max_length}{action}",
        }
    if truncated and options.overflow == "truncate":
        cut = options.max_length
        labelled = [(ids[:cut], labels[:cut], weights[:cut]) for ids, labels, weights in labelled]
    trained = [int(np.count_nonzero(labels != IGNORE)) for _, labels, _ in labelled]
    if min(trained) == 0:
        why = "truncation left no trained tokens" if truncated else "no token of the row is trained"
        return {"id": row["id"], "reason": "no_trained_tokens", "message": why}
    ids, labels, weights = labelled[0]
    rejected = labelled[1][:2] if len(labelled) > 1 else (None, None)
    columns["id"].append(row["id"])
    columns["source"].append(row["source"])
    columns["kind"].append(row["kind"])
    columns["input_ids"].append(ids)
    columns["labels"].append(labels)
    columns["rejected_input_ids"].append(rejected[0])
    columns["rejected_labels"].append(rejected[1])
    columns["label"].append(row.get("label"))
    columns["n_tokens"].append(n_tokens)
    columns["n_trained"].append(trained[0])
    columns["n_prompt"].append(int(np.argmax(labels != IGNORE)))
    columns["truncated"].append(bool(truncated and options.overflow == "truncate"))
    columns["loss_weights"].append(weights if options.train_on == "weighted" else None)
    return None


def target_added_ids(target: LoadedTarget) -> np.ndarray:
    """Ids of the tokenizer's added tokens (specials and the template's control strings), once per target."""
    if not hasattr(target, "_added_ids"):
        target._added_ids = np.fromiter(target.tokenizer.added_tokens_decoder, np.int64)
    return target._added_ids


def target_special_tokens(target: LoadedTarget) -> re.Pattern[str] | None:
    """`_special_token_pattern` of the target's tokenizer, built once and remembered on the target."""
    if not hasattr(target, "_specials_pattern"):
        target._specials_pattern = _special_token_pattern(target.tokenizer)
    return target._specials_pattern


def _special_token_pattern(tok: Any) -> re.Pattern[str] | None:
    """A regex matching the tokenizer's special (control) tokens: `<|im_start|>`, `<|eot_id|>` …

    Only tokens marked special: Qwen's `<think>` and `<tool_call>` are added but not special, and text that
    mentions them is data (inline reasoning, tool-call examples), not an attempt to forge a turn.
    """
    specials = {t for t in tok.all_special_tokens if t}
    specials |= {a.content for a in tok.added_tokens_decoder.values() if a.special and a.content}
    if not specials:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True)))


def _injected(row: dict[str, Any], pattern: re.Pattern[str] | None) -> tuple[str, str, str] | None:
    """(kind, field, token): the first special token written inside a message's content, reasoning or tool call
    (name or arguments), of any message of the row (preference completions too), or None; `field` is the
    canonical path (`messages[1].tool_calls[0].arguments`). The tokenizer reads such a string as the control
    token itself, so it would forge a turn or end one early."""
    if pattern is None:
        return None
    for side in ("messages", "chosen", "rejected"):
        for i, m in enumerate(row.get(side) or ()):
            for kind in ("content", "reasoning"):
                hit = pattern.search(m.get(kind) or "")
                if hit:
                    return kind, f"{side}[{i}].{kind}", hit.group(0)
            for j, call in enumerate(m.get("tool_calls") or ()):
                for part in ("name", "arguments"):
                    hit = pattern.search(call.get(part) or "")
                    if hit:
                        return "tool_call", f"{side}[{i}].tool_calls[{j}].{part}", hit.group(0)
    return None


def template_checks(target: LoadedTarget, options: RenderOptions) -> dict[str, Any]:
    """Properties of the template itself: end-of-turn token, system prompt honoured, generation markers."""
    render = _renderer(target.tokenizer, None, options)
    probe = "dfprobesystemprompt"
    try:
        text = render(
            [
                {"role": "system", "content": probe},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ],
            False,
        )
        ignores_system = probe not in text
    except (SpanError, TemplateTimeout):  # a template that cannot render the probe does not honour it
        ignores_system = True
    encoder, why = encoder_choice(target.tokenizer, target.tokenizer_digest)
    return {
        "end_of_turn_token": target_end_of_turn(target, options),
        "ignores_system_prompt": ignores_system,
        "has_generation_markers": target.has_generation_markers,
        # Probed once per template on a two-turn conversation; rows with several trained turns are noted
        # `prefix_unstable_history` when False.
        "history_renders_as_prefix": target_history_stable(target, options),
        "token_encoder": encoder if options.tokenizer_backend == "auto" else "tokenizers",
        "token_encoder_why": why if options.tokenizer_backend == "auto" else "tokenizer_backend: tokenizers",
    }


_WHITESPACE = re.compile(r"\s+")


def _round_trip_all(
    tok: Any, texts: list[str], flat_ids: np.ndarray, starts: np.ndarray, known: list[bool | None] | None = None
) -> list[bool]:
    """`_round_trips_text` for every sequence of the batch: where the encoder already knows (tiktoken: the tokens'
    bytes are exactly the text's), that; the others decoded by the tokenizer in one call."""
    out: list[bool | None] = list(known) if known is not None else [None] * len(texts)
    todo = [i for i, ok in enumerate(out) if ok is not True]
    if todo:
        decoded = tok.batch_decode(
            [flat_ids[int(starts[i]) : int(starts[i + 1])].tolist() for i in todo],
            skip_special_tokens=False,
            clean_up_tokenization_spaces=False,
        )
        for i, text in zip(todo, decoded, strict=True):
            out[i] = _round_trips_text(text, texts[i])
    return [bool(x) for x in out]


def _round_trips_text(decoded: str, text: str) -> bool:
    """Whether the decoded ids give back the rendered text, whitespace aside.

    This catches tokenizers that lose information (lower-casing or Unicode normalisers, unknown tokens).
    Whitespace is left out of the comparison: SentencePiece decoders add a space after `<s>` and Phi-3's
    special tokens swallow the newline after them, which is how those models were trained, not a loss.
    """
    return decoded == text or _WHITESPACE.sub("", decoded) == _WHITESPACE.sub("", text)


def target_end_of_turn(target: LoadedTarget, options: RenderOptions) -> str | None:
    """The end-of-turn token of the target's template (probed once, remembered on the target)."""
    if not hasattr(target, "_eot"):
        tok = target.tokenizer
        specials = list(tok.get_added_vocab()) + [t for t in tok.all_special_tokens if t]
        target._eot = end_of_turn(_renderer(tok, None, options), specials)
    return target._eot


def target_prompt_tail(target: LoadedTarget, options: RenderOptions) -> Tail | None:
    """The template's prompt tail (`spans.prompt_tail`), probed once per target and template arguments."""
    key = json.dumps(options.chat_template_kwargs, sort_keys=True, default=str)
    probed = target.__dict__.setdefault("_prompt_tail", {})
    if key not in probed:
        tok = target.tokenizer
        specials = list(tok.get_added_vocab()) + [t for t in tok.all_special_tokens if t]
        probed[key] = prompt_tail(_renderer(tok, None, options), specials)
    return probed[key]


def target_history_stable(target: LoadedTarget, options: RenderOptions) -> bool | None:
    """Whether the template renders history as a prefix of the whole conversation (`spans.history_stable`),
    probed once per target and template arguments, remembered on the target."""
    key = json.dumps(options.chat_template_kwargs, sort_keys=True, default=str)
    probed = target.__dict__.setdefault("_history_stable", {})
    if key not in probed:
        probed[key] = history_stable(_renderer(target.tokenizer, None, options))
    return probed[key]


def _renderer(tok: Any, tools: list[dict[str, Any]] | None, options: RenderOptions):
    def render(msgs: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        try:
            # Bounded here for the probes; a row's renders run under the row's deadline (this one then adds none).
            with deadline(options.template_timeout_s):
                text = tok.apply_chat_template(
                    msgs,
                    tools=tools,
                    tokenize=False,
                    add_generation_prompt=add_generation_prompt,
                    **options.chat_template_kwargs,
                )
            check_output(text)
            return text
        except TemplateTooLarge as exc:
            raise SpanError("template_output_too_large", exc.message) from None
        except ImportError as exc:  # transformers renders with jinja2: a missing package is not the row's fault
            raise as_missing_dependency(exc, "rendering with a chat template") or exc from None
        except Exception as exc:  # a template raising (e.g. "roles must alternate") is a property of the row
            raise SpanError("template_error", f"the chat template refused the conversation: {exc}") from None

    return render


def _row_sequences(
    row: dict[str, Any],
    tok: Any,
    options: RenderOptions,
    eot: str | None,
    history: bool | None,
    tail: Tail | None = None,
) -> tuple[list[Sequence], set[str]]:
    """The row's sequences (text, trained character spans, their weights and turn positions) and notes: one
    sequence, or two for a preference pair (prompt + chosen, prompt + rejected)."""
    kind = row["kind"]
    if kind == "pretrain":
        # Documents are framed as the tokenizer frames plain text (BOS only where its post-processor adds one,
        # as Llama's and Mistral's do), then EOS so the model learns where a document ends.
        text = (tok.bos_token if _adds_bos(tok) else "") + (row["text"] or "") + (tok.eos_token or "")
        return [Sequence(text, [(0, len(text))], [1.0], [-1])], set()
    tools = openai_tools(row["tools"]) if row.get("tools") else None
    render = _renderer(tok, tools, options)
    messages = chat_messages(row, options.reasoning)
    sequences, notes = [], set()
    for side in ("chosen", "rejected") if kind == "preference" else (None,):
        canonical = [*(row["messages"] or ()), *((row[side] or ()) if side else ())]
        _check_weights(canonical, row, side)
        completion = _chat(row[side] or (), options.reasoning, side) if side else []
        first = len(messages) if side else 0
        train_on = "last" if kind == "kto" else options.train_on  # kto: the completion is the last turn
        spans = derive(
            render,
            messages + completion,
            train_on,
            eot,
            first=first,
            history_stable=history,
            untrained=_untrained(canonical),
            tail=tail,
            unrendered=options.unrendered,
            first_n=options.first_n,
        )
        turn_of = [i for i, m in enumerate(canonical) if m["role"] == "assistant" and i >= first]
        weights = [_weight(canonical[k]) for k in spans.turns]
        if train_on != "weighted" and any(w != 1.0 for w in weights):
            notes.add("fractional_weight_ignored")  # trained at full weight: only `weighted` scales the loss
            weights = [1.0] * len(weights)
        positions = [turn_of.index(k) for k in spans.turns]
        sequences.append(Sequence(spans.text, spans.trained, weights, positions, len(turn_of)))
        notes |= spans.notes
    return sequences, notes


def _weight(message: dict[str, Any]) -> float:
    """A message's loss weight as a float; a null weight is 1.0 (the turn trains as usual)."""
    weight = message.get("weight")
    return 1.0 if weight is None else float(weight)


def _check_weights(messages, row: dict[str, Any], side: str | None) -> None:
    """SpanError `invalid_loss_weight` naming the field of the first negative or non-finite message weight.

    The convert stage already rejects NaN and infinite weights of every source; `dataforge render` on a file
    and negative weights (which no format forbids) reach here. A negative weight would train the model away
    from the reply, and NaN has no meaning: neither is guessed at."""
    base = len(row["messages"] or ())
    for i, m in enumerate(messages):
        weight = m.get("weight")
        if weight is not None and (not math.isfinite(weight) or weight < 0):
            where = f"messages[{i}].weight" if i < base else f"{side}[{i - base}].weight"
            raise SpanError(
                "invalid_loss_weight",
                f"{where} is {weight!r}: a loss weight must be a finite number >= 0 (0 = not trained)",
                field=where,
            )


def _untrained(messages) -> frozenset[int]:
    """Indices of the messages whose loss weight is 0 (OpenAI `weight: 0`, LLaMA-Factory `loss_weight: 0.0`):
    those assistant turns stay in the prompt but are not trained."""
    return frozenset(i for i, m in enumerate(messages) if m.get("weight") is not None and m["weight"] == 0)


def _adds_bos(tok: Any) -> bool:
    """Whether the tokenizer puts its BOS token in front of plain text it encodes."""
    if tok.bos_token_id is None:
        return False
    ids = tok("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tok.bos_token_id


def _markers_agree(tok: Any, row: dict[str, Any], ids: list[int], mask: list[bool], options: RenderOptions) -> bool:
    """Whether the template's `{% generation %}` mask matches the derived one, except on whitespace tokens
    (trl's training templates put the newlines around a turn inside the markers)."""
    tools = openai_tools(row["tools"]) if row.get("tools") else None
    try:
        with deadline(options.template_timeout_s):
            out = tok.apply_chat_template(
                chat_messages(row, options.reasoning),
                tools=tools,
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
                **options.chat_template_kwargs,
            )
    except TemplateTimeout:  # the row rendered in time without markers: count it as a disagreement, not a hang
        return False
    if list(out["input_ids"]) != list(ids):
        return False
    for token, ours, theirs in zip(ids, mask, out["assistant_masks"], strict=True):
        if bool(theirs) != ours and tok.decode([token]).strip():
            return False
    return True


def lengths(table: pa.Table) -> dict[str, np.ndarray]:
    """Token counts per rendered row, as arrays."""
    return {name: table[name].to_numpy() for name in ("n_tokens", "n_trained", "n_prompt")}
