"""Flowrra: an asyncio task queue.

::

    from flowrra import Flowrra

    app = Flowrra.from_urls()          # embedded: in-memory broker and result store

    @app.task()
    async def send_email(to: str) -> dict[str, str]:
        ...

    async with app:
        task_id = await app.submit(send_email, "user@example.com")
        result = await app.wait_for_result(task_id, timeout=10)
"""

from flowrra._version import __version__
from flowrra.app import Flowrra
from flowrra.backends.base import BaseResultBackend
from flowrra.backends.memory import InMemoryBackend, MemoryBackend
from flowrra.brokers.base import BaseBroker
from flowrra.brokers.memory import MemoryBroker
from flowrra.cancellation import CancelOutcome
from flowrra.canvas import Signature, chain, group
from flowrra.compat import AsyncTaskExecutor
from flowrra.config import BackendConfig, BrokerConfig, Config, ExecutorConfig
from flowrra.context import TaskContext, current_task
from flowrra.events import TaskEvent
from flowrra.exceptions import (
    BackendError,
    BrokerError,
    ConfigError,
    ExecutorNotRunningError,
    FlowrraError,
    MaybeQueuedError,
    NoTaskContextError,
    NotRunningError,
    PluginConflictError,
    PluginError,
    PluginNotFoundError,
    ResultTimeoutError,
    ScheduleError,
    ScheduleNotFoundError,
    ScheduleStoreError,
    SerializationError,
    SyncCallInLoopError,
    TaskNotFoundError,
    TaskNotRegisteredError,
    TaskRegistrationError,
    TaskTimeoutError,
    UnknownTaskError,
)
from flowrra.executors import CPUExecutor, IOExecutor
from flowrra.limits import RateLimit
from flowrra.middleware import Middleware
from flowrra.plugins import get_scheduler_backend
from flowrra.protocols import Broker, Executor, ResultBackend, ScheduleStore
from flowrra.registry import TaskCall, TaskHandle, TaskRegistry
from flowrra.retry import Retry, RetryPolicy
from flowrra.schedules import MisfirePolicy, ScheduledTask, ScheduleType
from flowrra.task import Task, TaskMessage, TaskResult, TaskStatus

__all__ = [
    "AsyncTaskExecutor",
    "BackendConfig",
    "BackendError",
    "BaseBroker",
    "BaseResultBackend",
    "Broker",
    "BrokerConfig",
    "BrokerError",
    "CPUExecutor",
    "CancelOutcome",
    "Config",
    "ConfigError",
    "Executor",
    "ExecutorConfig",
    "ExecutorNotRunningError",
    "Flowrra",
    "FlowrraError",
    "IOExecutor",
    "InMemoryBackend",
    "MaybeQueuedError",
    "MemoryBackend",
    "MemoryBroker",
    "Middleware",
    "MisfirePolicy",
    "NoTaskContextError",
    "NotRunningError",
    "PluginConflictError",
    "PluginError",
    "PluginNotFoundError",
    "RateLimit",
    "ResultBackend",
    "ResultTimeoutError",
    "Retry",
    "RetryPolicy",
    "ScheduleError",
    "ScheduleNotFoundError",
    "ScheduleStore",
    "ScheduleStoreError",
    "ScheduleType",
    "ScheduledTask",
    "SerializationError",
    "Signature",
    "SyncCallInLoopError",
    "Task",
    "TaskCall",
    "TaskContext",
    "TaskEvent",
    "TaskHandle",
    "TaskMessage",
    "TaskNotFoundError",
    "TaskNotRegisteredError",
    "TaskRegistrationError",
    "TaskRegistry",
    "TaskResult",
    "TaskStatus",
    "TaskTimeoutError",
    "UnknownTaskError",
    "__version__",
    "chain",
    "current_task",
    "get_scheduler_backend",
    "group",
]
