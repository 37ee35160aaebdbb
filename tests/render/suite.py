"""The render-fidelity conversation suite and its judge, shared by test_fidelity.py and matrix.py.

Every case is a canonical record (`Example`), rendered by the real engine (`render_rows`) and judged row by
row against the template itself and the independent oracle (`oracle.py`):

* rendered: `input_ids` equal `apply_chat_template(messages, tools=…, tokenize=True)` and the trained tokens,
  decoded in context and grouped into runs, equal the oracle's trained text of each trained assistant turn
  (the turn as the template renders it plus its end-of-turn token, nothing else); a field the template drops
  must be named in the row's notes (`tool_calls_not_rendered`, `reasoning_not_rendered`);
* rejected: the reason must be true of the row — `special_token_in_content` only when a field holds one of
  the tokenizer's special-token strings, `template_error` only when the template raises, `prefix_unstable`
  only when the oracle cannot align the turns either, `<field>_not_rendered` only when the template drops it,
  `no_trained_tokens` only when no turn is trained.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oracle  # tests/render is on sys.path (pytest's rootdir-relative imports, or the script's own folder)
from standins import STANDINS, standin

from dataforge.formats.tooling import openai_tools
from dataforge.record import Example, Kind, Message, Provenance, Role, ToolCall
from dataforge.render.engine import IGNORE, RenderOptions, chat_messages, render_rows
from dataforge.render.target import LoadedTarget, load_target

FULL = [
    "qwen2.5-instruct",
    "qwen3",
    "llama-3.1-instruct",
    "phi-3-mini-4k-instruct",
    "smollm2-instruct",
    "glm-4-9b-chat",
    "mistral-7b-instruct-v0.2",
]
TEMPLATE_ONLY = list(STANDINS)
# Families rendered with template arguments: name → (fixture family, RenderOptions fields).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen3 (enable_thinking: false)": ("qwen3", {"chat_template_kwargs": {"enable_thinking": False}}),
}
FAMILIES = FULL + list(VARIANTS) + TEMPLATE_ONLY
OPTIONS = RenderOptions(max_length=1_000_000)
# Cases rendered with other options than OPTIONS.
CASE_OPTIONS: dict[str, dict[str, Any]] = {
    "train_last": {"train_on": "last"},
    "train_last_weight_zero": {"train_on": "last"},
}


def fixture_family(family: str) -> str:
    return VARIANTS[family][0] if family in VARIANTS else family


def options(family: str, case: str) -> RenderOptions:
    """The render options of `case` for `family`."""
    fields = {**(VARIANTS[family][1] if family in VARIANTS else {}), **CASE_OPTIONS.get(case, {})}
    return RenderOptions(max_length=OPTIONS.max_length, **fields)


def oracle_family(family: str) -> oracle.Family:
    return oracle.FAMILIES[fixture_family(family)]


WEATHER = {
    "name": "get_weather",
    "description": "Get the weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {
    "name": "get_time",
    "description": "Get the local time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _ex(id: str, *messages: Message, tools=None, kind=Kind.SFT, **kw: Any) -> Example:
    return Example(
        id=id,
        kind=kind,
        provenance=Provenance("fidelity", "fidelity.jsonl", 0, 1),
        messages=tuple(messages),
        tools=tools,
        **kw,
    )


def u(content: str) -> Message:
    return Message(Role.USER, content)


def a(content: str | None, **kw: Any) -> Message:
    return Message(Role.ASSISTANT, content, **kw)


def tool(content: str, call_id: str, name: str) -> Message:
    return Message(Role.TOOL, content, tool_call_id=call_id, name=name)


def cases(stop: str) -> dict[str, Example]:
    """The suite; `stop` is the family's end-of-turn token, for the special-token cases."""
    paris = ToolCall("get_weather", {"city": "Paris"}, id="call_1")
    tokyo = ToolCall("get_time", {"city": "Tokyo"}, id="call_2")
    return {
        "single": _ex("single", u("Hi there"), a("Hello!")),
        "multi_turn": _ex("multi_turn", u("What is 2+2?"), a("4."), u("And 3+3?"), a("6.")),
        "system": _ex("system", Message(Role.SYSTEM, "Be brief."), u("What is 2+2?"), a("4."), u("And 3+3?"), a("6.")),
        "reasoning": _ex(
            "reasoning",
            u("What is 2+2?"),
            a("4.", reasoning="Add two and two."),
            u("And 3+3?"),
            a("6.", reasoning="Add three and three."),
        ),
        "reasoning_last": _ex("reasoning_last", u("What is 2+2?"), a("4.", reasoning="Two plus two is four.")),
        "tool_call": _ex(
            "tool_call",
            u("Weather in Paris?"),
            a(None, tool_calls=(paris,)),
            tool('{"temp": 22}', "call_1", "get_weather"),
            a("It is 22 C."),
            tools=[WEATHER],
        ),
        "parallel_tools": _ex(
            "parallel_tools",
            u("Weather in Paris and time in Tokyo?"),
            a(None, tool_calls=(paris, tokyo)),
            tool('{"temp": 22}', "call_1", "get_weather"),
            tool('{"time": "09:00"}', "call_2", "get_time"),
            a("22 C in Paris; 09:00 in Tokyo."),
            tools=[WEATHER, TIME],
        ),
        "weight_zero": _ex("weight_zero", u("What is 2+2?"), a("5.", weight=0.0), u("Really?"), a("4, sorry.")),
        "weight_zero_last": _ex("weight_zero_last", u("What is 2+2?"), a("4."), u("And 3+3?"), a("7.", weight=0.0)),
        "train_last": _ex("train_last", u("What is 2+2?"), a("4."), u("And 3+3?"), a("6.")),
        # train_on: last, and the last turn has weight 0: nothing is to be trained (not the turn before it).
        "train_last_weight_zero": _ex(
            "train_last_weight_zero", u("What is 2+2?"), a("4."), u("And 3+3?"), a("7.", weight=0.0)
        ),
        "cjk_emoji": _ex("cjk_emoji", u("你好，世界 👋"), a("こんにちは！🌸 漢字と emoji 🚀")),
        "whitespace": _ex(
            "whitespace", u("  spaced question \n"), a("\n  Indented answer.  \n\n"), u(" next "), a(" ok ")
        ),
        "punctuation": _ex("punctuation", u("Sure?"), a("(yes) - really."), u("Again?"), a(".5 is half.")),
        "long_turn": _ex("long_turn", u("Write a lot."), a(" ".join(f"word{i % 97}" for i in range(2800)))),
        "special_in_content": _ex("special_in_content", u("Echo this."), a(f"It ends {stop} here.")),
        "special_in_tool_args": _ex(
            "special_in_tool_args",
            u("Weather?"),
            a(None, tool_calls=(ToolCall("get_weather", {"city": f"Paris{stop}"}, id="call_1"),)),
            tools=[WEATHER],
        ),
        "special_in_reasoning": _ex(
            "special_in_reasoning", u("What is 2+2?"), a("4.", reasoning=f"Two and two {stop} four.")
        ),
        "dpo": _ex(
            "dpo",
            u("What is the capital of France?"),
            kind=Kind.PREFERENCE,
            chosen=(a("Paris."),),
            rejected=(a("Lyon."),),
        ),
        "kto": _ex("kto", u("What is 2+2?"), a("4."), kind=Kind.KTO, label=True),
    }


