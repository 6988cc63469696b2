"""The dashboard in Debian's chromium, served by gunicorn (threads) in front of a worker
process on Redis (the shared suite of flowrra_ui.browser_contract), signed in as
docs/flask.md shows: the app's session cookie, and HTTP basic auth. Live updates come as
Server-Sent Events (``/events``)."""

from __future__ import annotations

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
