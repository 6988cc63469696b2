"""Clients, key names and the error boundary shared by the broker and the backend.

The error boundary: every public method of :class:`~flowrra_redis.RedisBroker` and
:class:`~flowrra_redis.RedisBackend` raises ``BrokerError`` / ``BackendError`` (their
:attr:`RedisEndpoint.error_type`) for whatever redis-py or the OS under it raises, naming
the server and never the password. One mechanism does it: :class:`Translating`, a context
manager, applied once per method by the :func:`boundary` decorator (``async def``
methods), or around the reply inside the awaitable that a method sending its command when
called returns (``enqueue``, ``store``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import (
    Any,
    Concatenate,
    Generic,
    NamedTuple,
    ParamSpec,
    TypeAlias,
    TypeVar,
    cast,
)
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.client import PubSub
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from flowrra.exceptions import FlowrraError
from flowrra.plugins import describe_url
from flowrra.task import DEFAULT_QUEUE
from flowrra_redis._redis_compat import pool_like, pool_options_of, use_connection_class
from flowrra_redis.loops import LoopState, arm_guard, running_loop, track
from flowrra_redis.pipeline import UNAVAILABLE, AutoPipeline
from flowrra_redis.topology import (
    ClusterLocator,
    SentinelLocator,
    Server,
    located_class_for,
    located_url,
    locator_for,
    server_of,
)

__all__ = [
    "DEFAULT_PREFIX",
    "DRIVER_ERRORS",
    "UNAVAILABLE",
    "Keys",
    "RedisEndpoint",
    "Translating",
    "boundary",
    "connect_client",
    "describe_url",
    "failure",
    "message_kind",
    "next_message",
    "subscribe",
]

logger = logging.getLogger("flowrra.redis")

S = TypeVar("S", bound=LoopState)

DEFAULT_PREFIX = "flowrra"


#: The message types of a shard channel, as a classic channel's are named.
_SHARD_KINDS = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}


async def subscribe(pubsub: PubSub, channel: str) -> None:
    """Subscribe ``pubsub`` to ``channel``: as a shard channel (``SSUBSCRIBE``) on a Redis
    Cluster, where the scripts publish with ``SPUBLISH`` (see
    :attr:`flowrra_redis.pipeline.Script.sharded`), else as a classic one. Read what it
    receives with :func:`message_kind`."""
    locator = pool_options_of(pubsub.connection_pool).get("locator")
    if getattr(locator, "sharded_pubsub", False):
        await pubsub.ssubscribe(channel)
    else:
        await pubsub.subscribe(channel)


async def next_message(pubsub: PubSub) -> dict[str, Any] | None:
    """``pubsub.get_message(timeout=None)``, where an error reply (a shard channel's
    ``MOVED`` after its slot moved, ``CLUSTERDOWN`` during a failover) is raised as
    ``ConnectionError``, so the caller subscribes again as after a lost connection, and a
    ``MOVED`` first tells the URL's locator where the slot went (the listener would
    otherwise ask the old node again, and a listener that stops leaves its waiters
    waiting)."""
    try:
        return await pubsub.get_message(timeout=None)  # type: ignore[no-any-return]
    except redis_errors.ResponseError as exc:
        if isinstance(exc, redis_errors.MovedError):
            locator = pool_options_of(pubsub.connection_pool).get("locator")
            if isinstance(locator, ClusterLocator):
                locator.moved(exc.host, exc.port)
        raise redis_errors.ConnectionError(f"subscription refused: {exc}") from exc


def message_kind(message: dict[str, Any]) -> str:
    """The type of a pub/sub ``message`` from a channel :func:`subscribe` made, a shard
    channel's named as a classic one's (``message``, ``subscribe``). Raises
    ``ConnectionError`` for an unsubscription it did not ask for: Redis unsubscribes a
    shard channel's subscribers when its slot leaves their node (a failover, a
    resharding), and the subscriber must connect again, to wherever the slot went."""
    kind: str = message["type"]
    kind = _SHARD_KINDS.get(kind, kind)
    if kind == "unsubscribe":
        raise redis_errors.ConnectionError(f"unsubscribed from {message.get('channel')!r}")
    return kind


def prefix_from_url(url: str) -> str | None:
    """The ``?prefix=`` query parameter of ``url``, if it has one."""
    values = parse_qs(urlsplit(url).query).get("prefix")
    return values[-1] if values else None


def shards_from_url(url: str) -> int:
    """The ``?shards=`` query parameter of ``url`` (1 when it has none; see
    :mod:`flowrra_redis.shards`); ValueError for anything but a whole number >= 1."""
    values = parse_qs(urlsplit(url).query).get("shards")
    if not values:
        return 1
    text = values[-1].strip()
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise ValueError(f"?shards= takes a whole number from 1 to 1024, got {values[-1]!r}")
    return int(text)


def eviction_warning_from_url(url: str) -> bool | None:
    """The ``?eviction_warning=`` query parameter of ``url`` (``off``, ``false``, ``no``,
    ``0`` turn the warning off), or None when it has none."""
    values = parse_qs(urlsplit(url).query).get("eviction_warning")
    if not values:
        return None
    return values[-1].strip().lower() not in ("off", "false", "no", "0")


#: URLs whose eviction policy was already warned about in this process.
_WARNED: set[str] = set()


def eviction_risk(policy: str) -> str | None:
    """What a ``maxmemory-policy`` of ``policy`` costs Flowrra when Redis is full, or None
    for ``noeviction`` (Redis refuses writes instead, and the caller gets an error)."""
    if policy == "noeviction" or not policy:
        return None
    if policy.startswith("allkeys-"):
        return (
            "it evicts any key, so queued, delayed and running tasks and their records "
            "vanish without an error"
        )
    return (
        "it evicts keys that have a TTL, so completed results and worker heartbeats "
        "vanish before their time"
    )


class QueueKeys(NamedTuple):
    """The keys of one named queue (see :meth:`Keys.queue_keys`)."""

    name: str
    queue: str
    delayed: str
    leased: str
    wake: str


@dataclass(frozen=True)
class Keys:
    """Every Redis key and channel Flowrra uses, under one prefix.

    The prefix is wrapped in a Redis Cluster hash tag (``{flowrra}``) unless it already
    holds one, so every key of one app hashes to the same slot and each Lua script, which
    touches several of them, runs on Redis Cluster as well as on a single server.
    """

    prefix: str = DEFAULT_PREFIX

    @functools.cached_property
    def base(self) -> str:
        p = self.prefix
        return p if "{" in p and "}" in p else "{" + p + "}"

    @property
    def queue(self) -> str:
        """ZSET of due messages; all scores 0, members sort by priority, then sequence."""
        return f"{self.base}:queue"

    @property
    def delayed(self) -> str:
        """ZSET of messages waiting for their due time (score: Unix seconds)."""
        return f"{self.base}:delayed"

    @property
    def leased(self) -> str:
        """ZSET of reserved messages (score: Unix seconds when the lease expires)."""
        return f"{self.base}:leased"

    @property
    def sequence(self) -> str:
        """Counter giving each queued message its FIFO position."""
        return f"{self.base}:seq"

    @property
    def sent(self) -> str:
        """ZSET of recently queued messages' ``<id>:<attempt>`` (score: when), which
        makes an enqueue sent again after a timeout queue nothing twice."""
        return f"{self.base}:sent"

    @property
    def wake(self) -> str:
        """List a worker blocks on when the queue is empty; producers push a token."""
        return f"{self.base}:wake"

    def queue_keys(self, queue: str) -> QueueKeys:
        """The keys of one named queue: the default queue's are :attr:`queue`,
        :attr:`delayed`, :attr:`leased` and :attr:`wake`; another's add ``:<name>``."""
        if queue == DEFAULT_QUEUE:
            return QueueKeys(queue, self.queue, self.delayed, self.leased, self.wake)
        return QueueKeys(
            queue,
            f"{self.base}:queue:{queue}",
            f"{self.base}:delayed:{queue}",
            f"{self.base}:leased:{queue}",
            f"{self.base}:wake:{queue}",
        )

    # Task limits (flowrra.limits): keys per task name, used only when a worker has limits.

    def started(self, task: str) -> str:
        """ZSET of a rate-limited task's starts in its current window (score: when)."""
        return f"{self.base}:started:{task}"

    def running(self, task: str) -> str:
        """ZSET of a concurrency-limited task's running ids (score: their lease expiry)."""
        return f"{self.base}:running:{task}"

    def deferred(self, queue: str, task: str) -> str:
        """ZSET of a concurrency-limited task's messages deferred in ``queue``'s delayed
        set (score: when), the oldest of which is made due when a run of it settles."""
        return f"{self.base}:deferred:{queue}:{task}"

    @property
    def queues(self) -> str:
        """SET of the named queues that were ever written to (not the default one)."""
        return f"{self.base}:queues"

    def unique(self, key: str) -> str:
        """STRING: the id of the task holding the unique key ``key`` (with an expiry; see
        :mod:`flowrra.unique`)."""
        return f"{self.base}:unique:{key}"

    @property
    def cancelled(self) -> str:
        """ZSET of cancelled task ids (score: when), kept a day: RESERVE marks the messages
        of these tasks for the worker to settle CANCELLED without running them."""
        return f"{self.base}:cancelled"

    @property
    def cancels(self) -> str:
        """Pub/sub channel: the id of each task cancelled, for the workers running it."""
        return f"{self.base}:cancels"

    @property
    def dead(self) -> str:
        """List of dead-lettered messages with their reason (newest first)."""
        return f"{self.base}:dead"

    @property
    def workers(self) -> str:
        """ZSET of worker ids (score: heartbeat expiry); details in :meth:`worker`."""
        return f"{self.base}:workers"

    def worker(self, worker_id: str) -> str:
        return f"{self.base}:worker:{worker_id}"

    def result(self, task_id: str) -> str:
        return f"{self.base}:result:{task_id}"

    @property
    def results_index(self) -> str:
        """ZSET of task ids by submit time, for listing recent results."""
        return f"{self.base}:results"

    @property
    def failed_index(self) -> str:
        """ZSET of the ids of the FAILED records, by submit time."""
        return f"{self.base}:results:failed"

    def name_index(self, task_name: str) -> str:
        """ZSET of the ids of the records of the task ``task_name``, by submit time."""
        return f"{self.base}:results:task:{task_name}"

    @property
    def totals(self) -> str:
        """HASH of counts kept as records are written: the records in each live status
        now (``pending``, ``running``, ``retrying``), completions by outcome
        (``success``, ``failed``) and ``retries``, since the first write."""
        return f"{self.base}:results:totals"

    def minute(self, minute: int) -> str:
        """HASH of the completions (``success``, ``failed``) recorded in one minute (Unix
        seconds // 60), for the dashboard's chart; it expires."""
        return f"{self.base}:results:minute:{minute}"

    @property
    def events(self) -> str:
        """Pub/sub channel: every task status change, for monitors."""
        return f"{self.base}:events"

    @property
    def done(self) -> str:
        """Pub/sub channel: completed results, for ``wait_for_result``."""
        return f"{self.base}:done"