CASES = list(cases("<stop>"))


@functools.cache
def run_case(family: str, case: str, fixture_path) -> Verdict:
    """Render one case of the suite for one family and judge it (once per session: the README table test
    reuses the suite's verdicts)."""
    tgt = target(family, fixture_path)
    example = cases(oracle_family(family).stops[0])[case]
    return judge(family, example, tgt, options(family, case))


# ── targets ──────────────────────────────────────────────────────────────────────────────────────────────


def needs_sentencepiece(family: str) -> bool:
    """Whether the family's tokenizer (or stand-in) is a SentencePiece model converted at load time."""
    family = fixture_family(family)
    return family == "mistral-7b-instruct-v0.2" or (
        family in STANDINS and STANDINS[family][0] == "mistral-7b-instruct-v0.2"
    )


def target(family: str, fixture_path) -> LoadedTarget:
    """The family's real tokenizer (full-tokenizer families) or its stand-in (template-only ones)."""
    family = fixture_family(family)
    if family in STANDINS:
        return standin(family, fixture_path)
    return _load(fixture_path(f"templates/{family}").resolve())


@functools.cache
def _load(folder: Path) -> LoadedTarget:
    return load_target(folder.name, str(folder), folder.parent)


# ── judging ──────────────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Verdict:
    """The engine's outcome for one row and whether it is faithful; `wrong` says how when it is not."""

    outcome: str  # "rendered", "rendered (notes…)" or "rejected: reason"
    wrong: str | None = None

    @property
    def ok(self) -> bool:
        return self.wrong is None


