"""`make lint` (what CI runs) checks what a developer is asked to keep formatted: every
Python file of the repository."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_lint_checks_the_format_of_every_python_file() -> None:
    """bench/, faults/ and deploy/gunicorn.conf.py were left out: a change there that was not
    formatted passed CI."""
    planned = subprocess.run(
        ["make", "-n", "lint"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in planned.splitlines() if "ruff format --check" in line)
    checked = [ROOT / word for word in shlex.split(line.split("--check", 1)[1])]
    sources = [
        path
        for path in ROOT.rglob("*.py")
        if not {".venv", ".git", "build"} & set(path.relative_to(ROOT).parts)
    ]
    left_out = [
        str(path.relative_to(ROOT))
        for path in sources
        if not any(path == where or where in path.parents for where in checked)
    ]
    assert sorted({path.split("/")[0] for path in left_out}) == []
