"""Task handles keep their function's signature: mypy catches a wrong argument at the
call site of `handle.submit(...)` and of `handle.delay(...)`."""

from __future__ import annotations

from pathlib import Path

from mypy import api

SNIPPET = """
from flowrra import Flowrra

app = Flowrra()

@app.task()
async def send_email(to: str, retries: int = 1) -> dict[str, str]:
    return {"to": to}

async def main() -> None:
    ok: str = await send_email.submit("a@example.com", retries=2)
    ok2: str = await send_email.with_options(priority=1, delay=2).submit("b@example.com")
    await send_email.submit(42)
    await send_email.submit("c@example.com", retry=3)
    reveal_type(send_email)

def view() -> None:
    ok: str = send_email.delay("a@example.com", retries=2)
    ok2: str = send_email.with_options(priority=1).delay("b@example.com")
    send_email.delay(42)
"""


def test_mypy_checks_submit_arguments(tmp_path: Path) -> None:
    source = tmp_path / "snippet.py"
    source.write_text(SNIPPET)
    stdout, stderr, status = api.run(["--strict", "--no-incremental", str(source)])
    assert status == 1, stdout + stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 3, stdout
    assert 'Argument 1 to "submit" of "TaskHandle" has incompatible type "int"' in errors[0]
    assert 'Unexpected keyword argument "retry"' in errors[1]
    assert 'Argument 1 to "delay" of "TaskHandle" has incompatible type "int"' in errors[2]
    assert "TaskHandle[[to: str, retries: int =]" in stdout.replace("builtins.", "")
