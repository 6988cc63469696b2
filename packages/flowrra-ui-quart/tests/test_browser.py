"""The dashboard in Debian's chromium, served by hypercorn in front of a worker process on
Redis (the shared suite of flowrra_ui.browser_contract)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowrra_ui.browser_contract import ServedUI, UIBrowserContract, serve_ui

SERVED = Path(__file__).parent / "served"


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[ServedUI]:
    server = [sys.executable, "-m", "hypercorn", "quart_served:web", "-b", "127.0.0.1:{port}"]
    cookies = [{"name": "flowrra_token", "value": "browser-token"}]
    worker = "quart_served:flowrra"
    with serve_ui(
        server, worker, cwd=SERVED, redis_url=redis_url, folder=tmp_path, cookies=cookies
    ) as served:
        yield served


class TestQuartInChromium(UIBrowserContract):
    adapter = "quart"
