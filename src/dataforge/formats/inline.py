"""Reasoning and tool calls written inside message text, and back: pure functions over strings, no I/O.

Three families of inline markup, each with a parser (text → structure, raising `InlineProblem` for markup
that cannot mean anything) and a formatter (structure → text):

- `<think>…</think>` heading assistant content (DeepSeek-R1, Qwen3, ms-swift): `split_think` / `join_think`.
- MiniMind's `<think>…</think><answer>…</answer>`: `split_answer` / `join_answer`.
- Hermes / Qwen tool tags: `<tools>` in the system prompt (`split_tools` / `join_tools`), `<tool_call>` blocks
  in assistant turns (`split_tool_calls` / `join_tool_calls`), `<tool_response>` blocks holding tool results
  (`split_tool_responses` / `wrap_tool_response`).

The formatters write one canonical spelling, the one Qwen's chat templates produce:

    think head     "<think>\\n" + reasoning + "\\n</think>\\n\\n" + content
    minimind       "<think>\\n" + reasoning + "\\n</think>\\n<answer>\\n" + content + "\\n</answer>"
    tools block    [system + "\\n\\n"] + QWEN_TOOLS_HEAD + ("\\n" + spec JSON per tool) + QWEN_TOOLS_TAIL
    tool calls     [content + "\\n"] + "\\n".join("<tool_call>\\n" + {"name", "arguments"} JSON + "\\n</tool_call>")
    tool result    "<tool_response>\\n" + content + "\\n</tool_response>"

Parsing undoes exactly that: inside a tag it drops one newline after the opening tag and one before the
closing tag; after `</think>` it drops "\\n\\n" (or a lone "\\n", as ms-swift and MiniMind write it); before
the first `<tool_call>` it drops one newline. So `split(join(x)) == x` for every canonical value, while
hand-written variants (`<think>r</think>answer`, blocks separated by blank lines) still parse.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from .. import jsonsafe

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"

# Qwen2.5's and Qwen3's chat templates wrap the declared tools in exactly this text (see their
# `chat_template`); recognising it lets a system prompt written by either read back as the author's own.
QWEN_TOOLS_HEAD = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
QWEN_TOOLS_TAIL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)

_THINK_TAG = re.compile(r"</?think>")
_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.S)
_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_RESPONSE_BLOCK = re.compile(r"<tool_response>(.*?)</tool_response>", re.S)
_TAG_START = re.compile(r"<(?=/?(?:think|answer|tools|tool_call|tool_response)>)")


class InlineProblem(ValueError):
    """Inline markup that cannot be read: a rejects-table reason and a message for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


# --- <think> ------------------------------------------------------------------------------------------


def think_problem(text: str | None, *, inside_reasoning: bool = False) -> tuple[str, str] | None:
    """(`unbalanced_think` | `nested_think`, message) when the `<think>` tags in `text` do not pair up.

    In a reasoning field any tag is a problem: the reasoning is already the inside of a think block.
    """
    if not text or "think>" not in text:
        return None
    depth = 0
    for tag in _THINK_TAG.findall(text):
        if inside_reasoning:
            return "nested_think", f"the reasoning field itself contains a {tag} tag"
        if tag == THINK_OPEN:
            depth += 1
            if depth > 1:
                return "nested_think", "a <think> is opened inside another <think>"
        else:
            depth -= 1
            if depth < 0:
                return "unbalanced_think", "a </think> closes no <think>"
    if depth:
        return "unbalanced_think", "a <think> is never closed"
    return None


def split_think(text: str) -> tuple[str | None, str]:
    """(reasoning, the rest) of assistant content that opens with a `<think>` block; (None, text) otherwise.

    Whitespace before the opening tag is ignored. A balanced think block further in is the author's text and
    stays in the content. Raises InlineProblem when the tags are unbalanced or nested.
    """
    problem = think_problem(text)
    if problem is not None:
        raise InlineProblem(*problem)
    head = text.lstrip()
    if not head.startswith(THINK_OPEN):
        return None, text
    end = head.index(THINK_CLOSE)
    reasoning = _trim_newlines(head[len(THINK_OPEN) : end])
    rest = head[end + len(THINK_CLOSE) :]
    return reasoning, _drop_prefix(rest, "\n\n", "\n")


def join_think(reasoning: str | None, content: str | None) -> str:
    """Assistant content with `reasoning` as a `<think>` block at its head (just the content when None)."""
    if reasoning is None:
        return content or ""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{content or ''}"


def reads_as_think(content: str | None) -> bool:
    """Whether plain `content` would be read back as holding reasoning (it opens with `<think>` itself)."""
    return bool(content) and content.lstrip().startswith(THINK_OPEN)


