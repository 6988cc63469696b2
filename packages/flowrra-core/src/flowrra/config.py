"""Configuration: where tasks are queued, where results go, how many run at once.

``Config()`` with nothing set is the embedded default: in-memory broker and result store.
``Config.from_env()`` reads ``FLOWRRA_<SECTION>_<FIELD>`` variables, e.g.
``FLOWRRA_BROKER_URL``, ``FLOWRRA_BACKEND_TTL``, ``FLOWRRA_EXECUTOR_NUM_WORKERS``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowrra.exceptions import ConfigError

__all__ = ["BackendConfig", "BrokerConfig", "Config", "ExecutorConfig"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_url(url: str, what: str) -> None:
    _require(
        isinstance(url, str) and "://" in url,
        f"{what} url must look like "
        f"'scheme://...', e.g. 'memory://' or 'redis://localhost:6379/0'; got {url!r}",
    )


@dataclass
class BrokerConfig:
    """Where tasks are queued. ``url``'s scheme picks the broker plugin (``memory://`` is
    built in; ``redis://`` needs ``flowrra-redis``). Connection settings apply to brokers
    that connect to a server."""

    url: str = "memory://"
    max_connections: int = 50
    socket_timeout: float = 5.0
    retry_on_timeout: bool = True
    queue_key: str | None = None

    def __post_init__(self) -> None:
        _check_url(self.url, "broker")
        _require(self.max_connections >= 1, "broker max_connections must be >= 1")
        _require(self.socket_timeout >= 0, "broker socket_timeout must be >= 0")


@dataclass
class BackendConfig:
    """Where results are kept. ``ttl``: seconds a complete result is kept (``None``: the
    backend's default, unlimited for servers). ``max_entries`` bounds the in-memory store."""

    url: str = "memory://"
    ttl: int | None = None
    max_connections: int = 50
    socket_timeout: float = 5.0
    retry_on_timeout: bool = True
    max_entries: int | None = 100_000

    def __post_init__(self) -> None:
        _check_url(self.url, "backend")
        _require(self.ttl is None or self.ttl >= 1, "backend ttl must be >= 1 second or None")
        _require(self.max_connections >= 1, "backend max_connections must be >= 1")
        _require(self.socket_timeout >= 0, "backend socket_timeout must be >= 0")
        _require(
            self.max_entries is None or self.max_entries >= 1,
            "backend max_entries must be >= 1 or None",
        )


@dataclass
class ExecutorConfig:
    """How tasks run.

    ``num_workers`` (alias ``io_workers``): I/O tasks run at once. ``cpu_workers``: processes
    in the CPU pool (default: the number of CPUs). ``threads``: threads for plain ``def``
    tasks that are not ``cpu_bound`` (default: ``num_workers``). ``max_queue_size``: the
    in-memory queue's bound; ``submit`` waits for room when full (0 = unbounded). ``max_retries``,
    ``retry_delay`` and ``retry_max_delay`` are the defaults for tasks that set none.
    """

    num_workers: int = 4
    cpu_workers: int | None = None
    max_queue_size: int = 1000
    max_retries: int = 3
    retry_delay: float = 1.0
    retry_max_delay: float = 300.0
    io_workers: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.io_workers is not None:
            _require(
                self.num_workers in (4, self.io_workers),
                f"num_workers ({self.num_workers}) and io_workers ({self.io_workers}) name the "
                "same setting; give one",
            )
            self.num_workers = self.io_workers
        self.io_workers = self.num_workers
        _require(self.num_workers >= 1, "num_workers must be >= 1")
        _require(self.cpu_workers is None or self.cpu_workers >= 1, "cpu_workers must be >= 1")
        _require(self.threads is None or self.threads >= 1, "threads must be >= 1")
        _require(self.max_queue_size >= 0, "max_queue_size must be >= 0 (0 = unbounded)")
        _require(self.max_retries >= 0, "max_retries must be >= 0")
        _require(self.retry_delay >= 0, "retry_delay must be >= 0")
        _require(self.retry_max_delay >= self.retry_delay, "retry_max_delay must be >= retry_delay")


@dataclass
class Config:
    """Everything a :class:`~flowrra.app.Flowrra` app needs; ``None`` broker/backend mean
    the in-memory defaults."""

    broker: BrokerConfig | None = None
    backend: BackendConfig | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    @classmethod
    def from_env(cls, prefix: str = "FLOWRRA_", environ: Mapping[str, str] | None = None) -> Config:
        """Build a config from ``{prefix}{SECTION}_{FIELD}`` environment variables.

        A broker or backend section exists when its ``URL`` is set; setting another of its
        variables without the URL is an error, as is a value of the wrong type.
        """
        env = os.environ if environ is None else environ
        return cls(
            broker=_section_from_env(BrokerConfig, f"{prefix}BROKER_", env),
            backend=_section_from_env(BackendConfig, f"{prefix}BACKEND_", env),
            executor=_section_from_env(ExecutorConfig, f"{prefix}EXECUTOR_", env, optional=False)
            or ExecutorConfig(),
        )


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

_Section = typing.TypeVar("_Section", BrokerConfig, BackendConfig, ExecutorConfig)


def _convert(raw: str, annotation: Any, name: str) -> Any:
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    if options and type(None) in options:
        if raw.strip().lower() in {"", "none", "null"}:
            return None
        annotation = next(o for o in options if o is not type(None))
    try:
        if annotation is bool:
            value = raw.strip().lower()
            if value in _TRUE:
                return True
            if value in _FALSE:
                return False
            raise ValueError("expected true/false")
        if annotation in (int, float):
            return annotation(raw)
        return raw
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None


def _section_from_env(
    cls: type[_Section], prefix: str, env: Mapping[str, str], optional: bool = True
) -> _Section | None:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name.upper()}"
        if name in env:
            values[f.name] = _convert(env[name], hints[f.name], name)
    if not values:
        return None
    if optional and "url" not in values:
        raise ConfigError(f"{prefix}URL must be set when other {prefix}* variables are")
    return cls(**values)
