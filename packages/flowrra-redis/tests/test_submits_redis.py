"""One round trip per submit (issue 16 part 4): when the broker and the backend reach one
server and database (or one slot of a cluster), a submit is ONE script call (counted by
``INFO commandstats`` on a server of the test's own), a resend after a stall queues and
counts nothing twice, separate servers keep two writes, and the cluster takes it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from conftest import RedisServers
from flowrra_redis import RedisBackend, RedisBroker, ShardedRedisBackend, ShardedRedisBroker
from flowrra_redis.shards import SHARD_KEY, ShardedSubmit, shard_of
from flowrra_redis.submits import RecordedEnqueue
from local_servers import LocalCluster

from flowrra import Flowrra, TaskStatus, chain


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
        await app.submit_many("add", [(0, 0), (0, 0)])
        before = _calls(client)
        task_id = await app.submit("add", 1, 2)
        assert _delta(before, _calls(client)) == {"cmdstat_evalsha": 1}
        before = _calls(client)
        ids = await app.submit_many("add", [(n, n) for n in range(2500)])
        assert _delta(before, _calls(client)) == {"cmdstat_evalsha": 3}, "3 chunks"
        record = await app.get_result(task_id)
        assert record is not None and record.status is TaskStatus.PENDING
        assert (await app.backend.counts(1))["totals"]["pending"] == 2504
        assert client.zcard("{one}:queue") == 2504
        assert client.zcard("{one-results}:results") == 2504
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


async def test_a_submit_many_waits_out_a_slot_migration_on_the_cluster(
    redis_cluster: LocalCluster, prefix: str
) -> None:
    """While the app's slot migrates (MIGRATING on its master, IMPORTING on another), a
    framed call declares keys that are there and keys that are not yet (its records'
    among them: a key built inside the script would be refused as "a non local key" when
    all the declared ones exist), so Redis answers TRYAGAIN, which the pipeline retries
    until the slot has moved (MOVED: it follows); every task is queued and runs."""
    from redis.crc import key_slot

    tag = "{" + prefix + "}"
    app = Flowrra(
        broker=RedisBroker(redis_cluster.url, prefix=tag + "q"),
        backend=RedisBackend(redis_cluster.url, prefix=tag + "r"),
    )

    @app.task(name="mul")
    async def mul(a: int, b: int) -> int:
        return a * b

    slot = key_slot(tag.encode())
    source_port = redis_cluster.master_of(tag)
    target_port = next(p for p in redis_cluster.masters() if p != source_port)
    source, target = redis.Redis(port=source_port), redis.Redis(port=target_port)
    source_id = source.execute_command("CLUSTER", "MYID").decode()
    target_id = target.execute_command("CLUSTER", "MYID").decode()
    try:
        await app.submit_many(mul, [(1, 1), (2, 2)])  # its keys on the source
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        try:
            sending = asyncio.ensure_future(app.submit_many(mul, [(n, 2) for n in range(5)]))
            await asyncio.sleep(0.5)
            assert not sending.done()  # TRYAGAIN, again and again
        finally:
            while keys := source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000):
                source.execute_command(
                    "MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys
                )
            for port in redis_cluster.masters():
                redis.Redis(port=port).execute_command(
                    "CLUSTER", "SETSLOT", slot, "NODE", target_id
                )
        async with asyncio.timeout(30):
            ids = await sending
        assert redis_cluster.master_of(tag) == target_port
        async with app:
            assert (await app.wait_for_result(ids[-1], timeout=30)).result == 8
    finally:
        source.close()
        target.close()
        await app.broker.close()
        await app.backend.close()


# -- on shards ----------------------------------------------------------------------------


def _sharded_app(
    url: str, prefix: str, shards: int, backend_shards: int, results: str = "-results"
) -> Flowrra:
    """S queue shards under ``prefix``, ``backend_shards`` record shards under ``prefix``
    + ``results``."""
    backend: RedisBackend | ShardedRedisBackend = (
        ShardedRedisBackend(url, shards=backend_shards, prefix=prefix + results)
        if backend_shards > 1
        else RedisBackend(url, prefix=prefix + results)
    )
    app = Flowrra(broker=ShardedRedisBroker(url, shards=shards, prefix=prefix), backend=backend)

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    return app


def _keyed(key: str) -> dict[str, str]:
    return {SHARD_KEY: key}


async def test_a_sharded_submit_is_one_script_call_on_its_shard(
    redis_server: RedisServers,
) -> None:
    """S = 3 queues and results on one server: a submit is one SUBMIT on the shard of
    its id, which holds both its message and its record; ``submit_many`` makes one call
    per shard. On one server every queue shard shares the keyspace of every record
    shard, so a message a shard key places elsewhere is one call too, and so is a
    backend of another shard count."""
    url = redis_server.start()
    client = redis.Redis.from_url(url)
    app = _sharded_app(url, "sh", 3, 3)
    other_count = _sharded_app(url, "sh2", 3, 2)
    assert isinstance(app._recorded_enqueue, ShardedSubmit)
    assert isinstance(other_count._recorded_enqueue, ShardedSubmit)
    broker, backend = app.broker, app.backend
    assert isinstance(broker, ShardedRedisBroker) and isinstance(backend, ShardedRedisBackend)
    try:
        await app.submit("add", 0, 0)  # connected, scripts known
        placed = []
        for n in range(12):
            before = _calls(client)
            task_id = await app.submit("add", n, n)
            assert _delta(before, _calls(client)) == {"cmdstat_evalsha": 1}
            placed.append(task_id)
        before, depths = _calls(client), [client.zcard(s.keys.queue) for s in broker.shards]
        keyed = await app.submit("add", 5, 5, headers=_keyed("customer-7"))
        assert _delta(before, _calls(client)) == {"cmdstat_evalsha": 1}
        home = shard_of("customer-7", 3)
        assert [
            client.zcard(s.keys.queue) - d for s, d in zip(broker.shards, depths, strict=True)
        ] == [int(n == home) for n in range(3)]
        before = _calls(client)
        ids = await app.submit_many("add", [(n, n) for n in range(300)])
        assert _delta(before, _calls(client)) == {"cmdstat_evalsha": 3}, "one call per shard"
        for task_id in [*placed, *ids]:
            n = shard_of(task_id, 3)
            assert client.exists(backend.shards[n].keys.result(task_id))
            assert sum(client.exists(s.keys.result(task_id)) for s in backend.shards) == 1
        assert client.exists(backend.shards[shard_of(keyed, 3)].keys.result(keyed))
        queued = [client.zcard(s.keys.queue) for s in broker.shards]
        assert sum(queued) == 314 and min(queued) > 60, queued
        assert (await backend.counts(1))["totals"]["pending"] == 314
        before = _calls(client)
        await other_count.submit_many("add", [(n, n) for n in range(30)])
        assert 1 <= _delta(before, _calls(client))["cmdstat_evalsha"] <= 6  # per pair
        async with app:
            results = await asyncio.gather(
                *(app.wait_for_result(i, timeout=30) for i in [*placed, keyed, *ids])
            )
        assert [r.result for r in results] == [*(2 * n for n in range(12)), 10, *(
            2 * n for n in range(300))]  # fmt: skip
    finally:
        client.close()
        for each in (app, other_count):
            await each.broker.close()
            await each.backend.close()


def _scripts(before: dict[str, int], after: dict[str, int]) -> int:
    """The script calls made between (EVAL or EVALSHA: a master that has not seen a script
    yet gets it by EVAL)."""
    return sum(_delta(before, after).values())


def _cluster_calls(cluster: LocalCluster) -> dict[str, int]:
    """The calls that succeeded on every master, summed (an EVALSHA of a script that
    master has not seen yet fails with NOSCRIPT and is sent again as EVAL: one call)."""
    summed: dict[str, int] = {}
    for port in cluster.masters():
        with redis.Redis(port=port) as client:
            stats: dict[str, Any] = client.info("commandstats")
            for name, value in stats.items():
                done = int(value["calls"]) - int(value.get("failed_calls", 0))
                summed[name] = summed.get(name, 0) + done
    return summed


async def test_sharded_submits_on_the_cluster(redis_cluster: LocalCluster, prefix: str) -> None:
    """S = 3 queues and results on the cluster's three masters, same prefix: a submit is
    one SUBMIT on its shard's master. A message a shard key puts on another shard than
    its record (another slot: no script can write both) is two calls, the record's STORE
    and the message's ENQUEUE; every task runs and has its record all the same."""
    app = _sharded_app(redis_cluster.url, prefix, 3, 3, results="")
    apart = _sharded_app(redis_cluster.url, prefix + "-apart", 3, 1, results="")
    assert isinstance(app._recorded_enqueue, ShardedSubmit)
    assert apart._recorded_enqueue is None  # most ids' records would be on another slot
    broker = app.broker
    assert isinstance(broker, ShardedRedisBroker)
    key = next(f"k{n}" for n in range(100) if shard_of(f"k{n}", 3) == 1)
    try:
        await app.submit("add", 0, 0)
        await app.submit("add", 0, 0, headers=_keyed(key))  # every script known
        plain = []
        for n in range(6):
            before = _cluster_calls(redis_cluster)
            plain.append(await app.submit("add", n, 1))
            assert _scripts(before, _cluster_calls(redis_cluster)) == 1
        keyed, apart_ids = [], []
        while len(apart_ids) < 3:
            before = _cluster_calls(redis_cluster)
            task_id = await app.submit("add", len(keyed), 2, headers=_keyed(key))
            calls = _scripts(before, _cluster_calls(redis_cluster))
            if shard_of(task_id, 3) == 1:
                assert calls == 1
            else:
                assert calls == 2, "STORE and ENQUEUE"
                apart_ids.append(task_id)
            keyed.append(task_id)
        many = await app.submit_many("add", [(n, 3) for n in range(100)])
        # a chain: its later steps recorded PENDING, each on its own shard, with the first
        add = app.registry.handle("add")
        steps = await chain(add.s(1, 1), *(add.s(n) for n in range(2, 31))).submit()
        for task_id in [*plain, *keyed, *many]:
            record = await app.get_result(task_id)
            assert record is not None and record.status is TaskStatus.PENDING
        records = await steps.results()
        assert [r.status if r else None for r in records] == [TaskStatus.PENDING] * 30
        assert len({shard_of(r.task_id, 3) for r in records if r}) == 3
        async with app:
            assert (await steps.wait(timeout=30)).result == 1 + 1 + sum(range(2, 31))
            results = await asyncio.gather(
                *(app.wait_for_result(i, timeout=30) for i in [*plain, *keyed, *many])
            )
        assert [r.result for r in results] == [
            *(n + 1 for n in range(6)),
            *(n + 2 for n in range(len(keyed))),
            *(n + 3 for n in range(100)),
        ]
    finally:
        for each in (app, apart):
            await each.broker.close()
            await each.backend.close()


