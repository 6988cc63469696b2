"""The browser suite every UI adapter passes: the dashboard page, served for real by the
adapter's own server (uvicorn, hypercorn, daphne) in front of a ``flowrra worker``
process on Redis, driven by Playwright in Debian's chromium (``/usr/bin/chromium``).

The web process is not the worker: tasks are submitted from the test process, run in the
worker, and their events reach the page through the Redis backend and the adapter's
WebSocket. An adapter's tests subclass :class:`UIBrowserContract` and give a ``served``
fixture (a :class:`ServedUI`), usually from :func:`serve_ui`. The module its server and
worker import builds its Flowrra app with :func:`served_ui_app`.

Screenshots of every page go to ``$FLOWRRA_UI_SCREENSHOTS`` (default: a folder under the
system's temporary directory), printed when the suite starts; look at them. With
``$FLOWRRA_UI_DOCS_IMG`` set (``docs/img``), the pages in light and dark mode are saved there
too, as the documentation shows them (``ui-<page>.png``, ``ui-<page>-dark.png``).

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
from flowrra_ui.redaction import REDACTED
from flowrra_ui.testing import (
    PrivateRedis,
    dead_letter,
    frame_events,
    make_ui_app,
    open_gate,
    private_redis,
    scheduler_of,
)

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
    ``/``), ``readonly_url`` a read-only one anyone let in may read (``public=True``), or
    ``None``; ``redis_url`` and ``folder`` where the app's queue and schedules are.

    What lets the browser in to ``url``: ``cookies`` (Playwright's ``add_cookies`` format,
    without ``url``), or ``login_url``, the host app's sign-in form (fields ``username``
    and ``password``, a submit button; it sets the host's session cookie and redirects to
    ``url``) with ``credentials``. ``private_url`` is a mount given no auth hook,
    ``basic_url`` one guarded by HTTP basic auth with ``credentials`` (each ``None`` where
    the adapter has none)."""

    url: str
    readonly_url: str | None
    redis_url: str
    folder: Path
    cookies: list[dict[str, Any]] = field(default_factory=list)
    login_url: str | None = None
    credentials: tuple[str, str] | None = None
    private_url: str | None = None
    basic_url: str | None = None


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
    login_path: str | None = None,
    credentials: tuple[str, str] | None = None,
    private_mount: str | None = None,
    basic_mount: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[ServedUI]:
    """Run ``server`` (a command line; ``{port}`` is replaced by a free port) and a
    ``flowrra worker worker_app`` process in ``cwd``, on a fresh key prefix of
    ``redis_url``; yield the :class:`ServedUI` (its URLs are these paths on the server);
    stop both (SIGTERM) and delete the prefix's keys at the end."""
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

        def at(path: str | None) -> str | None:
            return base + path if path else None

        yield ServedUI(
            base + mount,
            at(readonly_mount),
            url,
            folder,
            list(cookies or []),
            login_url=at(login_path),
            credentials=credentials,
            private_url=at(private_mount),
            basic_url=at(basic_mount),
        )
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


