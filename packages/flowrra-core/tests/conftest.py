from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from flowrra import Config, ExecutorConfig, Flowrra


@pytest.fixture
async def make_app() -> AsyncIterator[Callable[..., Flowrra]]:
    """Build apps that are stopped (without waiting) when the test ends."""
    apps: list[Flowrra] = []

    def make(**executor: Any) -> Flowrra:
        app = Flowrra(Config(executor=ExecutorConfig(**executor)))
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.stop(wait=False)
