"""render:<target>: train/val Examples → input_ids and labels through one model's chat template.

Rows that cannot be rendered (template errors, turns that cannot be located, special tokens in content,
reasoning or tool calls, tool calls or reasoning the template drops under `unrendered: reject`, overflow when
the policy drops them, nothing to train) leave the rendered set with a reason; they stay in train/val.parquet,
so the target has its own small ledger: rows in = rendered + dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..engine.executor import LocalExecutor, WorkerDied
from ..engine.shards import Finished, Sharded, ShardResult, ShardTask, sum_stats
from ..errors import DataError
from ..pack import TOO_LONG_REASON, PackError, merge_stats, pack_rendered
from ..recipe import RenderTarget
from ..rejects import REJECTS_SCHEMA, Outcome
from ..render.engine import Rendered, RenderOptions, empty_turns, render_rows, template_checks
from ..render.spans import SpanError
from ..render.target import LoadedTarget
from ..report.lengths import RowLengths, length_stats, suggested_max_length
from .base import Progress, StageInput

# 4: spans located by sentinel renders, boundary tokens, unrendered policy, every row round-tripped;
# 5: special-token rejects name their field (`messages[1].tool_calls[0].arguments`)
# 6: template_timeout / template_output_too_large rejects; tool-call arguments parsed depth-bounded
# 7: length histograms scaled to the data (max_length far beyond is marked at the edge)
# 8: `pack:` packs the rendered rows (packed_train/packed_val, too_long_to_pack rejects)
# 9: train_on first_n / weighted (`loss_weights`), invalid_loss_weight rejects, trained tokens per turn
VERSION = 9
BATCH = 512
# Starting a worker (spawn, import, unpickle the tokenizer) costs ~1.5 s: below this many rows one process wins.
PARALLEL_MIN_ROWS = 20_000
SHOWN_OVERFLOW_IDS = 20
PACKED_OUTPUTS = ("packed_train", "packed_val")  # with `pack:`: the packed rows of each split
LENGTH_COLUMNS = ("id", "source", "n_tokens", "n_prompt", "n_trained")  # what the length statistics read
PACK_REASONS = {"too_long": TOO_LONG_REASON, "empty": "empty_row_to_pack"}  # rows packing leaves out → reject reason


def options_of(spec: RenderTarget) -> RenderOptions:
    return RenderOptions(
        max_length=spec.max_length,
        overflow=spec.overflow,
        train_on=spec.train_on,
        first_n=spec.first_n,
        reasoning=spec.reasoning,
        chat_template_kwargs=dict(spec.chat_template_kwargs),
        unrendered_tool_calls=spec.unrendered.tool_calls,
        unrendered_reasoning=spec.unrendered.reasoning,
        template_timeout_s=spec.template_timeout_s,
    )


def _batches(
    examples: pa.Table, target: LoadedTarget, options: RenderOptions, workers: int, min_rows: int, rows: int
) -> Iterator[tuple[pa.Table, Rendered]]:
    """(batch, rendered batch) in order, `rows` rows a batch; batches go to `workers` processes when there are
    enough of them.

    Rendering is per-row Python (Jinja) plus tokenization, so it scales with processes, not threads. Each
    worker receives the target once; the output does not depend on the number of workers.
    """
    slices = [examples.slice(start, rows) for start in range(0, examples.num_rows, rows)]
    if workers <= 1 or examples.num_rows < min_rows:
        for batch in slices:
            yield batch, render_rows(batch.to_pylist(), target, options)
        return
    # The engine's pool: a worker that dies fails the map at once, naming the batch it held (never a hang).
    with LocalExecutor(min(workers, len(slices))) as pool:
        done = pool.map(_render_batch, (target, options), slices, describe=lambda i: f"batch {i}")
    yield from zip(slices, done, strict=True)


def _render_batch(params: tuple[LoadedTarget, RenderOptions], batch: pa.Table) -> Rendered:
    """One batch rendered in a worker process (the shard function of `_batches`)."""
    target, options = params
    return render_rows(batch.to_pylist(), target, options)


def render_split(
    examples: pa.Table,
    target: LoadedTarget,
    options: RenderOptions,
    progress: Progress,
    what: str,
    workers: int = 1,
    min_rows_parallel: int = PARALLEL_MIN_ROWS,
    batch_rows: int = BATCH,
):
    """(rendered table, dropped rows as rejects, notes, trained tokens per role and turn (`engine.empty_turns`))
    for one split, in batches of `batch_rows` rows."""
    rendered: list[pa.Table] = []
    dropped: list[dict[str, Any]] = []
    notes: Counter[str] = Counter()
    turns = empty_turns()
    total = examples.num_rows
    done = 0
    try:
        for batch, result in _batches(examples, target, options, workers, min_rows_parallel, batch_rows):
            progress(done, total, what)
            done += batch.num_rows
            rows = {r["id"]: r for r in batch.select(["id", "source", "file", "row", "line"]).to_pylist()}
            dropped += [_dropped(rows[p["id"]], p, target.name) for p in result.problems]
            rendered.append(result.table)
            notes.update(result.notes)
            turns = sum_stats([turns, result.turns])
    except SpanError as exc:
        # Only a missing template is fixed by `chat_template:`; a template that fails on the conversation
        # dataforge probes it with needs the template looked at, or replaced.
        hint = (
            "set the target's `chat_template:` to a .jinja file"
            if exc.reason == "no_chat_template"
            else "the template may loop without end: check it, or raise the target's `template_timeout_s` if it is "
            "only slow"
            if exc.reason == "template_timeout"
            else "check the target's chat template (or set `chat_template:` to a .jinja file that renders it)"
        )
        raise DataError(f"render target {target.name!r}: {exc.message}", hint=hint) from None
    except WorkerDied as exc:
        doing = "starting"
        if exc.task is not None:
            first = exc.task * batch_rows
            doing = f"rendering {what} rows {first:,}-{min(first + batch_rows, total) - 1:,}"
        raise DataError(
            f"render target {target.name!r}: a render worker process died while {doing}: {exc.how}",
            hint="rerun with `workers: 1` on this render target (it then renders in the build's own process), "
            "or give the build more memory",
        ) from None
    progress(total, total, what)
    table = pa.concat_tables(rendered) if rendered else render_rows([], target, options).table
    return table, dropped, notes, turns


def _dropped(row: dict[str, Any], problem: dict[str, Any], target: str) -> dict[str, Any]:
    """A rejects-table row (plus `n_tokens`, for the length statistics) for a row that was not rendered."""
    return {
        "n_tokens": problem.get("n_tokens"),
        "source": row["source"],
        "file": row["file"],
        "row": row["row"],
        "line": row["line"],
        "example_id": row["id"],
        "stage": f"render:{target}",
        "outcome": Outcome.REJECTED.value,
        "reason": problem["reason"],
        "field": problem.get("field"),
        "message": problem["message"],
    }


def _pack_split(table: pa.Table, examples: pa.Table, spec: RenderTarget) -> tuple[pa.Table, Any, list[dict[str, Any]]]:
    """(rendered rows without those too long to pack, the packed rows, rejects for the rows left out)."""
    assert spec.pack is not None
    max_length = spec.pack.max_length or spec.max_length
    try:
        kept, packed = pack_rendered(table, max_length, spec.pack.strategy, spec.pack.drop_longer)
    except PackError as exc:
        over = pc.greater(pc.list_value_length(table["input_ids"]), max_length)
        shown = ", ".join(table.filter(over)["id"].to_pylist()[:5])
        raise DataError(
            f"render target {spec.name!r}: pack: {exc}" + (f", e.g. {shown}" if shown else ""),
            hint="set pack.drop_longer: true to leave such rows out (as rejects), or raise pack.max_length",
        ) from None
    reasons = {i: reason for reason, ids in packed.left_out.items() for i in ids}  # too_long, empty
    if not reasons:
        return kept, packed, []
    lengths = dict(zip(table["id"].to_pylist(), pc.list_value_length(table["input_ids"]).to_pylist(), strict=True))
    messages = {
        "too_long": "{n} tokens, longer than pack.max_length {limit}; rows are never split (pack.drop_longer: true)",
        "empty": "no tokens to pack",
    }
    out = []
    for row in examples.select(["id", "source", "file", "row", "line"]).to_pylist():
        if row["id"] in reasons:
            why = reasons[row["id"]]
            message = messages[why].format(n=lengths[row["id"]], limit=max_length)
            out.append(_dropped(row, {"reason": PACK_REASONS[why], "message": message}, spec.name))
    return kept, packed, out


def render_stats(
    lengths: RowLengths,
    spec: RenderTarget,
    target: LoadedTarget,
    options: RenderOptions,
    dropped: list[dict[str, Any]],
    notes: Counter[str],
    counts: dict[str, dict[str, int]],
    turns: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The target's statistics (checks, rows, overflow, token lengths, the suggested max_length, loss per turn)
    from the rendered rows' per-row counts (`lengths`) and the rows left out (`dropped`)."""
    n_tokens = lengths.column("n_tokens")
    overflow_dropped = [d["example_id"] for d in dropped if d["reason"] in ("overflow", "overflow_error")]
    with_tokens = [d for d in dropped if d.get("n_tokens")]
    over_lengths = np.array([d["n_tokens"] for d in with_tokens], dtype=np.int64)
    over_sources = np.array([lengths.code(d["source"]) for d in with_tokens], dtype=np.int64)
    stats = {
        "target": {
            "tokenizer": target.source,
            "revision": spec.revision,
            "tokenizer_digest": target.tokenizer_digest,
            "template_digest": target.template_digest,
        },
        "checks": {
            **template_checks(target, options),
            "row_notes": dict(sorted(notes.items())),
        },
        "rows": counts,
        "dropped_by_reason": dict(sorted(Counter(d["reason"] for d in dropped).items())),
        "overflow": {
            "policy": spec.overflow,
            "max_length": spec.max_length,
            "rows_over": lengths.over + len(overflow_dropped),
            "kept_over": lengths.over,
            "dropped": len(overflow_dropped),
            "ids": (lengths.over_ids + overflow_dropped)[:SHOWN_OVERFLOW_IDS],
        },
        "lengths": length_stats(
            n_tokens,
            lengths.column("n_prompt"),
            lengths.column("n_trained"),
            lengths.column("source"),
            lengths.names,
            spec.max_length,
            over_lengths,
            over_sources,
        ),
        "suggested_max_length": {
            "keep_share": spec.keep_share,
            # Rows dropped for overflow count too: the suggestion is about the data, not what survived.
            "tokens": suggested_max_length(np.concatenate([n_tokens, over_lengths]), spec.keep_share),
        },
    }
    if turns is not None:  # counted by the shards (`render_split`); `dataforge render` passes none yet
        stats["loss"] = loss_stats(spec, turns)
    return stats