# --- MiniMind <think>…</think><answer>…</answer> ------------------------------------------------------


def split_answer(text: str) -> tuple[str | None, str]:
    """(reasoning, answer) of MiniMind content `<think>…</think><answer>…</answer>`.

    Content without a think head is returned whole (an `<answer>` wrapper is only unwrapped after a think
    block, so plain text that happens to hold the tag is kept as written); a think head without an answer
    wrapper gives the rest as the answer. Raises InlineProblem for unbalanced or nested think tags.
    """
    reasoning, rest = split_think(text)
    if reasoning is None:
        return None, text
    body = rest.rstrip()
    if body.startswith(ANSWER_OPEN) and body.endswith(ANSWER_CLOSE) and body.count(ANSWER_OPEN) == 1:
        return reasoning, _trim_newlines(body[len(ANSWER_OPEN) : -len(ANSWER_CLOSE)])
    return reasoning, rest


def join_answer(reasoning: str | None, content: str | None) -> str:
    """MiniMind's spelling: think and answer blocks when there is reasoning, the bare content otherwise."""
    if reasoning is None:
        return content or ""
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n{ANSWER_OPEN}\n{content or ''}\n{ANSWER_CLOSE}"


# --- <tools> in the system prompt ---------------------------------------------------------------------


def split_tools(text: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """(declared tool specs, the system text without them) from a system prompt.

    Qwen's own wrapping (`QWEN_TOOLS_HEAD` … `QWEN_TOOLS_TAIL`, at the end of the prompt) is removed whole,
    leaving the author's system text, or None when the prompt held only tools. Otherwise the first
    non-empty `<tools>…</tools>` block is cut out (Hermes' prompt says "within <tools> </tools> XML tags"
    before the real block) and the rest is the system text, None when only whitespace is left.
    Specs are a JSON array or one JSON object per line. (None, text) when there is no tools block.
    Raises InlineProblem (`invalid_tool_call`) when the block's content is not JSON specs.
    """
    start = text.find(QWEN_TOOLS_HEAD)
    if start >= 0 and text.endswith(QWEN_TOOLS_TAIL):
        body = text[start + len(QWEN_TOOLS_HEAD) : len(text) - len(QWEN_TOOLS_TAIL)]
        before = text[:start]
        system = None if before == "" else before.removesuffix("\n\n")
        return _parse_specs(body), system
    for match in _TOOLS_BLOCK.finditer(text):
        if match.group(1).strip():
            rest = text[: match.start()] + text[match.end() :]
            return _parse_specs(match.group(1)), rest if rest.strip() else None
    return None, text


def join_tools(system: str | None, specs: list[dict[str, Any]]) -> str:
    """A system prompt declaring `specs` the way Qwen's templates do (each spec OpenAI-wrapped, one per line)."""
    lines = "".join("\n" + json_in_text({"type": "function", "function": spec}) for spec in specs)
    block = QWEN_TOOLS_HEAD + lines + QWEN_TOOLS_TAIL
    return block if system is None else f"{system}\n\n{block}"


def _parse_specs(body: str) -> list[dict[str, Any]]:
    body = body.strip()
    if body.startswith("["):
        value = _loads(body, "the <tools> block")
        if not isinstance(value, list):
            raise InlineProblem("invalid_tool_call", "the <tools> block must hold a JSON array or one object per line")
        return value
    specs = []
    for line in body.split("\n"):  # not splitlines(): JSON text may hold \x85 or \u2028 raw
        if line.strip():
            spec = _loads(line.strip(), "a line of the <tools> block")
            if not isinstance(spec, dict):
                raise InlineProblem("invalid_tool_call", "each line of the <tools> block must be a JSON object")
            specs.append(spec)
    return specs


# --- <tool_call> in assistant turns -------------------------------------------------------------------


def split_tool_calls(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """(calls as `{name, arguments}` with arguments a dict, the text outside the blocks) of assistant content.

    The text before the first block loses one trailing newline (the separator the formatter writes); text
    between or after blocks, where some data sets put a remark, is appended to it on its own line. None
    when no text is left. Raises InlineProblem (`invalid_tool_call`) for unpaired tags or a block whose
    content is not `{"name": ..., "arguments": {...}}` JSON.
    """
    if CALL_OPEN not in text and CALL_CLOSE not in text:
        return [], text
    if text.count(CALL_OPEN) != text.count(CALL_CLOSE):
        raise InlineProblem("invalid_tool_call", "<tool_call> and </tool_call> tags do not pair up")
    calls, pieces, pos = [], [], 0
    for match in _CALL_BLOCK.finditer(text):
        pieces.append(text[pos : match.start()])
        calls.append(parse_call(match.group(1)))
        pos = match.end()
    pieces.append(text[pos:])
    head = pieces[0].removesuffix("\n")
    parts = ([head] if head else []) + [p.strip() for p in pieces[1:] if p.strip()]
    return calls, "\n".join(parts) if parts else None


def join_tool_calls(content: str | None, calls: list[dict[str, Any]]) -> str:
    """Assistant content followed by one `<tool_call>` block per call (`{name, arguments}`, arguments a dict)."""
    blocks = [
        f"{CALL_OPEN}\n" + json_in_text({"name": c["name"], "arguments": c["arguments"]}) + f"\n{CALL_CLOSE}"
        for c in calls
    ]
    return "\n".join(([content] if content else []) + blocks)


def parse_call(body: str) -> dict[str, Any]:
    """`{name, arguments}` from the JSON inside one `<tool_call>` block; InlineProblem when it is not one.

    Python literals (`{'name': 'f', 'arguments': {...}}`) are accepted too: NousResearch's Hermes data
    writes calls that way.
    """
    value = _loads(body.strip(), "<tool_call>")
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise InlineProblem("invalid_tool_call", '<tool_call> must hold {"name": ..., "arguments": {...}}')
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = jsonsafe.loads(arguments, field="<tool_call> arguments") if arguments.strip() else {}
        except jsonsafe.JsonValueError as exc:
            raise InlineProblem(exc.reason, exc.message) from None
        except ValueError as exc:
            raise InlineProblem(
                "invalid_tool_call", f"arguments of {value['name']!r} are a string that is not JSON ({exc})"
            ) from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise InlineProblem("invalid_tool_call", f"arguments of {value['name']!r} must be a JSON object")
    try:
        jsonsafe.dumps(arguments)
    except ValueError:  # 1e999 parses as an infinity, which JSON cannot write back
        raise InlineProblem(
            "non_finite_number", f"arguments of {value['name']!r} hold NaN or an infinity, which JSON cannot write"
        ) from None
    return {"name": value["name"], "arguments": arguments}


# --- <tool_response> ----------------------------------------------------------------------------------


def split_tool_responses(text: str | None) -> list[str] | None:
    """The tool results when `text` is nothing but `<tool_response>` blocks (whitespace between); else None."""
    if not text or not text.lstrip().startswith(RESPONSE_OPEN):
        return None
    results, pos = [], 0
    for match in _RESPONSE_BLOCK.finditer(text):
        if text[pos : match.start()].strip():
            return None
        results.append(_trim_newlines(match.group(1)))
        pos = match.end()
    if text[pos:].strip() or not results:
        return None
    return results


def wrap_tool_response(content: str | None) -> str:
    """A tool result as a `<tool_response>` block."""
    return f"{RESPONSE_OPEN}\n{content or ''}\n{RESPONSE_CLOSE}"


def has_tool_tags(text: Any) -> bool:
    """Whether `text` is a string holding Hermes/Qwen tool markup (a tools block, call or response)."""
    return isinstance(text, str) and ("<tool_call>" in text or "<tools>" in text or "<tool_response>" in text)


# --- helpers ------------------------------------------------------------------------------------------


def json_in_text(value: Any) -> str:
    """`value` as JSON text (Qwen's `tojson` spelling) that cannot be mistaken for the markup around it.

    A string inside the value holding a tag (`"</tool_call>"` in an argument) would end the block early:
    its `<` is written as the JSON escape `\\u003c` there, which decodes to the same value.
    """
    return _TAG_START.sub(r"\\u003c", jsonsafe.dumps(value, ensure_ascii=False))


def _trim_newlines(inner: str) -> str:
    """`inner` without the one newline a formatter writes after an opening tag and before a closing one."""
    return inner.removeprefix("\n").removesuffix("\n")


def _drop_prefix(text: str, *prefixes: str) -> str:
    for prefix in prefixes:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _loads(text: str, what: str) -> Any:
    """JSON value of `text`, or its Python-literal reading (Hermes data sets write single-quoted dicts).

    Nesting is bounded and NaN/Infinity refused first (`too_deep`, `non_finite_number`): both parsers recurse
    per level, and a non-finite number could never be written back as JSON."""
    try:
        return jsonsafe.loads(text, field=what)
    except jsonsafe.JsonValueError as exc:
        raise InlineProblem(exc.reason, exc.message) from None
    except ValueError as exc:
        error = exc
    try:
        value = ast.literal_eval(text)
        jsonsafe.dumps(value)  # a set or tuple key has no JSON meaning; nor has a NaN or an infinity
        return value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise InlineProblem("invalid_tool_call", f"{what} does not hold valid JSON ({error})") from None