def _contents(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Everything under ``prefix``'s hash tags, by key without the prefix."""
    found: dict[str, Any] = {}
    for key in client.scan_iter(match=f"{{{prefix}*"):
        name = key.decode().split("}", 1)[1].lstrip(":")
        kind = client.type(key).decode()
        if kind == "string":
            found[name] = client.get(key)
        elif kind == "zset":
            found[name] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "hash":
            found[name] = client.hgetall(key)
        elif kind == "list":
            found[name] = client.lrange(key, 0, -1)
    if "sent" in found:  # scored by the clock at each call: members only
        found["sent"] = sorted(member for member, _ in found["sent"])
    return found


async def test_submit_many_writes_what_the_record_by_record_path_writes(
    redis_server: RedisServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """submit_many encodes its messages and records from one frame per batch, each task's
    arguments once, and builds no record (flowrra_redis.submits): Redis ends up holding
    the same bytes (messages, records, indexes, counts) as when the same messages go with
    records built one by one, in every call of a batch over SUBMIT_CHUNK."""
    from flowrra.task import PendingRecords, TaskMessage, TaskResult, queued_message

    url = redis_server.start()
    framed, built = _app(url, url, "framed"), _app(url, url, "built")
    client = redis.Redis.from_url(url)
    now = time.time()
    later = now + 60  # one object, as submit_many's (the frame compares by identity)
    tail = {"k": [1, "é", None]}

    def batch(queue: str) -> list[TaskMessage]:
        return [
            queued_message(f"id-{queue}-{n}", "add", (n, "x" * n), tail, -2, later, now, queue)
            if n % 3
            else queued_message(f"id-{queue}-{n}", "add", (), {}, -2, later, now, queue)
            for n in range(2100)
        ] + [  # a record over INLINE_LIMIT: its call is SUBMIT's, with its small event
            queued_message(f"id-{queue}-big", "add", (0, "y" * 70_000), {}, -2, later, now, queue)
        ]

    framed_calls: list[bool] = []
    send_framed = RecordedEnqueue._send_framed

    def spy(self: RecordedEnqueue, messages: Any) -> Any:
        sent = send_framed(self, messages)
        framed_calls.append(sent is not None)
        return sent

    monkeypatch.setattr(RecordedEnqueue, "_send_framed", spy)
    try:
        for queue in ("default", "emails"):
            messages = batch(queue)
            assert framed._recorded_enqueue is not None and built._recorded_enqueue is not None
            await framed._recorded_enqueue(messages, PendingRecords(messages))
            await built._recorded_enqueue(messages, [TaskResult.pending(m) for m in messages])
        assert framed_calls == [True, True]  # (a list of records: not framed)
        written = _contents(client, "framed")
        assert written == _contents(client, "built")
        assert len(written["results"]) == len(written["results:task:add"]) == 4202
        assert written["results:totals"] == {b"pending": b"4202"}
        assert len(written["delayed"]) == len(written["delayed:emails"]) == 2101  # eta: later
        # one resend guard per call of more than one message (SUBMIT_CHUNK each)
        assert len(written["sent"]) == 6
    finally:
        client.close()
        for app in (framed, built):
            await app.broker.close()
            await app.backend.close()


async def test_submit_many_refuses_arguments_json_cannot_hold_with_nothing_sent(
    redis_server: RedisServers,
) -> None:
    """Every task's arguments are encoded before the first call of a batch goes out: one
    that JSON cannot hold, late in a batch of several calls, raises SerializationError
    and leaves nothing in Redis (as the check submit_many made before did)."""
    from flowrra.exceptions import SerializationError

    url = redis_server.start()
    app = _app(url, url, "refused")
    client = redis.Redis.from_url(url)
    try:
        await app.submit("add", 0, 0)
        before = client.dbsize()
        calls: list[tuple[Any, ...]] = [(n, n) for n in range(2500)]
        calls[2400] = (object(), 1)
        with pytest.raises(SerializationError, match="the arguments of task 'add'"):
            await app.submit_many("add", calls)
        assert client.dbsize() == before
        assert client.zcard("{refused}:queue") == 1
    finally:
        client.close()
        await app.broker.close()
        await app.backend.close()


async def test_submit_many_with_a_listening_backend_and_event_listeners(
    redis_server: RedisServers,
) -> None:
    """With the backend listening for completions, every id of a framed batch is
    expected (as after store: wait_for_result reads no record first), and the app
    publishes the PENDING event of each task (it builds the records it publishes). A
    batch of two tasks (a group) takes the record-by-record path: test_canvas_redis."""
    url = redis_server.start()
    app = _app(url, url, "listening")
    seen: list[tuple[str, TaskStatus]] = []
    try:
        async with app:
            await app.wait_for_result(await app.submit("add", 1, 1), timeout=30)  # listening
            app.events.add_listener(lambda event: seen.append((event.task_id, event.status)))
            ids = await app.submit_many("add", [(n, 3) for n in range(1500)])
            assert all(app.backend.expects(i) for i in ids)  # type: ignore[attr-defined]
            assert [i for i, status in seen if status is TaskStatus.PENDING][:1500] == ids
            results = [await app.wait_for_result(i, timeout=30) for i in ids]
            assert [r.result for r in results] == [n + 3 for n in range(1500)]
    finally:
        await app.broker.close()
        await app.backend.close()


async def test_a_framed_call_that_failed_part_way_is_queued_when_sent_again(
    redis_server: RedisServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``submit_many`` call is guarded against a resend as a whole, by a key written last:
    one that stopped part way (here the task's index holds a string: WRONGTYPE after the
    records were written) has no guard, so the same call sent again (as the pipeline
    would) queues its messages, and once it has, a further resend queues nothing."""
    from flowrra_redis.pipeline import AutoPipeline
    from flowrra_redis.submits import SUBMIT_FRAMED

    url = redis_server.start()
    app = _app(url, url, "partway")
    client = redis.Redis.from_url(url)
    sent: list[tuple[Any, ...]] = []
    request_script = AutoPipeline.request_script

    def spy(self: AutoPipeline, script: Any, keys: Any, args: Any) -> Any:
        if script is SUBMIT_FRAMED:
            sent.append((tuple(keys), tuple(args)))
        return request_script(self, script, keys, args)

    monkeypatch.setattr(AutoPipeline, "request_script", spy)
    try:
        await app.submit("add", 0, 0)  # connected; its index exists
        index = "{partway-results}:results:task:add"
        assert client.type(index) == b"zset"
        client.delete(index)
        client.set(index, "not a sorted set")
        with pytest.raises(Exception, match="WRONGTYPE"):
            await app.submit_many("add", [(n, n) for n in range(3)])
        assert client.zcard("{partway}:queue") == 1  # the first submit's only
        client.delete(index)
        ((keys, args),) = sent
        for _ in range(2):  # sent again: queued; and again: nothing more
            client.evalsha(SUBMIT_FRAMED.sha, len(keys), *keys, *args)
            assert client.zcard("{partway}:queue") == 4
    finally:
        client.close()
        await app.broker.close()
        await app.backend.close()


async def test_a_channel_nobody_listens_to_costs_no_publish(redis_server: RedisServers) -> None:
    """Records are published on ``events`` (and complete ones on ``done``) only while a
    client subscribes to the channel: with none, a submit publishes nothing; with one, it
    hears every record."""
    from flowrra.task import TaskResult

    url = redis_server.start()
    app = _app(url, url, "quiet")
    client = redis.Redis.from_url(url)

    def publishes() -> int:
        return _calls(client).get("cmdstat_publish", 0)

    listener = client.pubsub()
    try:
        await app.submit("add", 0, 0)
        before = publishes()
        await app.submit_many("add", [(n, n) for n in range(10)])
        task_id = await app.submit("add", 1, 1)
        await app.backend.store(task_id, TaskResult(task_id, TaskStatus.SUCCESS, result=2))
        assert publishes() == before, "nobody listens"

        keys = app.backend.keys  # type: ignore[attr-defined]
        listener.subscribe(keys.events, keys.done)
        for _ in range(2):
            assert listener.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
        before = publishes()
        ids = await app.submit_many("add", [(n, n) for n in range(10)])
        done_id = await app.submit("add", 2, 2)
        await app.backend.store(done_id, TaskResult(done_id, TaskStatus.SUCCESS, result=4))
        assert publishes() == before + 10 + 1 + 2  # the events, and the completion on done
        heard = []
        while (message := listener.get_message(timeout=1)) is not None:
            heard.append((message["channel"].decode(), message["data"].decode()))
        on_events = [data for channel, data in heard if channel == keys.events]
        assert len(on_events) == 12 and all(i in "".join(on_events) for i in ids)
        on_done = [data for channel, data in heard if channel == keys.done]
        assert len(on_done) == 1 and on_done[0].startswith(done_id)
    finally:
        listener.close()
        client.close()
        await app.broker.close()
        await app.backend.close()


async def test_a_large_submit_many_is_written_as_it_is_built_and_paced_to_redis(
    redis_server: RedisServers,
) -> None:
    """A ``submit_many`` builds its calls without a turn of the loop in between: before,
    all of them waited in the connection's buffer until the last was built (Redis idle
    meanwhile) and, with Redis behind, the whole batch sat in memory. Now the calls the
    socket cannot take at once are sent a turn of the loop apart, and no more than
    WRITE_AHEAD bytes (and the call being built) wait: here Redis is stopped (SIGSTOP)
    while 40 MB of calls are made, and the rest waits to be built."""
    from flowrra_redis.pipeline import WRITE_AHEAD

    url = redis_server.start()
    app = _app(url, url, "paced", socket_timeout=60)
    client = redis.Redis.from_url(url)
    try:
        await app.submit_many("add", [(0, 0), (0, 0)])  # connected, scripts known
        pipe = app.broker.pipe  # type: ignore[attr-defined]
        text = "x" * 1000  # ~2 KB a task: its message and its record
        redis_server.pause(url)
        try:
            sending = asyncio.ensure_future(
                app.submit_many("add", [(n, text) for n in range(20_000)])
            )
            await asyncio.sleep(1.0)
            assert not sending.done()
            assert 0 < pipe.backlog() <= WRITE_AHEAD + 3_000_000  # and one call of ~2 MB
        finally:
            redis_server.resume(url)
        async with asyncio.timeout(60):
            ids = await sending
        assert len(ids) == 20_000 and client.zcard("{paced}:queue") == 20_002
        assert (await app.backend.counts(1))["totals"]["pending"] == 20_002
    finally:
        client.close()
        await app.broker.close()
        await app.backend.close()
