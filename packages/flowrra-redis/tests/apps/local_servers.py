"""Private Redis topologies for the tests, each in a temporary directory on free ports
(never the shared server on 6379): a Redis Cluster of three masters and three replicas,
and a master with a replica watched by three sentinels.

Also :func:`sync_client`, a synchronous client for any test URL (``redis://``,
``redis+cluster://``, ``redis+sentinel://``), which the tests and the worker apps use to
look at Redis from outside Flowrra.

Run it to start a cluster by hand: ``python local_servers.py cluster`` prints its URL and
keeps it up until interrupted.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, bus: bool = False) -> list[int]:
    """``count`` free TCP ports (with ``bus``, ports whose cluster bus port, +10000, is
    free too)."""
    found: list[int] = []
    rng = random.Random()
    while len(found) < count:
        port = rng.randrange(20000, 30000 if bus else 40000)
        if port in found or not _free(port) or (bus and not _free(port + 10000)):
            continue
        found.append(port)
    return found


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.ConnectionError, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0))


class _Processes:
    def __init__(self, directory: Path | None) -> None:
        self._own_dir = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="flowrra-redis-")) if directory is None else directory
        )
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary

    def _spawn(self, port: int, *options: str) -> None:
        log = self.directory / f"{port}.log"
        self.procs[port] = subprocess.Popen(
            [self.binary, *options, "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             "--logfile", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self, port: int) -> None:
        """SIGKILL the server on ``port``."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()
        self.procs.clear()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)


class LocalCluster(_Processes):
    """Six ``redis-server --cluster-enabled yes``, joined by ``redis-cli --cluster create
    --cluster-replicas 1``: three masters, each with a replica."""

    def __init__(self, directory: Path | None = None, *, node_timeout_ms: int = 1000) -> None:
        super().__init__(directory)
        self.ports = free_ports(6, bus=True)
        try:
            for port in self.ports:
                self._spawn(
                    port,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", str(node_timeout_ms),
                )  # fmt: skip
            for port in self.ports:
                _wait(lambda p=port: _client(p).ping(), 10, f"redis-server on {port}")
            subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            for port in self.ports:
                _wait(lambda p=port: self.healthy(p), 30, f"cluster state ok on {port}")
            _wait(self._replicated, 30, "a replica for each master")
        except BaseException:
            self.stop()
            raise

    def _replicated(self) -> bool:
        ranges = _client(self.ports[0]).execute_command("CLUSTER", "SLOTS")
        if not all(len(nodes) >= 2 for _, _, *nodes in ranges):
            return False
        for port in self.ports:  # every replica has its data
            info = _client(port).info("replication")
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def healthy(self, port: int) -> bool:
        info = _client(port).execute_command("CLUSTER", "INFO").decode()
        return "cluster_state:ok" in info

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def masters(self) -> list[int]:
        """The ports of the masters now."""
        for port in self.procs:
            with contextlib.suppress(redis.ConnectionError):
                ranges = _client(port).execute_command("CLUSTER", "SLOTS")
                return sorted({int(nodes[0][1]) for _, _, *nodes in ranges})
        raise RuntimeError("no node answers")

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot now."""
        return self._slot_nodes(key)[0]

    def replica_of(self, key: str) -> int:
        """The port of a replica of the master serving ``key``'s slot."""
        return self._slot_nodes(key)[1]

    def _slot_nodes(self, key: str) -> list[int]:
        slot = redis.crc.key_slot(key.encode())
        for port in self.ports:
            if port not in self.procs:
                continue
            with contextlib.suppress(redis.ConnectionError):
                for start, end, *nodes in _client(port).execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return [int(n[1]) for n in nodes]
        raise RuntimeError(f"no node serves slot {slot}")

    def failover(self, key: str, *options: str) -> tuple[int, int]:
        """``CLUSTER FAILOVER`` on a replica of ``key``'s master; returns (old master, new
        master) once the new one serves the slot."""
        old, new = self.master_of(key), self.replica_of(key)
        _client(new).execute_command("CLUSTER", "FAILOVER", *options)
        _wait(lambda: self.master_of(key) == new, 30, f"failover of {old} to {new}")
        return old, new


