"""The dashboard in Debian's chromium, served by gunicorn (threads) in front of a worker
process on Redis (the shared suite of flowrra_ui.browser_contract), signed in as
docs/flask.md shows: the app's session cookie, and HTTP basic auth. Live updates come as
Server-Sent Events (``/events``)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flowrra_ui.browser_contract import ServedUI, UIBrowserContract, serve_ui

from flowrra import Flowrra

SERVED = Path(__file__).parent / "served"
USERNAME, PASSWORD = "ada", "correct horse"  # as served/flask_served.py checks them


def _no_control_socket() -> list[str]:
    """gunicorn 24+ opens a control socket at ~/.gunicorn/gunicorn.ctl, one path for every
    server of the user: servers running side by side (tests) must not share it."""
    from gunicorn import config  # type: ignore[import-untyped,unused-ignore]

    names = {setting.name for setting in config.KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


GUNICORN = [
    *(sys.executable, "-m", "gunicorn", "flask_served:web", "-b", "127.0.0.1:{port}"),
    *("--worker-class", "gthread", "--workers", "1", "--threads", "16"),
    *("--graceful-timeout", "2"),  # open event streams end with the worker
    *_no_control_socket(),
]


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[ServedUI]:
    with serve_ui(
        GUNICORN,
        "flask_served:flowrra",
        cwd=SERVED,
        redis_url=redis_url,
        folder=tmp_path,
        login_path="/login",
        credentials=(USERNAME, PASSWORD),
        private_mount="/private/",
        basic_mount="/basic/",
    ) as served:
        yield served


class TestFlaskInChromium(UIBrowserContract):
    adapter = "flask"

    async def test_without_a_websocket_the_page_polls_every_15_seconds(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        """On WSGI the live stream is ``/events`` (Server-Sent Events), not a WebSocket:
        the shared test, with that stream refused instead of the WebSocket."""
        from playwright.async_api import expect

        page = await self._page(browser, served)
        await page.route(re.compile(r".*/events$"), lambda route: route.abort())
        await page.clock.install()
        await page.goto(served.url)
        await expect(page.locator("#live")).to_have_text("Polling every 15 s")
        await expect(page.locator("#notice-live")).to_contain_text("refreshes every 15 seconds")
        await expect(page.locator("#totals .card.success .value")).to_have_text("0")
        await self._shot(page, "polling")

        task_id = await producer.submit("add", 2, 2)
        assert (await producer.wait_for_result(task_id, timeout=15)).result == 4
        await page.clock.run_for(5_000)
        await expect(page.locator("#totals .card.success .value")).to_have_text("0")
        await page.clock.run_for(11_000)  # past the 15 s poll
        await expect(page.locator("#totals .card.success .value")).to_have_text("1")
        assert self.page_errors == []

    async def test_a_burst_of_events_in_one_frame_reaches_the_page(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        """On WSGI the live stream is Server-Sent Events: the shared test, with the stream
        answered by ``ready`` and one ``{"type": "events"}`` message of a real task's
        events (a burst, as the server sends what waits for a client)."""
        from playwright.async_api import Route, expect

        task_id = await producer.submit("add", 20, 22)
        record = await producer.wait_for_result(task_id, timeout=15)
        assert record.result == 42 and record.finished_at is not None
        at = record.finished_at.isoformat()
        events = [
            {"task_id": task_id, "task_name": "add", "status": status, "retries": 0, "at": at}
            | {"error": None, "progress": None}
            for status in ("pending", "running", "success")
        ]
        body = 'data: {"type": "ready"}\n\n'
        body += f"data: {json.dumps({'type': 'events', 'events': events})}\n\n"
        answered: list[str] = []

        async def answer(route: Route) -> None:
            if answered:  # the page reconnects once the stream ends: no more
                await route.abort()
                return
            answered.append(body)
            headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            await route.fulfill(status=200, headers=headers, body=body)

        page = await self._page(browser, served)
        await page.route(re.compile(r".*/events$"), answer)
        await page.goto(served.url)
        feed = page.locator(f'#feed li[data-id="{task_id}"]')
        await expect(feed).to_have_count(3, timeout=15_000)
        assert [await item.get_attribute("data-status") for item in await feed.all()] == [
            "success",
            "running",
            "pending",
        ]  # newest first: the message's events in their order
        await expect(page.locator("#totals .card.success .value")).to_have_text("1")
        assert self.page_errors == []
