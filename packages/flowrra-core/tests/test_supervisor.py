"""`flowrra worker --processes N` and `--reload`: a supervisor and its children, as real
processes sent real signals (the app: tests/apps/supervised_app.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowrra.supervisor import ENV_VAR, Backoff, Supervised, describe_exit

APPS = Path(__file__).parent / "apps"
FLOWRRA = str(Path(sys.executable).with_name("flowrra"))


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped yet counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(predicate: Callable[[], bool], what: str, output: Callable[[], str]) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{output()}")
        time.sleep(0.05)


class Supervisor:
    """``flowrra worker supervised_app:app --processes N ...`` with its output in a file;
    what its children did is in ``work`` (ready-<pid> files, the ``done`` lines)."""

    def __init__(self, work: Path, *args: str, cwd: Path = APPS, **env: str) -> None:
        self.work = work
        self.log = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [FLOWRRA, "worker", "supervised_app:app", *args],
            cwd=cwd,
            env={**os.environ, "SUPERVISED_DIR": str(work), **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def ready(self, version: str = "1") -> list[int]:
        """The pids of the children that started (with that ``VERSION`` of the app)."""
        return sorted(
            int(path.name.removeprefix("ready-"))
            for path in self.work.glob("ready-*")
            if path.read_text() == version
        )

    def wait_ready(self, count: int, version: str = "1") -> list[int]:
        wait_until(
            lambda: len(self.ready(version)) >= count,
            f"{count} ready processes",
            self.output,
        )
        return self.ready(version)

    def done(self) -> list[tuple[int, int]]:
        path = self.work / "done"
        if not path.exists():
            return []
        return [
            (int(pid), int(i))
            for pid, i in (line.split() for line in path.read_text().split("\n") if line)
        ]

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the supervisor did not exit:\n{self.output()}") from None

    def stop(self) -> None:
        """Whatever the test did: no process of it is left behind."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.ready() + self.ready("2"):
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    started: list[Supervisor] = []

    def start(*args: str, **kwargs: object) -> Supervisor:
        work = tmp_path / f"work{len(started)}"
        work.mkdir()
        supervisor = Supervisor(work, *args, **kwargs)  # type: ignore[arg-type]
        started.append(supervisor)
        return supervisor

    yield start
    for supervisor in started:
        supervisor.stop()


def test_two_processes_each_run_tasks_and_drain_on_sigterm(
    supervise: Callable[..., Supervisor],
) -> None:
    run = supervise("--processes", "2", SUPERVISED_COUNT="10")
    first, second = run.wait_ready(2)
    assert run.proc.pid not in (first, second)  # real children, not the command itself
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 0, run.output()
    done = run.done()
    # Each child ran all of its own queued work: the drain finished it.
    assert sorted(i for pid, i in done if pid == first) == list(range(10)), run.output()
    assert sorted(i for pid, i in done if pid == second) == list(range(10)), run.output()
    output = run.output()
    assert f"process 0 of supervisor {run.proc.pid}" in output
    assert f"process 1 of supervisor {run.proc.pid}" in output
    assert output.count("worker stopped after 10 tasks") == 2, output
    assert "every process exited cleanly" in output
    assert gone(first) and gone(second)


def test_a_killed_process_is_restarted_and_the_log_says_why(
    supervise: Callable[..., Supervisor],
) -> None:
    run = supervise("--processes", "2", SUPERVISED_COUNT="0")
    victim, survivor = run.wait_ready(2)
    os.kill(victim, signal.SIGKILL)
    pids = run.wait_ready(3)
    assert survivor in pids and victim in pids  # a third, new process
    output = run.output()
    assert f"(pid {victim}) was killed by SIGKILL" in output
    assert "restarting it in 1.0s" in output
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 0, run.output()
    assert all(gone(pid) for pid in run.ready())


