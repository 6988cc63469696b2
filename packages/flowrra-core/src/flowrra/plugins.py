"""Finding plugins: built-ins first, then entry points, then an error that says what to install.

Groups (see DESIGN.md): ``flowrra.brokers`` and ``flowrra.result_backends`` map a URL scheme
to a factory taking the ``BrokerConfig`` / ``BackendConfig``; ``flowrra.schedule_stores``
maps a scheme to a schedule store; ``flowrra.extensions`` maps a name to what
``app.create_<name>()`` builds; ``flowrra.cli`` maps a name to a function adding ``flowrra``
sub-commands. Two distributions claiming one name in a group is an error, not a silent pick.

:func:`get_scheduler_backend` (also importable from ``flowrra``) is the schedule-store
lookup by database URL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from flowrra.exceptions import PluginConflictError, PluginError, PluginNotFoundError
from flowrra.schedules import DEFAULT_SCHEDULE_URL

if TYPE_CHECKING:
    from flowrra.protocols import ScheduleStore

__all__ = [
    "BACKENDS",
    "BROKERS",
    "CLI",
    "EXTENSIONS",
    "SCHEDULE_STORES",
    "describe_url",
    "find_plugin",
    "get_scheduler_backend",
    "plugins_in",
    "scheme_of",
]

BROKERS = "flowrra.brokers"
BACKENDS = "flowrra.result_backends"
SCHEDULE_STORES = "flowrra.schedule_stores"
EXTENSIONS = "flowrra.extensions"
CLI = "flowrra.cli"

# Which distribution provides a well-known name, for the "pip install ..." hint.
_PROVIDERS: dict[tuple[str, str], str] = {
    **{
        (group, scheme): "flowrra-redis"
        for group in (BROKERS, BACKENDS)
        for scheme in ("redis", "rediss", "unix")
    },
    (SCHEDULE_STORES, "sqlite"): "flowrra-scheduler",
    (SCHEDULE_STORES, "postgresql"): "flowrra-scheduler[postgresql]",
    (SCHEDULE_STORES, "postgres"): "flowrra-scheduler[postgresql]",
    (SCHEDULE_STORES, "mysql"): "flowrra-scheduler[mysql]",
    (EXTENSIONS, "scheduler"): "flowrra-scheduler",
    (CLI, "scheduler"): "flowrra-scheduler",
    (EXTENSIONS, "ui_fastapi"): "flowrra-ui-fastapi",
    (EXTENSIONS, "ui_quart"): "flowrra-ui-quart",
    (EXTENSIONS, "ui_flask"): "flowrra-ui-flask",
    (EXTENSIONS, "ui_django"): "flowrra-ui-django",
}

_WHAT = {
    BROKERS: "broker",
    BACKENDS: "result backend",
    SCHEDULE_STORES: "schedule store",
    EXTENSIONS: "extension",
    CLI: "command",
}


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` (``'redis'`` for ``'redis://host/0'``)."""
    return urlsplit(url).scheme.lower()


_SECRET_PARAMS = re.compile(r"(?i)([?&](?:\w*_)?(?:password|passwd|pwd)=)[^&#]*")


def describe_url(url: str) -> str:
    """``url`` without its password, for logs and error messages. Never raises: the
    password is whatever lies between the user name's ``:`` and the last ``@`` before the
    host (so a ``/``, ``#`` or ``?`` in it hides nothing), and ``?password=`` parameters
    are masked too."""
    masked = r"\1***"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _SECRET_PARAMS.sub(masked, url)
    credentials, at, host_part = rest.rpartition("@")
    if at and not rest.startswith("/"):  # sqlite:////path has no authority
        user, colon, _password = credentials.partition(":")
        rest = f"{user}:***@{host_part}" if colon else f"{user}@{host_part}"
    return f"{scheme}://" + _SECRET_PARAMS.sub(masked, rest)


@functools.cache
def plugins_in(group: str) -> dict[str, list[EntryPoint]]:
    """Every entry point of ``group`` by name (cached; call ``plugins_in.cache_clear()``
    after installing a distribution at run time)."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, []).append(ep)
    return found


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else ep.value


def find_plugin(group: str, name: str) -> Callable[..., Any]:
    """Load the object registered as ``name`` in ``group``.

    Raises :class:`PluginNotFoundError` (naming the package to install),
    :class:`PluginConflictError` when two distributions claim the name, and
    :class:`PluginError` when the plugin fails to import.
    """
    what = _WHAT.get(group, "plugin")
    candidates = plugins_in(group).get(name, [])
    distinct = {ep.value: ep for ep in candidates}
    if not distinct:
        provider = _PROVIDERS.get((group, name))
        hint = (
            f"install it with `pip install {provider}`"
            if provider
            else f"install a package that registers {name!r} in the entry-point group {group!r}"
        )
        raise PluginNotFoundError(f"no {what} plugin for {name!r} is installed: {hint}")
    if len(distinct) > 1:
        owners = ", ".join(sorted(f"{_distribution(ep)} ({ep.value})" for ep in distinct.values()))
        raise PluginConflictError(
            f"several installed distributions register the {what} {name!r} in {group!r}: "
            f"{owners}; uninstall all but one"
        )
    ep = next(iter(distinct.values()))
    try:
        loaded: Callable[..., Any] = ep.load()
    except Exception as exc:
        raise PluginError(f"the {what} plugin {name!r} ({ep.value}) failed to load: {exc}") from exc
    return loaded


def get_scheduler_backend(url: str | None = None) -> ScheduleStore:
    """The schedule store for a database URL, from the plugin registered for its scheme
    in ``flowrra.schedule_stores`` (``flowrra-scheduler`` provides ``sqlite``,
    ``postgresql``/``postgres`` and ``mysql``).

    ``None`` means :data:`flowrra.schedules.DEFAULT_SCHEDULE_URL`. A bare path (no scheme)
    is a SQLite file. ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` and
    ``sqlite:///:memory:`` follow SQLAlchemy's spelling. The store connects on first use.
    """
    target = url or DEFAULT_SCHEDULE_URL
    scheme = scheme_of(target) if "://" in target else "sqlite"
    if "://" not in target:
        target = f"sqlite:///{quote(target)}"  # %, # and ? are part of a file name
    store: ScheduleStore = find_plugin(SCHEDULE_STORES, scheme)(target)
    return store
