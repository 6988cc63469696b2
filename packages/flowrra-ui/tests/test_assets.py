"""The dashboard's files as every adapter serves them: only the listed files, with a
strict Content-Security-Policy and ETag revalidation, everything shipped in the package
(no CDN), and a page script that never inserts HTML."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from flowrra_ui.assets import ASSETS, CONTENT_SECURITY_POLICY, INDEX, serve_asset


def text(name: str) -> str:
    return resources.files("flowrra_ui").joinpath("static", name).read_text()


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_each_file_is_served_with_its_type_and_policy(name: str) -> None:
    status, headers, body = serve_asset(name)
    assert status == 200 and body
    assert headers["Content-Type"] == ASSETS[name]
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert (serve_asset(name, headers["ETag"])[0], serve_asset(name, headers["ETag"])[2]) == (
        304,
        b"",
    )
    assert serve_asset(name, '"stale", ' + headers["ETag"])[0] == 304
    assert serve_asset(name, '"stale"')[0] == 200


@pytest.mark.parametrize("name", ["", "service.py", "../service.py", "static/app.js", "APP.JS"])
def test_nothing_else_is_served(name: str) -> None:
    assert serve_asset(name)[0] == 404


def test_the_policy_allows_this_origin_only_and_no_inline_script() -> None:
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = text(INDEX)
    referenced = set(re.findall(r'(?:src|href)="([^"#]+)"', page))
    assert referenced == {f"static/{name}" for name in ASSETS if name != INDEX}
    for name in ASSETS:
        urls = re.findall(r"https?://[^\s\"')]+", text(name))
        assert all(url.startswith("http://www.w3.org/2000/svg") for url in urls), (name, urls)
    assert "<script>" not in page and "style=" not in page  # the policy would block them


def test_the_script_only_ever_inserts_text() -> None:
    script = text("app.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
