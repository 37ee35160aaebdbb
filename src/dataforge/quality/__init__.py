"""Quality signals per row and role: language, repetition, PII, length ratios, refusals and boilerplate.

Each signal is computed vectorised over an Arrow table of `Example` rows (`signals.compute_signals`) and kept
as one struct column, `quality`, so a rule in the recipe, the report and `dataforge diff` all read the same
numbers. Every module has a plain-Python reference or hand-checked tests beside it (tests/quality/).
"""
