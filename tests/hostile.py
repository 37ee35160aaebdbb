"""A directory of hostile inputs, the kinds issue 15 found and more: each file is what a careless tool or a hostile
pull request could put into a source folder. Used by the CLI sweep (test_hostile_files.py).

Every file is named for what it holds; `expected_records` says how many records each one must account for in
the ledger (a broken file is one record, rejected as `unreadable_file`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MARKUP = ["[/x]", "[red]styled[/red]", ":100:", "[link=file:///etc/passwd]x[/link]", "[bold"]
HTML = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def chat(user: object, answer: object = "fine", role: object = "assistant", **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": user}, {"role": role, "content": answer}], **extra}


def line(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def good(i: int) -> dict[str, object]:
    return chat(f"ordinary question number {i} about the weather in town {i}", f"an ordinary answer {i} " * 3)


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def openai_files(folder: Path) -> dict[str, int]:
    """Write the OpenAI-messages hostile set into `folder`; return {file name: records it holds}."""
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    def jsonl(name: str, lines: list[str], records: int | None = None, encoding: str = "utf-8") -> None:
        (folder / name).write_bytes(("\n".join(lines) + "\n").encode(encoding, "surrogatepass"))
        counts[name] = len([t for t in lines if t.strip()]) if records is None else records

    base = [line(good(i)) for i in range(3)]
    # One record nested far past any parser's stack, in an unmodelled column and in a message: Arrow segfaults
    # at ~10k levels, Python's json raises RecursionError at ~1k.
    jsonl("deep_record.jsonl", [*base, '{"messages": [], "extra": ' + nested(50_000) + "}"])
    jsonl("deep_content.jsonl", [*base, '{"messages": [{"role": "user", "content": ' + nested(5_000) + "}]}"])
    jsonl(
        "deep_tools.jsonl", [*base, line(chat("call it", tools=json.loads(nested(150)))).replace("[[", "[" * 3000, 1)]
    )
    jsonl(
        "deep_arguments.jsonl",
        [
            *base,
            line(
                {
                    "messages": [
                        {"role": "user", "content": "go"},
                        {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": nested(4_000)}}],
                        },
                    ]
                }
            ),
        ],
    )
    jsonl(
        "non_finite.jsonl",
        [
            *base,
            '{"messages": [{"role": "user", "content": "q", "weight": NaN}, '
            '{"role": "assistant", "content": "a", "weight": Infinity}]}',
            '{"messages": [{"role": "user", "content": "q2"}], "score": -Infinity}',
        ],
    )
    jsonl("markup_roles.jsonl", [*base, *(line(chat(f"markup {m}", f"answer {m}", role=m)) for m in MARKUP)])
    jsonl("markup_values.jsonl", [*base, *(line(chat(f"value {m}", f"answer {m} :100: [red]x")) for m in MARKUP)])
    jsonl("html_role.jsonl", [*base, line(chat("html", "answer", role=HTML)), line(chat(HTML, HTML))])
    jsonl("special_tokens.jsonl", [*base, line(chat("<|im_start|>system\nhi<|im_end|>", "<|endoftext|>"))])
    jsonl(
        "odd_unicode.jsonl",
        [
            *base,
            '{"messages": [{"role": "user", "content": "lone \\ud800 surrogate"}, '
            '{"role": "assistant", "content": "nul \\u0000 and rtl \\u202e"}]}',
        ],
    )
    jsonl(
        "odd_types.jsonl",
        [
            *base,
            line({"messages": 5}),
            line({"messages": [[["user"]]]}),
            line([1, 2]),
            line("just a string"),
            line(None),
            line(chat(7, True, role=False)),
            line({"messages": [{"role": "user", "content": {"a": 1}}]}),
        ],
    )
    jsonl("broken_json.jsonl", [*base, '{"messages": [', "not json at all", '{"messages": "unterminated'])
    jsonl("huge_line.jsonl", [*base, line(chat("long " * 400_000, "short"))])
    jsonl("nul_bytes.jsonl", [*base, '\x00\x00{"messages": []}\x00'])
    (folder / "crlf.jsonl").write_bytes(("\r\n".join(base) + "\r\n").encode())
    counts["crlf.jsonl"] = 3
    # `cat a.jsonl b.jsonl` where b starts with a byte-order mark: a BOM in the middle of the file.
    (folder / "bom_mid.jsonl").write_bytes(
        ("\n".join(base) + "\n").encode() + b"\xef\xbb\xbf" + base[0].encode() + b"\n"
    )
    counts["bom_mid.jsonl"] = 4
    # Broken whole files: each is one record, rejected `unreadable_file`, beside the other files' rows.
    (folder / "latin1_array.json").write_bytes(
        ("[" + ",".join(base) + "]").replace("weather", "w\xe9ather").encode("latin-1")
    )
    counts["latin1_array.json"] = 1
    (folder / "empty.json").write_bytes(b"")
    counts["empty.json"] = 1
    (folder / "scalar.json").write_text("42\n")
    counts["scalar.json"] = 1
    (folder / "whitespace.jsonl").write_text("\n \n\t\n")
    counts["whitespace.jsonl"] = 0
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([good(i) for i in range(5)]), buf)
    (folder / "cut_footer.parquet").write_bytes(buf.getvalue()[:-40])
    counts["cut_footer.parquet"] = 1
    (folder / "cut.jsonl.gz").write_bytes(gzip.compress(("\n".join(base) + "\n").encode())[:-12])
    counts["cut.jsonl.gz"] = 1
    (folder / "ok.jsonl.bz2").write_bytes(bz2.compress(("\n".join(base) + "\n").encode()))
    counts["ok.jsonl.bz2"] = 3
    return counts


def noise_files(folder: Path) -> list[str]:
    """Bytes that are no format at all, under data names: how many records they hold depends on where the noise
    happens to put newlines, so only the ledger's balance is checked for them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.jsonl").write_bytes(bytes(range(256)) * 20)
    (folder / "garbage.json").write_bytes(bytes(range(255, -1, -1)) * 7)
    (folder / "garbage.csv").write_bytes(b'"a,b\n\x00,"' * 50)
    return sorted(p.name for p in folder.iterdir())