def docs_folder() -> Path | None:
    """``$FLOWRRA_UI_DOCS_IMG`` (created), where the documentation's screenshots go, or
    ``None`` when it is not set."""
    folder = os.environ.get("FLOWRRA_UI_DOCS_IMG")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


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
    def own_redis(self, tmp_path: Path) -> Iterator[PrivateRedis]:
        """A redis-server of the test's own (see :func:`redis_url`), which it may kill."""
        with private_redis(tmp_path / "own-redis") as server:
            yield server

    @pytest.fixture
    def redis_url(self, request: pytest.FixtureRequest) -> str:
        """``$FLOWRRA_TEST_REDIS_URL`` (default the local server's db 9), checked; for a
        test that asks for ``own_redis``, that server's."""
        import redis

        if "own_redis" in request.fixturenames:
            own: PrivateRedis = request.getfixturevalue("own_redis")
            return own.url

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
        await scheduler_of(app).stop()

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

    async def _page(
        self, browser: Any, served: ServedUI, *, signed_in: bool = True, **options: Any
    ) -> Any:
        """A page in a fresh browser context, signed in to ``served.url`` as the adapter
        says (``signed_in=False``: not)."""
        options = {"timezone_id": "UTC", "viewport": {"width": 1280, "height": 860}, **options}
        context = await browser.new_context(**options)
        if signed_in and served.cookies:
            origin = "{0.scheme}://{0.netloc}/".format(urlsplit(served.url))  # every mount
            await context.add_cookies([{**c, "url": origin} for c in served.cookies])
        if signed_in and served.login_url is not None:
            # The host's sign-in form, posted by the browser context: its answer sets the
            # host's session cookie in this context, as a person signing in would get it.
            username, password = served.credentials or ("", "")
            answer = await context.request.post(
                served.login_url, form={"username": username, "password": password}
            )
            assert answer.ok, f"signing in at {served.login_url} gave {answer.status}"
        page = await context.new_page()
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        return page

    async def _shot(self, page: Any, name: str, docs: str | None = None) -> None:
        """A full-page screenshot ``<adapter>-<name>.png``; with ``docs`` and
        ``$FLOWRRA_UI_DOCS_IMG`` set, also ``<that folder>/ui-<docs>.png``."""
        folder = screenshot_folder()
        path = folder / f"{self.adapter}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        documented = docs_folder()
        if docs is not None and documented is not None:
            await page.screenshot(path=str(documented / f"ui-{docs}.png"), full_page=True)

    async def _submit_sample(self, producer: Flowrra) -> tuple[list[str], str]:
        """Two ``add`` tasks and one ``boom``, finished: ``([add ids], boom id)``."""
        done = [await producer.submit("add", n, n) for n in (1, 2)]
        bad = await producer.submit("boom", "the payment service answered 503")
        for task_id in [*done, bad]:
            await producer.wait_for_result(task_id, timeout=15)
        return done, bad

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

    async def test_a_burst_of_events_in_one_frame_reaches_the_page(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        """A frame of several events (``{"type": "events"}``, what the server sends when
        events wait for a client) updates the page as the same events one by one would.
        The page's WebSocket goes through Playwright to the real server; the task's real
        events are held there and handed to the page as one frame, as a busy server
        would send them (this server, busy with nothing else, often sends the last two
        together already)."""
        import json

        from playwright.async_api import expect

        page = await self._page(browser, served)
        held: list[dict[str, Any]] = []
        frames: list[str] = []

        def relay(socket: Any) -> None:
            server = socket.connect_to_server()

            def from_server(message: str | bytes) -> None:
                decoded = json.loads(message)
                events = frame_events(decoded)
                if not events:  # ready, reconnecting
                    socket.send(message)
                    return
                held.extend(events)  # alone, or in a frame the server made already
                if events[-1]["status"] == "success":
                    frame = json.dumps({"type": "events", "events": [*held]})
                    held.clear()
                    frames.append(frame)
                    socket.send(frame)

            server.on_message(from_server)

        await page.route_web_socket(re.compile(r".*/ws$"), relay)
        await page.goto(served.url)
        await expect(page.locator("#live")).to_have_text("Live", timeout=15_000)
        await expect(page.locator("#totals .card.success .value")).to_have_text("0")

        task_id = await producer.submit("add", 20, 22)
        assert (await producer.wait_for_result(task_id, timeout=15)).result == 42
        feed = page.locator(f'#feed li[data-id="{task_id}"]')
        await expect(feed).to_have_count(3, timeout=15_000)
        assert [await item.get_attribute("data-status") for item in await feed.all()] == [
            "success",
            "running",
            "pending",
        ]  # newest first: the frame's events in their order
        assert len(frames) == 1 and len(json.loads(frames[0])["events"]) == 3
        await expect(page.locator("#totals .card.success .value")).to_have_text("1")
        assert self.page_errors == []

    async def test_a_running_tasks_progress_live_and_its_headers_masked(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        """A task in the worker reports 50%, then (on the test's word) 90%, then ends: its
        open detail follows each step through the live stream, and shows its headers with
        the secret one masked."""
        from playwright.async_api import expect

        gate = served.folder / f"gate-{uuid.uuid4().hex[:8]}"
        steps = [[0.5, "parsed 4,000 of 8,000 rows"], [0.9, "writing the <b>report</b>"]]
        headers = {"Authorization": "Bearer abc.def", "X-Request-Id": "req-42"}
        page = await self._page(browser, served)
        await page.goto(served.url + "#executions")
        await expect(page.locator("#live")).to_have_text("Live", timeout=15_000)
        await page.evaluate("window.__sameDocument = true")
        slow = producer.registry.get_or_raise("slow")
        try:
            task_id = await slow.with_options(headers=headers).submit(steps, str(gate))
            row = page.locator(f'#executions-table tr[data-id="{task_id}"][data-status="running"]')
            await expect(row.locator("td.state .percent")).to_have_text("50%", timeout=15_000)
            feed_item = page.locator(f'#feed li[data-id="{task_id}"]')
            await row.click()
            detail = page.locator("#detail")
            progress = detail.locator("#detail-progress")
            await expect(progress.locator(".percent")).to_have_text("50%")
            await expect(progress.locator(".progress-message")).to_have_text(steps[0][1])
            assert await progress.locator("progress").get_attribute("value") == "0.5"
            shown = detail.locator("dl.headers")
            await expect(shown.locator("dt")).to_have_text(["Authorization", "X-Request-Id"])
            await expect(shown.locator("dd")).to_have_text([REDACTED, "req-42"])
            await expect(detail).not_to_contain_text("abc.def")
            await self._shot(page, "progress")

            dark = await self._page(browser, served, color_scheme="dark")
            await dark.goto(f"{served.url}?task={task_id}#executions")
            await expect(dark.locator("#detail-progress .percent")).to_have_text("50%")
            await expect(dark.locator("#detail dl.headers dd").first).to_have_text(REDACTED)
            await self._shot(dark, "progress-dark")
            await dark.close()

            open_gate(gate, 0)  # the task reports its next step: 90%
            await expect(progress.locator(".percent")).to_have_text("90%", timeout=15_000)
            await expect(progress.locator(".progress-message")).to_have_text(steps[1][1])
            await expect(row.locator("td.state .percent")).to_have_text("90%")
            await expect(feed_item.locator(".progress-text")).to_have_text(f"90% · {steps[1][1]}")
        finally:
            for number in range(len(steps)):
                open_gate(gate, number)  # the task ends, the test passed or not
        record = await producer.wait_for_result(task_id, timeout=15)
        assert record.status is TaskStatus.SUCCESS
        await expect(detail.locator("#detail-title .status")).to_have_text("success")
        await expect(detail.locator("pre.result")).to_have_text('"done"')
        await expect(detail.locator("#detail-progress")).to_have_count(0)
        await expect(detail.locator("dl.headers dd")).to_have_text([REDACTED, "req-42"])
        assert await page.locator("b:text('report')").count() == 0  # shown as text
        assert await page.evaluate("window.__sameDocument") is True, "the page reloaded"
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
        [made] = await scheduler_of(producer).list()
        assert (made.schedule, made.timezone) == ("0 9 * * *", "Asia/Tokyo")
        assert list(made.args) == [1, 2]

        await form.locator('select[name="kind"]').select_option("once")
        await expect(form.locator('input[name="cron"]')).to_be_hidden()
        when = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
        await form.locator('input[name="run_at"]').fill(when.strftime("%Y-%m-%dT%H:%M:%S"))
        await form.locator('button[type="submit"]').click()
        await expect(page.locator("#schedules-table tbody tr")).to_have_count(2)
        once = next(s for s in await scheduler_of(producer).list() if s.id != made.id)
        assert once.next_run_at == when
        await self._shot(page, "schedules")

        row = page.locator(f'#schedules-table tr[data-id="{made.id}"]')
        await row.locator('button[data-action="disable"]').click()
        await expect(row.locator("td.state")).to_have_text("disabled")
        disabled = await scheduler_of(producer).get(made.id)
        assert disabled is not None and disabled.enabled is False
        await row.locator('button[data-action="delete"]').click()
        await expect(row).to_have_count(0)
        assert [s.id for s in await scheduler_of(producer).list()] == [once.id]
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

    async def test_redis_going_away_shows_reconnecting_and_the_page_recovers(
        self, browser: Any, own_redis: PrivateRedis, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        page = await self._page(browser, served)
        in_flight: set[Any] = set()  # the page's API requests not answered yet
        page.on("request", lambda r: in_flight.add(r) if "/api/" in r.url else None)
        page.on("requestfinished", lambda r: in_flight.discard(r))
        page.on("requestfailed", lambda r: in_flight.discard(r))
        await page.clock.install()
        await page.goto(served.url)
        pill = page.locator("#live")
        await expect(pill).to_have_text("Live", timeout=15_000)
        await expect(page.locator("#totals .card.success .value")).to_have_text("0")
        # The page's clock stands still from here: its 15 s poll never fires, so only the
        # reload on "ready" can fetch the dashboard's data again. Pausing runs the timers
        # due before the pause (a refresh queued while the first one loaded): let what
        # they fetch be answered, while Redis is up, before counting.
        await page.clock.pause_at(await page.evaluate("Date.now()") + 3_000)
        deadline = time.monotonic() + 15
        while in_flight and time.monotonic() < deadline:
            await page.wait_for_timeout(50)  # (the driver's timer, not the paused page's)
        assert not in_flight, [r.url for r in in_flight]
        await page.wait_for_timeout(200)  # the page's answers handled: it is loading nothing
        stats: list[str] = []
        page.on("request", lambda r: stats.append(r.url) if "/api/stats" in r.url else None)

        own_redis.kill()  # the server's subscription is lost: the page must not say "Live"
        await expect(pill).to_have_text("Reconnecting…", timeout=30_000)
        await expect(page.locator("#notice-live")).to_contain_text("interrupted")
        await self._shot(page, "reconnecting")
        own_redis.start()
        await expect(pill).to_have_text("Live", timeout=30_000)
        # Back: what was missed is reloaded (the dashboard's data fetched again), and
        # events flow once more.
        deadline = time.monotonic() + 5
        while not stats and time.monotonic() < deadline:
            await page.wait_for_timeout(100)
        assert stats, "the page did not reload its data when live updates came back"
        task_id = await producer.submit("add", 5, 5)
        await expect(page.locator(f'#feed li[data-id="{task_id}"]').first).to_be_visible(
            timeout=15_000
        )
        assert self.page_errors == []

    async def test_filter_by_task_search_by_id_and_open_a_task_by_its_url(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        done, bad = await self._submit_sample(producer)
        page = await self._page(browser, served)
        await page.goto(served.url + "#executions")
        rows = page.locator("#executions-table tbody tr[data-id]")
        await expect(rows).to_have_count(3)
        task = page.locator('#filters select[name="task"]')
        await expect(task.locator("option")).to_have_text(["any", "add", "boom", "echo", "slow"])
        await task.select_option("add")
        await expect(rows).to_have_count(2)
        await expect(rows.locator("td.task")).to_have_text(["add", "add"])
        await task.select_option("boom")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-id", bad)
        await task.select_option("")
        await expect(rows).to_have_count(3)

        search = page.locator('#filters input[name="id"]')
        await search.fill(done[0])
        await search.press("Enter")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-id", done[0])
        await search.fill("no-such-id")
        await search.press("Enter")
        await expect(rows).to_have_count(0)
        await expect(page.locator("#executions-table tbody")).to_contain_text("No task with id")
        await search.fill("")
        await search.press("Enter")
        await expect(rows).to_have_count(3)

        # A click puts the task in the URL; that URL opens it again, in another tab.
        await page.click(f'#executions-table tr[data-id="{bad}"]')
        await expect(page.locator("#detail dl.kv")).to_contain_text(bad)
        await expect(page).to_have_url(re.compile(f"[?&]task={bad}"))
        link = page.url
        other = await self._page(browser, served)
        await other.goto(link)
        detail = other.locator("#detail")
        await expect(detail).to_be_visible()
        await expect(detail.locator("dl.kv")).to_contain_text(bad)
        await expect(detail.locator("pre.error")).to_contain_text("payment service")
        await other.click("#detail-close")
        await expect(detail).to_be_hidden()
        await expect(other).not_to_have_url(re.compile("task="))  # closed: no longer linked
        assert self.page_errors == []

    async def test_queue_depths_by_queue_and_priority_on_the_dashboard(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        # "reports" is no queue of the served app's tasks: its worker leaves them there.
        for priority in (1, 1, -1):
            await producer.submit("add", 1, 1, queue="reports", priority=priority)
        await producer.submit("add", 2, 2, queue="reports", delay=120)
        page = await self._page(browser, served)
        await page.goto(served.url)
        row = page.locator('#queue-list tr[data-named-queue="reports"] td')
        await expect(row).to_have_text(["reports", "3", "1", "0", "-1: 1, 1: 2"])
        await expect(page.locator('#queue-list tr[data-named-queue="default"]')).to_have_count(1)
        assert self.page_errors == []

    async def test_cancel_a_waiting_task_from_its_detail(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        later = await producer.submit("add", 2, 2, delay=120)
        page = await self._page(browser, served)
        await page.goto(served.url + "#executions")
        await page.click(f'#executions-table tr[data-id="{later}"]')
        detail = page.locator("#detail")
        await expect(detail.locator("dl.kv")).to_contain_text(later)
        await detail.locator("#cancel").click()
        # The detail shows the outcome (and is redrawn with the CANCELLED record when its
        # live event comes, which ends the button and the message).
        await expect(detail.locator("pre.error")).to_have_text(
            "TaskCancelled: cancelled from the web UI", timeout=15_000
        )
        await expect(detail.locator("#cancel")).to_have_count(0)
        record = await producer.wait_for_result(later, timeout=15)
        assert record.status is TaskStatus.CANCELLED
        await page.select_option('#filters select[name="status"]', "cancelled")
        rows = page.locator("#executions-table tbody tr[data-id]")
        await expect(rows).to_have_attribute("data-id", later)
        assert self.page_errors == []

    async def test_executions_page_by_cursor_next_and_back(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        ids = [await producer.submit("add", n, 1) for n in range(30)]
        for task_id in ids:
            await producer.wait_for_result(task_id, timeout=30)
        page = await self._page(browser, served)
        await page.goto(served.url + "#executions")
        rows = page.locator("#executions-table tbody tr[data-id]")
        info, back, more = page.locator("#page-info"), page.locator("#prev"), page.locator("#next")
        await expect(rows).to_have_count(25)
        await expect(rows.first).to_have_attribute("data-id", ids[-1])  # newest first
        await expect(info).to_have_text("1\u201325, newest first")
        await expect(back).to_be_disabled()
        await more.click()
        await expect(rows).to_have_count(5)
        await expect(rows.last).to_have_attribute("data-id", ids[0])
        await expect(info).to_have_text("26\u201330, newest first")
        await expect(more).to_be_disabled()  # next_cursor null: the end
        # Newer tasks arrive (the page refreshes on their events): by cursor, the second
        # page keeps its records; by offset, it would slide to older ones shown before.
        newer = [await producer.submit("add", n, 2) for n in range(3)]
        for task_id in newer:
            await producer.wait_for_result(task_id, timeout=30)
        await page.goto(served.url + "#dashboard")  # and back: the page is read again
        await expect(page.locator("#view-executions")).to_be_hidden()
        await page.goto(served.url + "#executions")
        await expect(info).to_have_text("26\u201330, newest first")
        await expect(rows).to_have_count(5)
        await expect(rows.first).to_have_attribute("data-id", ids[4])
        await back.click()
        await expect(rows).to_have_count(25)
        await expect(rows.first).to_have_attribute("data-id", newer[-1])
        await expect(back).to_be_disabled()
        assert self.page_errors == []

    async def test_dark_mode_follows_the_system_and_every_page_in_both(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        """Screenshots of each page in light and dark mode (the documentation's, with
        ``$FLOWRRA_UI_DOCS_IMG``); the colours follow ``prefers-color-scheme``."""
        from playwright.async_api import expect

        _, bad = await self._submit_sample(producer)
        await scheduler_of(producer).schedule_cron(
            "add", "0 9 * * 1-5", args=[1, 2], description="weekday report"
        )
        await scheduler_of(producer).schedule_interval("echo", 300, kwargs={"token": "tok-9"})
        await dead_letter(  # its execution stays pending: one more row under Executions
            producer, "echo", "visible", reason="RuntimeError: the payment service answered 503"
        )
        luminance = (
            "(() => { const [r, g, b] = getComputedStyle(document.documentElement)"
            ".backgroundColor"
            ".match(/\\d+/g).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; })()"
        )
        for scheme in ("light", "dark"):
            suffix = "" if scheme == "light" else "-dark"
            page = await self._page(browser, served, color_scheme=scheme)
            await page.goto(served.url)
            await expect(page.locator("#live")).to_have_text("Live", timeout=15_000)
            live = await producer.submit("add", 20, 22)  # for the feed of live events
            feed = page.locator(f'#feed li[data-id="{live}"][data-status="success"]')
            await expect(feed).to_have_count(1, timeout=15_000)
            await expect(page.locator("#totals .card.failed .value")).to_have_text("1")
            shade = await page.evaluate(luminance)
            if scheme == "dark":
                assert shade < 0.25, f"the dark page's background is light ({shade:.2f})"
            else:
                assert shade > 0.85, f"the light page's background is dark ({shade:.2f})"
            await self._shot(page, f"dashboard-{scheme}", docs=f"dashboard{suffix}")
            await page.goto(served.url + "#executions")
            rows = page.locator("#executions-table tbody tr[data-id]")
            await expect(rows).to_have_count(5 if scheme == "light" else 6)
            await self._shot(page, f"executions-{scheme}", docs=f"executions{suffix}")
            await page.click(f'#executions-table tr[data-id="{bad}"]')
            await expect(page.locator("#detail pre.traceback")).to_contain_text("RuntimeError")
            await self._shot(page, f"execution-{scheme}", docs=f"execution{suffix}")
            await page.click("#detail-close")
            await page.goto(served.url + "#tasks")
            await expect(page.locator("#tasks-table tbody tr")).to_have_count(4)
            await self._shot(page, f"tasks-{scheme}", docs=f"tasks{suffix}")
            await page.goto(served.url + "#schedules")
            await expect(page.locator("#schedules-table tbody tr[data-id]")).to_have_count(2)
            await expect(page.locator("#schedules-table")).not_to_contain_text("tok-9")
            await self._shot(page, f"schedules-{scheme}", docs=f"schedules{suffix}")
            await page.goto(served.url + "#dead-letters")
            await expect(page.locator("#dead-letters-table tbody tr[data-id]")).to_have_count(1)
            await self._shot(page, f"dead-letters-{scheme}", docs=f"dead-letters{suffix}")
        assert self.page_errors == []

    async def test_schedules_on_a_phone(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        made = await scheduler_of(producer).schedule_cron(
            "add", "30 7 * * *", timezone="Europe/Paris", description="morning digest"
        )
        width = 390
        phone = await self._page(browser, served, viewport={"width": width, "height": 844})
        phone.on("dialog", lambda dialog: dialog.accept())
        await phone.goto(served.url + "#schedules")
        row = phone.locator(f'#schedules-table tr[data-id="{made}"]')
        await expect(row).to_contain_text("morning digest")
        await self._shot(phone, "schedules-phone")
        overflow = await phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a phone"
        buttons = [
            row.locator('button[data-action="disable"]'),
            row.locator('button[data-action="delete"]'),
            phone.locator('#schedule-form button[type="submit"]'),
        ]
        for button in buttons:
            await expect(button).to_be_visible()
            box = await button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (
                f"a button is off the screen at {width} px: {box}"
            )
        await row.locator('button[data-action="disable"]').click()
        await expect(row.locator("td.state")).to_have_text("disabled")
        assert self.page_errors == []

    async def test_dead_letters_are_listed_masked_requeued_and_purged(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        """The Dead letters page lists the broker's dead letters with their reason (as
        text), their arguments masked; a requeued one runs in the worker; a purged one is
        gone. A read-only mount says it may not work them."""
        from playwright.async_api import expect

        secret = await dead_letter(
            producer, "echo", "visible", reason=f"RuntimeError: {XSS}", password="hunter2"
        )
        other = await dead_letter(producer, "add", 2, 3, reason="TaskNotRegisteredError: add")
        page = await self._page(browser, served)
        page.on("dialog", lambda dialog: dialog.accept())
        await page.goto(served.url + "#dead-letters")
        rows = page.locator("#dead-letters-table tbody tr[data-id]")
        await expect(rows).to_have_count(2)
        ids = [await row.get_attribute("data-id") for row in await rows.all()]
        assert ids == [other, secret]  # newest first
        shown = page.locator(f'#dead-letters-table tr[data-id="{secret}"]')
        await expect(shown.locator("td.reason")).to_have_text(f"RuntimeError: {XSS}")
        await expect(shown.locator("pre.payload")).to_contain_text(REDACTED)
        await expect(shown.locator("pre.payload")).to_contain_text("visible")
        await expect(page.locator("#dead-letters-table")).not_to_contain_text("hunter2")
        await self._shot(page, "dead-letters")
        assert await page.evaluate("window.__xss") is None
        assert await page.locator('img[src="x"], b:text("bold")').count() == 0

        requeued = page.locator(f'#dead-letters-table tr[data-id="{other}"]')
        await requeued.locator('button[data-action="requeue"]').click()
        await expect(page.locator("#dead-letters-message")).to_contain_text("Requeued 1")
        await expect(requeued).to_have_count(0)
        record = await producer.wait_for_result(other, timeout=15)
        assert (record.status, record.result) == (TaskStatus.SUCCESS, 5)

        await shown.locator('button[data-action="purge"]').click()
        await expect(page.locator("#dead-letters-message")).to_contain_text("Purged 1")
        await expect(rows).to_have_count(0)
        await expect(page.locator("#dead-letters-table tbody")).to_contain_text("No dead letters")
        assert await producer.broker.dead_letters() == []  # type: ignore[attr-defined]

        if served.readonly_url is not None:
            readonly = await self._page(browser, served)
            await readonly.goto(served.readonly_url + "#dead-letters")
            unavailable = readonly.locator("#dead-letters-unavailable")
            await expect(unavailable).to_contain_text("read-only")
            await expect(readonly.locator("#dead-letters-table")).to_be_hidden()
        assert self.page_errors == []

    async def test_run_a_schedule_now_from_the_schedules_page(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        made = await scheduler_of(producer).schedule_cron(
            "echo", "0 9 * * *", args=[7], kwargs={"n": 1}, priority=2, description="report"
        )
        before = await scheduler_of(producer).get(made)
        assert before is not None
        page = await self._page(browser, served)
        await page.goto(served.url + "#schedules")
        row = page.locator(f'#schedules-table tr[data-id="{made}"]')
        await row.locator('button[data-action="run"]').click()
        message = page.locator("#schedules-message")
        await expect(message).to_contain_text("Submitted echo now as")
        task_id = (await message.locator("button").text_content() or "").strip()
        record = await producer.wait_for_result(task_id, timeout=15)
        assert record.result == {"args": [7], "kwargs": {"n": 1}} and record.priority == 2
        after = await scheduler_of(producer).get(made)
        assert after is not None and after.next_run_at == before.next_run_at
        assert after.run_count == before.run_count
        await self._shot(page, "schedule-run-now")
        await message.locator("button").click()  # the task it submitted opens
        await expect(page.locator("#detail dl.kv")).to_contain_text(task_id)
        assert self.page_errors == []

    async def test_a_mount_without_auth_shows_no_data_and_says_how_to_add_it(
        self, browser: Any, served: ServedUI, producer: Flowrra
    ) -> None:
        from playwright.async_api import expect

        if served.private_url is None:
            pytest.skip("this adapter has no mount without auth")
        await self._submit_sample(producer)
        page = await self._page(browser, served, signed_in=False)
        await page.goto(served.private_url)
        locked = page.locator("#locked")
        await expect(locked).to_be_visible()
        await expect(locked).to_contain_text("private")
        await expect(locked).to_contain_text("public=True")
        await expect(page.locator("#view-dashboard")).to_be_hidden()
        await expect(page.locator("#live")).to_have_text("Private")
        await self._shot(page, "private", docs="private")
        assert await page.locator("#totals .card").count() == 0
        assert self.page_errors == []

    async def test_signing_in_with_the_hosts_session_cookie(
        self, browser: Any, served: ServedUI
    ) -> None:
        from playwright.async_api import expect

        if served.login_url is None or served.credentials is None:
            pytest.skip("this adapter's tests sign in with a cookie of their own")
        page = await self._page(browser, served, signed_in=False)
        refused = await page.goto(served.url)
        assert refused is not None and refused.status == 401
        await page.goto(served.login_url)
        username, password = served.credentials
        await page.fill('input[name="username"]', username)
        await page.fill('input[name="password"]', password)
        await page.click('button[type="submit"]')
        await page.wait_for_url(served.url)
        await expect(page.locator("#live")).to_have_text("Live", timeout=15_000)
        await expect(page.locator("#totals .card.success")).to_be_visible()
        assert self.page_errors == []

    async def test_http_basic_auth(self, browser: Any, served: ServedUI) -> None:
        from playwright.async_api import expect

        if served.basic_url is None or served.credentials is None:
            pytest.skip("this adapter's tests have no mount behind HTTP basic auth")
        page = await self._page(browser, served, signed_in=False)
        refused = await page.request.get(served.basic_url)
        assert refused.status == 401
        challenge = refused.headers.get("www-authenticate", "")
        assert challenge.lower().startswith("basic"), challenge

        # Chromium answers the challenge (and only a challenge: Playwright's default) with
        # the name and password a person would type into its prompt.
        username, password = served.credentials
        credentials = {"username": username, "password": password}
        page = await self._page(browser, served, signed_in=False, http_credentials=credentials)
        await page.goto(served.basic_url)
        await expect(page.locator("#live")).to_have_text("Live", timeout=15_000)
        await expect(page.locator("#totals .card.success")).to_be_visible()
        await page.goto(served.basic_url + "#tasks")
        await expect(page.locator('#tasks-table tr[data-task="add"]')).to_be_visible()
        assert self.page_errors == []
