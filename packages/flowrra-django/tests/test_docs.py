"""Every snippet of docs/django.md is exercised: each Python block is a piece of the served
project (or of a test) as it is, in the file its first line names when it names one; each
command is one the served tests run."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path

import pytest
from test_served import SCHEDULER, STATUS, WORKER

HERE = Path(__file__).parent
PAGE = HERE.parents[2] / "docs" / "django.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
PYTHON = [code for language, code in BLOCKS if language == "python"]
COMMANDS = [
    line for language, code in BLOCKS if language == "bash" for line in code.splitlines() if line
]


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in textwrap.dedent(text).strip("\n").splitlines()]


def _contains(text: str, snippet: list[str]) -> bool:
    """Whether ``snippet``'s lines are consecutive lines of ``text``, at one indentation."""
    lines = [line.rstrip() for line in text.splitlines()]
    for start in range(len(lines) - len(snippet) + 1):
        if _lines("\n".join(lines[start : start + len(snippet)])) == snippet:
            return True
    return False


def test_the_page_has_snippets() -> None:
    assert len(PYTHON) >= 10 and len(COMMANDS) >= 3


@pytest.mark.parametrize("code", PYTHON, ids=[c.splitlines()[0][:40] for c in PYTHON])
def test_each_python_snippet_is_in_the_project(code: str) -> None:
    lines = code.rstrip("\n").splitlines()
    named = re.fullmatch(r"# ([\w/]+\.py)", lines[0])
    if named:
        files = [HERE / "project" / named.group(1)]
        lines = lines[1:]
    else:
        files = sorted(HERE.rglob("*.py"))
    snippet = _lines("\n".join(lines))
    assert any(_contains(f.read_text(), snippet) for f in files), (
        f"not in {[str(f.relative_to(HERE)) for f in files]}:\n" + "\n".join(snippet)
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_is_run_by_the_served_tests(command: str) -> None:
    argv = shlex.split(command)
    assert any(
        argv[: len(run)] == run or run[: len(argv)] == argv for run in (WORKER, STATUS, SCHEDULER)
    ), command
