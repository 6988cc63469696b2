"""The dashboard page and its files, served by every adapter under its mount point: the
mount root (``/flowrra/``) is ``index.html``, and ``static/<name>`` the other files. Only
the files named in :data:`ASSETS` are served; nothing else in the package can be reached.

Every answer carries a strict Content-Security-Policy (scripts, styles and connections to
this origin only, no inline script, no framing), so even a mistake in the page could not
run markup that task data smuggled in. The page itself only ever inserts text.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "INDEX", "serve_asset"]

INDEX = "index.html"
ASSETS: dict[str, str] = {
    INDEX: "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@functools.cache
def _load(name: str) -> tuple[bytes, str]:
    body = resources.files(__package__).joinpath("static", name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def serve_asset(name: str, if_none_match: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` for the file ``name`` (``"index.html"``, ``"app.js"``…):
    200 with the file, 304 when ``if_none_match`` holds its current ETag, 404 for a name
    that is not one of :data:`ASSETS`. Browsers revalidate on each load (``no-cache``),
    so an upgrade of the package shows at once."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found"
    body, etag = _load(name)
    headers = {
        "Content-Type": content_type,
        "Cache-Control": "no-cache",
        "ETag": etag,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    }
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return 304, headers, b""
    return 200, headers, body