def connect_client(
    url: str,
    *,
    max_connections: int,
    socket_timeout: float | None,
    retry_on_timeout: bool,
    retries: int = 3,
    hash_key: str = "{" + DEFAULT_PREFIX + "}",
) -> aioredis.Redis:
    """A redis-py asyncio client for ``url`` (``redis://``, ``rediss://`` or ``unix://``,
    with user, password, db and TLS options in the URL; or ``redis+cluster://`` and
    ``redis+sentinel://``, whose connections go to the master of ``hash_key``'s slot, or
    the master the sentinels name: see :mod:`flowrra_redis.topology`).

    Failed commands are retried ``retries`` times with jittered exponential backoff on a
    dropped connection (and on a timeout when ``retry_on_timeout``) before the error
    reaches the caller.
    """
    errors: tuple[type[redis_errors.RedisError], ...] = (redis_errors.ConnectionError,)
    if retry_on_timeout:
        errors += (redis_errors.TimeoutError,)
    clean = _without_flowrra_params(url)
    # A blocking pool: past max_connections a command waits for a free connection (up to
    # the socket timeout) instead of failing at once, as the default pool does.
    pool = aioredis.BlockingConnectionPool.from_url(
        located_url(clean),
        max_connections=max_connections,
        timeout=socket_timeout or None,
        socket_timeout=socket_timeout or None,
        socket_connect_timeout=socket_timeout or None,
        retry=Retry(
            ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries, errors, **_NOT_REFUSED
        ),
        retry_on_error=list(errors),
        health_check_interval=30,
        decode_responses=False,
    )
    locator = locator_for(clean, pool_options_of(pool), hash_key)
    if locator is not None:
        use_connection_class(pool, located_class_for(clean), locator=locator)
    return aioredis.Redis.from_pool(pool)  # closing the client disconnects its pool


