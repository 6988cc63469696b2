"""The ``flowrra`` command.

``flowrra worker module:app`` runs an app's workers until SIGTERM or SIGINT, then drains:
running tasks get ``--grace`` seconds to finish (a second signal stops at once).
``--processes N`` (N > 1) and ``--reload`` run that worker in N child processes under a
supervisor (see :mod:`flowrra.supervisor`).
``flowrra dead-letters list|requeue|purge module:app`` works the broker's dead letters.
``flowrra demo`` runs the embedded demo. Plugins add sub-commands through the ``flowrra.cli``
entry-point group: each entry point is a function taking the ``argparse`` sub-parsers object
and adding its parsers, with ``set_defaults(func=handler)`` where ``handler(args) -> int``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from flowrra._version import __version__
from flowrra.plugins import CLI, find_plugin, plugins_in
from flowrra.protocols import NamedQueues
from flowrra.queues import QueueSelection

if TYPE_CHECKING:
    from flowrra.app import Flowrra

__all__ = ["CommandError", "load_app", "main", "serve"]

logger = logging.getLogger("flowrra.cli")


class CommandError(Exception):
    """A user mistake on the command line; printed without a traceback, exit status 2."""


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (``module`` alone means ``module:app``), with the current
    directory importable, as ``uvicorn`` and ``celery`` do."""
    from flowrra.app import Flowrra

    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if not module_name:
        raise CommandError(f"expected 'module:app', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CommandError(f"cannot import module {module_name!r} (from {spec!r})") from exc
        raise
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(target, Flowrra):
        raise CommandError(f"{spec!r} is a {type(target).__name__}, not a Flowrra app")
    return target


async def serve(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    stop_now: Callable[[], Awaitable[None]],
    grace: float,
) -> None:
    """Run ``start()``, wait for SIGTERM/SIGINT, then ``stop()`` within ``grace`` seconds;
    a second signal (or the end of the grace period) cancels it and runs ``stop_now()``.
    What ``flowrra worker`` and plugin commands such as ``flowrra scheduler`` share."""
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    force = asyncio.Event()

    def on_signal(signum: int) -> None:
        if not stop_requested.is_set():
            logger.info(
                "%s received: stopping gracefully (up to %ss); send it again to stop at once",
                signal.Signals(signum).name,
                grace,
            )
            stop_requested.set()
        else:
            logger.warning("second signal: stopping now")
            force.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await start()
        await stop_requested.wait()
        graceful = asyncio.create_task(asyncio.wait_for(stop(), timeout=grace))
        forced = asyncio.create_task(force.wait())
        await asyncio.wait({graceful, forced}, return_when=asyncio.FIRST_COMPLETED)
        if not graceful.done():
            graceful.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await graceful
        if forced.done() or graceful.cancelled() or graceful.exception() is not None:
            await stop_now()
        forced.cancel()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def run_worker(app: Flowrra, grace: float) -> None:
    """Start ``app``, wait for SIGTERM/SIGINT, then stop it gracefully; a second signal
    stops it at once."""

    async def start() -> None:
        await app.start()
        worker = app.worker
        logger.info(
            "worker ready (pid %d%s); queues: %s; tasks: %s",
            os.getpid(),
            ""
            if worker.supervisor_pid is None
            else f", process {worker.process_index} of supervisor {worker.supervisor_pid}",
            worker.selection(),
            ", ".join(sorted(h.name for h in app.registry)) or "none",
        )

    async def stop() -> None:
        # The app's own deadline; serve's grace is the backstop.
        await app.stop(wait=True, timeout=grace)

    async def stop_now() -> None:
        await app.stop(wait=False)

    await serve(start, stop, stop_now, grace + 5.0)
    logger.info("worker stopped after %d tasks", app.worker.processed)


def _supervise(args: argparse.Namespace) -> int:
    from flowrra.supervisor import Supervisor, source_dir

    reload_dirs: list[str] = []
    if args.reload:
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            raise CommandError(
                'worker --reload needs the watchfiles package: pip install "flowrra[reload]"'
            ) from None
        reload_dirs = args.reload_dirs or [source_dir(args.app)]
        for directory in reload_dirs:
            if not os.path.isdir(directory):
                raise CommandError(f"--reload-dir {directory!r} is not a directory")
    supervisor = Supervisor(
        args.command_line, args.processes, grace=args.grace, reload_dirs=reload_dirs
    )
    return supervisor.run()


def _queue_selection(args: argparse.Namespace) -> QueueSelection | None:
    """What ``-Q`` and ``--strict`` select, or None (no ``-Q``: every queue the app knows)."""
    if args.queues is None:
        if args.strict:
            raise CommandError("--strict orders the queues -Q lists: give -Q too")
        return None
    try:
        return QueueSelection.parse(args.queues, strict=args.strict)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"-Q {args.queues}: {exc}") from None


