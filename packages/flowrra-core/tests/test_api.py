"""The user API of the seeds: registration, submit, results, errors, config, compat."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import flowrra
from flowrra import (
    AsyncTaskExecutor,
    BackendConfig,
    BrokerConfig,
    Config,
    ConfigError,
    ExecutorConfig,
    Flowrra,
    FlowrraError,
    MemoryBroker,
    NotRunningError,
    ResultTimeoutError,
    SerializationError,
    TaskMessage,
    TaskNotRegisteredError,
    TaskRegistrationError,
    TaskResult,
    TaskStatus,
    UnknownTaskError,
)
from flowrra.backends.base import BaseResultBackend
from flowrra.task import TaskResult as TaskResultFromTaskModule
from flowrra.task import new_task_id


async def test_readme_quick_start_round_trip() -> None:
    app = Flowrra.from_urls()

    @app.task()
    async def send_email(to: str, subject: str) -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"status": "sent", "to": to}

    async with app:
        assert app.is_running
        task_id = await app.submit(send_email, "user@example.com", "Hello")
        result = await app.wait_for_result(task_id, timeout=10.0)
    assert not app.is_running
    assert result.status is TaskStatus.SUCCESS and result.is_success and result.is_complete
    assert result.result == {"status": "sent", "to": "user@example.com"}
    assert result.task_name == "send_email" and result.retries == 0 and result.error is None
    assert result.submitted_at and result.started_at and result.finished_at
    assert result.submitted_at <= result.started_at <= result.finished_at


async def test_submit_by_name_keywords_and_typed_handle(make_app) -> None:
    app = make_app()

    @app.task(name="custom_name")
    async def my_task(arg1: str, arg2: int) -> str:
        return f"{arg1}-{arg2}"

    await app.start()
    by_name = await app.submit("custom_name", "a", 1)
    by_kwargs = await app.submit(my_task, arg1="b", arg2=2)
    by_handle = await my_task.submit("c", 3)
    with_options = await my_task.with_options(priority=3).submit("d", arg2=4)
    values = [
        (await app.wait_for_result(t, timeout=5)).result
        for t in (by_name, by_kwargs, by_handle, with_options)
    ]
    assert values == ["a-1", "b-2", "c-3", "d-4"]
    assert await my_task("direct", 0) == "direct-0"


async def test_wrong_pairings_fail_at_decoration_time(make_app) -> None:
    app = make_app()
    with pytest.raises(TaskRegistrationError, match="async def"):

        @app.task(cpu_bound=True)
        async def async_cpu() -> None: ...

    with pytest.raises(TaskRegistrationError, match="module level"):
        app.task(cpu_bound=True)(lambda: 1)

    def outer() -> None:
        @app.task(cpu_bound=True)
        def nested() -> None: ...

    with pytest.raises(TaskRegistrationError, match="module level"):
        outer()
    assert issubclass(TaskRegistrationError, TypeError)


async def test_duplicate_name_is_an_error(make_app) -> None:
    app = make_app()

    @app.task(name="dup")
    async def one() -> None: ...

    with pytest.raises(TaskRegistrationError, match="already registered"):

        @app.task(name="dup")
        async def two() -> None: ...


async def test_unregistered_function_or_name(make_app) -> None:
    app = make_app()
    await app.start()

    async def not_a_task() -> None: ...

    with pytest.raises(TaskNotRegisteredError, match="not registered"):
        await app.submit(not_a_task)
    with pytest.raises(TaskNotRegisteredError):
        await app.submit("nope")
    assert app.pending_count() == 0


async def test_unencodable_arguments_fail_at_submit_and_queue_nothing(make_app) -> None:
    app = make_app()

    @app.task()
    async def takes(x: object) -> None: ...

    await app.start()
    with pytest.raises(SerializationError, match="cannot be encoded as JSON"):
        await app.submit(takes, object())
    cycle: list[object] = []
    cycle.append(cycle)
    for bad in (cycle, {"x": float("nan")}, [1, {2: "non-str key is fine", "y": {1j}}]):
        with pytest.raises(SerializationError, match="cannot be encoded as JSON"):
            await app.submit(takes, bad)
    assert app.pending_count() == 0


def test_the_wire_json_is_what_json_dumps_makes() -> None:
    from flowrra.serialization import encode_json

    for value in ([1, 2.5, "é\u2028", None, True], {"a": [{}], "b": -0.0}, "s", 10**30, 1e20):
        assert encode_json(value) == json.dumps(value, separators=(",", ":"), allow_nan=False)


async def test_result_that_cannot_be_stored_ends_failed_with_reason(make_app) -> None:
    app = make_app()

    @app.task(max_retries=3)
    async def returns_object() -> object:
        return object()

    await app.start()
    result = await app.wait_for_result(await app.submit(returns_object), timeout=5)
    assert result.status is TaskStatus.FAILED
    assert "SerializationError" in (result.error or "") and "result" in (result.error or "")
    assert result.retries == 0  # not retried: it would fail the same way


async def test_wait_for_result_unknown_id(make_app) -> None:
    app = make_app()
    await app.start()
    with pytest.raises(UnknownTaskError):
        await app.wait_for_result("no-such-id", timeout=1)
    assert await app.get_result("no-such-id") is None


async def test_wait_timeout_raises_timeouterror_and_task_keeps_running(make_app) -> None:
    app = make_app()
    gate = asyncio.Event()

    @app.task()
    async def slow() -> str:
        await gate.wait()
        return "finished"

    await app.start()
    task_id = await app.submit(slow)
    with pytest.raises(ResultTimeoutError) as caught:
        await app.wait_for_result(task_id, timeout=0.1)
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, FlowrraError)
    running = await app.get_result(task_id)
    assert running is not None and running.status is TaskStatus.RUNNING
    gate.set()
    assert (await app.wait_for_result(task_id, timeout=5)).result == "finished"


async def test_get_result_reports_each_state(make_app) -> None:
    app = make_app(num_workers=1)
    gate = asyncio.Event()

    @app.task()
    async def held() -> int:
        await gate.wait()
        return 1

    task_id = await app.submit(held)
    pending = await app.get_result(task_id)
    assert pending is not None and pending.status is TaskStatus.PENDING
    await app.start()
    for _ in range(100):
        current = await app.get_result(task_id)
        if current is not None and current.status is TaskStatus.RUNNING:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the task never reported RUNNING")
    gate.set()
    done = await app.wait_for_result(task_id, timeout=5)
    assert done.status is TaskStatus.SUCCESS


async def test_submit_before_start_runs_on_start_and_waiting_first_is_an_error(make_app) -> None:
    app = make_app()

    @app.task()
    async def early() -> str:
        return "ran"

    task_id = await app.submit(early)
    with pytest.raises(NotRunningError, match="start"):
        await app.wait_for_result(task_id, timeout=1)
    await app.start()
    assert (await app.wait_for_result(task_id, timeout=5)).result == "ran"


async def test_delay_and_eta(make_app) -> None:
    app = make_app()

    @app.task()
    async def stamp() -> float:
        return datetime.now(UTC).timestamp()

    await app.start()
    submitted = datetime.now(UTC).timestamp()
    delayed = await app.submit(stamp, delay=0.3)
    at = await app.submit(stamp, eta=datetime.now(UTC) + timedelta(seconds=0.3))
    for task_id in (delayed, at):
        ran_at = (await app.wait_for_result(task_id, timeout=5)).result
        assert ran_at >= submitted + 0.29
    with pytest.raises(ValueError, match=">= 0"):
        await app.submit(stamp, delay=-1)


async def test_task_result_dict_round_trip() -> None:
    now = datetime.now(UTC)
    original = TaskResult(
        "id1",
        TaskStatus.FAILED,
        task_name="t",
        error="ValueError: x",
        submitted_at=now,
        started_at=now,
        finished_at=now,
        retries=2,
        args=(1, "a"),
        kwargs={"k": [1]},
        traceback="Traceback...",
        priority=3,
    )
    data = original.to_dict()
    assert data["status"] == "failed" and data["submitted_at"] == now.isoformat()
    assert TaskResult.from_dict(data) == original
    assert TaskResultFromTaskModule is TaskResult


def test_task_result_timestamps_take_datetimes_or_unix_seconds() -> None:
    when = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
    other_zone = when.astimezone(timezone(timedelta(hours=-5)))
    by_datetime = TaskResult("a", TaskStatus.PENDING, submitted_at=other_zone)
    by_seconds = TaskResult("a", TaskStatus.PENDING, submitted_at=when.timestamp())
    assert by_datetime == by_seconds
    assert by_datetime.submitted_at == when and by_datetime.submitted_at.tzinfo is UTC
    assert by_datetime.submitted_ts == when.timestamp()
    assert by_datetime.started_at is None and by_datetime.finished_at is None
    by_seconds.finished_at = when + timedelta(seconds=2)
    assert by_seconds.finished_ts == when.timestamp() + 2
    assert by_seconds != by_datetime
    with pytest.raises(TypeError, match="datetime, Unix seconds or None"):
        TaskResult("a", TaskStatus.PENDING, started_at="2026-01-01")  # type: ignore[arg-type]
    assert "status=TaskStatus.PENDING" in repr(by_datetime)


@pytest.fixture
def new_york_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[ZoneInfo]:
    """This process's local time is New York's (not UTC: a naive datetime read as UTC
    would be five hours off)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield ZoneInfo("America/New_York")
    monkeypatch.undo()
    time.tzset()


