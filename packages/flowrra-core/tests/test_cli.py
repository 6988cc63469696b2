"""The `flowrra` console script, run as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import flowrra

APPS = Path(__file__).parent / "apps"
# The console script installed beside the interpreter running the tests.
FLOWRRA = str(Path(sys.executable).with_name("flowrra"))


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([FLOWRRA, *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"flowrra {flowrra.__version__}"


def test_bad_app_path_is_a_clear_error() -> None:
    for spec, message in (
        ("no_such_module:app", "cannot import module"),
        ("drain_app:missing", "has no attribute"),
        ("cpu_tasks:whoami", "not a Flowrra app"),
    ):
        done = run("worker", spec, cwd=APPS, env={**os.environ, "DRAIN_OUT": "/dev/null"})
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr


def start_drain_worker(out: Path, count: int, *args: str) -> subprocess.Popen[str]:
    """Start `flowrra worker drain_app:app` and return once it has queued its work."""
    ready = Path(str(out) + ".ready")
    env = {**os.environ, "DRAIN_OUT": str(out), "DRAIN_COUNT": str(count)}
    proc = subprocess.Popen(
        [FLOWRRA, "worker", "drain_app:app", *args],
        cwd=APPS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"worker never became ready:\n{output}")
        time.sleep(0.02)
    return proc


def test_worker_drains_in_flight_tasks_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "done.txt"
    proc = start_drain_worker(out, 10, "--grace", "30")
    try:
        proc.send_signal(signal.SIGTERM)
        done_at_signal = len(out.read_text().split()) if out.exists() else 0
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert done_at_signal < 10, "the test must signal before the work is done"
    assert sorted(int(x) for x in out.read_text().split()) == list(range(10)), output
    assert "SIGTERM received" in output


def test_second_signal_stops_at_once(tmp_path: Path) -> None:
    out = tmp_path / "done.txt"
    proc = start_drain_worker(out, 200)
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "second signal" in output
    assert len(out.read_text().split()) < 200


def test_demo_runs_everything_it_promises() -> None:
    done = run("demo")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "count_primes" in text and "ran in pid" in text
    assert "will retry" in text and "flaky_payment: success after 2 retries" in text
    assert "broken_export: failed" in text
    assert "started in order: priority 0, priority 1, priority 5, priority 10" in text


def test_python_dash_m_and_plugin_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowrra", "plugin-hello", "there"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello there"