def _not_refused(error: Exception) -> bool:
    """A connection error worth retrying: not a password missing or wrong."""
    return not isinstance(error, redis_errors.AuthenticationError | redis_errors.AuthorizationError)


#: redis-py's Retry(is_retryable=) where the installed release has it (8.1 and later): an
#: authentication error is then not retried, and a missing password is reported at once.
_NOT_REFUSED: dict[str, Any] = (
    {"is_retryable": _not_refused}
    if "is_retryable" in inspect.signature(Retry.__init__).parameters
    else {}
)

#: Query parameters Flowrra reads itself; redis-py would take them for connection options.
_FLOWRRA_PARAMS = frozenset({"prefix", "eviction_warning", "shards"})


def _without_flowrra_params(url: str) -> str:
    """``url`` for redis-py: the same text, less the query parameters Flowrra reads itself.

    Every other part is kept as written (user, password, ``db=``, TLS options). The URL is
    cut as ``urlsplit`` cuts it (fragment, then query) but not put back together with
    ``urlunsplit``, which turns ``unix:///run/redis.sock`` into ``unix:/run/redis.sock``.
    """
    rest, hash_mark, fragment = url.partition("#")
    base, question_mark, query = rest.partition("?")
    if not question_mark:
        return url
    kept = [q for q in query.split("&") if q and q.partition("=")[0] not in _FLOWRRA_PARAMS]
    return base + ("?" + "&".join(kept) if kept else "") + hash_mark + fragment


