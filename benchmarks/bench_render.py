#!/usr/bin/env python
"""Render throughput: dataforge's `render_rows` (input_ids + labels) against the tokenizer's batch-encode floor,
a plain `apply_chat_template` loop, and trl's SFT dataset preparation, on one core.

Generates deterministic (seeded) canonical Examples, `Example(...).to_row()` as the render stage reads them:

* `alpaca`: single-turn instruction rows sized like real Alpaca data (instruction 20–250 characters, an input
  of 20–400 in 40%, an answer of 50–2,000, a system prompt in 10%);
* `tools`:  tool-call conversations: user → assistant tool call → tool result → assistant answer, with 1–3
  declared function specs per row (the called one among them), a system prompt in 10%.

Each method runs in a fresh subprocess with `OMP_NUM_THREADS=1`, `TOKENIZERS_PARALLELISM=false` and
`RAYON_NUM_THREADS=1` set before any import, so every figure is one core's:

* `floor`      the fast tokenizer's batch encode, `tok(texts, add_special_tokens=False)` in batches of 1,000,
               of texts rendered beforehand (untimed) with `apply_chat_template(tokenize=False)`;
* `jinja only` `apply_chat_template(messages, tools=…, tokenize=False)` per row (a reference: no tokens);
* `dataforge`  `render.engine.render_rows` in batches of 512 (what the render stage does), labels included;
               the Arrow → Python conversion of each batch (`Table.slice(...).to_pylist()`) is timed too;
               its default encoder is tiktoken where it reproduces the tokenizer (`render/fastbpe.py`);
* `dataforge_hf` the same with `RenderOptions(tokenizer_backend="tokenizers")`: the tokenizer's own encoder;
* `trl`        `trl.SFTTrainer._prepare_dataset` (called on a stand-in for the trainer, so no model is
               loaded) on a `datasets.Dataset` of `{"messages", "tools"}` with `assistant_only_loss=False`,
               one process; the figure is its tokenize map alone, the whole preparation (tokenize + labels +
               truncate + filter) is reported next to it.

Untimed sanity checks (the script exits non-zero when one fails): every method sees every row and produces the
same number of tokens; dataforge drops no row; for the first 200 rows of each set dataforge's input_ids equal
`apply_chat_template(..., tokenize=True, return_dict=False)` and trl's input_ids; dataforge's trained tokens of
the first 200 rows decode to the assistant turns (content or tool call) followed by `<|im_end|>`; both dataforge
rows give identical input_ids and labels for every row.

    python benchmarks/bench_render.py                               # 50,000 alpaca + 20,000 tool rows
    python benchmarks/bench_render.py --alpaca-rows 5000 --tool-rows 2000
    python benchmarks/bench_render.py --profile                     # + cProfile of dataforge per set

Results: a Markdown table on stdout and in benchmarks/out/render.md; every number in
benchmarks/out/render.json; with --profile, benchmarks/out/render-profile-<set>.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
SETS = ("alpaca", "tools")
GENERATOR_VERSION = 1  # bump when the generated data changes, so cached files are regenerated
FLOOR_BATCH = 1_000
RENDER_BATCH = 512  # stages/render.py BATCH
SANITY_ROWS = 200
TARGET_SHARE = 0.90  # of the batch-encode floor, per core, with labels (the issue)
ONE_CORE = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"}

# --- the generator ------------------------------------------------------------------------------------------

sys.path.insert(0, str(HERE))
from bench_ingest import _Text  # noqa: E402 - the same word-like text as the ingest benchmark

_UNITS = ("celsius", "fahrenheit")
_CITIES = ("Paris", "São Paulo", "Zürich", "Tokyo", "Lagos", "Toronto", "Mumbai", "Berlin", "Sydney", "北京")
_CURRENCIES = ("USD", "EUR", "JPY", "GBP", "CHF", "BRL", "INR", "CNY")


def _tool_specs() -> list[dict[str, Any]]:
    """Function specs (name, description, JSON-Schema parameters) like those in real tool-calling data."""

    def spec(name: str, description: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": required},
        }

    s = {"type": "string"}
    return [
        spec(
            "get_current_weather",
            "Get the current weather in a given location.",
            {
                "location": {**s, "description": "The city and country, e.g. Paris, France"},
                "unit": {"type": "string", "enum": list(_UNITS), "description": "Temperature unit"},
            },
            ["location"],
        ),
        spec(
            "search_web",
            "Search the web and return the top results with titles, URLs and snippets.",
            {
                "query": {**s, "description": "The search query"},
                "max_results": {"type": "integer", "description": "How many results to return (1-10)"},
            },
            ["query"],
        ),
        spec(
            "convert_currency",
            "Convert an amount of money from one currency to another at today's rate.",
            {
                "amount": {"type": "number", "description": "The amount to convert"},
                "from_currency": {**s, "description": "ISO 4217 code of the source currency"},
                "to_currency": {**s, "description": "ISO 4217 code of the target currency"},
            },
            ["amount", "from_currency", "to_currency"],
        ),
        spec(
            "lookup_order",
            "Look up a customer order by its identifier and return its status and items.",
            {"order_id": {**s, "description": "The order identifier, e.g. A-10293"}},
            ["order_id"],
        ),
        spec(
            "run_sql",
            "Run a read-only SQL query against the analytics database.",
            {
                "query": {**s, "description": "A SELECT statement"},
                "database": {"type": "string", "enum": ["sales", "support", "web"], "description": "Database"},
            },
            ["query"],
        ),
        spec(
            "calculate",
            "Evaluate an arithmetic expression and return the result.",
            {"expression": {**s, "description": "The expression, e.g. (3 + 4) * 2"}},
            ["expression"],
        ),
        spec(
            "send_email",
            "Send an email on the user's behalf.",
            {
                "to": {**s, "description": "Recipient address"},
                "subject": {**s, "description": "Subject line"},
                "body": {**s, "description": "Plain-text body"},
            },
            ["to", "subject", "body"],
        ),
        spec(
            "translate_text",
            "Translate text into another language.",
            {
                "text": {**s, "description": "The text to translate"},
                "target_language": {**s, "description": "ISO 639-1 code of the target language"},
            },
            ["text", "target_language"],
        ),
    ]


def _call(name: str, text: _Text, rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """(arguments, result) of one call to the tool `name`."""
    if name == "get_current_weather":
        args: dict[str, Any] = {"location": rng.choice(_CITIES)}
        if rng.random() < 0.5:
            args["unit"] = rng.choice(_UNITS)
        result: dict[str, Any] = {
            "temperature": round(rng.uniform(-10, 38), 1),
            "conditions": text(20, 120),
            "humidity": rng.randint(10, 100),
        }
    elif name == "search_web":
        args = {"query": text(10, 80)}
        if rng.random() < 0.5:
            args["max_results"] = rng.randint(1, 10)
        result = {
            "results": [
                {"title": text(15, 80), "url": f"https://example.org/{rng.randrange(10**6)}", "snippet": text(40, 300)}
                for _ in range(rng.randint(1, 3))
            ]
        }
    elif name == "convert_currency":
        args = {
            "amount": round(rng.uniform(1, 10_000), 2),
            "from_currency": rng.choice(_CURRENCIES),
            "to_currency": rng.choice(_CURRENCIES),
        }
        result = {"converted": round(rng.uniform(1, 10_000), 2), "rate": round(rng.uniform(0.01, 150), 4)}
    elif name == "lookup_order":
        args = {"order_id": f"A-{rng.randrange(10**5):05d}"}
        result = {
            "status": rng.choice(["shipped", "processing", "delivered", "cancelled"]),
            "items": [{"name": text(10, 60), "quantity": rng.randint(1, 5)} for _ in range(rng.randint(1, 4))],
            "note": text(20, 200),
        }
    elif name == "run_sql":
        args = {"query": f"SELECT {text(10, 60)} FROM orders WHERE total > {rng.randint(1, 999)}"}
        if rng.random() < 0.5:
            args["database"] = rng.choice(["sales", "support", "web"])
        result = {"rows": [[rng.randint(0, 999), text(5, 40)] for _ in range(rng.randint(1, 8))]}
    elif name == "calculate":
        args = {"expression": f"({rng.randint(1, 999)} + {rng.randint(1, 999)}) * {rng.randint(1, 99)}"}
        result = {"result": rng.randint(1, 10**6)}
    elif name == "send_email":
        args = {"to": f"user{rng.randrange(1000)}@example.com", "subject": text(10, 80), "body": text(50, 600)}
        result = {"sent": True, "message_id": f"<{rng.randrange(10**9)}@mail.example.com>"}
    else:  # translate_text
        args = {"text": text(20, 300), "target_language": rng.choice(["fr", "de", "ja", "pt", "zh", "ru"])}
        result = {"translation": text(20, 300)}
    return args, result


def _alpaca_example(i: int, text: _Text, rng: random.Random):
    from dataforge.record import Example, Kind, Message, Provenance, Role

    msgs = [Message(Role.SYSTEM, text(100, 300))] if rng.random() < 0.1 else []
    instruction = text(20, 250)
    user = f"{instruction}\n{text(20, 400)}" if rng.random() < 0.4 else instruction  # the alpaca converter's join
    msgs += [Message(Role.USER, user), Message(Role.ASSISTANT, text(50, 2000))]
    return Example(f"alpaca-{i}", Kind.SFT, Provenance("bench", "alpaca.jsonl", i, i + 1), tuple(msgs))


def _tool_example(i: int, text: _Text, rng: random.Random, specs: list[dict[str, Any]]):
    from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall

    declared = rng.sample(specs, rng.randint(1, 3))
    called = rng.choice(declared)["name"]
    args, result = _call(called, text, rng)
    call_id = f"call_{rng.randrange(16**8):08x}"
    msgs = [Message(Role.SYSTEM, text(100, 300))] if rng.random() < 0.1 else []
    msgs += [
        Message(Role.USER, text(20, 300)),
        Message(Role.ASSISTANT, None, tool_calls=(ToolCall(called, args, call_id),)),
        Message(Role.TOOL, json.dumps(result, ensure_ascii=False), tool_call_id=call_id, name=called),
        Message(Role.ASSISTANT, text(50, 1000)),
    ]
    return Example(f"tools-{i}", Kind.SFT, Provenance("bench", "tools.jsonl", i, i + 1), tuple(msgs), tools=declared)


def generate(which: str, rows: int, seed: int, directory: Path) -> Path:
    """The Parquet file (EXAMPLE_SCHEMA) of `rows` generated Examples, made once and reused while intact."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dataforge.record import EXAMPLE_SCHEMA

    path = directory / f"render-{which}-{rows}-s{seed}-v{GENERATOR_VERSION}.parquet"
    if path.exists():
        try:
            if pq.read_metadata(path).num_rows == rows:
                return path
        except Exception:  # a partial file: make it again
            pass
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}:render:{which}")
    text = _Text(rng)
    specs = _tool_specs()
    out = []
    for i in range(rows):
        ex = _alpaca_example(i, text, rng) if which == "alpaca" else _tool_example(i, text, rng, specs)
        out.append(ex.to_row())
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pylist(out, schema=EXAMPLE_SCHEMA), tmp)
    tmp.replace(path)
    return path


