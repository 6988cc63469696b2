# test_shop.py: the project's tests
import shop

from flowrra import Flowrra, TaskStatus


async def test_receipt_is_sent(flowrra_eager: Flowrra) -> None:
    task_id = await shop.send_receipt.submit(7, "ada@example.com")
    # In eager mode the task has run: its result is already stored.
    result = await flowrra_eager.wait_for_result(task_id)
    assert result.status is TaskStatus.SUCCESS
    assert shop.outbox == ["To ada@example.com: your receipt for order 7"]


async def test_a_failing_task_does_not_raise_from_submit(flowrra_eager: Flowrra) -> None:
    task_id = await shop.send_receipt.submit(8, "not-an-address")
    result = await flowrra_eager.wait_for_result(task_id)
    assert result.status is TaskStatus.FAILED
    assert result.error is not None
    assert result.error.startswith("ValueError: not an email address")


async def test_retries_run_at_once(flowrra_eager: Flowrra) -> None:
    shop.gateway.failures_left = 2  # two retries, each 'due' 30 s then 60 s later
    task_id = await shop.charge.submit(9, 1250)
    result = await flowrra_eager.wait_for_result(task_id)
    assert result.status is TaskStatus.SUCCESS
    assert result.result == {"order": 9, "charge": "ch_3", "cents": 1250}
    assert shop.gateway.calls == 3


def test_sync_code_in_eager_mode(flowrra_eager: Flowrra) -> None:
    task_id = shop.invoice_total.delay([1000, 250])
    assert flowrra_eager.wait_for_result_sync(task_id).result == 1250


async def test_with_a_real_worker(flowrra_worker: Flowrra, flowrra_join) -> None:  # type: ignore[no-untyped-def]
    ids = [await shop.send_receipt.submit(n, f"user{n}@example.com") for n in range(5)]
    ids.append(await shop.charge.with_options(delay=0.05).submit(10, 500))
    await flowrra_join(timeout=10)  # nothing queued, delayed or running any more
    results = [await flowrra_worker.get_result(task_id) for task_id in ids]
    assert all(r is not None and r.status is TaskStatus.SUCCESS for r in results)
    assert len(shop.outbox) == 5
