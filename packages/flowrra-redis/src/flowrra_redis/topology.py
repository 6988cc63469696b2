"""Which server to connect to: the one in the URL, Redis Cluster's master of Flowrra's slot,
or the master a Sentinel names.

Every key of one app lives under one hash tag (:class:`~flowrra_redis.connection.Keys`), so
on Redis Cluster all of Flowrra is one slot, served by one master at a time. Rather than a
cluster client that routes each command, each connection asks a :class:`Locator` where to
go when it connects: the pipeline, the pub/sub listener and the blocking reserve then reach
the same master as on a single server, and follow it when it moves.

* ``redis+cluster://[user:password@]host:port[,host:port...][/0][?options]``
  (``rediss+cluster://`` with TLS): the hosts are seeds; ``CLUSTER SLOTS`` on the first
  that answers names the master of the slot. A ``MOVED`` reply (a failover, a resharding)
  points the locator at the new master (:meth:`ClusterLocator.moved`); a connection that
  cannot be opened makes it ask the seeds, and the nodes they named, again.
* ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db][?options]``
  (``rediss+sentinel://``; the form redis-py's and Celery's users know, with the master's
  name as the first path segment): each connection asks the sentinels, in turn, for the
  master's address (``SENTINEL get-master-addr-by-name``), as redis-py's
  ``SentinelManagedConnection`` does. ``?sentinel_password=`` authenticates to the
  sentinels; the URL's password is the master's.

A connection made before a failover stays on the old master until something breaks it, so
one process could write to the old master through one connection while another has
already found the new one (a worker reserving from the new master and storing its results
on the old, which discards them when it is demoted). So a locator remembers the master it
last named, and when it names another it tells the pipelines that :meth:`Locator.watch`
it, which leave the old one at once (:meth:`AutoPipeline.follow
<flowrra_redis.pipeline.AutoPipeline.follow>`). This costs nothing per command: only a
connection being opened asks the locator.
"""

from __future__ import annotations

import logging
import socket
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.crc import key_slot

__all__ = [
    "ClusterLocator",
    "Locator",
    "SentinelLocator",
    "Server",
    "located_url",
    "locator_for",
    "server_of",
]

logger = logging.getLogger("flowrra.redis")

#: URL schemes whose server is found by a locator, and the scheme redis-py parses them as.
LOCATED_SCHEMES = {
    "redis+cluster": "redis",
    "rediss+cluster": "rediss",
    "redis+sentinel": "redis",
    "rediss+sentinel": "rediss",
}

#: Query parameters of the located forms that redis-py must not see.
LOCATOR_PARAMS = frozenset({"sentinel_password", "sentinel_username"})

Address = tuple[str, int]