# --- workers (run in a fresh subprocess each) ---------------------------------------------------------------


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _ids_digest(seqs) -> str:
    h = hashlib.sha256()
    for ids in seqs:
        h.update(json.dumps(list(ids)).encode())
    return h.hexdigest()[:16]


def _load(path: Path, tokenizer_dir: Path):
    """(Arrow table, rows as dicts, the loaded target): everything a worker needs, untimed."""
    import pyarrow.parquet as pq

    from dataforge.render.target import load_target

    table = pq.read_table(path)
    target = load_target("bench", str(tokenizer_dir), ROOT)
    return table, table.to_pylist(), target


def _chat(rows: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]]:
    """(messages, tools) per row in the shape templates and trl expect: what dataforge hands the template."""
    from dataforge.render.engine import chat_messages

    out = []
    for row in rows:
        tools = [{"type": "function", "function": s} for s in json.loads(row["tools"])] if row["tools"] else None
        out.append((chat_messages(row, "keep"), tools))
    return out


def worker_floor(path: Path, tokenizer_dir: Path) -> dict[str, Any]:
    _, rows, target = _load(path, tokenizer_dir)
    tok = target.tokenizer
    texts = [tok.apply_chat_template(m, tools=t, tokenize=False) for m, t in _chat(rows)]
    tokens = 0
    first: list[list[int]] = []
    t0, c0 = time.perf_counter(), _cpu()
    for start in range(0, len(texts), FLOOR_BATCH):
        ids = tok(texts[start : start + FLOOR_BATCH], add_special_tokens=False)["input_ids"]
        tokens += sum(map(len, ids))
        if start == 0:
            first = ids[:SANITY_ROWS]
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"rows": len(texts), "tokens": tokens, "wall": wall, "cpu": cpu, "sample_digest": _ids_digest(first)}


