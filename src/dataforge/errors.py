"""Errors that speak to the person running dataforge, each with the exit code it maps to.

Exit codes (DESIGN.md seam 7): 0 ok, 1 data or gate failure, 2 usage or recipe error. The CLI prints these
without a traceback; anything else escaping is a bug in dataforge.
"""

from __future__ import annotations


class DataforgeError(Exception):
    """A failure to report to the user as text, with an exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Raised in a worker process or a Ray task, it crosses back pickled: keep the hint (plain Exception
        # pickling keeps only `args`).
        return (_rebuild, (type(self), self.message, self.hint))


def _rebuild(cls: type[DataforgeError], message: str, hint: str | None) -> DataforgeError:
    error = cls.__new__(cls)
    DataforgeError.__init__(error, message, hint=hint)
    return error


class DataError(DataforgeError):
    """The data cannot be used (exit 1)."""

    exit_code = 1


class UsageError(DataforgeError):
    """The command line or its arguments are wrong (exit 2)."""

    exit_code = 2


class RecipeError(DataforgeError):
    """A recipe is malformed; `problems` lists every one found, each already naming its line."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        body = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} {noun} in the recipe\n{body}")
