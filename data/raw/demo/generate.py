"""Writes the demo sources (alpaca.json, sharegpt.jsonl, openai.jsonl) deterministically, with planted
duplicates and bad rows. Re-running it rewrites the same bytes. See README.md here for what is planted where.
"""

# ruff: noqa: E501  (the demo's questions and answers are data: one string literal each, whatever its length)

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
rng = random.Random(20261123)

CITIES = [
    ("France", "Paris", "the Seine"),
    ("Japan", "Tokyo", "the Sumida"),
    ("Egypt", "Cairo", "the Nile"),
    ("Canada", "Ottawa", "the Ottawa River"),
    ("Peru", "Lima", "the Rimac"),
    ("Kenya", "Nairobi", "the Nairobi River"),
    ("Norway", "Oslo", "the Akerselva"),
    ("Vietnam", "Hanoi", "the Red River"),
    ("Hungary", "Budapest", "the Danube"),
    ("Argentina", "Buenos Aires", "the Rio de la Plata"),
    ("Australia", "Canberra", "Lake Burley Griffin"),
    ("Portugal", "Lisbon", "the Tagus"),
]
DISHES = [
    ("pancakes", "flour, milk, eggs and a pinch of salt", "a hot buttered pan", 2),
    ("risotto", "arborio rice, stock, onion and parmesan", "a wide heavy pot", 25),
    ("guacamole", "ripe avocados, lime, onion, coriander and salt", "a bowl and a fork", 10),
    ("tomato soup", "tomatoes, onion, garlic, stock and olive oil", "a saucepan", 30),
    ("banana bread", "ripe bananas, flour, sugar, butter, eggs and baking soda", "a loaf tin", 60),
    ("fried rice", "cold cooked rice, eggs, spring onions, soy sauce and peas", "a very hot wok", 12),
    ("hummus", "chickpeas, tahini, lemon juice, garlic and olive oil", "a food processor", 10),
    ("omelette", "eggs, butter, salt and a filling such as cheese", "a small non-stick pan", 5),
]
PY_TASKS = [
    ("reverse a string", "s[::-1]", "Slicing with a step of -1 walks the string backwards."),
    ("count words in a sentence", "len(sentence.split())", "split() with no argument splits on any run of whitespace."),
    (
        "remove duplicates from a list while keeping order",
        "list(dict.fromkeys(items))",
        "Dictionaries keep insertion order, so the first occurrence of each item wins.",
    ),
    (
        "read a file line by line",
        "with open(path) as fh:\n    for line in fh:\n        print(line.rstrip())",
        "Iterating over the file object reads one line at a time, so large files do not fill memory.",
    ),
    (
        "sort a list of dicts by a key",
        "sorted(rows, key=lambda r: r['age'])",
        "The key function picks the value to compare; sorted() returns a new list.",
    ),
    ("merge two dictionaries", "merged = {**a, **b}", "Keys from b win when both dictionaries have them."),
    (
        "check whether a number is prime",
        "all(n % d for d in range(2, int(n ** 0.5) + 1)) and n > 1",
        "A divisor larger than the square root would pair with one smaller than it, so checking up to the root is enough.",
    ),
    (
        "flatten a list of lists",
        "[x for row in rows for x in row]",
        "The comprehension reads like two nested for loops.",
    ),
]
SQL_TASKS = [
    ("find the ten most recent orders", "SELECT * FROM orders ORDER BY created_at DESC LIMIT 10;"),
    ("count customers per country", "SELECT country, COUNT(*) AS customers FROM customers GROUP BY country;"),
    (
        "find products never ordered",
        "SELECT p.* FROM products p LEFT JOIN order_items i ON i.product_id = p.id WHERE i.id IS NULL;",
    ),
    (
        "compute the average order value per month",
        "SELECT date_trunc('month', created_at) AS month, AVG(total) FROM orders GROUP BY 1 ORDER BY 1;",
    ),
    (
        "delete duplicate emails keeping the lowest id",
        "DELETE FROM users a USING users b WHERE a.email = b.email AND a.id > b.id;",
    ),
]
SCIENCE = [
    (
        "Why is the sky blue?",
        "Sunlight contains every colour. Air molecules scatter short wavelengths much more strongly than long ones (Rayleigh scattering), so blue light is redirected across the whole sky while most red and yellow light passes straight through. At sunset the light crosses more air, the blue is scattered away before it reaches you, and the sky near the horizon turns orange.",
    ),
    (
        "How do vaccines work?",
        "A vaccine shows the immune system a harmless piece or copy of a pathogen. The body responds by making antibodies and memory cells. If the real pathogen arrives later, those memory cells recognise it and the response is fast and strong, often before the person feels ill.",
    ),
    (
        "What causes the seasons?",
        "The Earth's axis is tilted by about 23.5 degrees. As the planet orbits the Sun, each hemisphere spends part of the year tilted towards it, with longer days and more direct sunlight (summer), and part tilted away (winter). The distance to the Sun changes very little and is not the cause.",
    ),
    (
        "Why does ice float?",
        "Water expands when it freezes: the molecules lock into a hexagonal lattice held by hydrogen bonds that keeps them further apart than in the liquid. Ice is therefore about 9% less dense than water and floats, which insulates lakes and lets life survive beneath the surface in winter.",
    ),
    (
        "What is photosynthesis?",
        "Photosynthesis is how plants, algae and some bacteria turn light into chemical energy. Chlorophyll absorbs light, which drives the splitting of water and the fixing of carbon dioxide into sugars. Oxygen is released as a by-product.",
    ),
    (
        "How does a rainbow form?",
        "Sunlight enters a raindrop, bends (refracts), reflects off the back of the drop and bends again on the way out. Each wavelength bends by a slightly different angle, so the colours fan out. You see a rainbow when the Sun is behind you and rain is in front of you.",
    ),
    (
        "What is inflation?",
        "Inflation is the general rise of prices over time, which means each unit of money buys less. Moderate inflation is normal in a growing economy; central banks usually aim for around 2% a year and raise interest rates when it runs higher.",
    ),
    (
        "Why do we have leap years?",
        "A year, one orbit of the Sun, lasts about 365.2422 days. Adding a day every four years corrects most of the drift; skipping the leap day in century years not divisible by 400 corrects the rest, keeping the calendar aligned with the seasons.",
    ),
]
WRITING = [
    (
        "a polite email declining a meeting",
        "Subject: Re: Thursday meeting\n\nHi Sam,\n\nThank you for the invitation. Unfortunately I have a conflicting commitment on Thursday afternoon and will not be able to attend. Could you share the notes afterwards? I am happy to follow up on any action items by email.\n\nBest regards,\nAlex",
    ),
    (
        "a short product description for a steel water bottle",
        "Keep drinks cold for 24 hours or hot for 12 with this double-walled stainless steel bottle. The leak-proof lid fits in one hand, the powder-coated finish will not sweat, and at 750 ml it holds enough for a full day out.",
    ),
    (
        "a thank-you note to a teacher",
        "Dear Ms. Rivera,\n\nThank you for a wonderful year. Your patience and your enthusiasm for science made every lesson something to look forward to, and I finally understand why the sky is blue. I will miss your class.\n\nWith gratitude,\nMia",
    ),
    ("a haiku about autumn", "Maple leaves let go,\nthe wind writes in red and gold,\nthe path remembers."),
    (
        "an opening line for a mystery novel",
        "The lighthouse had been dark for eleven years, so when its beam swept across Harriet's bedroom at three in the morning, she knew someone had found the key.",
    ),
]