def _cmd_worker(args: argparse.Namespace) -> int:
    from flowrra.supervisor import Supervised

    if args.reload_dirs and not args.reload:
        raise CommandError("--reload-dir needs --reload")
    selection = _queue_selection(args)  # checked here too: before a supervisor starts
    try:
        supervised = Supervised.from_environ()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if supervised is None and (args.processes > 1 or args.reload):
        return _supervise(args)
    if supervised is not None:
        supervised.watch_supervisor()  # before the import: a supervisor gone stops us
    app = load_app(args.app)
    named = isinstance(app.broker, NamedQueues)
    if selection is not None and not named and selection.names != ("default",):
        raise CommandError(
            f"-Q {args.queues}: {type(app.broker).__name__} has only the 'default' queue"
        )
    app.worker.queues = selection
    if supervised is not None:
        app.worker.process_index = supervised.index
        app.worker.supervisor_pid = supervised.supervisor_pid
    if args.concurrency is not None:
        app.worker.io_executor.concurrency = args.concurrency
    if args.cpu_workers is not None:
        app.worker.cpu_executor.concurrency = args.cpu_workers
    if args.threads is not None:
        from flowrra.executors.io import IOExecutor

        io_executor = app.worker.io_executor
        if not isinstance(io_executor, IOExecutor):
            raise SystemExit(f"--threads needs the built-in IOExecutor, not {io_executor!r}")
        io_executor.threads = args.threads
    if args.metrics_port is not None:
        # Imported here: the core does not depend on prometheus-client.
        try:
            import flowrra_prometheus
        except ImportError as exc:
            raise CommandError(
                f"--metrics-port needs the flowrra-prometheus package ({exc}): "
                "pip install flowrra[prometheus]"
            ) from None
        # Child i of a supervisor serves on PORT + i: processes cannot share one port.
        port = args.metrics_port + (supervised.index if supervised is not None else 0)
        try:
            flowrra_prometheus.serve(app, port, args.metrics_host)
        except OSError as exc:
            raise CommandError(
                f"cannot serve metrics on {args.metrics_host}:{port}: {exc}"
            ) from None
        logger.info("metrics on http://%s:%d/metrics", args.metrics_host, port)
    asyncio.run(run_worker(app, args.grace))
    return 0


async def read_status(app: Flowrra) -> dict[str, Any]:
    """Queue depths and live workers of ``app``'s broker, as ``flowrra status`` shows them
    (see :meth:`flowrra.monitor.Monitor.status`)."""
    from flowrra.monitor import Monitor

    broker = app.broker
    await broker.connect()
    try:
        return await Monitor(app).status()
    finally:
        await broker.close()