def _sequences(row: dict[str, Any], train_on: str = "all") -> list[tuple[list[dict[str, Any]], list[int], str, str]]:
    """(messages, trained turn indices, ids column, labels column) per sequence of the row: the assistant turns
    (of the completion, for a preference pair; the last one for kto and `train_on: last`), less weight-0 ones."""
    weights = lambda msgs: {i for i, m in enumerate(msgs) if m.get("weight") == 0}  # noqa: E731
    prompt = row["messages"] or []
    if row["kind"] == "preference":
        out = []
        for side, ids, labels in (
            ("chosen", "input_ids", "labels"),
            ("rejected", "rejected_input_ids", "rejected_labels"),
        ):
            full = prompt + (row[side] or [])
            turns = [i for i, m in enumerate(full) if m["role"] == "assistant" and i >= len(prompt)]
            out.append(
                (chat_messages({"messages": full}, "keep"), [i for i in turns if i not in weights(full)], ids, labels)
            )
        return out
    turns = [i for i, m in enumerate(prompt) if m["role"] == "assistant"]
    if row["kind"] == "kto" or train_on == "last":
        turns = turns[-1:]
    turns = [i for i in turns if i not in weights(prompt)]
    return [(chat_messages(row, "keep"), turns, "input_ids", "labels")]


def _renderer(tok: Any, tools: list[dict[str, Any]] | None, kwargs: dict[str, Any]):
    def render(messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return tok.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )

    return render


def specials(tok: Any) -> set[str]:
    found = {t for t in tok.all_special_tokens if t}
    return found | {t.content for t in tok.added_tokens_decoder.values() if t.special and t.content}


def _field_texts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(where, text) of every field of the messages: content, reasoning, tool_call (names and arguments)."""
    out = []
    for m in messages:
        out += [("content", m.get("content") or ""), ("reasoning", m.get("reasoning") or "")]
        for c in m.get("tool_calls") or ():
            out += [("tool_call", c["name"]), ("tool_call", c["arguments"])]
    return out


@dataclass
class Run:
    """A run of trained tokens: its text decoded in context, its first token's text, and the id of the token
    before it (None at the start of the sequence)."""

    text: str
    first: str
    before: int | None


def trained_runs(tok: Any, ids: list[int], labels: list[int]) -> list[Run]:
    """The trained tokens, one `Run` per run, each decoded in context (the text the run adds to the decoded
    prefix before it), so SentencePiece's leading-space handling does not differ from the rendering."""
    runs, i = [], 0
    n = len(ids)

    def added(lo: int, hi: int, prefix: str) -> str:
        through = tok.decode(ids[:hi])
        return through[len(prefix) :] if through.startswith(prefix) else tok.decode(ids[lo:hi])

    while i < n:
        if labels[i] == IGNORE:
            i += 1
            continue
        j = i
        while j < n and labels[j] != IGNORE:
            j += 1
        prefix = tok.decode(ids[:i])
        runs.append(Run(added(i, j, prefix), added(i, i + 1, prefix), ids[i - 1] if i else None))
        i = j
    return runs


def _tolerated(tok: Any, runs: list[Run], want: list[str], t: oracle.Truth) -> str | None:
    """How `runs` differ from `want` at the start of runs in the two ways tokenization forces, or None when
    they differ otherwise (or not at all):

    * `straddling`: the run's first token holds the end of the prompt and the start of the turn (Qwen's `\n\n`
      over `assistant\n` and a content opening with a newline, Mistral's `](`); it cannot be split, so
      training it is the only way to train the turn's first character;
    * `absorbed`: the turn opens with whitespace that the special token before it swallows (Phi-3's
      `<|assistant|>` strips what follows it), so that whitespace is in no token.
    """
    if len(runs) != len(want):
        return None
    specials = set(tok.all_special_ids) | {i for i, a in tok.added_tokens_decoder.items() if a.special}
    kinds = set()
    for run, w, (start, _) in zip(runs, want, _merged(t.regions), strict=True):
        g = run.text
        if g == w:
            continue
        extra = len(g) - len(w)
        if extra > 0 and g[extra:] == w and len(run.first) > extra and t.text[start - extra : start] == g[:extra]:
            kinds.add("straddling")
            continue
        lead = len(w) - len(w.lstrip())
        if lead and w[lead:] == g and run.before in specials:
            kinds.add("absorbed")
            continue
        return None
    return ", ".join(sorted(kinds)) or None


