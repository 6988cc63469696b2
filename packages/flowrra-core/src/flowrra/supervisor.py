"""Several worker processes under one supervisor: ``flowrra worker --processes N``, ``--reload``.

The supervisor runs no task and never imports the app. It starts N children, each
``python -m flowrra`` with the command line it was given, and tells each, through the
``FLOWRRA_SUPERVISED`` environment variable, that it is child *i* of this supervisor: a
child reads (and removes) the variable, ignores ``--processes`` and ``--reload`` and runs
today's single-process worker (see :class:`Supervised`). Every other option reaches the
children unchanged, new ones included.

What the supervisor does:

- **Restarts** a child that dies (a non-zero exit status, or killed by a signal) after
  :data:`BACKOFF`: 1 s, then 2, 4, 8, 16 and at most 30 s between attempts; a child that
  ran 30 s counts as stable, and its next restart waits 1 s again. Each death is logged on
  ``flowrra.supervisor`` with its exit status or signal name. A child that exits 0 on its
  own (someone sent it SIGTERM) or with status 2 (a command-line error, which a restart
  would repeat) is not restarted.
- **Forwards signals**: SIGTERM or SIGINT goes to every child, which drains as a single
  worker does; the second goes on too, and each child stops at once. Children run in
  process groups of their own, so a terminal's Ctrl-C reaches them once, through here.
  If children are still up ``grace`` + 15 s after the first signal, they are SIGKILLed.
- **Exits** when every child has, with status 0 if each exited cleanly (status 0, or
  killed by the signal it was forwarded before it could handle it), else 1.
- **Leaves no orphans**: each child watches a pipe whose only writer is the supervisor;
  when the supervisor is gone, even SIGKILLed, the pipe closes and the child SIGTERMs
  itself: it drains and exits.
- **Reloads** (``--reload``, with ``watchfiles``): when a ``.py`` file changes under the
  watched directories, each child gets SIGTERM, then after :data:`RELOAD_GRACE` seconds a
  second SIGTERM (its hard stop), then SIGKILL, and a new one starts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BACKOFF",
    "ENV_VAR",
    "RELOAD_GRACE",
    "Backoff",
    "Supervised",
    "Supervisor",
    "describe_exit",
    "source_dir",
]

logger = logging.getLogger("flowrra.supervisor")

#: The environment variable that makes ``flowrra worker`` a supervised child:
#: ``"<index>,<supervisor pid>,<pipe fd>"``.
ENV_VAR = "FLOWRRA_SUPERVISED"
#: Exit status of a command-line error (``CommandError``, argparse): not worth a restart.
EXIT_USAGE = 2
#: Seconds a child gets to drain when ``--reload`` restarts it, before its hard stop.
RELOAD_GRACE = 5.0
#: Seconds after the first signal's ``grace`` before children still up are SIGKILLed.
BACKSTOP = 15.0


@dataclass(frozen=True)
class Backoff:
    """How long to wait before restarting a child that died: ``first`` seconds after its
    first death, doubled after each further one, at most ``cap``; a child that ran
    ``stable`` seconds before it died starts again from ``first``."""

    first: float = 1.0
    cap: float = 30.0
    stable: float = 30.0

    def delay(self, failures: int) -> float:
        """The wait before restart number ``failures`` (1-based) of a run of deaths."""
        return float(min(self.first * 2 ** (failures - 1), self.cap))


BACKOFF = Backoff()


def describe_exit(returncode: int) -> str:
    """``"exited with status 3"`` or ``"was killed by SIGKILL"``, for the logs."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


def source_dir(app_spec: str) -> str:
    """What ``--reload`` watches by default for ``module:app``: the directory of its
    top-level package (or of the module, when it is not in one), found without importing
    it; the current directory when it cannot be found."""
    top = app_spec.partition(":")[0].split(".")[0]
    cwd = os.getcwd()
    if not top:
        return cwd
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)  # as load_app (and python -m) make it importable
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    finally:
        if added:
            sys.path.remove(cwd)
    if spec is None:
        return cwd
    if spec.submodule_search_locations:
        return os.path.abspath(next(iter(spec.submodule_search_locations)))
    if spec.origin and os.path.isfile(spec.origin):
        return os.path.dirname(os.path.abspath(spec.origin))
    return cwd