def _format_status(status: dict[str, Any]) -> str:
    import time

    lines = [f"broker: {status['broker']}", "queues:"]
    lines += [f"  {name:<8} {count:>10,}" for name, count in status["queues"].items()]
    by_queue = status.get("by_queue") or {}
    if len(by_queue) > 1 or any(entry.get("priorities") for entry in by_queue.values()):
        lines.append("by queue (queued / delayed / leased; queued by priority):")
        for name, entry in by_queue.items():
            priorities = ", ".join(f"{p}: {n:,}" for p, n in entry.get("priorities", {}).items())
            lines.append(
                f"  {name:<16} {entry.get('queued', 0):>10,} {entry.get('delayed', 0):>10,} "
                f"{entry.get('leased', 0):>10,}" + (f"   [{priorities}]" if priorities else "")
            )
    workers = status["workers"]
    lines.append(f"workers alive: {len(workers)}")
    now = time.time()
    for w in sorted(workers, key=lambda w: str(w.get("id"))):
        started = w.get("started")
        up = f"{now - started:,.0f}s" if isinstance(started, int | float) else "?"
        supervised = (
            f" process={w.get('process')} supervisor={w.get('supervisor')}"
            if w.get("supervisor") is not None
            else ""
        )
        lines.append(
            f"  {w.get('id')}  host={w.get('host')} pid={w.get('pid')}{supervised} "
            f"concurrency={w.get('concurrency')} busy={w.get('busy')} "
            f"processed={w.get('processed')} up={up}"
            + (f" queues={','.join(w['queues'])}" if w.get("queues") else "")
        )
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    import json

    app = load_app(args.app)
    try:
        status = asyncio.run(read_status(app))
    except Exception as exc:
        print(f"flowrra: error: cannot read the broker's status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else _format_status(status))
    return 0


async def _work_dead_letters(app: Flowrra, args: argparse.Namespace) -> Any:
    from flowrra import dead_letters

    await app.broker.connect()
    await app.backend.connect()
    try:
        if args.action == "list":
            return await dead_letters.listed(app, args.limit)
        ids = None if args.all else args.ids
        if args.action == "requeue":
            return await dead_letters.requeue(app, ids)
        return await dead_letters.purge(app, ids)
    finally:
        await app.broker.close()
        await app.backend.close()


def _format_dead_letter(entry: dict[str, Any]) -> str:
    import datetime

    at = entry.get("at")
    when = (
        datetime.datetime.fromtimestamp(at).isoformat(sep=" ", timespec="seconds")
        if isinstance(at, int | float)
        else "?"
    )
    flags = "" if entry.get("requeueable") else "  (cannot be requeued)"
    return f"{when}  {entry.get('id')}  {entry.get('name')}{flags}\n    {entry.get('reason')}"


async def _cancel(app: Flowrra, ids: Sequence[str], reason: str) -> list[tuple[str, str]]:
    await app.broker.connect()
    await app.backend.connect()
    try:
        return [(task_id, (await app.cancel(task_id, reason)).value) for task_id in ids]
    finally:
        await app.close()


def _cmd_cancel(args: argparse.Namespace) -> int:
    from flowrra.protocols import Cancellation

    app = load_app(args.app)
    if not isinstance(app.broker, Cancellation):
        raise CommandError(f"{type(app.broker).__name__} cannot cancel tasks")
    try:
        outcomes = asyncio.run(_cancel(app, args.ids, args.reason))
    except Exception as exc:
        print(f"flowrra: error: cannot cancel: {exc}", file=sys.stderr)
        return 1
    for task_id, outcome in outcomes:
        print(f"{task_id}  {outcome}")
    return 1 if any(outcome == "unknown" for _, outcome in outcomes) else 0


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    import json

    if args.action != "list" and not args.all and not args.ids:
        raise CommandError(f"dead-letters {args.action}: name task ids, or pass --all")
    app = load_app(args.app)
    try:
        outcome = asyncio.run(_work_dead_letters(app, args))
    except Exception as exc:
        print(f"flowrra: error: cannot {args.action} dead letters: {exc}", file=sys.stderr)
        return 1
    if args.action == "list":
        if args.json:
            print(json.dumps(outcome, indent=2))
        else:
            print(f"{len(outcome)} dead letters (newest first)")
            for entry in outcome:
                print(_format_dead_letter(entry))
    elif args.action == "requeue":
        print(f"requeued {len(outcome)}: {' '.join(outcome)}" if outcome else "requeued 0")
    else:
        print(f"purged {outcome}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from flowrra.demo import run_demo

    if args.log_level in (None, "INFO"):  # the demo prints its own story; keep errors
        logging.getLogger("flowrra").setLevel(logging.ERROR)
    asyncio.run(run_demo())
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowrra", description="Flowrra task queue.")
    parser.add_argument("--version", action="version", version=f"flowrra {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (default INFO; the worker's per-task lines only when asked for)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    worker = commands.add_parser("worker", help="run an app's workers until SIGTERM/SIGINT")
    worker.add_argument("app", help="the app to run, as module:attribute (e.g. tasks:app)")
    worker.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        help="I/O tasks run at once (default: the app's num_workers)",
    )
    worker.add_argument(
        "-Q",
        "--queues",
        metavar="QUEUES",
        help=(
            "the queues to take tasks from, comma-separated, each with an optional :weight "
            "(e.g. emails:3,reports); default: 'default' and every queue the app's tasks "
            "go to"
        ),
    )
    worker.add_argument(
        "--strict",
        action="store_true",
        help="empty the queues in the order -Q lists them (default: weighted turns)",
    )
    worker.add_argument(
        "--cpu-workers",
        type=_positive_int,
        help="processes for CPU-bound tasks (default: the app's cpu_workers)",
    )
    worker.add_argument(
        "--threads",
        type=_positive_int,
        help="threads for plain def tasks (default: the app's threads, else the concurrency)",
    )
    worker.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help=(
            "log level (default: INFO for the worker's own lines, WARNING for each task's: "
            "retries and failures; INFO adds a line per successful task, DEBUG its start)"
        ),
    )
    worker.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines, or one JSON object per line (default text)",
    )
    worker.add_argument(
        "--no-configure-logging",
        dest="configure_logging",
        action="store_false",
        help="leave logging as the app configured it (no handler, no level is set)",
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running tasks get to finish after SIGTERM (default 30)",
    )
    worker.add_argument(
        "--metrics-port",
        type=_positive_int,
        metavar="PORT",
        help=(
            "serve Prometheus metrics on this port's /metrics (needs flowrra[prometheus]); "
            "with --processes N, process i serves on PORT + i"
        ),
    )
    worker.add_argument(
        "--metrics-host",
        default="0.0.0.0",  # scraped from another host
        metavar="HOST",
        help="the address --metrics-port listens on (default 0.0.0.0: every interface)",
    )
    worker.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        metavar="N",
        help=(
            "run N worker processes under a supervisor that restarts any that dies "
            "(default 1: this process is the worker)"
        ),
    )
    worker.add_argument(
        "--reload",
        action="store_true",
        help=(
            "development: restart the worker processes when a .py file changes "
            '(needs watchfiles: pip install "flowrra[reload]")'
        ),
    )
    worker.add_argument(
        "--reload-dir",
        action="append",
        dest="reload_dirs",
        metavar="DIR",
        help=(
            "a directory --reload watches, instead of the app's package or module "
            "directory (repeatable)"
        ),
    )
    worker.set_defaults(func=_cmd_worker)

    status = commands.add_parser("status", help="print queue depths and live workers")
    status.add_argument("app", help="the app, as module:attribute (e.g. tasks:app)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_cmd_status)

    cancel = commands.add_parser(
        "cancel", help="cancel tasks: queued ones never run, running ones are interrupted"
    )
    cancel.add_argument("app", help="the app, as module:attribute (e.g. tasks:app)")
    cancel.add_argument("ids", nargs="+", metavar="TASK_ID", help="the tasks to cancel")
    cancel.add_argument(
        "--reason",
        default="cancelled from the command line",
        help="recorded in each task's error (TaskCancelled: REASON)",
    )
    cancel.set_defaults(func=_cmd_cancel)

    dead = commands.add_parser(
        "dead-letters", help="list, requeue or purge the dead letters of an app's broker"
    )
    dead_actions = dead.add_subparsers(dest="action", metavar="ACTION", required=True)
    dead_list = dead_actions.add_parser("list", help="print the newest dead letters")
    dead_list.add_argument("app", help="the app, as module:attribute (e.g. tasks:app)")
    dead_list.add_argument(
        "--limit", type=_positive_int, default=100, help="entries to print (default 100)"
    )
    dead_list.add_argument("--json", action="store_true", help="print JSON")
    for action, verb in (("requeue", "queue again, due now,"), ("purge", "delete")):
        parser_ = dead_actions.add_parser(
            action, help=f"{verb} the dead letters of the tasks named (or --all)"
        )
        parser_.add_argument("app", help="the app, as module:attribute (e.g. tasks:app)")
        parser_.add_argument("ids", nargs="*", metavar="TASK_ID", help="task ids")
        parser_.add_argument("--all", action="store_true", help="every dead letter")
    dead.set_defaults(func=_cmd_dead_letters)

    demo = commands.add_parser("demo", help="run the embedded demo")
    demo.set_defaults(func=_cmd_demo)

    for name in sorted(plugins_in(CLI)):
        try:
            find_plugin(CLI, name)(commands)
        except Exception as exc:
            logger.warning("the %r commands are unavailable: %s", name, exc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # What a supervisor passes on to its children unchanged (flowrra worker --processes).
    args.command_line = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "configure_logging", True):
        from flowrra.logs import configure_logging

        level = args.log_level or "INFO"
        # A line per task costs more than the task (the engine's work per task x2.6): the
        # flowrra.task logger reports successes only when a level is asked for.
        configure_logging(
            level,
            getattr(args, "log_format", "text"),
            task_level=args.log_level or "WARNING",
        )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except CommandError as exc:
        print(f"flowrra: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