def test_second_sigint_stops_every_process_at_once(supervise: Callable[..., Supervisor]) -> None:
    run = supervise("--processes", "2", SUPERVISED_COUNT="200")
    run.wait_ready(2)
    run.proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    run.proc.send_signal(signal.SIGINT)
    run.wait_exit(timeout=30)
    output = run.output()
    assert "second signal (SIGINT): stopping the processes now" in output
    assert output.count("second signal: stopping now") == 2, output  # each child's hard stop
    assert len(run.done()) < 400  # 20 s of work each: not drained
    assert all(gone(pid) for pid in run.ready())


def test_the_children_of_a_killed_supervisor_drain_and_exit(
    supervise: Callable[..., Supervisor],
) -> None:
    run = supervise("--processes", "2", SUPERVISED_COUNT="10")
    first, second = run.wait_ready(2)
    run.proc.kill()
    run.proc.wait()
    wait_until(lambda: gone(first) and gone(second), "the orphans to exit", run.output)
    output = run.output()
    assert output.count(f"the supervisor (pid {run.proc.pid}) is gone: stopping") == 2, output
    assert output.count("worker stopped after 10 tasks") == 2, output  # drained, not killed
    assert len(run.done()) == 20


def test_one_process_is_the_command_itself(supervise: Callable[..., Supervisor]) -> None:
    run = supervise("--processes", "1", SUPERVISED_COUNT="0")
    assert run.wait_ready(1) == [run.proc.pid]  # no supervisor, no child
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert "supervisor" not in run.output()


def test_reload_restarts_the_processes_with_the_new_code(
    supervise: Callable[..., Supervisor], tmp_path: Path
) -> None:
    pytest.importorskip("watchfiles")
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(APPS / "supervised_app.py", source)
    run = supervise("--processes", "2", "--reload", cwd=source, SUPERVISED_COUNT="0")
    old = run.wait_ready(2)
    assert f"reloading on changes in {source}" in run.output()
    app = source / "supervised_app.py"
    app.write_text(app.read_text().replace("VERSION = 1", "VERSION = 2"))
    new = run.wait_ready(2, version="2")
    assert not set(old) & set(new)
    wait_until(lambda: all(gone(pid) for pid in old), "the old processes to exit", run.output)
    assert "supervised_app.py changed: restarting 2 processes" in run.output()
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 0, run.output()


def test_reload_without_watchfiles_names_the_extra(tmp_path: Path) -> None:
    stub = tmp_path / "nowatch" / "watchfiles"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('not installed')\n")
    path = os.pathsep.join(filter(None, [str(stub.parent), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [FLOWRRA, "worker", "supervised_app:app", "--reload"],
        cwd=APPS,
        env={**os.environ, "PYTHONPATH": path, "SUPERVISED_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert 'pip install "flowrra[reload]"' in done.stderr


def test_reload_dir_mistakes_are_command_errors(tmp_path: Path) -> None:
    env = {**os.environ, "SUPERVISED_DIR": str(tmp_path)}
    for args, message in (
        (["--reload-dir", str(tmp_path)], "--reload-dir needs --reload"),
        (["--reload", "--reload-dir", str(tmp_path / "nope")], "is not a directory"),
    ):
        done = subprocess.run(
            [FLOWRRA, "worker", "supervised_app:app", *args],
            cwd=APPS,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if "watchfiles" in done.stderr:
            pytest.skip("watchfiles is not installed")
        assert done.returncode == 2 and message in done.stderr, done.stderr


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(first=1.0, cap=30.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_exit_descriptions_name_the_signal() -> None:
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


def test_the_supervised_variable_is_read_once_and_checked() -> None:
    environ = {ENV_VAR: "1,4242,7"}
    assert Supervised.from_environ(environ) == Supervised(1, 4242, 7)
    assert environ == {}  # a worker the tasks start is not a child
    assert Supervised.from_environ(environ) is None
    with pytest.raises(ValueError, match=ENV_VAR):
        Supervised.from_environ({ENV_VAR: "one,two"})