#: What redis-py raises, and the OS under it (a socket, TLS, a timeout): what the error
#: boundary translates.
DRIVER_ERRORS: tuple[type[Exception], ...] = (redis_errors.RedisError, OSError)


def failure(
    error_type: type[FlowrraError], url: str, what: str, exc: BaseException
) -> FlowrraError:
    """The ``error_type`` to raise for the driver error ``exc``: what failed, the server
    (the URL without its password, which is masked in redis-py's text too) and what to
    check next."""
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        state = "refused to authenticate the connection"
        advice = (
            "the server needs a password, or the one given is wrong: put the user and "
            "password in the URL, e.g. redis://user:password@host:6379/0 "
            "(redis://:password@host:6379/0 for the default user)"
        )
    elif isinstance(exc, redis_errors.TimeoutError | TimeoutError):
        state = "did not answer in time"
        advice = (
            "the server accepts connections but does not answer: check that it is a Redis "
            "server (a TLS port needs rediss://), that it is not stopped or overloaded, and "
            "socket_timeout"
        )
    elif isinstance(exc, redis_errors.InvalidResponse):
        state = "answered with something that is not the Redis protocol"
        advice = "check that the URL points to a Redis server (a TLS port needs rediss://)"
    elif isinstance(exc, UNAVAILABLE):
        state = "is unavailable"
        advice = "check that the server is running and the URL is right"
    elif "DB index is out of range" in str(exc):
        state = "has no such database"
        advice = "use a database number the server has (its 'databases' setting, 16 by default)"
    else:
        state = "answered with an error"
        advice = (
            "check the server's configuration (ACLs, maxmemory, a read-only replica) and "
            "that nothing else writes under Flowrra's key prefix"
        )
    detail = f"{type(exc).__name__}: {exc}"
    for secret in _secrets(url):
        detail = detail.replace(secret, "***")
    return error_type(f"{what}: Redis at {describe_url(url)} {state} ({detail}); {advice}")


def _secrets(url: str) -> list[str]:
    """The passwords in ``url``: before the host, and in ``?password=``."""
    credentials, at, _ = url.partition("://")[2].rpartition("@")
    found = [credentials.partition(":")[2]] if at else []
    found += parse_qs(urlsplit(url).query).get("password", [])
    return [secret for secret in found if secret]


class Translating:
    """``with Translating(BrokerError, url, "cannot purge"): ...``: a driver error raised
    inside leaves as ``BrokerError`` (:func:`failure`), caused by the original; anything
    else passes untouched, and so do the ``passing`` types. It keeps no state between
    uses: one instance may serve any number of calls."""

    __slots__ = ("error_type", "passing", "url", "what")

    def __init__(
        self,
        error_type: type[FlowrraError],
        url: str,
        what: str,
        passing: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.error_type = error_type
        self.url = url
        self.what = what
        self.passing = passing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, DRIVER_ERRORS) and not isinstance(exc, self.passing):
            raise failure(self.error_type, self.url, self.what, exc) from exc


_E = TypeVar("_E", bound="RedisEndpoint[Any]")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_Method: TypeAlias = Callable[Concatenate[_E, _P], Coroutine[Any, Any, _R]]


