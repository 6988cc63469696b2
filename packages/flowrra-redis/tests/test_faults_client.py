"""Issue 17, items 4, 6, 8 and 11 on real servers: what a client sees when Redis is
misconfigured, full, silent, not Redis at all, or half reachable; and client input that is
refused before anything is written."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from conftest import RedisServers
from flowrra_redis import RedisBackend, RedisBroker

from flowrra import Flowrra, MaybeQueuedError, TaskStatus
from flowrra.exceptions import BackendError, BrokerError, SerializationError
from flowrra.task import TaskResult, new_task_id
from flowrra.testing import message


class Listener:
    """A plain TCP listener on a free port: it accepts connections and reads what is
    sent, and either never answers (``reply=None``) or answers ``reply`` to everything."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.conns: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                if self.reply is not None:
                    conn.sendall(self.reply)
        except OSError:
            pass

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Listener]:
    listener = Listener(None)
    yield listener
    listener.close()


@pytest.fixture
def garbage() -> Iterator[Listener]:
    listener = Listener(b"HTTP/1.1 400 Bad Request\r\n\r\n<html>not redis</html>\r\n")
    yield listener
    listener.close()


def _app(broker_url: str, backend_url: str, prefix: str, **options: Any) -> Flowrra:
    app = Flowrra(
        broker=RedisBroker(broker_url, prefix=prefix, **options),
        backend=RedisBackend(backend_url, prefix=prefix, **options),
    )

    @app.task()
    async def add(a: int, b: int = 0) -> int:
        return a + b

    return app


def _public_calls(
    broker: RedisBroker, backend: RedisBackend
) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    """Every public I/O method of the broker and the backend, called once."""
    msg = message("add", 1)
    record = TaskResult(msg.id, TaskStatus.SUCCESS, task_name="add", result=1)
    return [
        ("broker.connect", broker.connect),
        ("broker.enqueue", lambda: broker.enqueue(msg)),
        ("broker.enqueue_many", lambda: broker.enqueue_many([msg])),
        ("broker.reserve", lambda: broker.reserve(10, 0.1)),
        ("broker.requeue", lambda: broker.requeue(msg, msg)),
        ("broker.dead_letter", lambda: broker.dead_letter(msg, "x")),
        ("broker.purge", broker.purge),
        ("broker.queue_depths", broker.queue_depths),
        ("broker.dead_letters", broker.dead_letters),
        ("broker.requeue_dead_letters", broker.requeue_dead_letters),
        ("broker.purge_dead_letters", broker.purge_dead_letters),
        ("broker.announce", lambda: broker.announce({"id": "w"}, 10)),
        ("broker.retire", lambda: broker.retire("w")),
        ("broker.workers", broker.workers),
        ("backend.connect", backend.connect),
        ("backend.store", lambda: backend.store(msg.id, record)),
        ("backend.store_many", lambda: backend.store_many([record])),
        ("backend.get", lambda: backend.get(msg.id)),
        ("backend.wait_for", lambda: backend.wait_for(msg.id, 0.2)),
        ("backend.list", backend.list),
        ("backend.delete", lambda: backend.delete(msg.id)),
    ]


async def _every_method_raises_ours(url: str, prefix: str, says: str) -> None:
    broker = RedisBroker(url, prefix=prefix, socket_timeout=0.5, retries=0)
    backend = RedisBackend(url, prefix=prefix, socket_timeout=0.5, retries=0)
    try:
        for name, call in _public_calls(broker, backend):
            expected = BrokerError if name.startswith("broker") else BackendError
            async with asyncio.timeout(30):  # a hang guard
                with pytest.raises(expected, match=says):
                    await call()
    finally:
        await broker.close()
        await backend.close()


# -- item 8: no raw redis-py exception leaves a public method ------------------------------