def worker_jinja(path: Path, tokenizer_dir: Path) -> dict[str, Any]:
    _, rows, target = _load(path, tokenizer_dir)
    tok = target.tokenizer
    chats = _chat(rows)
    chars = 0
    t0, c0 = time.perf_counter(), _cpu()
    for msgs, tools in chats:
        chars += len(tok.apply_chat_template(msgs, tools=tools, tokenize=False))
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"rows": len(chats), "tokens": None, "chars": chars, "wall": wall, "cpu": cpu}


def _dataforge_pass(table, target, backend: str = "auto") -> tuple[list[Any], float]:
    """render_rows over the table in the stage's batches; (results, seconds spent in to_pylist)."""
    from dataforge.render.engine import RenderOptions, render_rows

    options = RenderOptions(tokenizer_backend=backend)
    results = []
    pylist = 0.0
    for start in range(0, table.num_rows, RENDER_BATCH):
        t = time.perf_counter()
        rows = table.slice(start, RENDER_BATCH).to_pylist()
        pylist += time.perf_counter() - t
        results.append(render_rows(rows, target, options))
    return results, pylist


def worker_dataforge(
    path: Path, tokenizer_dir: Path, profile: Path | None = None, backend: str = "auto"
) -> dict[str, Any]:
    """dataforge's render pass; `backend` is RenderOptions.tokenizer_backend ("auto": tiktoken where exact)."""
    table, rows, target = _load(path, tokenizer_dir)
    tok = target.tokenizer
    if profile is not None:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        _dataforge_pass(table, target, backend)
        prof.disable()
        with profile.open("w") as fh:
            stats = pstats.Stats(prof, stream=fh)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
        return {"profile": str(profile)}
    t0, c0 = time.perf_counter(), _cpu()
    results, pylist = _dataforge_pass(table, target, backend)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    import pyarrow as pa

    from dataforge.render.engine import RenderOptions, template_checks

    rendered = pa.concat_tables([r.table for r in results])
    problems = [p for r in results for p in r.problems]
    notes: dict[str, int] = {}
    for r in results:
        for k, v in r.notes.items():
            notes[k] = notes.get(k, 0) + v
    # Untimed sanity: ids equal the template's own tokenization, trained tokens decode to the assistant turns.
    head = rendered.slice(0, SANITY_ROWS).to_pylist()
    by_id = {r["id"]: r for r in rows[: SANITY_ROWS + len(problems)]}
    ids_mismatch, label_mismatch = [], []
    for out in head:
        row = by_id[out["id"]]
        ((msgs, tools),) = _chat([row])
        expect = tok.apply_chat_template(msgs, tools=tools, tokenize=True, return_dict=False)
        if list(expect) != out["input_ids"]:
            ids_mismatch.append(out["id"])
        trained = tok.decode([t for t in out["labels"] if t != -100])
        wanted = ""
        for m in msgs:
            if m["role"] != "assistant":
                continue
            body = m["content"]
            for c in m.get("tool_calls") or ():
                body += (
                    '\n<tool_call>\n{"name": "'
                    + c["function"]["name"]
                    + '", "arguments": '
                    + json.dumps(c["function"]["arguments"], ensure_ascii=False)
                    + "}\n</tool_call>"
                ).removeprefix("\n" if not m["content"] else "")
            wanted += body + "<|im_end|>"
        if trained != wanted:
            label_mismatch.append(out["id"])
    n_tokens = rendered["n_tokens"].to_pylist()
    return {
        "rows": table.num_rows,
        "rendered": rendered.num_rows,
        "problems": problems[:10],
        "n_problems": len(problems),
        "notes": notes,
        "tokens": sum(n_tokens),
        "trained_tokens": sum(rendered["n_trained"].to_pylist()),
        "wall": wall,
        "cpu": cpu,
        "pylist_s": pylist,
        "sample_digest": _ids_digest(r["input_ids"] for r in head),
        "ids_mismatch": ids_mismatch,
        "label_mismatch": label_mismatch,
        "output_digest": _output_digest(rendered),
        "encoder": template_checks(target, RenderOptions(tokenizer_backend=backend))["token_encoder"],
    }