class Locator:
    """Where the connections of one pool go; shared by every pool built like it (one per
    event loop), so it holds no connection of its own between calls."""

    #: A short name for messages (``cluster``, ``sentinel``).
    kind = ""
    #: Whether Flowrra's channels are shard channels (``SPUBLISH``, ``SSUBSCRIBE``): on a
    #: Redis Cluster, where a classic publish reaches every node.
    sharded_pubsub = False

    def __init__(self, seeds: list[Address], options: dict[str, Any]) -> None:
        #: The connection class of the servers it asks (TLS or not).
        self.plain_class: type[aioredis.Connection] = options.pop("base_class", aioredis.Connection)
        if not seeds:
            raise ValueError("a Redis Cluster or Sentinel URL needs at least one host:port")
        self.seeds = seeds
        #: Connection options (TLS, timeouts, credentials) for the servers it asks.
        self.options = options
        #: The master it named last (None before it has named one).
        self.named: Address | None = None
        self._watchers: list[weakref.WeakMethod[Callable[[Address, Address], None]]] = []
        self._lock = threading.Lock()  # pools of several event loops (threads) share it

    async def address(self) -> Address:  # pragma: no cover  (abstract)
        raise NotImplementedError

    def watch(self, callback: Callable[[Address, Address], None]) -> None:
        """Call ``callback(old, new)`` when the master this locator names changes from
        ``old`` to ``new``, in the thread that found out (held weakly: a bound method)."""
        with self._lock:
            self._watchers.append(weakref.WeakMethod(callback))

    def _name(self, address: Address) -> Address:
        """``address`` is the master now: returns it, after telling the watchers if it is
        not the one named before."""
        with self._lock:
            old, self.named = self.named, address
            if old is None or old == address:
                return address
            self._watchers = [ref for ref in self._watchers if ref() is not None]
            watchers = [ref() for ref in self._watchers]
        logger.warning(
            "the %s master moved from %s:%s to %s:%s; leaving the old one",
            self.kind,
            old[0],
            old[1],
            address[0],
            address[1],
        )
        for callback in watchers:
            if callback is not None:
                try:
                    callback(old, address)
                except Exception:  # pragma: no cover  (a watcher's bug)
                    logger.exception("a watcher of the %s master failed", self.kind)
        return address

    def moved(self, host: str, port: int) -> None:
        """A server answered ``MOVED``: the slot is now at ``host:port``."""

    def unreachable(self, address: Address) -> None:
        """Connecting to ``address`` (which :meth:`address` gave) failed."""

    async def _ask(self, address: Address, *command: Any, **options: Any) -> Any:
        """Send one command to ``address`` on a connection of its own (closed after)."""
        connection = self.plain_class(
            **{**self.options, **options, "host": address[0], "port": address[1]}
        )
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            await connection.send_command(*command)
            return await connection.read_response()
        finally:
            await connection.disconnect()


class ClusterLocator(Locator):
    """The master of the slot ``hash_key`` hashes to, on a Redis Cluster."""

    kind = "cluster"
    sharded_pubsub = True

    def __init__(self, seeds: list[Address], options: dict[str, Any], hash_key: str) -> None:
        super().__init__(seeds, options)
        self.slot = key_slot(hash_key.encode())
        self._master: Address | None = None
        self._known: list[Address] = list(seeds)

    async def address(self) -> Address:
        master = self._master
        if master is None:
            master = self._master = await self._discover()
        return self._name(master)

    def moved(self, host: str, port: int) -> None:
        self._master = (host or self.seeds[0][0], int(port))

    def unreachable(self, address: Address) -> None:
        if self._master == address:
            self._master = None

    async def _discover(self) -> Address:
        """Ask the nodes known, in turn, which master serves the slot."""
        errors: list[str] = []
        for node in list(self._known):
            try:
                ranges = await self._ask(node, "CLUSTER", "SLOTS")
            except (redis_errors.RedisError, OSError) as exc:
                errors.append(f"{node[0]}:{node[1]}: {exc}")
                continue
            found: Address | None = None
            known: list[Address] = []
            for start, end, *servers in ranges:
                addresses = [_address(server, node[0]) for server in servers]
                known += [a for a in addresses if a not in known]
                if int(start) <= self.slot <= int(end):
                    found = addresses[0]
            # Keep the seeds first: they are what the user named.
            self._known = self.seeds + [a for a in known if a not in self.seeds]
            if found is not None:
                return found
            errors.append(f"{node[0]}:{node[1]}: no master serves slot {self.slot}")
        raise redis_errors.ConnectionError(
            f"no Redis Cluster node named a master for slot {self.slot} ({'; '.join(errors)})"
        )


def _address(server: list[Any], default_host: str) -> Address:
    """A node of a ``CLUSTER SLOTS`` reply (``[host, port, id, ...]``); an empty host
    means the one asked."""
    host = server[0].decode() if isinstance(server[0], bytes) else str(server[0])
    return (host if host and host != "?" else default_host, int(server[1]))