def boundary(
    what: str, *, passing: tuple[type[BaseException], ...] = ()
) -> Callable[[_Method[_E, _P, _R]], _Method[_E, _P, _R]]:
    """Decorate a public ``async def`` of a :class:`RedisEndpoint`: a driver error it
    raises leaves as the endpoint's :attr:`~RedisEndpoint.error_type`, saying ``what``
    failed (see :class:`Translating`). ``passing``: exception types that are the method's
    own answer, not a failure (``wait_for``'s ``TimeoutError``)."""

    def decorate(method: _Method[_E, _P, _R]) -> _Method[_E, _P, _R]:
        @functools.wraps(method)
        async def guarded(self: _E, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            with Translating(self.error_type, self.url, what, passing):
                return await method(self, *args, **kwargs)

        return guarded

    return decorate


class RedisEndpoint(Generic[S]):
    """What the broker and the backend share: a URL, a key prefix, and per event loop a
    redis-py client built from the connection settings with the automatic pipeline on top
    of it (see :mod:`flowrra_redis.loops`: connections belong to the loop that uses them).

    A ``client`` passed in serves the first loop that needs one; other loops get clients
    built from its pool's settings.
    """

    #: The per-loop state class; subclasses add their fields.
    state_class: type[LoopState] = LoopState
    #: What the public methods raise for a driver error (BrokerError, BackendError).
    error_type: type[FlowrraError] = FlowrraError

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None,
        max_connections: int,
        socket_timeout: float,
        retry_on_timeout: bool,
        retries: int,
        client: aioredis.Redis | None,
        eviction_warning: bool = True,
        busy_timeout: float = 30.0,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = url
        self.retries = retries
        #: Seconds a command Redis answers LOADING / READONLY / MASTERDOWN / TRYAGAIN is
        #: sent again before the caller gets the error (0: at once).
        self.busy_timeout = busy_timeout
        from_url = eviction_warning_from_url(url)
        #: Warn at connect when the server's ``maxmemory-policy`` evicts keys.
        self.eviction_warning = eviction_warning and from_url is not False
        self.keys = Keys(prefix or prefix_from_url(url) or DEFAULT_PREFIX)
        self.max_connections = max_connections
        self.socket_timeout = socket_timeout
        self.retry_on_timeout = retry_on_timeout
        self._given = client  # for the first loop
        self._template = client  # what other loops' clients are built like
        self._states: dict[asyncio.AbstractEventLoop | None, S] = {}
        self._last: S = cast(S, _NOWHERE)
        self._lock = threading.Lock()
        track(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({describe_url(self.url)!r}, prefix={self.keys.prefix!r})"

    def server(self) -> Server:
        """Where this endpoint's commands land (see :class:`~flowrra_redis.topology.Server`):
        read from the client passed in, if any, else from the URL. Resolves host names
        (call it once, not per command)."""
        if self._template is None:
            clean = _without_flowrra_params(self.url)
            return server_of(clean, dict(parse_url(located_url(clean))), self.keys.base)
        options = pool_options_of(self._template.connection_pool)
        locator = options.get("locator")
        if isinstance(locator, ClusterLocator | SentinelLocator):
            seeds = ",".join(f"{host}:{port}" for host, port in locator.seeds)
            if isinstance(locator, ClusterLocator):
                url = f"redis+cluster://{seeds}"
            else:
                url = f"redis+sentinel://{seeds}/{locator.service}"
            return server_of(url, options, self.keys.base)
        return server_of("redis://", options, self.keys.base)

    def new_client(self, *, max_connections: int, socket_timeout: float) -> aioredis.Redis:
        return connect_client(
            self.url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            retry_on_timeout=self.retry_on_timeout,
            retries=self.retries,
            hash_key=self.keys.base,
        )

    async def _check_eviction_policy(self) -> str | None:
        """Read the server's ``maxmemory-policy`` (``INFO memory``, which managed services
        that disable ``CONFIG`` still answer) and log a WARNING, once per server and
        process, if it evicts keys; returns the policy (None if it could not be read).
        Called by ``connect`` unless ``eviction_warning`` is off."""
        try:
            info = await self.pipe.execute("INFO", "memory")
        except redis_errors.ResponseError:  # INFO renamed or denied by an ACL
            logger.debug("cannot read maxmemory-policy from %s", describe_url(self.url))
            return None
        policy = ""
        for line in text(info).splitlines():
            if line.startswith("maxmemory_policy:"):
                policy = line.partition(":")[2].strip()
        risk = eviction_risk(policy)
        if risk is not None and self.url not in _WARNED:
            _WARNED.add(self.url)
            logger.warning(
                "Redis at %s has maxmemory-policy %s: when it reaches maxmemory %s. Set "
                "'maxmemory-policy noeviction' (a full Redis then refuses writes and submit "
                "raises BrokerError), or turn this warning off with eviction_warning=False "
                "or '?eviction_warning=off' in the URL",
                describe_url(self.url),
                policy,
                risk,
            )
        return policy or None

    def translating(self, what: str) -> Translating:
        """The error boundary as a context manager, for what :func:`boundary` cannot
        decorate (the awaitable a method returns)."""
        return Translating(self.error_type, self.url, what)

    # -- the running loop's state ---------------------------------------------------------

    def _here(self) -> S:
        """The running loop's state (made on first use). The hot path: one identity
        compare with the state used last."""
        state = self._last
        if state.loop is running_loop():
            return state
        return self._switch()

    def _switch(self) -> S:
        loop = running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                self._drop_closed_loops()
                # Made outside any loop (``.client`` read by sync code): this loop adopts it.
                unbound = self._states.pop(None, None) if loop is not None else None
                if unbound is not None:
                    unbound.loop = loop
                    state = unbound
                else:
                    state = cast(S, self.state_class(loop, *self._connection()))
                self._states[loop] = state
                if loop is not None:
                    arm_guard(self, state)
            self._last = state
        return state

    def _connection(self) -> tuple[aioredis.Redis, AutoPipeline]:
        """A client and a pipeline for a new state."""
        client, self._given = self._given, None
        if client is None:
            if self._template is not None:
                client = _like(self._template)
            else:
                client = self.new_client(
                    max_connections=self.max_connections, socket_timeout=self.socket_timeout
                )
        pipe = AutoPipeline(
            client,
            timeout=self.socket_timeout or None,
            retries=self.retries,
            retry_on_timeout=self.retry_on_timeout,
            busy_timeout=self.busy_timeout,
        )
        return client, pipe

    def _drop_closed_loops(self) -> None:
        """Forget the states of loops closed without shutting their async generators
        down (so without closing these): nothing of a closed loop can be used or closed
        from another. Called with the lock held."""
        for loop, state in list(self._states.items()):
            if loop is not None and loop.is_closed():
                del self._states[loop]
                state.set_aside()

    def _forget_loops(self) -> list[S]:
        """In a forked child: forget every state (they are the parent's connections)."""
        states = list(self._states.values())
        self._states = {}
        self._last = cast(S, _NOWHERE)
        self._lock = threading.Lock()  # another thread may have held it at the fork
        return states

    @property
    def client(self) -> aioredis.Redis:
        """The running loop's redis-py client."""
        return self._here().client

    @property
    def pipe(self) -> AutoPipeline:
        """The running loop's batched command path (see :mod:`flowrra_redis.pipeline`)."""
        return self._here().pipe

    # -- closing --------------------------------------------------------------------------

    @boundary("cannot close the connections")
    async def close(self) -> None:
        """Close the running loop's connections. Other loops' close when those loops
        shut down (or by ``close()`` in them); a closed loop's are dropped."""
        with self._lock:
            state = self._states.get(running_loop())
            self._drop_closed_loops()
        if state is None:
            return
        await self._retire(state)
        guard, state.guard = state.guard, None
        if guard is not None:
            await guard.aclose()  # its finally sees the state closed

    async def _retire(self, state: S) -> None:
        """Close ``state``, in its own loop (``close()``, or its guard at loop shutdown)."""
        if state.closed:
            return
        state.closed = True
        with self._lock:
            if self._states.get(state.loop) is state:
                del self._states[state.loop]
            if self._last is state:
                self._last = cast(S, _NOWHERE)
        await self._close_state(state)

    async def _close_state(self, state: S) -> None:
        """Release what ``state`` holds; subclasses release theirs first."""
        await state.pipe.close()
        await state.client.aclose()


def _like(client: aioredis.Redis) -> aioredis.Redis:
    """A client with a new pool built like ``client``'s (for another event loop)."""
    return aioredis.Redis.from_pool(pool_like(client))


#: The state no loop has: ``_last`` before any loop has been served.
_NOWHERE = LoopState(
    cast(asyncio.AbstractEventLoop, object()), cast(aioredis.Redis, None), cast(AutoPipeline, None)
)
_NOWHERE.closed = True


def retrieved(future: asyncio.Future[Any]) -> None:
    """A done-callback for a reply its caller may give up on (``submit`` abandons one
    write when the other fails): marks its error as seen, so asyncio does not log it."""
    if not future.cancelled():
        future.exception()


def text(value: Any) -> str:
    """A Redis reply (bytes) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