def _output_digest(rendered) -> str:
    """sha256 over every row's input_ids and labels (values and row boundaries): equal outputs, equal digests."""
    h = hashlib.sha256()
    for name in ("input_ids", "labels"):
        column = rendered[name].combine_chunks()
        h.update(column.offsets.to_numpy().tobytes())
        h.update(column.values.to_numpy().tobytes())
    return h.hexdigest()[:16]


def worker_trl(path: Path, tokenizer_dir: Path) -> dict[str, Any]:
    import datasets
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    datasets.disable_caching()
    _, rows, target = _load(path, tokenizer_dir)
    tok = target.tokenizer
    records = []
    for msgs, tools in _chat(rows):
        rec: dict[str, Any] = {"messages": msgs}
        if tools is not None:
            rec["tools"] = json.dumps(tools, ensure_ascii=False)  # trl's tokenize_fn json.loads a string column
        records.append(rec)
    ds = datasets.Dataset.from_list(records, on_mixed_types="use_json")
    features = {k: str(v) for k, v in ds.features.items()}
    args = SFTConfig(
        output_dir=str(OUT / "trl-unused"),
        assistant_only_loss=False,
        completion_only_loss=None,
        max_length=4096,  # dataforge's default; no generated row comes near it
        packing=False,
        dataset_num_proc=None,
        report_to=[],
        use_cpu=True,
        bf16=False,
    )

    class Stand_in:  # the attributes _prepare_dataset reads from the trainer
        _tokenizer = tok
        chat_template = None
        completion_only_loss = args.completion_only_loss

    # Time each Dataset.map / filter call trl makes, by its progress description.
    maps: list[tuple[str, float, float]] = []
    original_map, original_filter = datasets.Dataset.map, datasets.Dataset.filter

    depth = [0]  # Dataset.filter runs a map itself: record the outer call only

    def timed(fn):
        def wrapper(self, *a, **kw):
            depth[0] += 1
            t, c = time.perf_counter(), _cpu()
            try:
                out = fn(self, *a, **kw)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                maps.append((kw.get("desc") or fn.__name__, time.perf_counter() - t, _cpu() - c))
            return out

        return wrapper

    datasets.Dataset.map = timed(original_map)
    datasets.Dataset.filter = timed(original_filter)
    t0, c0 = time.perf_counter(), _cpu()
    try:
        prepared = SFTTrainer._prepare_dataset(Stand_in(), ds, tok, args, False, None, "train")
    finally:
        datasets.Dataset.map, datasets.Dataset.filter = original_map, original_filter
    wall_all, cpu_all = time.perf_counter() - t0, _cpu() - c0
    tokenize = [m for m in maps if m[0].startswith("Tokenizing")]
    if len(tokenize) != 1:
        raise RuntimeError(f"expected one tokenize map in trl's preparation, saw {[m[0] for m in maps]}")
    ids = prepared["input_ids"]
    labels_equal_ids = all(a == b for a, b in zip(ids[:SANITY_ROWS], prepared["labels"][:SANITY_ROWS], strict=True))
    import trl

    return {
        "rows": len(ids),
        "tokens": sum(map(len, ids)),
        "wall": tokenize[0][1],
        "cpu": tokenize[0][2],
        "prepare_wall": wall_all,
        "prepare_cpu": cpu_all,
        "maps": maps,
        "features": features,
        "sample_digest": _ids_digest(ids[:SANITY_ROWS]),
        "labels_equal_ids": labels_equal_ids,
        "trl": trl.__version__,
        "datasets": datasets.__version__,
    }


