"""One round trip per submit (issue 16 part 4): when the broker and the backend reach one
server and database (or one slot of a cluster), a submit is ONE script call (counted by
``INFO commandstats`` on a server of the test's own), a resend after a stall queues and
counts nothing twice, separate servers keep two writes, and the cluster takes it."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
from conftest import RedisServers
from flowrra_redis import RedisBackend, RedisBroker
from flowrra_redis.submits import RecordedEnqueue
from local_servers import LocalCluster

from flowrra import Flowrra, TaskStatus


def _calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name: int(value["calls"]) for name, value in stats.items()}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The script calls made between (the commands scripts run are counted too: left
    out)."""
    return {
        k: v - before.get(k, 0)
        for k, v in after.items()
        if k.startswith("cmdstat_eval") and v != before.get(k, 0)
    }


def _app(broker_url: str, backend_url: str, prefix: str, **options: Any) -> Flowrra:
    app = Flowrra(
        broker=RedisBroker(broker_url, prefix=prefix, **options),
        backend=RedisBackend(backend_url, prefix=prefix + "-results", **options),
    )

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    return app


async def test_a_submit_is_one_script_call_when_both_share_a_server(
    redis_server: RedisServers,
) -> None:
    url = redis_server.start()
    port = url.rsplit(":", 1)[1].split("/")[0]
    # The same server written two ways, with a prefix each: resolved, not compared as text.
    app = _app(url, f"redis://localhost:{port}/0", "one")
    assert isinstance(app._recorded_enqueue, RecordedEnqueue)
    client = redis.Redis.from_url(url)
    try:
        await app.submit("add", 0, 0)  # connected, scripts known
        before = _calls(client)
        task_id = await app.submit("add", 1, 2)
        assert _delta(before, _calls(client)) == {"cmdstat_evalsha": 1}
        before = _calls(client)
        ids = await app.submit_many("add", [(n, n) for n in range(2500)])
        assert _delta(before, _calls(client)) == {"cmdstat_evalsha": 3}, "3 chunks"
        record = await app.get_result(task_id)
        assert record is not None and record.status is TaskStatus.PENDING
        assert (await app.backend.counts(1))["totals"]["pending"] == 2502
        assert client.zcard("{one}:queue") == 2502
        assert client.zcard("{one-results}:results") == 2502
        assert await app.backend.get(ids[-1]) is not None
        async with app:
            result = await app.wait_for_result(ids[-1], timeout=30)
        assert result.result == 4998
    finally:
        client.close()
        await app.broker.close()
        await app.backend.close()


async def test_separate_servers_keep_a_write_to_each(redis_server: RedisServers) -> None:
    queues, results = redis_server.start(), redis_server.start()
    app = _app(queues, results, "two")
    other_db = _app(queues, queues.replace("/0", "/1"), "two-db")
    assert app._recorded_enqueue is None and other_db._recorded_enqueue is None
    on_queues, on_results = redis.Redis.from_url(queues), redis.Redis.from_url(results)
    try:
        await app.submit("add", 0, 0)
        before = _calls(on_queues), _calls(on_results)
        task_id = await app.submit("add", 1, 2)
        assert _delta(before[0], _calls(on_queues)) == {"cmdstat_evalsha": 1}  # ENQUEUE
        assert _delta(before[1], _calls(on_results)) == {"cmdstat_evalsha": 1}  # STORE
        assert on_queues.zcard("{two}:queue") == 2 and on_results.dbsize() > 0
        assert (await app.get_result(task_id)).status is TaskStatus.PENDING  # type: ignore[union-attr]
    finally:
        on_queues.close()
        on_results.close()
        for each in (app, other_db):
            await each.broker.close()
            await each.backend.close()


async def test_a_submit_sent_again_after_a_stall_is_queued_and_counted_once(
    redis_server: RedisServers,
) -> None:
    """Redis stops answering (SIGSTOP) after the SUBMIT calls reached it: the pipeline's
    watchdog drops the connection and sends them again once Redis is back, while Redis
    also runs the first. ENQUEUE's ``sent`` and STORE's ``SET NX`` keep one of each."""
    url = redis_server.start()
    app = _app(url, url, "stall", socket_timeout=0.3, retries=20)
    client = redis.Redis.from_url(url)
    try:
        await app.submit("add", 0, 0)
        redis_server.pause(url)
        try:
            sending = asyncio.gather(
                app.submit("add", 1, 1), app.submit_many("add", [(2, 2), (3, 3), (4, 4)])
            )
            await asyncio.sleep(1.0)  # the watchdog fired: the calls wait to be sent again
        finally:
            redis_server.resume(url)
        async with asyncio.timeout(30):
            await sending
        assert client.zcard("{stall}:queue") == 5
        assert client.zcard("{stall-results}:results") == 5
        assert (await app.backend.counts(1))["totals"]["pending"] == 5
    finally:
        client.close()
        await app.broker.close()
        await app.backend.close()


async def test_one_round_trip_on_the_cluster(redis_cluster: LocalCluster) -> None:
    """Broker and backend under one hash tag take the one-script path on a cluster (the
    script's keys share a slot); under tags of different slots they keep two writes."""
    same = Flowrra(
        broker=RedisBroker(redis_cluster.url, prefix="{sub}q"),
        backend=RedisBackend(redis_cluster.url, prefix="{sub}r"),
    )
    apart = Flowrra(
        broker=RedisBroker(redis_cluster.url, prefix="subq"),
        backend=RedisBackend(redis_cluster.url, prefix="subr"),
    )
    assert isinstance(same._recorded_enqueue, RecordedEnqueue)
    assert apart._recorded_enqueue is None

    @same.task(name="mul")
    async def mul(a: int, b: int) -> int:
        return a * b

    try:
        task_id = await same.submit(mul, 6, 7)
        ids = await same.submit_many(mul, [(n, 2) for n in range(50)])
        assert (await same.get_result(task_id)).status is TaskStatus.PENDING  # type: ignore[union-attr]
        async with same:
            assert (await same.wait_for_result(task_id, timeout=30)).result == 42
            assert (await same.wait_for_result(ids[-1], timeout=30)).result == 98
    finally:
        await same.broker.close()
        await same.backend.close()
