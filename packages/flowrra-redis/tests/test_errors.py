"""The error boundary of flowrra-redis beyond the contract suites: every public method of
the broker and the backend raises BrokerError / BackendError (never a redis-py exception)
when Redis is unreachable and when it answers with an error, naming the server and never
the password. The contract suites (test_contracts.py) call the protocols' methods against
a closed port; here: the methods only Redis has, a server that refuses a command, and the
message itself."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.exceptions as redis_errors
from flowrra_redis import RedisBackend, RedisBroker
from flowrra_redis.connection import failure

from flowrra import BackendError, BrokerError
from flowrra.exceptions import FlowrraError
from flowrra.testing import SECRET, message

#: Public callables that send nothing to Redis, so have nothing to translate.
_NO_IO = {
    "watch_cancels",  # a background loop: it logs a lost connection and subscribes again
    "ack",  # write-behind: sent with the next reserve (a lost ack means a redelivery)
    "check_encodable",  # BaseBroker's argument check
    "consume",  # sets what reserve takes (lists a named queue write-behind)
    "enqueue_with_records",  # compares endpoints (test_submits_redis.py)
    "server",  # resolves the endpoint's address (no Redis I/O)
    "store_call",  # builds STORE's arguments; the broker's call sends them
    "pending_writer",  # gives the record writer whose keys the broker's call sends
    "expects",
    "from_config",
    "limit",  # sets the task limits reserve enforces (no I/O of its own)
    "list_by_status",  # calls list
    "new_client",
    "pending_count",
    "queue_keys",  # names keys
    "redelivered",  # reads the receipt the broker attached
    "translating",
}
#: What the tests below call on an unreachable server, besides the protocols' methods.
_BROKER_EXTRAS = {"dead_letters", "requeue_dead_letters", "purge_dead_letters", "cancel"}
_BACKEND_EXTRAS = {"delete"}
_BROKER_CONTRACT = {
    "connect", "close", "enqueue", "enqueue_many", "reserve", "requeue", "release",
    "dead_letter", "extend", "purge", "announce", "retire", "workers", "queue_depths",
    "queue_stats", "enqueue_unique", "release_unique", "unique_holder",
}  # fmt: skip
_BACKEND_CONTRACT = {
    "connect", "close", "store", "store_many", "get", "wait_for", "list", "subscribe_events",
    "list_page", "counts",
}  # fmt: skip


def _public(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member) and not inspect.isclass(member)
    }


@pytest.mark.parametrize(
    ("cls", "checked"),
    [
        (RedisBroker, _BROKER_CONTRACT | _BROKER_EXTRAS),
        (RedisBackend, _BACKEND_CONTRACT | _BACKEND_EXTRAS),
    ],
)
def test_every_public_method_is_checked_against_an_unreachable_server(
    cls: type, checked: set[str]
) -> None:
    """A new public method must join the checks (here or in the contract suite)."""
    assert _public(cls) - _NO_IO == checked


async def _refused(
    error_type: type[FlowrraError], call: Callable[[], Awaitable[Any]], url: str
) -> FlowrraError:
    with pytest.raises(error_type) as caught:
        await call()
    text = str(caught.value)
    host = url.rpartition("@")[2]  # 127.0.0.1:<port>/<db>
    assert f"Redis at redis://flowrra:***@{host}" in text, text
    assert SECRET not in text
    assert isinstance(caught.value.__cause__, redis_errors.RedisError)
    return caught.value


async def test_redis_only_methods_raise_broker_and_backend_errors(unreachable_url: str) -> None:
    broker = RedisBroker(unreachable_url, socket_timeout=1.0, retries=0)
    backend = RedisBackend(unreachable_url, socket_timeout=1.0, retries=0)
    error = await _refused(BrokerError, broker.dead_letters, unreachable_url)
    assert str(error).startswith("cannot read dead letters: ")
    assert "is unavailable" in str(error)
    await _refused(BrokerError, broker.requeue_dead_letters, unreachable_url)
    await _refused(BrokerError, lambda: broker.purge_dead_letters(["x"]), unreachable_url)
    await _refused(BrokerError, lambda: broker.cancel("x"), unreachable_url)
    await _refused(BackendError, lambda: backend.delete("x"), unreachable_url)
    await broker.close()
    await backend.close()


async def test_a_command_redis_refuses_raises_broker_and_backend_errors(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    broker = RedisBroker(redis_url, prefix=prefix)
    backend = RedisBackend(redis_url, prefix=prefix)
    sync_redis.set(broker.keys.queue, "not a sorted set")
    sync_redis.rpush(backend.keys.result("listed"), "not a string")
    with pytest.raises(BrokerError, match="answered with an error") as caught:
        await broker.queue_depths()
    assert isinstance(caught.value.__cause__, redis_errors.ResponseError)
    assert "WRONGTYPE" in str(caught.value)
    with pytest.raises(BrokerError, match=r"cannot enqueue: .* answered with an error"):
        await broker.enqueue(message("x"))
    with pytest.raises(BackendError, match=r"cannot read a result: .* answered with an error"):
        await backend.get("listed")
    await broker.close()
    await backend.close()


def test_the_password_is_masked_even_in_the_drivers_text() -> None:
    url = "redis://user:pa55word@db.example:6380/2?password=other-s3cret"
    leaky = redis_errors.ConnectionError("AUTH pa55word refused; other-s3cret too")
    text = str(failure(BrokerError, url, "cannot reserve", leaky))
    assert "pa55word" not in text and "other-s3cret" not in text
    assert text.startswith("cannot reserve: Redis at redis://user:***@db.example:6380/2")
    assert "check that the server is running and the URL is right" in text


async def test_a_unix_socket_is_named_by_its_path(tmp_path: Any) -> None:
    socket = tmp_path / "nothing-here.sock"
    backend = RedisBackend(f"unix://:{SECRET}@{socket}?db=4", retries=0)
    with pytest.raises(BackendError) as caught:
        await backend.get("x")
    await backend.close()
    assert str(socket) in str(caught.value) and SECRET not in str(caught.value)