def run_worker(method: str, path: Path, tokenizer_dir: Path, profile: Path | None) -> dict[str, Any]:
    for k, v in ONE_CORE.items():  # before transformers / tokenizers / torch are imported
        os.environ[k] = v
    import transformers  # noqa: F401 - imports are never timed
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    import dataforge.render.engine  # noqa: F401

    if method == "dataforge" and profile is not None:
        return worker_dataforge(path, tokenizer_dir, profile)
    fn = {
        "floor": worker_floor,
        "jinja": worker_jinja,
        "dataforge": worker_dataforge,
        "dataforge_hf": lambda p, t: worker_dataforge(p, t, backend="tokenizers"),
        "trl": worker_trl,
    }[method]
    result = fn(path, tokenizer_dir)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


# --- the driver ---------------------------------------------------------------------------------------------

METHODS = [  # (label, worker method)
    ("floor: tok(texts) batch encode of pre-rendered texts", "floor"),
    ("jinja only: apply_chat_template(tokenize=False) per row", "jinja"),
    ("dataforge: render_rows (ids + labels), batches of 512", "dataforge"),
    ("dataforge, `tokenizers` backend (tokenizer_backend=tokenizers)", "dataforge_hf"),
    ("trl: SFTTrainer._prepare_dataset tokenize map", "trl"),
]


