"""Print a runnable command block of the README, so CI runs what the README says rather than a copy of it.

    python .ci/readme_command.py first   # the README's first command (Set up: the offline demo)
    python .ci/readme_command.py tests   # the README's test command (Set up: the development install)

The blocks are the ```bash fences under `## Set up`, in order; exit 1 when the README no longer has them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = {"first": 0, "tests": 1}


def setup_commands(text: str) -> list[str]:
    """The bodies of the ```bash blocks in the README's `## Set up` section."""
    match = re.search(r"^## Set up\n(.*?)(?=^## )", text, flags=re.M | re.S)
    if match is None:
        return []
    return [body.strip() for body in re.findall(r"^```bash\n(.*?)^```", match.group(1), flags=re.M | re.S)]


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in BLOCKS:
        print(f"usage: {sys.argv[0]} {{{'|'.join(BLOCKS)}}}", file=sys.stderr)
        return 2
    blocks = setup_commands(README.read_text(encoding="utf-8"))
    index = BLOCKS[sys.argv[1]]
    if index >= len(blocks):
        print(
            f"{README}: `## Set up` has {len(blocks)} ```bash block(s); expected the {sys.argv[1]} one", file=sys.stderr
        )
        return 1
    print(blocks[index])
    return 0


if __name__ == "__main__":
    sys.exit(main())
