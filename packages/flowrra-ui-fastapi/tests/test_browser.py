"""The dashboard in Debian's chromium, served by uvicorn in front of a worker process on
Redis (the shared suite of flowrra_ui.browser_contract), signed in as docs/ui.md shows:
the app's session cookie, and HTTP basic auth."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowrra_ui.browser_contract import ServedUI, UIBrowserContract, serve_ui

SERVED = Path(__file__).parent / "served"
USERNAME, PASSWORD = "ada", "correct horse"  # as served/fastapi_served.py checks them


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[ServedUI]:
    server = [sys.executable, "-m", "uvicorn", "fastapi_served:api", "--port", "{port}"]
    with serve_ui(
        server,
        "fastapi_served:flowrra",
        cwd=SERVED,
        redis_url=redis_url,
        folder=tmp_path,
        login_path="/login",
        credentials=(USERNAME, PASSWORD),
        private_mount="/private/",
        basic_mount="/basic/",
    ) as served:
        yield served


class TestFastAPIInChromium(UIBrowserContract):
    adapter = "fastapi"
