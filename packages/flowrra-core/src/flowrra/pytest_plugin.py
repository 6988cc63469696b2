"""Fixtures for testing code that uses Flowrra (registered with pytest as ``flowrra``
through the ``pytest11`` entry point, so installing ``flowrra`` is enough).

- ``flowrra_app``: the app under test. By default a fresh in-memory app per test;
  override it in your ``conftest.py`` to return your own (``return myproject.app``).
- ``flowrra_eager``: that app in eager mode (:meth:`flowrra.Flowrra.eager`): a submitted
  task runs at once, in the test.
- ``flowrra_worker``: that app started (its worker running) in the test's event loop,
  stopped after the test.
- ``flowrra_join``: ``await flowrra_join()`` waits until every submitted task is done
  (:meth:`flowrra.Flowrra.join`).

Only fixtures: nothing runs and nothing heavy is imported unless a test asks for one.
``flowrra_worker`` is an async fixture: it needs pytest-asyncio (whose fixture decorator
it uses when installed) or another plugin that runs async fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from flowrra.app import Flowrra

_F = TypeVar("_F", bound=Callable[..., Any])

_fixture: Any
try:  # already imported by pytest when installed: it is a pytest plugin too
    from pytest_asyncio import fixture as _fixture
except ImportError:  # another plugin (anyio, asyncio auto mode) runs async fixtures
    _fixture = pytest.fixture


def _async_fixture(fn: _F) -> _F:
    return cast(_F, _fixture(fn))


__all__ = ["flowrra_app", "flowrra_eager", "flowrra_join", "flowrra_worker"]


@pytest.fixture
def flowrra_app() -> Flowrra:
    """A fresh app on the in-memory broker and backend, not started. Override this
    fixture in your ``conftest.py`` to test your own app with the other fixtures."""
    from flowrra.app import Flowrra

    return Flowrra()


@pytest.fixture
def flowrra_eager(flowrra_app: Flowrra) -> Iterator[Flowrra]:
    """``flowrra_app`` in eager mode for the test: each submitted task runs at once and
    its result is stored before ``submit`` returns (retries run at once too). Works in
    sync tests (``task.delay()``, ``app.submit_sync()``) as in async ones."""
    with flowrra_app.eager():
        yield flowrra_app


@_async_fixture
async def flowrra_worker(flowrra_app: Flowrra) -> AsyncIterator[Flowrra]:
    """``flowrra_app`` started in the test's event loop: a real worker runs its tasks
    during the test; it is stopped afterwards (running tasks get 10 s to finish)."""
    await flowrra_app.start()
    try:
        yield flowrra_app
    finally:
        await flowrra_app.stop(timeout=10.0)
        await flowrra_app.close()


@pytest.fixture
def flowrra_join(flowrra_app: Flowrra) -> Callable[..., Awaitable[None]]:
    """``await flowrra_join(timeout=30.0)``: wait until every task submitted to
    ``flowrra_app`` is done (none queued, delayed, running or being settled)."""

    async def join(timeout: float | None = 30.0) -> None:
        await flowrra_app.join(timeout)

    return join
