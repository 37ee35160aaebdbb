"""Trains the small ChatML tokenizer the offline demo renders conversations with, into `demo-chatml/`.

Hub downloads are impossible offline, so the demo ships its own tokenizer: a byte-level BPE (at most 4,000
tokens) trained on the text of the demo sources in `data/raw/demo/` plus a short built-in English corpus, with
a Qwen2.5-like ChatML chat template. Byte-level BPE needs no unknown token: every byte has a token.

Run from anywhere (it finds the repository from its own path):

    python data/tokenizers/train_demo_tokenizer.py

Re-running it rewrites the same bytes: the training texts are deduplicated and sorted, training is
single-threaded, and nothing in the output depends on time or hashing.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Before `tokenizers` is imported: one thread, so training cannot depend on how work is split between threads.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SOURCES = [REPO / "data/raw/demo" / name for name in ("alpaca.json", "openai.jsonl", "sharegpt.jsonl")]
OUT = HERE / "demo-chatml"

# An upper bound: BPE stops when every word of the corpus is one token, which this small corpus reaches
# at about 3,000 tokens. Merges seen once are kept (min_frequency=1), so the demo's own words are whole tokens.
VOCAB_SIZE = 4000
MIN_FREQUENCY = 1
MODEL_MAX_LENGTH = 4096

# Trained as special tokens: ids 0, 1, 2, never split, skipped by decode(skip_special_tokens=True).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Added after training as atomic but non-special tokens (as Qwen2.5 and Qwen3 do), so that decoding with
# skip_special_tokens=True keeps the reasoning and tool-call markup: the last four ids.
MARKUP_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>"]

CHAT_TEMPLATE = """\
{#- ChatML, like Qwen2.5 but with no default system prompt. Messages are OpenAI-style dicts: role, content,
    reasoning_content (assistant), tool_calls (assistant; {"function": {"name", "arguments"}} or flat
    {"name", "arguments"}; arguments a dict or a JSON string). -#}
{%- set has_system = messages | length > 0 and messages[0].role == 'system' %}
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if has_system %}
        {{- messages[0].content + '\\n\\n' }}
    {%- endif %}
    {{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
    {%- for tool in tools %}
        {{- '\\n' }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments ' }}
    {{- 'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n' }}
    {{- '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif has_system %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- set content = message.content if message.content is string else '' %}
    {%- if loop.first and has_system %}
        {#- Rendered above, with the tools. #}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant\\n' }}
        {%- if message.reasoning_content %}
            {{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}
        {%- endif %}
        {{- content }}
        {%- for call in message.tool_calls or [] %}
            {%- set fn = call.function if call.function is defined else call %}
            {%- if content or not loop.first %}
                {{- '\\n' }}
            {%- endif %}
            {{- '<tool_call>\\n{"name": ' }}
            {{- fn.name | tojson }}
            {{- ', "arguments": ' }}
            {%- if fn.arguments is string %}
                {{- fn.arguments }}
            {%- else %}
                {{- fn.arguments | tojson }}
            {%- endif %}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {#- Consecutive tool results share one user turn. #}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Ordinary English, code and tool-call text, so that common words and the template's own strings get tokens
# of their own rather than depending only on the narrow demo topics.
ENGLISH = """\
The quick brown fox jumps over the lazy dog. This is a short example of plain English text.
You are a helpful assistant. Please answer the question below as clearly and briefly as you can.
Thank you for your help! I would like to know more about this, if you have the time.
What is the best way to learn a new language? Practice a little every day, read often, and speak with others.
How does it work? It works by breaking the problem into smaller parts and solving each part in turn.
Where is the nearest station? Walk two blocks north, then turn left at the bank; it is on your right.
When did the war end? It ended in 1945, after six years of fighting across Europe, Asia and Africa.
Why is the sky blue? Sunlight is scattered by the air, and blue light is scattered more than red light.
Who wrote this book? It was written by a teacher who lived in a small town by the sea.
Which one should I choose? Both are good, but the first is cheaper and easier to use.
We need to make sure that the data is correct before we use it to train the model.
People often say that time is money, but time is also health, friendship and attention.
The report shows that sales grew by ten percent this year, mostly because of new customers.
First, open the file. Second, read each line. Third, write the result to a new file and close it.
In summary, the results are good, but there is still work to do on speed and memory.
Here is an example: the function takes a list of numbers and returns their sum.
Let me think about this step by step. The answer is yes, because the numbers add up.
I don't know, but I can find out. It's not clear yet, and we'll know more tomorrow.
Could you explain that again, please? Of course. Let's start from the beginning.
Good morning, everyone. Today we will talk about how to plan a project, work as a team and finish on time.
Most of the people I know live in the city, but many of them grew up in small villages in the country.
My mother always told me to eat my vegetables, go to bed early and never give up on a good idea.
She looked out of the window and saw that it had started to rain, so she took her umbrella and left the house.
He has been working at the same company for twenty years, and he still enjoys going to the office every morning.
They were going to visit their friends last weekend, but the car broke down on the way and they had to stay at home.
If you have any questions about your order, please contact our customer service team by phone or by email.
The children played in the garden all afternoon while their parents cooked dinner and talked about their day.
Some of the most important things in life cannot be bought: love, family, health, trust and a good night's sleep.
Our new system is faster, safer and easier to use than the old one, and it costs less to run.
Scientists believe that the planet is getting warmer because of the gases we release when we burn coal, oil and gas.
The government announced a new law that will change the way schools, hospitals and public services are funded.
It was the best of times, it was the worst of times; everything seemed possible and nothing seemed certain.
Before you begin, check that you have everything you need: a pen, some paper, a calculator and a quiet place to work.
Water boils at one hundred degrees Celsius at sea level, but at lower temperatures high in the mountains.
The history of the world is full of great ideas, strange mistakes, brave people and long periods of slow change.
Every year thousands of students move to another country to study, learn a new language and meet new people.
A good teacher listens carefully, asks simple questions, and helps each student find the answer on their own.
The meeting has been moved to Thursday afternoon at three o'clock; please let me know if that does not suit you.
Music, art and sport are not only fun; they also teach us patience, discipline and how to work with others.
I think that we should try again tomorrow, because today everyone is tired and the weather is too cold.
The company reported higher profits in the first quarter, thanks to strong demand for its products and services.
Read the instructions carefully, follow each step in order, and ask for help if something is not clear.
There are seven days in a week, twelve months in a year, and about three hundred and sixty-five days in a year.
Numbers: one, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve, twenty, hundred, thousand, million.
Colours: red, orange, yellow, green, blue, purple, black, white, brown and grey.
Days: Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday.
Months: January, February, March, April, May, June, July, August, September, October, November and December.
def main(args):
    for item in items:
        if item is not None:
            print(item)
    return 0
import json
result = {"name": "example", "value": 42, "items": [1, 2, 3], "ok": true, "error": null}
SELECT name, COUNT(*) FROM users WHERE active = 1 GROUP BY name ORDER BY name;
<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
</tool_call>
<tool_response>
{"temperature": 22, "condition": "sunny"}
</tool_response>
# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "search", "description": "Search the web.", "parameters": \
{"type": "object", "properties": {"query": {"type": "string", "description": "What to look for"}}, \
"required": ["query"]}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> \
XML tags:
system user assistant tool function arguments parameters properties description required type string number
"""


def records(path: Path) -> Iterator[Any]:
    """Yields the JSON values in a file: a whole-document JSON array or value, else one per parsable line."""
    data = path.read_bytes()
    try:
        whole = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        for line in data.splitlines():
            try:
                yield json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # blank, broken or not UTF-8: the demo plants such lines on purpose
        return
    yield from whole if isinstance(whole, list) else [whole]


def strings(value: Any) -> Iterator[str]:
    """Every non-empty string value (not key) nested in a JSON value; numbers, nulls and booleans are skipped."""
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def training_texts(sources: list[Path]) -> list[str]:
    """The corpus: distinct texts of the sources plus the built-in English, sorted so input order cannot matter."""
    texts = {ENGLISH}
    for path in sources:
        for record in records(path):
            texts.update(strings(record))
    return sorted(texts)


def trained(texts: list[str]) -> Tokenizer:
    """A byte-level BPE with the ChatML special tokens at ids 0-2 and the markup tokens at the end."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # Adds no tokens; only keeps offsets exact (Qwen2 does the same).
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(MARKUP_TOKENS),
        min_frequency=MIN_FREQUENCY,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    return tokenizer


def loadable_by_transformers_4(config: Path) -> None:
    """Names the class transformers 4 knows: 5 saves `TokenizersBackend`, which 4.x (the project allows >=4.51)
    cannot load; 5 reads `PreTrainedTokenizerFast` as the same class."""
    settings = json.loads(config.read_text(encoding="utf-8"))
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder to write (default: {OUT})")
    args = parser.parse_args()

    from transformers import PreTrainedTokenizerFast  # heavy: only when actually writing

    texts = training_texts(SOURCES)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=trained(texts),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=MODEL_MAX_LENGTH,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(args.out)
    loadable_by_transformers_4(args.out / "tokenizer_config.json")
    print(f"{len(texts)} texts -> {len(tokenizer)} tokens, written to {args.out}")


if __name__ == "__main__":
    main()