def math_problem(i: int) -> tuple[str, str]:
    a, b = rng.randint(3, 40), rng.randint(2, 12)
    kind = i % 4
    if kind == 0:
        return (
            f"A box holds {b} pencils. How many pencils are in {a} boxes?",
            f"Each box holds {b} pencils, so {a} boxes hold {a} × {b} = {a * b} pencils.",
        )
    if kind == 1:
        total = a * b
        return (
            f"{total} apples are shared equally among {b} children. How many does each child get?",
            f"Divide the apples by the number of children: {total} ÷ {b} = {a}. Each child gets {a} apples.",
        )
    if kind == 2:
        speed = b * 10
        return (
            f"A train travels at {speed} km/h for {a} hours. How far does it go?",
            f"Distance = speed × time = {speed} km/h × {a} h = {speed * a} km.",
        )
    price = a + 0.5
    return (
        f"A notebook costs ${price:.2f}. How much do {b} notebooks cost?",
        f"Multiply the price by the quantity: {b} × ${price:.2f} = ${b * price:.2f}.",
    )


def conversion(i: int) -> tuple[str, str]:
    v = rng.randint(2, 250)
    kind = i % 3
    if kind == 0:
        return (
            f"Convert {v} kilometres to miles.",
            f"One kilometre is about 0.621371 miles, so {v} km ≈ {v * 0.621371:.2f} miles.",
        )
    if kind == 1:
        return (
            f"What is {v} degrees Fahrenheit in Celsius?",
            f"Use C = (F − 32) × 5/9: ({v} − 32) × 5/9 ≈ {(v - 32) * 5 / 9:.1f} °C.",
        )
    return (f"How many grams are in {v} ounces?", f"One ounce is 28.3495 g, so {v} oz ≈ {v * 28.3495:.1f} g.")


