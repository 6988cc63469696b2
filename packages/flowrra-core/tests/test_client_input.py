"""Issue 17, item 11: what a client passes to submit and wait is checked before anything is
written, and refused with an error that says what is accepted."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from flowrra import Config, Flowrra, TaskStatus
from flowrra.exceptions import ConfigError, SerializationError


def _records(app: Flowrra) -> int:
    backend: Any = app.backend
    return len(backend._live) + len(backend._done)


@pytest.mark.parametrize(
    ("options", "error", "says"),
    [
        ({"delay": math.nan}, ValueError, "finite number of seconds"),
        ({"delay": math.inf}, ValueError, "finite number of seconds"),
        ({"delay": -1}, ValueError, ">= 0"),
        ({"delay": "5"}, TypeError, "int or a float"),
        ({"delay": True}, TypeError, "int or a float"),
        ({"eta": "2030-01-01T00:00:00"}, TypeError, "fromisoformat"),
        ({"eta": 1_900_000_000}, TypeError, "eta is a datetime"),
    ],
)
async def test_a_bad_delay_or_eta_is_refused_before_anything_is_written(
    make_app: Callable[..., Flowrra], options: dict[str, Any], error: type[Exception], says: str
) -> None:
    app = make_app()

    @app.task()
    async def add(a: int, b: int = 0) -> int:
        return a + b

    with pytest.raises(error, match=says):
        await app.submit(add, 1, **options)
    with pytest.raises(error, match=says):
        await app.submit_many(add, [(1,)], **options)
    with pytest.raises(error, match=says):
        add.with_options(**options)
    assert _records(app) == 0  # no orphan PENDING record
    assert app.broker.pending_count() == 0  # type: ignore[attr-defined]


async def test_a_good_eta_and_delay_still_work(make_app: Callable[..., Flowrra]) -> None:
    app = make_app()

    @app.task()
    async def add(a: int, b: int = 0) -> int:
        return a + b

    await app.submit(add, 1, delay=0.5)
    await app.submit(add, 1, delay=2)
    await add.with_options(eta=datetime(2030, 1, 1)).submit(1)
    assert _records(app) == 3


async def test_unencodable_arguments_are_named_as_arguments(
    make_app: Callable[..., Flowrra],
) -> None:
    app = make_app()

    @app.task()
    async def echo(x: Any = None) -> Any:
        return x

    with pytest.raises(SerializationError, match="the arguments of task 'echo'"):
        await app.submit(echo, object())
    with pytest.raises(SerializationError, match="the keyword arguments of task 'echo'"):
        await app.submit(echo, x=object())
    assert _records(app) == 0


async def test_a_wait_with_a_nan_or_negative_timeout_is_refused(
    make_app: Callable[..., Flowrra],
) -> None:
    app = make_app()

    @app.task()
    async def noop() -> None:
        return None

    async with app:
        task_id = await app.submit(noop)
        for bad in (math.nan, -1, -0.5):
            with pytest.raises(ValueError, match=">= 0 or None"):
                await app.wait_for_result(task_id, timeout=bad)
        with pytest.raises(TypeError, match="number of seconds or None"):
            await app.wait_for_result(task_id, timeout="5")  # type: ignore[arg-type]
        result = await app.wait_for_result(task_id, timeout=math.inf)  # inf: no limit
        assert result.status is TaskStatus.SUCCESS
        assert (await app.wait_for_result(task_id, timeout=0)).status is TaskStatus.SUCCESS


def test_from_urls_refuses_an_empty_url_as_from_env_does() -> None:
    with pytest.raises(ConfigError, match="broker url"):
        Flowrra.from_urls(broker="")
    with pytest.raises(ConfigError, match="backend url"):
        Flowrra.from_urls(backend="")
    with pytest.raises(ConfigError):
        Config.from_env(environ={"FLOWRRA_BROKER_URL": ""})


async def test_arguments_that_do_not_bind_are_refused_at_submit(
    make_app: Callable[..., Flowrra],
) -> None:
    app = make_app()

    @app.task()
    async def add(a: int, b: int = 0) -> int:
        return a + b

    @app.task()
    async def keyed(*, key: str) -> str:
        return key

    @app.task()
    async def anything(*args: Any, **kwargs: Any) -> int:
        return len(args) + len(kwargs)

    refused: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (add, (), {}),
        (add, (1, 2, 3), {}),
        (add, (1,), {"c": 3}),
        (add, (1,), {"a": 1}),
        (keyed, (), {}),
        (keyed, ("k",), {}),
    ]
    for task, args, kwargs in refused:
        with pytest.raises(TypeError, match=f"task {task.name!r} cannot be called"):
            await app.submit(task, *args, **kwargs)
        with pytest.raises(TypeError, match="cannot be called"):
            await task.submit(*args, **kwargs)
        with pytest.raises(TypeError, match="cannot be called"):
            await task.with_options(priority=1).submit(*args, **kwargs)
        if not (args and kwargs):  # submit_many: one or the other per call
            with pytest.raises(TypeError, match="cannot be called"):
                await app.submit_many(task, [kwargs] if kwargs else [args])
    assert _records(app) == 0
    await app.submit(add, 1)
    await app.submit(add, 1, 2)
    await app.submit(add, a=1, b=2)
    await add.submit(1, b=2)
    await app.submit(keyed, key="k")
    await app.submit(anything, *range(50), x=1)
    await app.submit(anything)
    await app.submit_many(add, [(1,), {"a": 2}])
    assert _records(app) == 9


def test_delay_from_sync_code_checks_the_binding_too() -> None:
    app = Flowrra()

    @app.task()
    async def add(a: int, b: int = 0) -> int:
        return a + b

    with pytest.raises(TypeError, match="cannot be called"):
        add.delay(1, 2, 3)
    with pytest.raises(TypeError, match="cannot be called"):
        add.with_options().delay(c=1)


async def test_a_type_error_from_binding_is_not_retried(
    make_app: Callable[..., Flowrra],
) -> None:
    """A message that does not bind (queued behind submit's back, or by an older client)
    fails at once; a TypeError the task raises itself is still retried."""
    from flowrra.testing import message

    app = make_app()
    calls: list[int] = []

    @app.task(max_retries=3, retry_delay=0.01)
    async def add(a: int, b: int = 0) -> int:
        calls.append(a)
        if a == 2 and len(calls) < 3:
            raise TypeError("the task's own")
        return a + b

    async with app:
        bad = message("add", 1, 2, 3)
        await app.broker.enqueue(bad)
        await app.backend.store(bad.id, _pending_of(bad))
        result = await app.wait_for_result(bad.id, timeout=10)
        assert result.status is TaskStatus.FAILED
        assert result.retries == 0
        assert "positional" in (result.error or "")
        own = await app.submit(add, 2)
        again = await app.wait_for_result(own, timeout=10)
        assert again.status is TaskStatus.SUCCESS and again.retries == 2


def _pending_of(msg: Any) -> Any:
    from flowrra.task import TaskResult

    return TaskResult(msg.id, TaskStatus.PENDING, task_name=msg.name)
