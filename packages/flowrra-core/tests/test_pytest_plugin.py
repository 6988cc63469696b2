"""The pytest plugin in a project of its own: found through its entry point, in
pytest-asyncio's strict mode (no ``asyncio_mode = "auto"``), with the default
``flowrra_app``. (``user_suite/`` is a project that overrides it, in auto mode.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_TEST = """
import pytest

from flowrra import Flowrra, TaskStatus


def test_eager_in_a_sync_test(flowrra_eager: Flowrra) -> None:
    @flowrra_eager.task()
    def shout(word: str) -> str:
        return word.upper()

    task_id = shout.delay("hi")
    assert flowrra_eager.wait_for_result_sync(task_id).result == "HI"


@pytest.mark.asyncio
async def test_worker_and_join(flowrra_worker: Flowrra, flowrra_join) -> None:
    done = []

    @flowrra_worker.task()
    async def note(n: int) -> None:
        done.append(n)

    for n in range(20):
        await note.submit(n)
    await flowrra_join(timeout=10)
    assert sorted(done) == list(range(20))


def test_each_test_gets_a_fresh_app(flowrra_app: Flowrra) -> None:
    assert len(flowrra_app.registry) == 0 and not flowrra_app.is_running
"""


def test_the_fixtures_in_a_strict_mode_project(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = strict\n")
    (tmp_path / "test_project.py").write_text(PROJECT_TEST)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
