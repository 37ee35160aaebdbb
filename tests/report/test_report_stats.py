"""Tool-call and reasoning statistics over rows that have them (the demo has neither)."""

from __future__ import annotations

from dataforge.report.stats import content_stats

ROWS = [
    {
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "Two cities, two calls.",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": "24C"},
            {"role": "assistant", "content": "Paris 18C, Rome 24C."},
        ],
    },
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "<think>easy</think>4"},
        ]
    },
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]},
]


def test_tool_calls_reasoning_turns_and_roles(write, check):
    checked = check(write("chat.jsonl", ROWS), "openai")
    assert checked.examples.num_rows == 3
    stats = content_stats(checked.examples, [checked.examples["source"][0].as_py()])
    assert stats["kinds"] == {"sft": 3}
    assert stats["turns"]["histogram"] == {"1": 2, "2": 1}
    assert stats["turns"]["mean"] == 1.33
    assert stats["roles"] == {"assistant": 4, "system": 1, "tool": 2, "user": 3}
    assert stats["rows_with_system"] == 1
    calls = stats["tool_calls"]
    assert calls["rows_with_tools"] == 1
    assert calls["rows_with_calls"] == 1
    assert calls["turns_with_calls"] == 1
    assert calls["calls"] == 2
    assert calls["tool_results"] == 2
    assert calls["calls_per_turn"]["max"] == 2
    assert calls["by_name"] == {"get_weather": 2}
    reasoning = stats["reasoning"]
    assert (reasoning["rows"], reasoning["turns"], reasoning["inline_turns"]) == (2, 1, 1)
    assert reasoning["chars"]["max"] == len("Two cities, two calls.")