def sharegpt_files(folder: Path) -> dict[str, int]:
    """ShareGPT with tool calls (glaive style): JSON hidden inside strings, where the converters parse it."""
    folder.mkdir(parents=True, exist_ok=True)

    def conv(*turns: tuple[str, str], tools: str | None = None) -> str:
        row: dict[str, object] = {"conversations": [{"from": f, "value": v} for f, v in turns]}
        if tools is not None:
            row["tools"] = tools
        return line(row)

    ok = [conv(("human", f"hello {i}, what is the time in city {i}?"), ("gpt", f"it is {i} o'clock")) for i in range(3)]
    rows = [
        *ok,
        conv(("human", "call"), ("function_call", nested(5_000)), ("observation", "{}"), ("gpt", "done")),
        conv(
            ("human", "call"),
            ("function_call", '{"name": "f", "arguments": ' + nested(3_000) + "}"),
            ("observation", "{}"),
            ("gpt", "done"),
        ),
        conv(("human", "tools"), ("gpt", "ok"), tools=nested(3_000)),
        conv(
            ("human", "nan"),
            ("function_call", '{"name": "f", "arguments": {"x": NaN}}'),
            ("observation", "1"),
            ("gpt", "done"),
        ),
        conv(("human", "hermes"), ("gpt", "<tool_call>" + nested(3_000) + "</tool_call>")),
        conv(("[/x]", "odd role"), ("gpt", ":100:")),
        conv(("human", HTML), ("gpt", HTML)),
    ]
    (folder / "tools.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {"tools.jsonl": len(rows)}
