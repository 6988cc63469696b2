"""Submitting when the transaction commits, on the real PostgreSQL: a task submitted inside
an atomic block that rolls back is never queued; one whose block commits runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import override_settings
from flowrra_django import delay_on_commit, get_app
from shop.models import Note, Order

from flowrra import Flowrra, TaskHandle, TaskStatus

pytestmark = pytest.mark.usefixtures("database")


def write_note(text: str) -> int:
    return Note.objects.create(text=text).pk


@pytest.fixture
async def app() -> AsyncIterator[Flowrra]:
    """The project's app from settings without a broker URL: in memory, running here."""
    with override_settings(FLOWRRA={}):
        app = get_app()
        app.task(name="write_note")(write_note)
        async with app:
            yield app


def note_task(app: Flowrra) -> TaskHandle[[str], int]:
    handle = app.registry.get_or_raise("write_note")
    return handle


class Declined(Exception):
    pass


def order_then(submit: Callable[[], None], *, fail: bool) -> None:
    """A view's transaction: an order, the task submitted, and maybe an error."""
    try:
        with transaction.atomic():
            Order.objects.create(item="book")
            submit()
            if fail:
                raise Declined
    except Declined:
        pass


async def notes_queued(app: Flowrra) -> list[str]:
    return [str(r.args[0]) for r in await app.backend.list(task_name="write_note", limit=100)]


def submissions(app: Flowrra) -> dict[str, Callable[[str], None]]:
    """Each documented way of submitting on commit (docs/django.md)."""
    task = note_task(app)

    def with_on_commit(text: str) -> None:
        transaction.on_commit(lambda: task.delay(text))

    return {
        "delay_on_commit": lambda text: delay_on_commit(task, text),
        "with_options": lambda text: delay_on_commit(task.with_options(priority=-1), text),
        "on_commit": with_on_commit,
    }


@pytest.mark.parametrize("way", ["delay_on_commit", "with_options", "on_commit"])
async def test_rolled_back_never_runs_committed_runs(app: Flowrra, way: str) -> None:
    submit = submissions(app)[way]
    rolled_back, committed = f"rb-{uuid.uuid4().hex[:6]}", f"ok-{uuid.uuid4().hex[:6]}"

    await sync_to_async(order_then)(lambda: submit(rolled_back), fail=True)
    assert await notes_queued(app) == []

    await sync_to_async(order_then)(lambda: submit(committed), fail=False)
    (record,) = await app.backend.list(task_name="write_note")
    assert record.args[0] == committed
    result = await app.wait_for_result(record.task_id, timeout=10)
    assert result.status is TaskStatus.SUCCESS
    texts = await sync_to_async(lambda: set(Note.objects.values_list("text", flat=True)))()
    assert committed in texts and rolled_back not in texts


async def test_a_rolled_back_savepoint_drops_its_task_only(app: Flowrra) -> None:
    task = note_task(app)

    def outer_commits_inner_rolls_back() -> None:
        with transaction.atomic():
            delay_on_commit(task, "outer")
            try:
                with transaction.atomic():
                    delay_on_commit(task, "inner")
                    raise Declined
            except Declined:
                pass

    await sync_to_async(outer_commits_inner_rolls_back)()
    assert await notes_queued(app) == ["outer"]


async def test_outside_a_transaction_it_is_queued_at_once(app: Flowrra) -> None:
    await sync_to_async(delay_on_commit)(note_task(app), "now")
    assert await notes_queued(app) == ["now"]