class NotingBroker(MemoryBroker):
    """The in-memory broker, keeping what was enqueued."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[TaskMessage] = []

    async def enqueue(self, message: TaskMessage) -> None:
        self.sent.append(message)
        await super().enqueue(message)

    async def enqueue_many(self, messages: Sequence[TaskMessage]) -> None:
        self.sent.extend(messages)
        await super().enqueue_many(messages)


async def test_a_naive_eta_is_local_time_as_in_0_1_8(new_york_local_time: ZoneInfo) -> None:
    broker = NotingBroker()
    app = Flowrra(broker=broker)

    @app.task()
    async def later() -> None:
        return None

    naive = datetime.now() + timedelta(hours=1)
    await app.submit(later, eta=naive)
    await later.with_options(eta=naive).submit()
    await app.submit_many(later, [(), ()], eta=naive)
    meant = naive.replace(tzinfo=new_york_local_time).timestamp()
    assert [m.eta for m in broker.sent] == [meant] * 4
    await app.stop(wait=False)


def test_task_result_takes_a_naive_datetime_as_local_time(new_york_local_time: ZoneInfo) -> None:
    naive = datetime(2026, 7, 1, 9, 30, 15, 250000)  # 13:30:15.25 UTC in New York's summer
    meant = datetime(2026, 7, 1, 13, 30, 15, 250000, tzinfo=UTC)
    made = TaskResult("a", TaskStatus.SUCCESS, submitted_at=naive, started_at=naive)
    made.finished_at = naive + timedelta(seconds=2)
    assert made.submitted_at == meant and made.submitted_at.tzinfo is UTC
    assert made.started_ts == meant.timestamp()
    assert made.finished_at == meant + timedelta(seconds=2)
    assert TaskResult.from_dict(made.to_dict()) == made


def test_task_ids_are_unique_in_forked_children() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child writes the id it draws first, then leaves at once
        os.write(write_end, new_task_id().encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    parent_id = new_task_id()
    assert len(child_id) == len(parent_id) == 32
    # a child draws its own random half: else it would make its parent's next ids
    assert child_id[:16] != parent_id[:16]


def test_task_ids_of_one_process_are_consecutive() -> None:
    ids = [new_task_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)
    assert {i[:16] for i in ids} == {ids[0][:16]}  # one process: one random half
    numbers = [int(i, 16) for i in ids]
    assert numbers == list(range(numbers[0], numbers[0] + 10_000))


async def test_async_task_executor_alias_and_custom_backend_base_class() -> None:
    stored: dict[str, TaskResult] = {}

    class DictBackend(BaseResultBackend):
        """The seeds' custom backend: only store, get and wait_for."""

        def __init__(self) -> None:
            self.done: dict[str, asyncio.Event] = {}

        async def store(self, task_id: str, result: TaskResult) -> None:
            stored[task_id] = TaskResult.from_dict(result.to_dict())
            if result.is_complete:
                self.done.setdefault(task_id, asyncio.Event()).set()

        async def get(self, task_id: str) -> TaskResult | None:
            return stored.get(task_id)

        async def wait_for(self, task_id: str, timeout: float | None) -> TaskResult:
            async with asyncio.timeout(timeout):
                await self.done.setdefault(task_id, asyncio.Event()).wait()
            return stored[task_id]

    executor = AsyncTaskExecutor(num_workers=2, cpu_workers=1, backend=DictBackend())

    @executor.task(max_retries=5, retry_delay=2.0)
    async def fetch_data(url: str) -> dict[str, str]:
        return {"data": url}

    assert fetch_data.max_retries == 5 and fetch_data.retry_delay == 2.0
    async with executor:
        assert executor.is_running()
        task_id = await executor.submit(fetch_data, "u")
        result = await executor.wait_for_result(task_id, timeout=5)
        assert executor.pending_count() == 0
    assert result.result == {"data": "u"} and stored[task_id].status is TaskStatus.SUCCESS
    assert executor.worker.io_executor.concurrency == 2
    assert executor.worker.cpu_executor.concurrency == 1


