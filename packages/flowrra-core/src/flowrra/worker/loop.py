"""The worker loop: :class:`Worker` composes the parts and runs the slots that join them.

Concurrency comes from *slots*: ``io_executor.concurrency`` coroutines each take one
message at a time from the :class:`~flowrra.worker.reserving.Reserver` and hand it to the
:class:`~flowrra.worker.running.Runner`. A slot whose task does not suspend goes straight
on to the next message. A CPU-bound message is handed to one of
``cpu_executor.concurrency`` *lanes* through a small queue, so CPU work never holds an I/O
slot while it runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from flowrra.clock import SYSTEM_CLOCK, Clock
from flowrra.events import EventHub
from flowrra.limits import limits_of
from flowrra.middleware import MiddlewareChain
from flowrra.protocols import (
    Broker,
    Cancellation,
    Executor,
    LimitedTasks,
    NamedQueues,
    ResultBackend,
)
from flowrra.queues import QueueSelection, selection_for
from flowrra.registry import TaskHandle, TaskRegistry
from flowrra.task import TaskMessage, TaskResult
from flowrra.worker._cancel import reraise_if_cancelled
from flowrra.worker.draining import Drainer
from flowrra.worker.keepalive import Heartbeat, Leases
from flowrra.worker.reserving import Reserver
from flowrra.worker.running import Runner
from flowrra.worker.settling import Settler

__all__ = ["Worker"]

_HOST = socket.gethostname()


class Worker:
    """Runs the tasks of ``registry`` that ``broker`` delivers; records to ``backend``.

    ``clock`` decides when: retries' due times, lease renewals, heartbeats. ``middleware``
    hooks around each attempt and each dead-lettered message (the app's chain)."""

    def __init__(
        self,
        registry: TaskRegistry,
        broker: Broker,
        backend: ResultBackend,
        io_executor: Executor,
        cpu_executor: Executor,
        events: EventHub,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        middleware: MiddlewareChain | None = None,
    ) -> None:
        self.registry = registry
        self.broker = broker
        self.backend = backend
        self.io_executor = io_executor
        self.cpu_executor = cpu_executor
        self.events = events
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        #: Unique per worker process: host, pid and a random suffix.
        self.worker_id = f"{_HOST}-{os.getpid()}-{os.urandom(3).hex()}"
        self.started_at: float | None = None
        #: Set in a child of ``flowrra worker --processes``: its index and its supervisor's
        #: pid, which the heartbeat announces (``process``, ``supervisor``).
        self.process_index: int | None = None
        self.supervisor_pid: int | None = None
        self.clock = clock
        self.leases = Leases(broker, clock)
        self.reserver = Reserver(broker, self.leases.held)
        self.middleware = middleware if middleware is not None else MiddlewareChain()
        self.settler = Settler(broker, backend, events, self.leases.held, clock, self.middleware)
        self.runner = Runner(backend, events, self.settler, self.middleware)
        self.heartbeat = Heartbeat(broker, self.worker_id, self.describe, clock)
        self.drainer = Drainer(broker, self.reserver, self.settler, self.leases, self.heartbeat)
        #: The queues it takes from (``flowrra worker -Q``); ``None``: the default queue
        #: and every queue a registered task goes to.
        self.queues: QueueSelection | None = None
        self._running = False
        self._slots: list[asyncio.Task[None]] = []
        self._lanes: list[asyncio.Task[None]] = []
        #: Hears of cancelled tasks (a broker that is a Cancellation), while running.
        self._cancel_watch: asyncio.Task[None] | None = None
        self._cpu_queue: asyncio.Queue[tuple[TaskHandle[Any, Any], TaskMessage]]

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def processed(self) -> int:
        """Tasks settled (succeeded, failed for good, or sent to retry) since start."""
        return self.settler.processed

    async def start(self) -> None:
        if self._running:
            return
        self.runner.loop = asyncio.get_running_loop()
        self._consume()
        if isinstance(self.broker, Cancellation):
            self._cancel_watch = asyncio.create_task(
                self.broker.watch_cancels(self.runner.cancels.cancelled),
                name="flowrra-cancel-watch",
            )
        self._limit()
        await self.io_executor.start()
        await self.cpu_executor.start()
        slots = self.io_executor.concurrency
        self.reserver.start(slots, self.poll_interval)
        self.settler.start(slots)
        self._cpu_queue = asyncio.Queue(self.cpu_executor.concurrency)
        self._slots = [
            asyncio.create_task(self._io_slot(), name=f"flowrra-slot-{n}") for n in range(slots)
        ]
        self._lanes = [
            asyncio.create_task(self._cpu_lane(), name=f"flowrra-cpu-lane-{n}")
            for n in range(self.cpu_executor.concurrency)
        ]
        self.leases.start()
        self.started_at = time.time()
        self.heartbeat.start(self.heartbeat_interval)
        self._running = True

    async def stop(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop; see :mod:`flowrra.worker.draining` for what happens to queued and running
        tasks."""
        if not self._running:
            return
        await self.drainer.drain(
            self._slots, self._lanes, self._cpu_queue, wait=wait, timeout=timeout
        )
        self._slots, self._lanes = [], []
        watch, self._cancel_watch = self._cancel_watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        await self.io_executor.stop(wait)
        await self.cpu_executor.stop(wait)
        self._running = False

    def selection(self) -> QueueSelection:
        """The queues this worker takes from: :attr:`queues`, or the default queue and
        every queue a registered task goes to."""
        if self.queues is not None:
            return self.queues
        return selection_for(None, (handle.queue for handle in self.registry))

    def _consume(self) -> None:
        selection = self.selection()
        if isinstance(self.broker, NamedQueues):
            self.broker.consume(selection)
        elif selection.names != QueueSelection().names:
            raise ValueError(
                f"queues {selection}: {type(self.broker).__name__} has only the default "
                "queue (it is not a flowrra.protocols.NamedQueues)"
            )

    def _limit(self) -> None:
        """Hand the registered tasks' rate and concurrency limits to the broker (nothing
        when no task has limits: the broker's default path stays untouched)."""
        limits = limits_of(self.registry)
        if not limits:
            return
        if not isinstance(self.broker, LimitedTasks):
            names = ", ".join(sorted(limits))
            raise ValueError(
                f"tasks {names} have rate_limit/max_concurrency, but "
                f"{type(self.broker).__name__} cannot enforce them (it is not a "
                "flowrra.protocols.LimitedTasks): use a broker that is, or drop the limits"
            )
        self.broker.limit(limits)

    # -- the slots -------------------------------------------------------------------------

    async def _io_slot(self) -> None:
        reserver = self.reserver
        buffer = reserver.buffer
        run = self.runner.run
        while True:
            try:
                # A batch already reserved is taken without a call into the reserver.
                message = buffer.popleft() if buffer else await reserver.next()
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if reserver.stopping and me is not None and me.uncancel() == 0:
                    return  # stop() woke the slot waiting on the broker
                raise
            if message is None:
                return
            reserver.busy += 1
            try:
                handle = self.registry.by_name.get(message.name)
                if handle is not None and handle.options.cpu_bound:
                    await self._cpu_queue.put((handle, message))
                else:
                    await run(handle, message, self.io_executor)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.settler.unsettled(message)
                reraise_if_cancelled()
            finally:
                reserver.busy -= 1

    async def _cpu_lane(self) -> None:
        queue = self._cpu_queue
        run = self.runner.run
        while True:
            handle, message = await queue.get()
            try:
                try:
                    await run(handle, message, self.cpu_executor)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.settler.unsettled(message)
                    reraise_if_cancelled()
            finally:
                queue.task_done()

    # -- records and status ----------------------------------------------------------------

    async def record(self, result: TaskResult, retry_in: float | None = None) -> None:
        """Store ``result`` and publish its event (``submit`` records PENDING with it)."""
        await self.settler.record(result, retry_in)

    def publish(self, result: TaskResult, retry_in: float | None = None) -> None:
        """Tell the event listeners about ``result``'s new status."""
        self.settler.publish(result, retry_in)

    def describe(self) -> dict[str, Any]:
        """This worker as its heartbeat announces it (see :class:`WorkerDirectory`)."""
        return {
            "id": self.worker_id,
            "host": _HOST,
            "pid": os.getpid(),
            "process": self.process_index,
            "supervisor": self.supervisor_pid,
            "concurrency": self.io_executor.concurrency,
            "cpu_workers": self.cpu_executor.concurrency,
            "started": self.started_at,
            "processed": self.settler.processed,
            "busy": self.reserver.busy,
            "tasks": sorted(handle.name for handle in self.registry),
            "queues": list(self.selection().names),
            "at": time.time(),
        }
