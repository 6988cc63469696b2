"""Input to named queues: names, weights, -Q text and routes, refused with the bad value
named; what a worker takes by default."""

from __future__ import annotations

import pytest

from flowrra import Flowrra
from flowrra.queues import MAX_QUEUE_NAME, QueueSelection, Routes, check_queue_name


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", ValueError),
        ("x" * (MAX_QUEUE_NAME + 1), ValueError),
        ("two words", ValueError),
        ("emails,reports", ValueError),
        ("emails:3", ValueError),
        ("{tag}", ValueError),
        ("é", ValueError),
        ("a\x00b", ValueError),
        (None, TypeError),
        (3, TypeError),
        (float("nan"), TypeError),
        (b"emails", TypeError),
    ],
)
def test_a_bad_queue_name_is_refused_naming_it(name: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="queue"):
        check_queue_name(name)


def test_good_names_and_the_longest() -> None:
    for name in ("default", "emails", "a.b-c_d", "x" * MAX_QUEUE_NAME):
        assert check_queue_name(name) == name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("emails:0", "weight is an int from 1 to 1000"),
        ("emails:1001", "weight is an int from 1 to 1000"),
        ("emails:-1", "weight is an int from 1 to 1000"),
        ("emails:nan", "whole number"),
        ("emails:1.5", "whole number"),
        ("emails,emails", "named twice"),
        ("", "not a queue name"),
        ("emails,", "not a queue name"),
    ],
)
def test_bad_worker_selections_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QueueSelection.parse(text)


def test_a_selection_parses_weights_and_prints_back() -> None:
    selection = QueueSelection.parse(" emails:3 , reports ", strict=True)
    assert selection.names == ("emails", "reports") and selection.weights == (3, 1)
    assert str(selection) == "emails:3,reports (strict)"
    with pytest.raises(ValueError, match="weight"):
        QueueSelection(("a",), (True,))  # a bool is not a weight


def test_routes_check_their_queues_and_first_match_wins() -> None:
    routes = Routes({"reports.*": "reports", "reports.big": "big", "send_*": "emails"})
    assert routes.queue_for("reports.big") == "reports"
    assert routes.queue_for("send_mail") == "emails" and routes.queue_for("other") is None
    with pytest.raises(ValueError, match="the queue of route 'x'"):
        Routes({"x": "not a name"})
    with pytest.raises(TypeError, match="pattern"):
        Routes({"": "emails"})


async def test_submit_refuses_a_bad_queue_before_anything_is_stored() -> None:
    app = Flowrra()

    @app.task()
    async def job() -> None:
        return None

    for bad in ("", "a b", "x" * 500):
        with pytest.raises(ValueError, match="queue"):
            await app.submit(job, queue=bad)
        with pytest.raises(ValueError, match="queue"):
            job.with_options(queue=bad)
    with pytest.raises(ValueError, match="queue"):
        app.task(queue="a b")
    assert app.pending_count() == 0
    assert await app.backend.list(limit=10) == []