async def test_a_database_index_out_of_range_is_a_broker_error(redis_url: str, prefix: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/99"
    await _every_method_raises_ours(url, prefix, "has no such database")
    app = _app(url, url, prefix)
    with pytest.raises(BrokerError, match="DB index is out of range"):
        await app.submit("add", 1)
    await app.close()


async def test_a_server_that_is_not_redis_is_a_broker_error(garbage: Listener, prefix: str) -> None:
    await _every_method_raises_ours(garbage.url, prefix, "not the Redis protocol")


async def test_out_of_memory_from_submit_many_is_a_flowrra_error(
    redis_server: RedisServers, prefix: str
) -> None:
    url = redis_server.start("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    app = _app(url, url, prefix)

    async def fill() -> None:
        for _ in range(100):
            await app.submit_many("add", [("x" * 1000,)] * 1000)

    async with asyncio.timeout(60):  # a hang guard
        with pytest.raises((BrokerError, BackendError)) as caught:
            await fill()
    assert "OutOfMemoryError" in str(caught.value)
    assert "maxmemory" in str(caught.value)
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    # Reads still work and a full server's refusals stay ours.
    assert isinstance(await broker.queue_depths(), dict)
    with pytest.raises((BrokerError, BackendError)):
        await app.submit_many("add", [("x" * 1000,)] * 1000)
    await app.close()


# -- item 4: a server that accepts the connection and never answers -----------------------


async def test_a_server_that_never_answers_fails_submit_within_its_deadline(
    silent: Listener, prefix: str
) -> None:
    app = _app(silent.url, silent.url, prefix, socket_timeout=0.5, retries=1)
    async with asyncio.timeout(30):  # a hang guard (before the fix: still waiting at 180 s)
        with pytest.raises(BrokerError, match="did not answer in time") as caught:
            await app.submit("add", 1)
    assert "rediss://" in str(caught.value)  # says what to check
    await app.close()
    await _every_method_raises_ours(silent.url, prefix, "did not answer in time")


# -- item 6: the backend unreachable and the broker up -------------------------------------


async def test_submit_with_the_backend_down_says_the_task_may_be_queued_and_its_id(
    redis_url: str, redis_server: RedisServers, prefix: str
) -> None:
    backend_url = redis_server.start()
    app = _app(redis_url, backend_url, prefix, socket_timeout=0.5, retries=0)
    broker = app.broker
    assert isinstance(broker, RedisBroker)
    async with app.producer():
        await app.submit("add", 1)  # both connected
        redis_server.kill(backend_url)
        async with asyncio.timeout(30):  # a hang guard
            with pytest.raises(MaybeQueuedError) as caught:
                await app.submit("add", 2)
            with pytest.raises(BackendError) as many:  # MaybeQueuedError is a BackendError
                await app.submit_many("add", [(3,), (4,)])
        error = caught.value
        assert error.task_id in str(error) and "was queued" in str(error)
        assert error.queued is True and error.task_ids == [error.task_id]
        assert isinstance(many.value, MaybeQueuedError) and len(many.value.task_ids) == 2
        got = await broker.reserve(10, 0.5)
        assert {m.id for m in got} >= {error.task_id, *many.value.task_ids}
        await broker.release(got)


# -- item 11: client input on Redis ---------------------------------------------------------


async def test_a_missing_password_is_reported_at_once(
    redis_server: RedisServers, prefix: str
) -> None:
    url = redis_server.start("--requirepass", "s3cret")
    app = _app(url, url, prefix)
    async with asyncio.timeout(30):  # a hang guard (before the fix: 7 s of retries)
        with pytest.raises(BrokerError, match="password") as caught:
            await app.submit("add", 1)
    assert "HELLO must be called" not in str(caught.value)
    await app.close()
    good = url.replace("redis://", "redis://:s3cret@")
    app = _app(good, good, prefix)
    assert await app.submit("add", 1)
    await app.close()


async def test_refused_input_leaves_nothing_in_redis(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    app = _app(redis_url, redis_url, prefix)
    for options in ({"delay": math.nan}, {"delay": math.inf}, {"delay": "5"}):
        with pytest.raises((TypeError, ValueError), match="delay"):
            await app.submit("add", 1, **options)
    with pytest.raises(TypeError, match="eta is a datetime"):
        await app.submit("add", 1, eta="2030-01-01T00:00:00")
    with pytest.raises(TypeError, match="cannot be called"):
        await app.submit("add", 1, c=2)
    with pytest.raises(SerializationError, match="the arguments of task 'add'"):
        await app.submit("add", object())
    with pytest.raises(SerializationError, match="the keyword arguments of task 'add'"):
        await app.submit("add", a=object())
    with pytest.raises(ValueError, match=">= 0"):
        await app.wait_for_result(new_task_id(), timeout=math.nan)
    assert list(sync_redis.scan_iter(match=f"*{prefix}*")) == []
    await app.close()


# -- item 9: SIGTERM during a CPU task keeps --grace and keeps a result that arrives ----------


async def _running(app: Flowrra, task_id: str) -> None:
    async with asyncio.timeout(60):  # a hang guard
        while (record := await app.get_result(task_id)) is None or (
            record.status is not TaskStatus.RUNNING
        ):
            await asyncio.sleep(0.05)


async def _exited(proc: Any) -> int:
    async with asyncio.timeout(60):  # a hang guard (before the fix: the task's whole length)
        while proc.poll() is None:
            await asyncio.sleep(0.05)
    return int(proc.returncode)


async def test_sigterm_during_a_long_cpu_task_keeps_the_grace_period(
    producer: Flowrra, workers: Any
) -> None:
    """With --grace 2, a worker running a CPU task of 600 s exits (ending its pool's
    process), and the message is released for redelivery, not lost."""
    import signal

    proc = workers.start("--cpu-workers", "1", "--grace", "2")
    task_id = await producer.submit("spin", 600.0)
    await _running(producer, task_id)
    proc.send_signal(signal.SIGTERM)
    assert await _exited(proc) == 0, workers.output(proc)
    broker = producer.broker
    assert isinstance(broker, RedisBroker)
    depths = await broker.queue_depths()
    assert depths["queued"] == 1 and depths["leased"] == 0  # released: it runs again
    record = await producer.get_result(task_id)
    assert record is not None and record.status is not TaskStatus.SUCCESS
    assert "releasing 1 unfinished tasks" in workers.output(proc)


async def test_a_cpu_result_that_arrives_within_the_grace_period_is_stored_and_acked(
    producer: Flowrra, workers: Any
) -> None:
    import signal

    proc = workers.start("--cpu-workers", "1", "--grace", "30")
    task_id = await producer.submit("spin", 1.5)
    await _running(producer, task_id)
    proc.send_signal(signal.SIGTERM)
    assert await _exited(proc) == 0, workers.output(proc)
    record = await producer.get_result(task_id)
    assert record is not None and record.status is TaskStatus.SUCCESS and record.result == 1.5
    broker = producer.broker
    assert isinstance(broker, RedisBroker)
    depths = await broker.queue_depths()
    assert depths["queued"] == 0 and depths["leased"] == 0  # acked