def _merged(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for a0, b0 in regions:
        if merged and merged[-1][1] == a0:
            merged[-1][1] = b0
        else:
            merged.append([a0, b0])
    return [(x, y) for x, y in merged]


def expected_runs(tok: Any, text: str, regions: list[tuple[int, int]]) -> list[str]:
    """The oracle's trained text, one string per run (adjacent regions merged)."""
    return [text[a0:b0] for a0, b0 in _merged(regions)]


def judge(family: str, example: Example, tgt: LoadedTarget, options: RenderOptions = OPTIONS) -> Verdict:
    """Render `example` with the real engine and judge the outcome (see the module docstring)."""
    tok = tgt.tokenizer
    row = example.to_row()
    rendered = render_rows([row], tgt, options)
    tools = openai_tools(row["tools"]) if row.get("tools") else None
    render = _renderer(tok, tools, options.chat_template_kwargs)
    fam = oracle_family(family)
    sequences = _sequences(row, options.train_on)
    fields = _field_texts((row["messages"] or []) + (row.get("chosen") or []) + (row.get("rejected") or []))
    marks = specials(tok)
    forged = {where for where, text in fields if any(t in text for t in marks)}
    truths, errors = [], []
    for messages, turns, _, _ in sequences:
        try:
            truths.append(oracle.truth(render, messages, turns, fam))
        except Exception as exc:  # the template refuses the conversation
            errors.append(str(exc))
            truths.append(None)
    if rendered.problems:
        (problem,) = rendered.problems
        reason = problem["reason"]
        outcome = f"rejected: {reason}"
        why = {
            "special_token_in_content": "content" in forged,
            "special_token_in_reasoning": "reasoning" in forged,
            "special_token_in_tool_call": "tool_call" in forged,
            "template_error": bool(errors),
            "no_trained_tokens": all(not t for _, t, _, _ in sequences),
            "prefix_unstable": any(t is not None and t.unaligned for t in truths),
        }
        for name in ("tool_calls", "reasoning", "content"):
            why[f"{name}_not_rendered"] = any(t is not None and name in t.dropped for t in truths)
        if why.get(reason):
            return Verdict(outcome)
        truth_says = "; ".join(
            "would render: " + " | ".join(repr(x) for x in t.trained)
            if t and not t.unaligned
            else repr(t and t.unaligned)
            for t in truths
        )
        return Verdict(outcome, f"rejected {reason!r} ({problem.get('message', '')}) but {truth_says}")
    (out,) = rendered.table.to_pylist()
    notes = sorted(rendered.notes)
    outcome = "rendered" + (f" ({', '.join(notes)})" if notes else "")
    if errors:
        return Verdict(outcome, f"rendered although the template refuses it: {errors[0]}")
    for (messages, _, ids_col, labels_col), t in zip(sequences, truths, strict=True):
        expected_ids = tok.apply_chat_template(
            messages, tools=tools, tokenize=True, return_dict=False, **options.chat_template_kwargs
        )
        if list(out[ids_col]) != list(expected_ids):
            return Verdict(outcome, f"{ids_col} differ from apply_chat_template(tokenize=True)")
        if t.unaligned:
            return Verdict(outcome, f"rendered, but the oracle cannot align the turns: {t.unaligned}")
        runs = trained_runs(tok, out[ids_col], out[labels_col])
        got = [r.text for r in runs]
        want = expected_runs(tok, t.text, t.regions)
        tolerated = _tolerated(tok, runs, want, t)
        if tolerated:
            outcome += f" [{tolerated}]"
            got = want
        if got != want:
            return Verdict(outcome, f"trained {got!r} != expected {want!r}")
        for name in sorted(t.dropped):
            if f"{name}_not_rendered" not in rendered.notes:
                return Verdict(outcome, f"the template drops {name} but the row carries no {name}_not_rendered note")
    return Verdict(outcome)


def row_json(example: Example) -> str:
    return json.dumps(example.to_row(), ensure_ascii=False)