class LocalSentinel(_Processes):
    """A master, a replica of it, and three sentinels watching them as ``service``."""

    def __init__(
        self, directory: Path | None = None, *, service: str = "flowrra", down_ms: int = 1000
    ) -> None:
        super().__init__(directory)
        self.service = service
        self.master_port, self.replica_port, *self.sentinel_ports = free_ports(5)
        try:
            self._spawn(self.master_port)
            self._spawn(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
            _wait(
                lambda: (
                    _client(self.replica_port).info("replication").get("master_link_status") == "up"
                ),
                20,
                "replication",
            )
            for port in self.sentinel_ports:
                conf = self.directory / f"sentinel-{port}.conf"
                conf.write_text(
                    f"sentinel monitor {service} 127.0.0.1 {self.master_port} 2\n"
                    f"sentinel down-after-milliseconds {service} {down_ms}\n"
                    f"sentinel failover-timeout {service} 5000\n"
                    f"sentinel parallel-syncs {service} 1\n"
                )
                self.procs[port] = subprocess.Popen(
                    [self.binary, str(conf), "--sentinel", "--port", str(port),
                     "--bind", "127.0.0.1", "--dir", str(self.directory),
                     "--logfile", str(self.directory / f"sentinel-{port}.log")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            for port in self.sentinel_ports:
                _wait(lambda p=port: self._sees_replica(p), 30, f"sentinel {port} ready")
        except BaseException:
            self.stop()
            raise

    def _sees_replica(self, port: int) -> bool:
        replicas = _client(port).execute_command("SENTINEL", "REPLICAS", self.service)
        return bool(replicas)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def master(self) -> int:
        """The port the sentinels name as master now."""
        _, port = _client(self.sentinel_ports[0]).execute_command(
            "SENTINEL", "get-master-addr-by-name", self.service
        )
        return int(port)

    def failover(self) -> tuple[int, int]:
        """A planned failover: ``SENTINEL FAILOVER`` with the master's writes paused from
        before the replica's last copy until the old master is a replica. Returns (old,
        new) once the sentinels name the new master and it accepts writes.

        (``SENTINEL FAILOVER`` alone promotes the replica at once, and what the old master
        acknowledges after the replica's last copy, and until the sentinels demote it, at
        least 8 s later, is discarded by its resync: Redis's asynchronous replication,
        which no client can repair.) The old master is demoted here, with ``REPLICAOF``,
        while still paused: the sentinels cannot do it then, since their own commands to
        it queue behind their ``PUBLISH`` of hello messages, which the pause holds. Left
        to them, the demotion comes only when the pause lapses, and the writes it held
        run first, on the old master, which acknowledges them and then discards them.
        """
        old = self.master()
        replica = self.replica_port if old == self.master_port else self.master_port
        _client(old).execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        try:
            offset = _client(old).info("replication")["master_repl_offset"]
            _wait(
                lambda: _client(replica).info("replication")["slave_repl_offset"] >= offset,
                10,
                "the replica catching up",
            )
            new = self.promote()
            # What the pause holds now gets READONLY (or is dropped with its connection).
            _client(old).execute_command("REPLICAOF", "127.0.0.1", new)
        finally:
            _client(old).execute_command("CLIENT", "UNPAUSE")
        return old, new

    def promote(self) -> int:
        """``SENTINEL FAILOVER`` alone: returns the new master's port once the sentinels
        name it and it accepts writes (the old master is left to the sentinels)."""
        old = self.master()
        sentinel = _client(self.sentinel_ports[0])
        # NOGOODSLAVE until the sentinel has fresh INFO from the replica: ask again.
        _wait(
            lambda: sentinel.execute_command("SENTINEL", "FAILOVER", self.service),
            30,
            "an accepted SENTINEL FAILOVER",
        )
        _wait(lambda: self.master() != old, 30, "sentinel failover")
        new = self.master()
        _wait(lambda: _client(new).execute_command("ROLE")[0] == b"master", 30, "new master")
        return new

    def kill_master(self) -> tuple[int, int]:
        """An unplanned failover: SIGKILL the master; returns (old, new) once the
        sentinels have promoted the replica and it accepts writes. (What the old master
        acknowledged and had not yet sent to the replica is gone.)"""
        old = self.master()
        self.kill(old)
        _wait(lambda: self.master() != old, 60, "sentinel failover after SIGKILL")
        new = self.master()
        _wait(lambda: _client(new).execute_command("ROLE")[0] == b"master", 30, "new master")
        return old, new


def sync_client(url: str) -> Any:
    """A synchronous redis-py client for a test URL: a cluster client for
    ``redis+cluster://`` (keys outside Flowrra's hash tag live on other nodes), the
    sentinels' master for ``redis+sentinel://``, else ``Redis.from_url``."""
    scheme, _, rest = url.partition("://")
    if scheme == "redis+cluster":
        host, _, port = rest.partition("/")[0].split(",")[0].rpartition(":")
        return redis.RedisCluster(host=host, port=int(port), protocol=2)
    if scheme == "redis+sentinel":
        hosts, _, path = rest.partition("/")
        sentinels = [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in hosts.split(",")]
        service = path.split("/")[0]
        return redis.Sentinel(sentinels, protocol=2).master_for(service)
    return redis.Redis.from_url(url, protocol=2)


if __name__ == "__main__":  # pragma: no cover
    kind = sys.argv[1] if len(sys.argv) > 1 else "cluster"
    servers: _Processes = LocalCluster() if kind == "cluster" else LocalSentinel()
    print(servers.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        servers.stop()