def loss_stats(spec: RenderTarget, turns: dict[str, Any]) -> dict[str, Any]:
    """The report's "Loss per turn": the target's turn policy and its rendered rows' trained tokens per role and
    per assistant-turn position (`engine.empty_turns`, summed over every shard of train and val). Rows that
    packing later leaves out (`too_long_to_pack`) are counted here, as rendered; the packing line says how many
    trained tokens they held."""
    by_turn = {bucket: {**cell, "weight": round(float(cell["weight"]), 4)} for bucket, cell in turns["by_turn"].items()}
    return {
        "train_on": spec.train_on,
        "first_n": spec.first_n,
        "by_role": dict(turns["by_role"]),
        "by_turn": by_turn,
    }


# --- render over shards (DESIGN.md seam 3) ----------------------------------------------------------------------

DROPPED_SCHEMA = REJECTS_SCHEMA.append(pa.field("n_tokens", pa.int64()))


@dataclass(frozen=True)
class RenderParams:
    """What every render shard of a target shares (picklable: the tokenizer crosses to each worker once)."""

    spec: RenderTarget
    target: LoadedTarget


def render_shard(params: RenderParams, task: ShardTask) -> dict[str, Any]:
    """Render one part of train or val (in this process: the executor runs shards side by side); write the rendered
    rows and the rows left out (with their token counts, for the length statistics)."""
    from ..engine.cache import write_parquet
    from .sharding import quiet

    split = task.meta["split"]
    examples = pq.read_table(task.inputs["in"])
    table, dropped, notes, turns = render_split(
        examples, params.target, options_of(params.spec), quiet, split, workers=1
    )
    out = Path(task.out)
    write_parquet(table, out / f"{split}.parquet")
    write_parquet(pa.Table.from_pylist(dropped, schema=DROPPED_SCHEMA), out / "dropped.parquet")
    return {
        "split": split,
        "in": examples.num_rows,
        "rendered": table.num_rows,
        "notes": dict(sorted(notes.items())),
        "turns": turns,
    }