class SentinelLocator(Locator):
    """The master the sentinels name ``service``."""

    kind = "sentinel"

    def __init__(
        self,
        seeds: list[Address],
        options: dict[str, Any],
        service: str,
        sentinel_options: dict[str, Any],
    ) -> None:
        super().__init__(seeds, options)
        if not service:
            raise ValueError(
                "a redis+sentinel:// URL names the master after the hosts: "
                "redis+sentinel://host:26379/mymaster/0"
            )
        self.service = service
        self.sentinel_options = sentinel_options

    async def address(self) -> Address:
        errors: list[str] = []
        for index, sentinel in enumerate(self.seeds):
            try:
                reply = await self._ask(
                    sentinel,
                    "SENTINEL",
                    "get-master-addr-by-name",
                    self.service,
                    **self.sentinel_options,
                )
            except (redis_errors.RedisError, OSError) as exc:
                errors.append(f"{sentinel[0]}:{sentinel[1]}: {exc}")
                continue
            if reply:
                if index:  # answer from this one first next time, as redis-py does
                    self.seeds.insert(0, self.seeds.pop(index))
                host, port = reply
                return self._name((host.decode() if isinstance(host, bytes) else host, int(port)))
            errors.append(f"{sentinel[0]}:{sentinel[1]}: no master named {self.service!r}")
        raise redis_errors.ConnectionError(
            f"no sentinel named a master for {self.service!r} ({'; '.join(errors)})"
        )


class _Located:
    """A connection that asks its pool's locator where to go each time it connects."""

    locator: Locator
    host: str
    port: int

    async def _connect(self) -> None:
        address = await self.locator.address()
        self.host, self.port = address
        try:
            await super()._connect()  # type: ignore[misc]
        except BaseException:
            self.locator.unreachable(address)
            raise


class LocatedConnection(_Located, aioredis.Connection):
    def __init__(self, *, locator: Locator, **options: Any) -> None:
        self.locator = locator
        super().__init__(**options)


class LocatedSSLConnection(_Located, aioredis.SSLConnection):
    def __init__(self, *, locator: Locator, **options: Any) -> None:
        self.locator = locator
        super().__init__(**options)


def split_located(url: str) -> tuple[str, list[Address], list[str]] | None:
    """``(url for redis-py, seeds, path segments)`` for a located URL (None for another):
    the URL redis-py parses is the same text with the plain scheme, the first seed as its
    host and no service name, so every option it reads (TLS, timeouts, credentials) is read
    as for ``redis://``."""
    scheme, sep, rest = url.partition("://")
    plain = LOCATED_SCHEMES.get(scheme.lower())
    if not sep or plain is None:
        return None
    rest, hash_mark, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    location, _, path = rest.partition("/")
    credentials, at, hosts = location.rpartition("@")
    seeds: list[Address] = []
    for host_port in hosts.split(","):
        if not host_port:
            continue
        host, colon, port = host_port.rpartition(":")
        if not colon or not port.isdigit():
            raise ValueError(f"expected host:port in {describe_seed(url)}, got {host_port!r}")
        seeds.append((host.strip("[]"), int(port)))
    if not seeds:
        raise ValueError(f"{describe_seed(url)} names no host:port")
    segments = [unquote(s) for s in path.split("/") if s]
    kept = [q for q in query.split("&") if q and q.partition("=")[0] not in LOCATOR_PARAMS]
    first = f"{seeds[0][0]}:{seeds[0][1]}"
    redis_url = f"{plain}://{credentials}{at}{first}"
    if scheme.lower().endswith("+cluster"):
        redis_url += "/" + "/".join(segments)
    else:  # sentinel: the service name is not a database
        redis_url += "/" + "/".join(segments[1:])
    redis_url += ("?" + "&".join(kept) if kept else "") + hash_mark + fragment
    return redis_url, seeds, segments


