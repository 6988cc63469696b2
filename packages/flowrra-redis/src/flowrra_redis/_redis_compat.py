"""What flowrra-redis needs of redis-py beyond its documented API, checked at import.

The auto-pipeline (:mod:`flowrra_redis.pipeline`) opens connections through redis-py, so
URLs, AUTH, SELECT and TLS behave as anywhere else, then takes over each connection's
transport and parses replies itself. That relies on a few internals: a connection's
``_writer`` stream, ``disconnect(nowait=...)``, and the parser's ``parse_error``. A redis-py
release without them would fail deep inside a send; this check fails at import instead,
with the supported versions (those this distribution requires, and was tested with).
"""

from __future__ import annotations

import inspect
from importlib import metadata

from flowrra.exceptions import PluginError

__all__ = ["SUPPORTED", "check_redis_py"]


def _supported() -> str:
    """The redis-py range this distribution requires (its own metadata is the one source)."""
    try:
        requirements = metadata.requires("flowrra-redis") or []
    except metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        if requirement.startswith("redis[") or requirement.startswith("redis>"):
            return requirement.split("]", 1)[-1].split(";", 1)[0].strip()
    return "the tested releases"


SUPPORTED = _supported()


def _missing() -> list[str]:
    missing = []
    try:
        from redis._parsers.base import BaseParser

        if not callable(getattr(BaseParser, "parse_error", None)):
            missing.append("redis._parsers.base.BaseParser.parse_error")
    except ImportError:
        missing.append("redis._parsers.base.BaseParser")
    from redis.asyncio import Connection, ConnectionPool

    if not hasattr(Connection(), "_writer"):
        missing.append("redis.asyncio.Connection._writer")
    if "nowait" not in inspect.signature(Connection.disconnect).parameters:
        missing.append("redis.asyncio.Connection.disconnect(nowait=)")
    if not inspect.iscoroutinefunction(ConnectionPool.get_connection):
        missing.append("async redis.asyncio.ConnectionPool.get_connection()")
    return missing


def check_redis_py() -> None:
    """Raise :class:`~flowrra.exceptions.PluginError` naming the supported redis-py
    versions when the installed one lacks what the pipeline relies on."""
    missing = _missing()
    if missing:
        import redis

        raise PluginError(
            f"flowrra-redis needs redis-py {SUPPORTED}; the installed redis-py "
            f"{redis.__version__} lacks {', '.join(missing)}. "
            f"Install a supported one: pip install 'redis[hiredis]{SUPPORTED}'"
        )