def render_tasks(split_stage: str):
    def tasks(inputs: dict[str, StageInput]) -> list[ShardTask]:
        upstream = inputs[split_stage]
        out: list[ShardTask] = []
        for split in ("train", "val"):
            parts = upstream.parts(split)
            for i, part in enumerate(parts):
                what = f"{split} part {i + 1} of {len(parts)}"
                out.append(ShardTask(len(out), {"in": str(part)}, {"split": split}, what))
        return out

    return tasks


def render_finish(split_stage: str, spec: RenderTarget, target: LoadedTarget, inputs_of: dict[str, Any]):
    """After every shard: the overflow check, packing (over the whole split: it needs every row's tokens), the
    target's rejects and its statistics from per-row counts."""

    def finish(results: list[ShardResult], scratch: Path) -> Finished:
        from ..engine.cache import write_parquet
        from ..engine.shards import Finished

        options = options_of(spec)
        upstream: StageInput = inputs_of["inputs"][split_stage]
        parts: dict[str, list[Any]] = {}
        dropped: list[dict[str, Any]] = []
        notes: Counter[str] = Counter()
        turns = sum_stats([empty_turns(), *(r.stats["turns"] for r in results)])
        counts: dict[str, dict[str, int]] = {}
        packed: dict[str, Any] = {}
        # Per-row counts, part by part: a few bytes a row (see RowLengths), never a whole split's columns.
        lengths = RowLengths(spec.max_length, SHOWN_OVERFLOW_IDS)
        for split in ("train", "val"):
            mine = [r for r in results if r.stats["split"] == split]
            split_dropped = [row for r in mine for row in pq.read_table(r.path / "dropped.parquet").to_pylist()]
            if options.overflow == "error" and any(d["reason"] == "overflow_error" for d in split_dropped):
                over = [d["example_id"] for d in split_dropped if d["reason"] == "overflow_error"]
                raise DataError(
                    f"render target {spec.name!r}: {len(over)} row(s) exceed max_length {spec.max_length} "
                    f"(overflow: error), e.g. {', '.join(over[:5])}",
                    hint="raise max_length, or choose overflow: drop | truncate | keep",
                )
            for r in mine:
                notes.update(r.stats["notes"])
            rows_in = sum(r.stats["in"] for r in mine)
            if spec.pack is not None:
                rendered = _concat([pq.read_table(r.path / f"{split}.parquet") for r in mine], target, options)
                examples = upstream.table(split, columns=["id", "source", "file", "row", "line"])
                table, packed[split], too_long = _pack_split(rendered, examples, spec)
                split_dropped += too_long
                path = scratch / f"{split}.parquet"
                write_parquet(table, path)
                parts[split] = [path]
                lengths.add(table.select(LENGTH_COLUMNS))
                rendered_rows = table.num_rows
            else:
                parts[split] = mine
                for r in mine:
                    lengths.add(pq.read_table(r.path / f"{split}.parquet", columns=list(LENGTH_COLUMNS)))
                rendered_rows = sum(r.stats["rendered"] for r in mine)
            dropped += split_dropped
            counts[split] = {"in": rows_in, "rendered": rendered_rows, "dropped": len(split_dropped)}
        stats = render_stats(lengths, spec, target, options, dropped, notes, counts, turns)
        if spec.pack is not None:
            stats["pack"] = {
                **merge_stats({s: p.stats for s, p in packed.items()}),
                "drop_longer": spec.pack.drop_longer,
            }
            for split, p in packed.items():
                path = scratch / f"packed_{split}.parquet"
                write_parquet(p.table, path)
                parts[f"packed_{split}"] = [path]
        rejects = pa.Table.from_pylist(
            [{k: v for k, v in d.items() if k != "n_tokens"} for d in dropped], schema=REJECTS_SCHEMA
        )
        path = scratch / "rejects.parquet"
        write_parquet(rejects, path)
        parts["rejects"] = [path]
        return Finished(parts, stats=stats)

    return finish


def _concat(tables: list[pa.Table], target: LoadedTarget, options: RenderOptions) -> pa.Table:
    return pa.concat_tables(tables) if tables else render_rows([], target, options).table


def sharded_render(split_stage: str, spec: RenderTarget, target: LoadedTarget) -> Sharded:
    """The render stage of one target over the parts of train and val."""
    holder: dict[str, Any] = {}

    def tasks(inputs: dict[str, StageInput]) -> list[ShardTask]:
        holder["inputs"] = inputs  # finish reads the split's examples for the rows packing leaves out
        return render_tasks(split_stage)(inputs)

    return Sharded(
        render_shard,
        RenderParams(spec, target),
        tasks,
        merge=lambda parts: {},
        finish=render_finish(split_stage, spec, target, holder),
    )