def describe_seed(url: str) -> str:
    """The scheme and hosts of ``url`` without credentials, for an error message."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2].partition('/')[0]}"


def locator_for(url: str, options: dict[str, Any], hash_key: str) -> Locator | None:
    """The locator a located ``url`` needs (None for ``redis://`` and the others);
    ``options`` are the connection options redis-py parsed from :func:`located_url`."""
    split = split_located(url)
    if split is None:
        return None
    _, seeds, segments = split
    plain = {k: v for k, v in options.items() if k not in ("host", "port")}
    plain["base_class"] = (
        aioredis.SSLConnection if url.lower().startswith("rediss+") else aioredis.Connection
    )
    if url.partition("://")[0].lower().endswith("+cluster"):
        if segments and segments != ["0"]:
            raise ValueError(
                f"Redis Cluster has only database 0; {describe_seed(url)} names "
                f"/{'/'.join(segments)}"
            )
        return ClusterLocator(seeds, plain, hash_key)
    query = parse_qs(urlsplit(url.replace("+sentinel", "", 1)).query)
    sentinel_options: dict[str, Any] = {"username": None, "password": None, "db": 0}
    for name in ("username", "password"):
        if values := query.get(f"sentinel_{name}"):
            sentinel_options[name] = values[-1]
    return SentinelLocator(seeds, plain, segments[0] if segments else "", sentinel_options)


def located_url(url: str) -> str:
    """The URL redis-py parses for ``url``: itself unless it is a located form."""
    split = split_located(url)
    return url if split is None else split[0]


def is_located(url: str) -> bool:
    return url.partition("://")[0].lower() in LOCATED_SCHEMES


def located_class_for(url: str) -> type[aioredis.Connection]:
    """The located connection class for a ``redis+…`` or ``rediss+…`` URL."""
    if url.partition("://")[0].lower().startswith("rediss+"):
        return LocatedSSLConnection
    return LocatedConnection


@dataclass(frozen=True)
class Server:
    """Where one endpoint's commands land, resolved enough to tell whether two endpoints
    (a broker's and a backend's) write to the same keyspace: the addresses a host name
    resolves to (not its text: ``localhost`` and ``127.0.0.1`` are one server), the port
    or socket path, the database and the user; for a cluster, the slot its hash tag maps
    to (one slot is one master); for Sentinel, the service name."""

    kind: str  # "", "cluster" or "sentinel"
    addresses: frozenset[tuple[str, int]]
    db: int
    user: str | None
    service: str = ""
    slot: int = -1

    def same_keyspace(self, other: Server) -> bool:
        """Whether a script may touch keys of both: same server (some address in
        common), database, user and, on a cluster, slot."""
        return (
            self.kind == other.kind
            and self.db == other.db
            and self.user == other.user
            and self.service == other.service
            and self.slot == other.slot
            and not self.addresses.isdisjoint(other.addresses)
        )


def _resolved(host: str, port: int) -> set[tuple[str, int]]:
    """``host:port`` as the addresses it resolves to (its text, if it does not)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return {(host.lower(), port)}
    return {(str(info[4][0]), port) for info in infos}


def server_of(url: str, options: dict[str, Any], hash_key: str) -> Server:
    """The :class:`Server` of an endpoint: its URL (Flowrra's own query parameters taken
    out), the connection options redis-py parsed or its pool holds, and its hash tag."""
    db = int(options.get("db") or 0)
    user = options.get("username")
    split = split_located(url)
    if split is not None:
        _, seeds, segments = split
        addresses: set[tuple[str, int]] = set()
        for host, port in seeds:
            addresses |= _resolved(host, port)
        if url.partition("://")[0].lower().endswith("+cluster"):
            slot = key_slot(hash_key.encode())
            return Server("cluster", frozenset(addresses), 0, user, slot=slot)
        service = segments[0] if segments else ""
        return Server("sentinel", frozenset(addresses), db, user, service=service)
    path = options.get("path")
    if path:
        return Server("", frozenset({(str(path), 0)}), db, user)
    host, port = str(options.get("host") or "localhost"), int(options.get("port") or 6379)
    return Server("", frozenset(_resolved(host, port)), db, user)