@dataclass(frozen=True)
class Supervised:
    """What a child knows of its supervisor: its own index (0 to N-1), the supervisor's
    pid, and the read end of the pipe that closes when the supervisor is gone."""

    index: int
    supervisor_pid: int
    pipe_fd: int

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] = os.environ) -> Supervised | None:
        """This process's supervision, read from (and removed from) ``environ``, so that a
        ``flowrra worker`` the tasks may start is not mistaken for a child; ``None`` when
        this process is not supervised."""
        value = environ.pop(ENV_VAR, None)
        if value is None:
            return None
        try:
            index, supervisor_pid, pipe_fd = (int(part) for part in value.split(","))
        except ValueError:
            raise ValueError(
                f"{ENV_VAR}={value!r}: expected '<index>,<supervisor pid>,<fd>' "
                "(it is set by flowrra worker --processes, not by hand)"
            ) from None
        return cls(index, supervisor_pid, pipe_fd)

    def watch_supervisor(self) -> None:
        """SIGTERM this process (its worker drains) when the supervisor is gone, from a
        daemon thread blocked on the pipe: nothing on the worker's loop, nothing per task."""
        threading.Thread(
            target=self._wait_for_supervisor, name="flowrra-supervisor-watch", daemon=True
        ).start()

    def _wait_for_supervisor(self) -> None:
        try:
            while os.read(self.pipe_fd, 64):  # the supervisor never writes: b"" is its end
                pass
        except OSError:
            pass
        logger.warning("the supervisor (pid %d) is gone: stopping", self.supervisor_pid)
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(eq=False)
class _Child:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    failures: int = 0
    returncode: int | None = None
    reloading: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    """Runs ``processes`` children ``python -m flowrra *argv``, as the module's docstring
    says; ``run()`` returns the exit status. ``reload_dirs`` (not empty) turns on
    ``--reload``; ``grace`` is the children's own ``--grace``."""

    def __init__(
        self,
        argv: Sequence[str],
        processes: int,
        *,
        grace: float = 30.0,
        reload_dirs: Sequence[str] = (),
        backoff: Backoff = BACKOFF,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be an int >= 1, got {processes!r}")
        self.argv = list(argv)
        self.processes = processes
        self.grace = grace
        self.reload_dirs = [os.path.abspath(d) for d in reload_dirs]
        self.backoff = backoff
        self.environ = dict(os.environ if environ is None else environ)
        self._children: list[_Child] = []
        self._signals = 0
        self._stopping: asyncio.Event
        self._read_fd = self._write_fd = -1

    def run(self) -> int:
        """Start the children and supervise them until every one has exited."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._children = [_Child(index) for index in range(self.processes)]
        self._read_fd, self._write_fd = os.pipe()  # neither end is inherited unless passed
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        logger.info(
            "supervisor (pid %d) starting %d worker processes%s",
            os.getpid(),
            self.processes,
            f"; reloading on changes in {', '.join(self.reload_dirs)}" if self.reload_dirs else "",
        )
        watcher = asyncio.create_task(self._watch()) if self.reload_dirs else None
        try:
            await asyncio.gather(*(self._keep(child) for child in self._children))
        finally:
            self._stopping.set()
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            for child in self._children:
                if child.alive:  # only when something above failed: no orphans
                    self._send(child, signal.SIGKILL)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            os.close(self._read_fd)
            os.close(self._write_fd)
        clean = all(self._exited_cleanly(child) for child in self._children)
        logger.info(
            "supervisor stopped: %s",
            "every process exited cleanly" if clean else "not every process exited cleanly",
        )
        return 0 if clean else 1

    def _exited_cleanly(self, child: _Child) -> bool:
        code = child.returncode
        # Killed by the forwarded signal itself: it stopped before it could handle it.
        return code == 0 or (self._signals > 0 and code in (-signal.SIGTERM, -signal.SIGINT))

    # -- the children ----------------------------------------------------------------------

    async def _spawn(self, child: _Child) -> asyncio.subprocess.Process:
        env = {**self.environ, ENV_VAR: f"{child.index},{os.getpid()},{self._read_fd}"}
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flowrra",
            *self.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            pass_fds=(self._read_fd,),
            process_group=0,  # a terminal's Ctrl-C reaches it once: forwarded by us
        )

    async def _keep(self, child: _Child) -> None:
        """Run ``child``, restarting it when it dies, until the supervisor stops."""
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            proc = child.proc = await self._spawn(child)
            child.started = loop.time()
            if self._stopping.is_set():  # a signal came while it was being started
                self._send(child, signal.SIGTERM)
            child.returncode = await proc.wait()
            if self._stopping.is_set():
                logger.info(
                    "process %d (pid %d) %s", child.index, proc.pid, describe_exit(child.returncode)
                )
                return
            if child.reloading:
                child.reloading, child.failures = False, 0
                continue
            if child.returncode == 0:
                logger.info(
                    "process %d (pid %d) exited cleanly on its own: not restarted",
                    child.index,
                    proc.pid,
                )
                return
            if child.returncode == EXIT_USAGE:
                logger.error(
                    "process %d (pid %d) exited with status 2, a command-line error: not restarted",
                    child.index,
                    proc.pid,
                )
                return
            ran = loop.time() - child.started
            child.failures = 1 if ran >= self.backoff.stable else child.failures + 1
            delay = self.backoff.delay(child.failures)
            logger.error(
                "process %d (pid %d) %s after %.1fs; restarting it in %.1fs",
                child.index,
                proc.pid,
                describe_exit(child.returncode),
                ran,
                delay,
            )
            child.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wake.wait(), delay)

    def _send(self, child: _Child, signum: int) -> None:
        if child.proc is not None and child.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signum)

    # -- signals ---------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            logger.info(
                "%s received: stopping %d processes gracefully (up to %ss); "
                "send it again to stop them at once",
                name,
                sum(child.alive for child in self._children),
                self.grace,
            )
            self._stopping.set()
            asyncio.get_running_loop().call_later(self.grace + BACKSTOP, self._kill_all)
        else:
            logger.warning("second signal (%s): stopping the processes now", name)
        for child in self._children:
            self._send(child, signum)
            child.wake.set()

    def _kill_all(self) -> None:
        for child in self._children:
            if child.alive:
                logger.error(
                    "process %d (pid %d) still running %.0fs after the signal: SIGKILL",
                    child.index,
                    child.proc.pid if child.proc else -1,
                    self.grace + BACKSTOP,
                )
                self._send(child, signal.SIGKILL)

    # -- --reload --------------------------------------------------------------------------

    async def _watch(self) -> None:
        import watchfiles

        async for changes in watchfiles.awatch(
            *self.reload_dirs, watch_filter=watchfiles.PythonFilter(), stop_event=self._stopping
        ):
            if self._stopping.is_set():
                return
            logger.info("%s changed: restarting %d processes", _changed(changes), self.processes)
            await asyncio.gather(*(self._restart(child) for child in self._children))

    async def _restart(self, child: _Child) -> None:
        """SIGTERM ``child`` (it drains), a second SIGTERM after ``RELOAD_GRACE`` seconds
        (its hard stop), SIGKILL after as long again; ``_keep`` starts the new one."""
        child.failures = 0
        proc = child.proc
        if proc is None or proc.returncode is not None:
            child.wake.set()  # waiting out a backoff: the new code may well start
            return
        child.reloading = True
        for then in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
            if self._stopping.is_set():
                return
            self._send(child, then)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), RELOAD_GRACE)
                return


def _changed(changes: Iterable[tuple[object, str]]) -> str:
    """The first few files of a watchfiles batch, relative to the current directory."""
    paths = sorted({os.path.relpath(path) for _, path in changes})
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