def pool() -> list[tuple[str, str]]:
    """Distinct (question, answer) pairs across topics."""
    qa: list[tuple[str, str]] = []
    for country, capital, river in CITIES:
        qa.append(
            (
                f"What is the capital of {country}?",
                f"The capital of {country} is {capital}. It lies on {river} and is the country's main political centre.",
            )
        )
        qa.append(
            (
                f"Suggest a one-day walking plan for {capital}.",
                f"Start early in the old centre of {capital} while the streets are quiet, then follow {river} towards the main museums. "
                f"Have lunch where locals eat, spend the afternoon in a park or market, and end the day at a viewpoint for sunset.",
            )
        )
    for dish, ingredients, tool, minutes in DISHES:
        qa.append(
            (
                f"How do I make {dish}?",
                f"For {dish} you need {ingredients}. Prepare everything before you start, use {tool}, and cook for about {minutes} minutes, "
                f"tasting and adjusting the seasoning at the end.",
            )
        )
        qa.append(
            (
                f"How long does {dish} keep, and how should I store it?",
                f"Cooked {dish} keeps for two to three days in an airtight container in the fridge. Cool it quickly, "
                f"store it within two hours of cooking, and reheat only the portion you will eat.",
            )
        )
        qa.append(
            (
                f"What can I use instead of eggs in {dish}?",
                f"In {dish} you can often replace each egg with a tablespoon of ground flaxseed mixed with three tablespoons of water, "
                f"left to thicken for five minutes. The texture changes slightly, so expect a denser result.",
            )
        )
    for task, code, why in PY_TASKS:
        qa.append((f"How do I {task} in Python?", f"```python\n{code}\n```\n{why}"))
    for task, sql in SQL_TASKS:
        qa.append(
            (f"Write a SQL query to {task}.", f"```sql\n{sql}\n```\nAdjust table and column names to your schema.")
        )
    qa.extend(SCIENCE)
    for what, text in WRITING:
        qa.append((f"Write {what}.", text))
    for i in range(170):
        qa.append(math_problem(i))
    for i in range(60):
        qa.append(conversion(i))
    qa.append(("Quelle est la capitale de l'Italie ?", "La capitale de l'Italie est Rome, traversée par le Tibre."))
    qa.append(
        ("用一句话解释什么是机器学习。", "机器学习是让计算机从数据中自动学习规律，并用这些规律对新数据做出预测的方法。")
    )
    qa.append(
        (
            "¿Cuántos días tiene un año bisiesto?",
            "Un año bisiesto tiene 366 días; el día adicional es el 29 de febrero.",
        )
    )
    seen, unique = set(), []
    for q, a in qa:
        if q not in seen:
            seen.add(q)
            unique.append((q, a))
    return unique


SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in as few words as needed.",
    "You are a friendly tutor who explains step by step.",
]


def near_copy(text: str) -> str:
    """A few words edited: a near-duplicate that exact hashing does not catch."""
    words = text.split(" ")
    for _ in range(2):
        i = rng.randrange(len(words))
        words[i] = {"the": "a", "a": "the", "is": "was"}.get(words[i], words[i] + ",")
    return " ".join(words)


def main() -> None:
    qa = pool()
    rng.shuffle(qa)
    # Disjoint blocks per source, so the only duplicates are the planted ones.
    alpaca_qa, share_qa, oai_qa = qa[:60], qa[60:130], qa[130:200]
    extra, history_qa, long_qa = qa[200:220], qa[220:240], qa[240:252]
    planted: list[tuple[str, int, str, str, str]] = []  # (file, record index, problem, stage, reason)

    # ---- alpaca.json ----------------------------------------------------------------------
    alpaca: list[dict] = []
    for i, (q, a) in enumerate(alpaca_qa):
        rec = {"instruction": q, "input": "", "output": a}
        if i % 9 == 4:
            rec["system"] = SYSTEMS[i % 3]
        alpaca.append(rec)
    # Instruction + input rows.
    for q, a in extra[:20]:
        alpaca.append({"instruction": "Answer the question below.", "input": q, "output": a})
    # Rows with history.
    for i in range(10):
        (q1, a1), (q2, a2) = history_qa[2 * i], history_qa[2 * i + 1]
        alpaca.append({"instruction": q2, "input": "", "output": a2, "history": [[q1, a1]]})
    for k in range(8):  # exact duplicates within the source
        alpaca.append(dict(alpaca[k * 5]))
        planted.append(("alpaca.json", len(alpaca) - 1, f"exact copy of record {k * 5}", "dedup", "exact_duplicate"))
    for k in range(2):  # normalised duplicates: case and whitespace only
        src = alpaca[40 + k]
        copy = {
            "instruction": src["instruction"].upper(),
            "input": "",
            "output": "  " + src["output"].replace(" ", "  "),
        }
        if "system" in src:
            copy["system"] = src["system"]
        alpaca.append(copy)
        planted.append(
            (
                "alpaca.json",
                len(alpaca) - 1,
                f"copy of record {40 + k} differing in case/whitespace",
                "dedup",
                "exact_duplicate",
            )
        )
    for k in range(3):  # near-duplicates: exact hashing misses them, dedup.near catches them
        src = alpaca[10 + k]
        alpaca.append({"instruction": src["instruction"], "input": "", "output": near_copy(src["output"])})
        planted.append(
            (
                "alpaca.json",
                len(alpaca) - 1,
                f"near copy of record {10 + k} (punctuation edited)",
                "dedup",
                "near_duplicate",
            )
        )
    alpaca.append({"instruction": "Tell me a joke about databases.", "input": "", "output": ""})
    planted.append(("alpaca.json", len(alpaca) - 1, "empty `output`", "validate", "empty_content"))
    alpaca.append({"input": "", "output": "An answer without a question."})
    planted.append(("alpaca.json", len(alpaca) - 1, "missing `instruction`", "read", "schema_violation"))
    alpaca.append({"instruction": "List three primary colours.", "input": "", "output": ["red", "yellow", "blue"]})
    planted.append(("alpaca.json", len(alpaca) - 1, "`output` is a list", "read", "schema_violation"))
    long_answer = " ".join([SCIENCE[i % len(SCIENCE)][1] for i in range(24)])
    alpaca.append(
        {"instruction": "Summarise everything you know about natural science.", "input": "", "output": long_answer}
    )
    planted.append(
        ("alpaca.json", len(alpaca) - 1, f"answer of {len(long_answer)} characters", "filter", "too_many_chars")
    )

    # ---- sharegpt.jsonl -------------------------------------------------------------------
    share_lines: list[str] = []

    def conv(pairs, system=None, system_column=None):
        turns = [{"from": "system", "value": system}] if system else []
        for q, a in pairs:
            turns += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
        rec = {"conversations": turns}
        if system_column:
            rec["system"] = system_column
        return rec

    share_recs = []
    for i in range(0, len(share_qa) - 2, 1):
        n = 1 + (i % 3)
        pairs = [share_qa[(i + j) % len(share_qa)] for j in range(n)]
        share_recs.append(
            conv(
                pairs,
                system=SYSTEMS[i % 3] if i % 5 == 0 else None,
                system_column=SYSTEMS[1] if i % 7 == 3 and i % 5 != 0 else None,
            )
        )
    for rec in share_recs:
        share_lines.append(json.dumps(rec, ensure_ascii=False))
    for k in range(5):
        share_lines.append(share_lines[k * 3])
        planted.append(
            ("sharegpt.jsonl", len(share_lines), f"exact copy of line {k * 3 + 1}", "dedup", "exact_duplicate")
        )
    for k in range(4):  # cross-source duplicates of alpaca rows (no input, no system)
        src = alpaca[k * 7 + 1]
        if "system" in src:
            continue
        share_lines.append(json.dumps(conv([(src["instruction"], src["output"])]), ensure_ascii=False))
        planted.append(
            (
                "sharegpt.jsonl",
                len(share_lines),
                f"same turns as alpaca.json record {k * 7 + 1}",
                "dedup",
                "exact_duplicate",
            )
        )
    for k in range(2):  # near-duplicates, caught by dedup.near (MinHash)
        q, a = share_qa[20 + k]
        near_copy(a)  # draws what earlier versions drew, so every other row stays byte-identical
        if k == 0:  # the conversation of line 7 scraped twice, the second time with a greeting
            q7, a7 = share_qa[6]
            rec, problem = conv([("Hi! " + q7, a7)]), "line 7 again, with a greeting added"
        else:  # across sources: an alpaca row whose answer gained a sign-off
            src = alpaca[23]
            rec = conv([(src["instruction"], src["output"] + " Hope this helps!")])
            problem = "alpaca.json record 23 with a sign-off added"
        share_lines.append(json.dumps(rec, ensure_ascii=False))
        planted.append(("sharegpt.jsonl", len(share_lines), problem, "dedup", "near_duplicate"))
    share_lines.append("")
    planted.append(("sharegpt.jsonl", len(share_lines), "blank line", "-", "skipped (holds no record)"))
    share_lines.append('{"conversations": [{"from": "human", "value": "Is this JSON?"}, {"from": "gpt", "value": "No"')
    planted.append(("sharegpt.jsonl", len(share_lines), "broken JSON", "read", "invalid_json"))
    share_lines.append(b'{"conversations": [{"from": "human", "value": "caf\xe9"}, {"from": "gpt", "value": "ok"}]}')
    planted.append(("sharegpt.jsonl", len(share_lines), "invalid UTF-8 (a Latin-1 byte)", "read", "invalid_utf8"))
    share_lines.append('["a", "list", "not", "an", "object"]')
    planted.append(("sharegpt.jsonl", len(share_lines), "a JSON array, not an object", "read", "not_an_object"))
    share_lines.append(json.dumps(conv([("What is 2 + 2?", "")])))
    planted.append(("sharegpt.jsonl", len(share_lines), "empty assistant value", "validate", "empty_content"))
    share_lines.append(
        json.dumps({"conversations": [{"from": "human", "value": "Hello?"}, {"from": "bot", "value": "Hi."}]})
    )
    planted.append(("sharegpt.jsonl", len(share_lines), "unknown role `bot`", "convert", "unknown_role"))
    share_lines.append(json.dumps({"conversations": [{"from": "human", "value": "Anyone there?"}]}))
    planted.append(("sharegpt.jsonl", len(share_lines), "no assistant turn", "validate", "no_assistant_turn"))
    share_lines.append(
        json.dumps(
            {
                "conversations": [
                    {"from": "human", "value": "How many legs does a spider have?"},
                    {"from": "gpt", "value": 8},
                ]
            }
        )
    )
    planted.append(("sharegpt.jsonl", len(share_lines), "`value` is a number", "read", "schema_violation"))
    share_lines.append(json.dumps(conv(long_qa[:6]), ensure_ascii=False))
    planted.append(("sharegpt.jsonl", len(share_lines), "6 exchanges", "filter", "too_many_turns"))
    # Quality signals (the recipe's `quality:` section): fixed text, no draws, so every row above stays as it was.
    tip = "Put your phone in another room while you study."
    share_lines.append(json.dumps(conv([("How do I stay focused while studying?", "\n".join([tip] * 4))])))
    problem = "the answer repeats one line four times"
    planted.append(("sharegpt.jsonl", len(share_lines), problem, "quality:sharegpt", "dup_line_share"))
    with (HERE / "sharegpt.jsonl").open("wb") as fh:
        for line in share_lines:
            fh.write((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")

    # ---- openai.jsonl ---------------------------------------------------------------------
    oai_lines: list[str] = []

    def msgs(pairs, system=None):
        out = [{"role": "system", "content": system}] if system else []
        for q, a in pairs:
            out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return {"messages": out}

    for i in range(len(oai_qa)):
        n = 1 + (i % 2)
        pairs = [oai_qa[(i + j) % len(oai_qa)] for j in range(n)]
        oai_lines.append(json.dumps(msgs(pairs, SYSTEMS[i % 3] if i % 4 == 0 else None), ensure_ascii=False))
    for k in range(5):
        oai_lines.append(oai_lines[k * 4 + 1])
        planted.append(("openai.jsonl", len(oai_lines), f"exact copy of line {k * 4 + 2}", "dedup", "exact_duplicate"))
    for k in range(2):
        rec = json.loads(oai_lines[10 + k])
        for m in rec["messages"]:
            m["content"] = m["content"].lower() + "  "
        oai_lines.append(json.dumps(rec, ensure_ascii=False))
        planted.append(
            (
                "openai.jsonl",
                len(oai_lines),
                f"copy of line {11 + k} differing in case/whitespace",
                "dedup",
                "exact_duplicate",
            )
        )
    src = alpaca[3]
    oai_lines.append(json.dumps(msgs([(src["instruction"], src["output"])], src.get("system")), ensure_ascii=False))
    planted.append(("openai.jsonl", len(oai_lines), "same turns as alpaca.json record 3", "dedup", "exact_duplicate"))
    q, a = oai_qa[5]
    near_copy(a)  # draws what earlier versions drew, so every other row stays byte-identical
    q3, a3 = oai_qa[2]
    oai_lines.append(json.dumps(msgs([("Please, " + q3[0].lower() + q3[1:], a3)]), ensure_ascii=False))
    planted.append(
        ("openai.jsonl", len(oai_lines), "line 3 asked again, starting 'Please,'", "dedup", "near_duplicate")
    )
    oai_lines.append("")
    planted.append(("openai.jsonl", len(oai_lines), "blank line", "-", "skipped (holds no record)"))
    oai_lines.append('{"messages": [{"role": "user", "content": "unterminated}')
    planted.append(("openai.jsonl", len(oai_lines), "broken JSON", "read", "invalid_json"))
    oai_lines.append(b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}')
    planted.append(("openai.jsonl", len(oai_lines), "invalid UTF-8", "read", "invalid_utf8"))
    oai_lines.append('"just a string"')
    planted.append(("openai.jsonl", len(oai_lines), "a JSON string, not an object", "read", "not_an_object"))
    oai_lines.append(json.dumps(msgs([("Name a prime number.", "")])))
    planted.append(("openai.jsonl", len(oai_lines), "empty assistant content", "validate", "empty_content"))
    oai_lines.append(
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "Beep."}]})
    )
    planted.append(("openai.jsonl", len(oai_lines), "unknown role `robot`", "convert", "unknown_role"))
    oai_lines.append(
        json.dumps({"messages": [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]})
    )
    planted.append(("openai.jsonl", len(oai_lines), "no assistant turn", "validate", "no_assistant_turn"))
    oai_lines.append(
        json.dumps({"messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "A number?"}]})
    )
    planted.append(("openai.jsonl", len(oai_lines), "`content` is a number", "read", "schema_violation"))
    oai_lines.append(json.dumps(msgs([("Say hello.", "   ")])))
    planted.append(("openai.jsonl", len(oai_lines), "assistant content is only spaces", "filter", "blank_message"))
    ask = "Can you check my e-mail address before I sign up? It is maria.lopez@example.com."
    oai_lines.append(
        json.dumps(msgs([(ask, "maria.lopez@example.com is a well-formed address: a name, an @ and a domain.")]))
    )
    planted.append(
        ("openai.jsonl", len(oai_lines), "an e-mail address in both turns", "-", "kept, redacted to `<EMAIL>`")
    )
    with (HERE / "openai.jsonl").open("wb") as fh:
        for line in oai_lines:
            fh.write((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")

    # alpaca.json last: record indices → line numbers need the final text.
    text = json.dumps(alpaca, ensure_ascii=False, indent=2) + "\n"
    (HERE / "alpaca.json").write_text(text, encoding="utf-8")
    starts, line, depth = [], 1, 0
    in_str = esc = False
    for ch in text:  # the line where each top-level element opens
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            elif ch != "\\":
                esc = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            if depth == 1:
                starts.append(line)
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "\n":
            line += 1

    rows = []
    for file, where, problem, stage, reason in planted:
        shown = starts[where] if file == "alpaca.json" else where
        rows.append(f"| {file} | {shown} | {problem} | {stage} | {reason} |")
    counts = {
        "alpaca.json": len(alpaca),
        "sharegpt.jsonl": sum(1 for x in share_lines if x),
        "openai.jsonl": sum(1 for x in oai_lines if x),
    }
    readme = [
        "# Demo sources",
        "",
        "Small, offline sources for `pipelines/demo.yaml`, written by `generate.py` (deterministic: re-running it",
        "rewrites the same bytes). Content is synthetic but realistic assistant-style Q&A (cooking, Python, SQL,",
        "science, geography, writing, arithmetic, unit conversions; a few non-English rows).",
        "",
        "| file | records |",
        "|---|--:|",
        *[f"| {k} | {v} |" for k, v in counts.items()],
        "",
        "The last rows of sharegpt.jsonl and openai.jsonl are for the recipe's `quality:` section (quality signals):",
        "a repeated-line answer it filters and an e-mail address it redacts. `quality/` is a separate, hand-written",
        "source for `pipelines/demo-quality.yaml` (language, refusals, IP addresses and the quality gates); its own",
        "README lists what is planted there. `pipelines/demo.yaml` does not read it.",
        "",
        "## Planted problems",
        "",
        "Line numbers are 1-based; for `alpaca.json` the line where the record's object opens.",
        "",
        "The stage and reason are those dataforge records in `rejects.parquet` (`tests/test_demo.py` checks every row",
        "of this table against a real build).",
        "",
        "| file | line | what is wrong | stage | reason |",
        "|---|--:|---|---|---|",
        *rows,
        "",
    ]
    (HERE / "README.md").write_text("\n".join(readme), encoding="utf-8")
    print(json.dumps(counts), len(planted), "planted")


if __name__ == "__main__":
    main()