def _subprocess(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **ONE_CORE})
    if done.returncode != 0:
        sys.exit(f"worker {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(method: str, path: Path, tokenizer_dir: Path, profile: Path | None = None) -> dict[str, Any]:
    """One run of `method` in a fresh subprocess."""
    args = ["--worker", method, "--file", str(path), "--tokenizer", str(tokenizer_dir)]
    if profile is not None:
        args += ["--profile-to", str(profile)]
    return _subprocess(args)


def _check(ok: bool, message: str) -> None:
    """A sanity check that holds under `python -O` too."""
    if not ok:
        sys.exit(f"sanity check failed: {message}")


def default_tokenizer() -> Path:
    """The Qwen2.5 tokenizer: vendored in tests/fixtures, else from the shared fixtures."""
    fixtures = os.environ.get("DATAFORGE_FIXTURES")
    candidates = [ROOT / "tests" / "fixtures"] + ([Path(fixtures)] if fixtures else [])
    candidates += [ROOT.parent / "shared" / "fixtures", Path("/work/shared/fixtures")]
    for base in candidates:
        path = base / "templates" / "qwen2.5-instruct"
        if path.is_dir():
            return path
    return candidates[0] / "templates" / "qwen2.5-instruct"


def _n(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def render_md(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [
        f"Render throughput on one core (OMP/RAYON threads 1, TOKENIZERS_PARALLELISM=false), Qwen2.5 tokenizer, "
        f"best of {env['repeat']}; seed {env['seed']}; Python {env['python']}, transformers {env['transformers']}, "
        f"tokenizers {env['tokenizers']}, trl {env.get('trl', '?')}, datasets {env.get('datasets', '?')}; "
        f"{env['processor']}, {env['cpus']} CPUs.",
        "",
        "| set | method | rows | tokens | seconds | CPU s | rows/s | tokens/s | vs floor |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        tokens_per_s = r["tokens"] / r["wall"] if r["tokens"] else None
        lines.append(
            f"| {r['set']} | {r['label']} | {r['rows']:,} | {_n(r['tokens'])} | {r['wall']:.2f} | {r['cpu']:.2f} | "
            f"{_n(r['rows_per_s'])} | {_n(tokens_per_s)} | {r['vs_floor']:.0%} |"
        )
    lines += [
        "",
        "rows/s = rows ÷ wall seconds of the timed part; tokens/s = tokens produced ÷ the same seconds (jinja only "
        "produces text, no tokens); vs floor = rows/s ÷ the floor's rows/s on the same set. "
        f"Target: dataforge ≥ {TARGET_SHARE:.0%} of the floor per core, labels included.",
        "",
    ]
    for r in results:
        if r["method"] == "trl":
            per_s = r["rows"] / r["prepare_wall"]
            lines.append(
                f"* {r['set']}: trl's whole `_prepare_dataset` took {r['prepare_wall']:.2f} s "
                f"({per_s:,.0f} rows/s, {per_s / r['floor_rows_per_s']:.0%} of the floor): "
                + ", ".join(f"{name} {wall:.2f} s" for name, wall, _ in r["maps"])
                + ". Its labels are a copy of input_ids (assistant_only_loss=False: every token trained)."
            )
        if r["method"].startswith("dataforge"):
            lines.append(
                f"* {r['set']}: dataforge trains {r['trained_tokens']:,} of {r['tokens']:,} tokens "
                f"({r['trained_tokens'] / r['tokens']:.0%}); Arrow → Python (`to_pylist`) took {r['pylist_s']:.2f} s "
                f"of its {r['wall']:.2f} s (`render_rows` alone: {r['render_only_rows_per_s']:,.0f} rows/s, "
                f"{r['render_only_vs_floor']:.0%} of the floor); rows not rendered: {r['n_problems']}; "
                f"row notes: {r['notes'] or 'none'}; token encoder: {r['encoder']}."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alpaca-rows", type=int, default=50_000, help="single-turn rows (default 50,000; 0 skips)")
    ap.add_argument("--tool-rows", type=int, default=20_000, help="tool-call conversations (default 20,000; 0 skips)")
    ap.add_argument("--methods", default="floor,jinja,dataforge,dataforge_hf,trl", help="comma-separated subset")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of all methods (a fresh subprocess each, methods interleaved); the fastest run of each is "
        "kept (default 1)",
    )
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory (default: the Qwen2.5 fixture)")
    ap.add_argument("--profile", action="store_true", help="also write a cProfile of dataforge's pass per set")
    ap.add_argument("--data-dir", type=Path, default=OUT / "data", help="where generated files are cached")
    ap.add_argument("--out", type=Path, default=OUT, help="where render.md and render.json go")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    tokenizer_dir = args.tokenizer or default_tokenizer()

    if args.worker:
        print(json.dumps(run_worker(args.worker, args.file, tokenizer_dir, args.profile_to)))
        return 0

    if not (tokenizer_dir / "vocab.json").exists() and not (tokenizer_dir / "tokenizer.json").exists():
        sys.exit(f"no tokenizer at {tokenizer_dir}: set DATAFORGE_FIXTURES or pass --tokenizer")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in {m for _, m in METHODS}]
    if unknown or "floor" not in methods:
        ap.error(f"methods must include floor and come from {', '.join(m for _, m in METHODS)}")

    import tokenizers
    import transformers

    env: dict[str, Any] = {
        "alpaca_rows": args.alpaca_rows,
        "tool_rows": args.tool_rows,
        "seed": args.seed,
        "repeat": args.repeat,
        "tokenizer": str(tokenizer_dir),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "one_core_env": ONE_CORE,
    }
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for which, rows in (("alpaca", args.alpaca_rows), ("tools", args.tool_rows)):
        if rows <= 0:
            continue
        t0 = time.perf_counter()
        path = generate(which, rows, args.seed, args.data_dir)
        print(f"[{which}] {path} ({time.perf_counter() - t0:.1f}s to generate or find)", file=sys.stderr)
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeat):  # rounds interleave the methods, so slow spells of a shared machine hit all
            for label, method in METHODS:
                if method not in methods:
                    continue
                r = measure(method, path, tokenizer_dir)
                r.update(set=which, label=label, method=method, file=path.name)
                r["rows_per_s"] = r["rows"] / r["wall"]
                print(f"[{which}] {label}: {r['wall']:.2f}s, {r['rows_per_s']:,.0f} rows/s", file=sys.stderr)
                r["runs_s"] = best.get(method, {}).get("runs_s", []) + [r["wall"]]
                if method not in best or r["wall"] < best[method]["wall"]:
                    best[method] = r
                else:
                    best[method]["runs_s"] = r["runs_s"]
                for k in ("trl", "datasets"):
                    if k in r:
                        env[k] = r[k]
        per_set = [best[m] for _, m in METHODS if m in best]
        floor = next(r for r in per_set if r["method"] == "floor")
        for r in per_set:
            r["vs_floor"] = r["rows_per_s"] / floor["rows_per_s"]
            r["floor_rows_per_s"] = floor["rows_per_s"]
            if r["method"].startswith("dataforge"):
                r["render_only_rows_per_s"] = r["rows"] / (r["wall"] - r["pylist_s"])
                r["render_only_vs_floor"] = r["render_only_rows_per_s"] / floor["rows_per_s"]
        # Sanity (untimed).
        for r in per_set:
            what = f"{which}, {r['method']}"
            _check(r["rows"] == rows, f"{what}: {r['rows']:,} rows, expected {rows:,}")
            if r["tokens"] is not None:
                _check(r["tokens"] == floor["tokens"], f"{what}: {r['tokens']:,} tokens, floor {floor['tokens']:,}")
            if "sample_digest" in r:
                _check(r["sample_digest"] == floor["sample_digest"], f"{what}: first {SANITY_ROWS} rows' ids differ")
            if r["method"].startswith("dataforge"):
                _check(r["rendered"] == rows, f"{what}: {r['n_problems']} rows not rendered, e.g. {r['problems'][:3]}")
                _check(not r["ids_mismatch"], f"{what}: ids differ from apply_chat_template: {r['ids_mismatch'][:5]}")
                _check(
                    not r["label_mismatch"],
                    f"{what}: trained tokens are not the assistant turns: {r['label_mismatch'][:5]}",
                )
            if r["method"] == "trl":
                _check(r["labels_equal_ids"], f"{what}: trl's labels are not its input_ids")
        outputs = {r["method"]: r["output_digest"] for r in per_set if "output_digest" in r}
        _check(len(set(outputs.values())) <= 1, f"{which}: the dataforge backends' input_ids/labels differ: {outputs}")
        if args.profile:
            prof = args.out / f"render-profile-{which}.txt"
            args.out.mkdir(parents=True, exist_ok=True)
            measure("dataforge", path, tokenizer_dir, prof)
            print(f"[{which}] profile: {prof}", file=sys.stderr)
        results.extend(per_set)
    env["total_seconds"] = time.perf_counter() - started

    table = render_md(results, env)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "render.md").write_text(table)
    (args.out / "render.json").write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")
    done = f"wrote {args.out / 'render.md'} and {args.out / 'render.json'} ({env['total_seconds']:.0f}s)"
    print(done, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
