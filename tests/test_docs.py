"""The documentation reads in any editor and diff: prose lines of at most 100 characters."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
WIDTH = 100


def long_prose_lines(text: str) -> list[int]:
    """Numbers of the lines over WIDTH outside code blocks and tables (which may not wrap)."""
    found, in_code = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if not in_code and not line.startswith("|") and len(line) > WIDTH:
            found.append(number)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_prose_lines_are_at_most_100_characters(doc: Path) -> None:
    assert long_prose_lines(doc.read_text()) == []