def test_executor_config_defaults_apply_to_tasks_that_set_none() -> None:
    app = Flowrra(Config(executor=ExecutorConfig(max_retries=7, retry_delay=0.5)))

    @app.task()
    async def uses_defaults() -> None: ...

    @app.task(max_retries=1, retry_delay=3.0)
    async def overrides() -> None: ...

    assert (uses_defaults.max_retries, uses_defaults.retry_delay) == (7, 0.5)
    assert (overrides.max_retries, overrides.retry_delay) == (1, 3.0)


def test_config_defaults_and_validation() -> None:
    ex = ExecutorConfig()
    assert (
        ex.num_workers,
        ex.io_workers,
        ex.cpu_workers,
        ex.max_queue_size,
        ex.max_retries,
        ex.retry_delay,
    ) == (4, 4, None, 1000, 3, 1.0)
    assert ExecutorConfig(io_workers=9).num_workers == 9
    b = BrokerConfig(url="redis://localhost:6379/0")
    assert (b.max_connections, b.socket_timeout, b.retry_on_timeout) == (50, 5.0, True)
    k = BackendConfig(url="redis://localhost:6379/1")
    assert (k.ttl, k.max_connections, k.socket_timeout, k.retry_on_timeout) == (None, 50, 5.0, True)
    assert Config().broker is None and Config().backend is None
    for bad in (
        lambda: ExecutorConfig(num_workers=0),
        lambda: BackendConfig(url="x", ttl=0),
        lambda: BrokerConfig(url="localhost"),
        lambda: ExecutorConfig(retry_delay=-1),
        lambda: ExecutorConfig(num_workers=2, io_workers=3),
    ):
        with pytest.raises(ConfigError):
            bad()


