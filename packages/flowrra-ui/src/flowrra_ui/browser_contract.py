"""The browser suite every UI adapter passes: the dashboard page, served for real by the
adapter's own server (uvicorn, hypercorn, daphne) in front of a ``flowrra worker``
process on Redis, driven by Playwright in Debian's chromium (``/usr/bin/chromium``).

The web process is not the worker: tasks are submitted from the test process, run in the
worker, and their events reach the page through the Redis backend and the adapter's
WebSocket. An adapter's tests subclass :class:`UIBrowserContract` and give a ``served``
fixture (a :class:`ServedUI`), usually from :func:`serve_ui`. The module its server and
worker import builds its Flowrra app with :func:`served_ui_app`.

Screenshots of every page go to ``$FLOWRRA_UI_SCREENSHOTS`` (default: a folder under the
system's temporary directory), printed when the suite starts; look at them.

It needs what ``pip install "flowrra-ui[testing]"`` brings (pytest, flowrra-redis,
Playwright); ``import flowrra_ui`` never imports it. Without chromium the tests are
skipped, unless ``CI`` or ``FLOWRRA_REQUIRE_SERVICES=1`` is set: then they fail
(``tools/ensure-browser.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from flowrra import Flowrra
from flowrra.task import TaskStatus
from flowrra_ui.testing import make_ui_app

__all__ = ["CHROMIUM", "ServedUI", "UIBrowserContract", "serve_ui", "served_ui_app"]

CHROMIUM = os.environ.get("FLOWRRA_CHROMIUM", "/usr/bin/chromium")
XSS = "<img src=x onerror=window.__xss=1><script>window.__xss=2</script><b>bold</b>"
_ENV_URL = "FLOWRRA_UI_TEST_REDIS_URL"
_ENV_FOLDER = "FLOWRRA_UI_TEST_FOLDER"


def served_ui_app() -> Flowrra:
    """The app of :func:`~flowrra_ui.testing.make_ui_app`, on the Redis URL and in the
    folder :func:`serve_ui` gives the server and worker processes in their environment."""
    return make_ui_app(Path(os.environ[_ENV_FOLDER]), os.environ[_ENV_URL])


@dataclass
class ServedUI:
    """A UI served for real: ``url`` is the mount root with an auth hook (ending in
    ``/``), ``readonly_url`` one without (or ``None``), ``cookies`` what lets the browser
    in (Playwright's ``add_cookies`` format, without ``url``), ``redis_url`` and
    ``folder`` where the app's queue and schedules are."""

    url: str
    readonly_url: str | None
    redis_url: str
    folder: Path
    cookies: list[dict[str, Any]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {process.args!r}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s: {process.args!r}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serve_ui(
    server: Sequence[str],
    worker_app: str,
    *,
    cwd: Path,
    redis_url: str,
    folder: Path,
    mount: str = "/flowrra/",
    readonly_mount: str | None = "/open/",
    cookies: list[dict[str, Any]] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[ServedUI]:
    """Run ``server`` (a command line; ``{port}`` is replaced by a free port) and a
    ``flowrra worker worker_app`` process in ``cwd``, on a fresh key prefix of
    ``redis_url``; yield the :class:`ServedUI`; stop both (SIGTERM) and delete the
    prefix's keys at the end."""
    import redis

    prefix = f"flowrra-ui-browser-{uuid.uuid4().hex[:8]}"
    separator = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{separator}prefix={prefix}"
    port = _free_port()
    env = {
        **os.environ,
        _ENV_URL: url,
        _ENV_FOLDER: str(folder),
        "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]),
        **(extra_env or {}),
    }
    flowrra = str(Path(sys.executable).with_name("flowrra"))
    worker = subprocess.Popen([flowrra, "worker", worker_app], cwd=cwd, env=env)
    web = subprocess.Popen([part.format(port=port) for part in server], cwd=cwd, env=env)
    try:
        _wait_for_port(port, web)
        base = f"http://127.0.0.1:{port}"
        readonly = base + readonly_mount if readonly_mount else None
        yield ServedUI(base + mount, readonly, url, folder, list(cookies or []))
    finally:
        _stop(web)
        _stop(worker)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def screenshot_folder() -> Path:
    """Where the suite saves its screenshots (created)."""
    folder = Path(
        os.environ.get("FLOWRRA_UI_SCREENSHOTS")
        or Path(tempfile.gettempdir()) / "flowrra-ui-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _require_browser() -> None:
    if Path(CHROMIUM).exists() and shutil.which(CHROMIUM):
        return
    message = f"no chromium at {CHROMIUM} (apt-get install chromium; tools/ensure-browser.sh)"
    if os.environ.get("CI") or os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


class UIBrowserContract:
    """See the module docs. ``adapter`` names the screenshots."""

    adapter = "ui"
    page_errors: list[str]

    @pytest.fixture(autouse=True)
    def _collect_page_errors(self) -> None:
        self.page_errors = []  # uncaught errors in any page of the test

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _announce_screenshots(cls, request: pytest.FixtureRequest) -> None:
        plugins = request.config.pluginmanager
        reporter = plugins.get_plugin("terminalreporter")
        capture = plugins.get_plugin("capturemanager")
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():  # shown even though output is captured
            reporter.ensure_newline()
            reporter.write_line(f"{cls.adapter} UI screenshots: {screenshot_folder()}")

    @pytest.fixture
    def redis_url(self) -> str:
        """``$FLOWRRA_TEST_REDIS_URL`` (default the local server's db 9), checked."""
        import redis

        url = os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.ConnectionError as exc:
            if os.environ.get("FLOWRRA_REQUIRE_SERVICES") == "1":
                pytest.fail(f"Redis at {url} is unreachable: {exc}")
            pytest.skip(f"Redis at {url} is unreachable: {exc}")
        return url

    @pytest.fixture
    async def producer(self, served: ServedUI) -> AsyncIterator[Flowrra]:
        """An app in the test process on the served app's Redis and schedule store."""
        app = make_ui_app(served.folder, served.redis_url)
        async with app.producer():
            yield app
        await app.scheduler.stop()

    @pytest.fixture
    async def browser(self) -> AsyncIterator[Any]:
        _require_browser()
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                yield browser
            finally:
                await browser.close()

    async def _page(self, browser: Any, served: ServedUI, **options: Any) -> Any:
        options = {"timezone_id": "UTC", "viewport": {"width": 1280, "height": 860}, **options}
        context = await browser.new_context(**options)
        if served.cookies:
            origin = "{0.scheme}://{0.netloc}/".format(urlsplit(served.url))  # every mount
            await context.add_cookies([{**c, "url": origin} for c in served.cookies])
        page = await context.new_page()
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        return page

    async def _shot(self, page: Any, name: str) -> None:
        folder = screenshot_folder()
        path = folder / f"{self.adapter}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")

    async def test_tasks_appear_live_and_a_failures_traceback_opens(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        page = await self._page(browser, served)
        await page.goto(served.url)
        await expect(page.locator("#live")).to_have_text("Live", timeout=15_000)
        await page.evaluate("window.__sameDocument = true")

        done = [await producer.submit("add", n, n) for n in range(3)]
        bad = await producer.submit("boom", XSS)
        feed = page.locator("#feed")
        await expect(feed.locator(f'li[data-id="{bad}"][data-status="failed"]')).to_have_count(
            1, timeout=15_000
        )
        for task_id in done:
            done_item = feed.locator(f'li[data-id="{task_id}"][data-status="success"]')
            await expect(done_item).to_have_count(1)
        await expect(page.locator("#totals .card.success .value")).to_have_text("3")
        await expect(page.locator("#totals .card.failed .value")).to_have_text("1")
        await expect(page.locator("#workers tbody tr")).to_have_count(1)
        assert await page.evaluate("window.__sameDocument") is True, "the page reloaded"
        await expect(page.locator("#failures td.mono")).to_have_text(f"RuntimeError: {XSS}")
        await self._shot(page, "dashboard")

        await page.click('nav a[data-view="executions"]')
        await page.select_option('#filters select[name="status"]', "failed")
        await expect(page.locator("#executions-table tbody tr")).to_have_count(1)
        await self._shot(page, "executions")
        await page.click(f'#executions-table tr[data-id="{bad}"]')
        detail = page.locator("#detail")
        await expect(detail.locator("pre.traceback")).to_contain_text(
            "Traceback (most recent call last)"
        )
        await expect(detail.locator("pre.traceback")).to_contain_text("RuntimeError")
        await expect(detail.locator("dl.kv")).to_contain_text(bad)
        await expect(detail.locator("pre.error")).to_have_text(f"RuntimeError: {XSS}")
        await expect(detail.locator("pre.args")).to_contain_text(XSS)
        await self._shot(page, "traceback")
        # The markup is shown as text: nothing of it became an element or ran.
        assert await page.evaluate("window.__xss") is None
        assert await page.locator('img[src="x"], b:text("bold")').count() == 0

        await detail.locator("#retry").click()
        await expect(detail.locator(".message.ok")).to_contain_text("Submitted again as")
        again = (await detail.locator(".message.ok button").text_content() or "").strip()
        record = await producer.wait_for_result(again, timeout=15)
        assert record.status is TaskStatus.FAILED and list(record.args) == [XSS]
        assert self.page_errors == []

    async def test_create_disable_and_delete_a_schedule(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        page = await self._page(browser, served)
        page.on("dialog", lambda dialog: dialog.accept())
        await page.goto(served.url + "#schedules")
        form = page.locator("#schedule-form")
        message = page.locator("#schedule-message")
        await form.locator('select[name="task_name"]').select_option("add")
        await form.locator('input[name="cron"]').fill("every morning")
        await form.locator('button[type="submit"]').click()
        await expect(message).to_contain_text("invalid cron")
        await expect(message).to_have_class(re.compile("error"))
        await self._shot(page, "schedule-invalid")

        await form.locator('input[name="cron"]').fill("0 9 * * *")
        await form.locator('input[name="timezone"]').fill("Asia/Tokyo")
        await form.locator('input[name="args"]').fill("[1, 2]")
        await form.locator('button[type="submit"]').click()
        await expect(message).to_contain_text("Created")
        [made] = await producer.scheduler.list()
        assert (made.schedule, made.timezone) == ("0 9 * * *", "Asia/Tokyo")
        assert list(made.args) == [1, 2]

        await form.locator('select[name="kind"]').select_option("once")
        await expect(form.locator('input[name="cron"]')).to_be_hidden()
        when = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        await form.locator('input[name="run_at"]').fill(when.strftime("%Y-%m-%dT%H:%M:%S"))
        await form.locator('button[type="submit"]').click()
        await expect(page.locator("#schedules-table tbody tr")).to_have_count(2)
        once = next(s for s in await producer.scheduler.list() if s.id != made.id)
        assert once.next_run_at == when
        await self._shot(page, "schedules")

        row = page.locator(f'#schedules-table tr[data-id="{made.id}"]')
        await row.locator('button[data-action="disable"]').click()
        await expect(row.locator("td.state")).to_have_text("disabled")
        assert (await producer.scheduler.get(made.id)).enabled is False
        await row.locator('button[data-action="delete"]').click()
        await expect(row).to_have_count(0)
        assert [s.id for s in await producer.scheduler.list()] == [once.id]
        assert self.page_errors == []

    async def test_tasks_page_phone_layout_and_read_only_mount(
        self, browser: Any, served: ServedUI
    ) -> None:
        from playwright.async_api import expect

        page = await self._page(browser, served)
        await page.goto(served.url + "#tasks")
        await expect(page.locator('#tasks-table tr[data-task="add"]')).to_contain_text(
            "Adds two numbers."
        )
        await self._shot(page, "tasks")

        phone = await self._page(browser, served, viewport={"width": 390, "height": 844})
        await phone.goto(served.url)
        await expect(phone.locator("#live")).to_have_text("Live", timeout=15_000)
        await self._shot(phone, "dashboard-phone")
        overflow = await phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"

        if served.readonly_url is not None:
            readonly = await self._page(browser, served)
            await readonly.goto(served.readonly_url + "#schedules")
            notice = readonly.locator("#notice-readonly")
            await expect(notice).to_be_visible()
            await expect(notice).to_contain_text("read-only")
            await expect(readonly.locator('#schedule-form button[type="submit"]')).to_be_disabled()
            await self._shot(readonly, "read-only")
        assert self.page_errors == []

    async def test_without_a_websocket_the_page_polls_every_15_seconds(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        page = await self._page(browser, served)

        async def refuse(socket: Any) -> None:
            await socket.close()

        await page.route_web_socket(re.compile(r".*/ws$"), refuse)
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