def test_config_from_env() -> None:
    env = {
        "APP_BROKER_URL": "memory://",
        "APP_BROKER_MAX_CONNECTIONS": "7",
        "APP_BACKEND_URL": "memory://",
        "APP_BACKEND_TTL": "60",
        "APP_BACKEND_MAX_ENTRIES": "none",
        "APP_EXECUTOR_NUM_WORKERS": "12",
        "APP_EXECUTOR_RETRY_DELAY": "0.25",
        "APP_BROKER_RETRY_ON_TIMEOUT": "false",
    }
    config = Config.from_env(prefix="APP_", environ=env)
    assert config.broker is not None and config.broker.max_connections == 7
    assert config.broker.retry_on_timeout is False
    assert config.backend is not None and config.backend.ttl == 60
    assert config.backend.max_entries is None
    assert config.executor.num_workers == 12 and config.executor.retry_delay == 0.25
    assert Config.from_env(environ={}).broker is None
    with pytest.raises(ConfigError, match="FLOWRRA_EXECUTOR_NUM_WORKERS"):
        Config.from_env(environ={"FLOWRRA_EXECUTOR_NUM_WORKERS": "many"})
    with pytest.raises(ConfigError, match="FLOWRRA_BROKER_URL"):
        Config.from_env(environ={"FLOWRRA_BROKER_MAX_CONNECTIONS": "3"})


def test_public_names_are_pinned() -> None:
    assert set(flowrra.__all__) == {
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
        "NoTaskContextError",
        "NotRunningError",
        "PluginConflictError",
        "PluginError",
        "PluginNotFoundError",
        "RateLimit",
        "ResultBackend",
        "Middleware",
        "MisfirePolicy",
        "ResultTimeoutError",
        "Retry",
        "RetryPolicy",
        "ScheduleError",
        "ScheduleNotFoundError",
        "ScheduleStore",
        "ScheduleStoreError",
        "ScheduleType",
        "ScheduledTask",
        "Signature",
        "SerializationError",
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
    }
    for name in flowrra.__all__:
        assert hasattr(flowrra, name), name


async def test_producer_connects_without_running_and_close_releases() -> None:
    app = Flowrra()

    @app.task()
    async def queued() -> None:
        return None

    async with app.producer() as same:
        assert same is app and not app.is_running
        await app.submit(queued)
        assert app.pending_count() == 1  # queued, not run: nothing runs in a producer
        with pytest.raises(NotRunningError):
            await app.wait_for_result(await app.submit(queued))
    assert not app.is_running
    await app.close()  # idempotent
