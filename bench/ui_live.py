"""The UI's live updates at scale (issue 15): 1,000 WebSockets on one FastAPI process
(uvicorn), receiving task events while a worker runs tasks, on Redis.

It starts ``uvicorn live_app:api`` and ``flowrra worker live_app:flowrra`` (bench/ui_apps)
on a key prefix of its own, submits ``--rate`` tasks a second for ``--seconds``, first with
no page open (the baseline), then with ``--sockets`` WebSockets open, and prints a
Markdown table:

- Redis connections of the web process (TCP connections to the Redis port, from
  ``/proc``) and subscribers of the event channel (``PUBSUB NUMSUB``);
- event latency: from the event's ``at`` (set where it happened, in the worker) to its
  arrival at a client, median and p99 over every client's every event: at the client's
  socket (the kernel's receive timestamp, what the server's delivery decides), and as
  read by the client (later by the time the client processes, on the same cores, took to
  get to it; with ``--clients inline`` only this one, in both columns);
- the web process's loop lag (how late a 10 ms sleep wakes there), median / p99 / max,
  and its full (generation 2) garbage collections: how many, the longest pause
  (``--gc-freeze`` calls ``gc.freeze()`` there once started);
- ``/ping`` (the host's own endpoint) and ``/flowrra/api/executions`` answer times,
  median / p99, from a probe every 0.2 s;
- frames received (a frame carries one event, or several that waited for a client);
- CPU used by the web process and by the WebSocket clients (on the same cores), in % of
  one core over the phase.

The clients (``--clients``):

- ``processes`` (the default): ``--client-processes`` processes (4) share the sockets,
  at ``nice`` ``--client-nice`` (10), so the web process gets the cores it would where
  the clients are browsers on other machines. Each client is a bare asyncio protocol
  that only cuts frames and notes their arrival time (and answers pings); inflating
  (per-message deflate, negotiated as browsers do) and JSON parsing wait until the
  phase is over.
- ``inline``: the ``websockets`` library in the bench process itself, parsing (and
  inflating) every frame as it comes, on the same cores as the web process and the
  probes: the measuring side costs as much as the server (the figures before 2026-12-08).

    python bench/ui_live.py [--sockets 1000] [--rate 10] [--seconds 20] [--no-deflate]
        [--clients processes|inline] [--client-processes 4] [--client-nice 10] [--gc-freeze]
        [--ws auto|websockets|websockets-sansio|wsproto] [--wake-batch N] [--live ws|sse]

Not a test: a shared 2-core machine moves every figure; compare the two rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
import websockets

from flowrra import Flowrra

APPS = Path(__file__).parent / "ui_apps"


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def redis_connections(pid: int, redis_port: int) -> int:
    """Established TCP connections of ``pid`` to ``redis_port`` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and remote_port == redis_port and fields[9] in inodes:
                count += 1
    return count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"the web process exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the web process does not listen")


class Phase:
    """The answer times one phase's probe measured."""

    def __init__(self) -> None:
        self.ping: list[float] = []
        self.listing: list[float] = []


class InlineClients:
    """``--clients inline``: ``websockets`` clients in the bench process, each parsing (and
    inflating) every frame as it arrives."""

    def __init__(self, target: str, sockets: int) -> None:
        self.target, self.sockets = target, sockets
        #: Only as read (no kernel timestamps here).
        self.latencies: list[float] = []
        self.read_latencies = self.latencies
        self.frames = 0
        self._readers: list[asyncio.Task[None]] = []

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        opened = []
        for start in range(0, self.sockets, 100):
            connect = (
                stack.enter_async_context(websockets.connect(self.target, max_queue=None))
                for _ in range(start, min(self.sockets, start + 100))
            )
            opened.extend(await asyncio.gather(*connect))
        for ws in opened:
            assert json.loads(await ws.recv()) == {"type": "ready"}
        self._opened = opened

    def start(self) -> None:
        self._cpu = own_cpu_seconds()
        self._readers = [asyncio.create_task(self._read(ws)) for ws in self._opened]

    def cpu_seconds(self) -> float:
        return own_cpu_seconds() - self._cpu

    async def stop(self) -> None:
        for reader in self._readers:
            reader.cancel()

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            now = time.time()
            self.frames += 1
            self.latencies.extend(event_latencies(json.loads(raw), now))


def event_latencies(message: dict[str, Any], arrived: float) -> list[float]:
    """Seconds from each task event's ``at`` to ``arrived``: one event, or several in one
    frame (``{"type": "events", "events": [...]}``)."""
    return [
        arrived - datetime.fromisoformat(event["at"]).timestamp()
        for event in message.get("events", [message])
        if event.get("at") is not None
    ]


#: ``SO_TIMESTAMPNS`` (Linux; the module names it from Python 3.14 only): the kernel
#: stamps each segment as it reaches the socket.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class RawClient:
    """A WebSocket client that costs its process little per frame, as a browser on
    another machine costs the server's machine nothing: it cuts the frames out of what
    arrives, keeps each data frame with its arrival times and answers pings. Inflating
    and parsing wait for :meth:`messages`, after the phase. It offers per-message
    deflate as browsers do (the server decides).

    A frame has two arrival times: when its last byte reached the client's socket (the
    kernel's receive timestamp, ``SO_TIMESTAMPNS``: what the server's delivery alone
    decides), and when the client read it (later by however long the client processes,
    which share the server's cores here, took to get to it)."""

    def __init__(self, port: int, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode()
        self._port = port
        #: Resolved by the first data frame (``ready``).
        self.first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.deflate = self.no_context_takeover = False
        #: ``(at the socket, read, first byte of the header, payload)`` of every data frame.
        self.frames: list[tuple[float, float, int, bytes]] = []
        self._buffer = bytearray()
        self._upgraded = False
        self._sock: socket.socket | None = None

    async def connect(self) -> None:
        """Connect, send the request and read from then on (the loop's reader)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        await loop.sock_connect(sock, ("127.0.0.1", self._port))
        self._sock = sock
        loop.add_reader(sock.fileno(), self._readable)
        await loop.sock_sendall(sock, self._request)

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _readable(self) -> None:
        assert self._sock is not None
        ancillary = socket.CMSG_SPACE(16)
        while True:
            try:
                data, cmsgs, _, _ = self._sock.recvmsg(262_144, ancillary)
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(exc)
                return
            read = time.time()
            if not data:
                self._lost(None)
                return
            stamped = read
            for level, kind, value in cmsgs:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    stamped = seconds + nanoseconds / 1e9
            self.received(data, stamped, read)

    def _lost(self, exc: Exception | None) -> None:
        self.close()
        if not self.first.done():
            self.first.set_exception(ConnectionError(f"closed before ready: {exc!r}"))

    def _head(self, status: str) -> str | None:
        """The response's head, lower-cased, once whole (taken out of the buffer); None
        until then, or if it is not ``status`` (then ``first`` fails)."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[:end]).decode("latin-1").lower()
        del buffer[: end + 4]
        if not head.startswith(status):
            self.first.set_exception(ConnectionError(head.splitlines()[0]))
            return None
        self._upgraded = True
        return head

    def received(self, data: bytes, stamped: float, read: float) -> None:
        """``data`` reached the socket at ``stamped`` and was read at ``read``."""
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            head = self._head("http/1.1 101")
            if head is None:
                return
            self.deflate = "permessage-deflate" in head
            self.no_context_takeover = "server_no_context_takeover" in head
        while len(buffer) >= 2:
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            head_byte, payload = buffer[0], bytes(buffer[start : start + length])
            del buffer[: start + length]
            opcode = head_byte & 0x0F
            if opcode <= 2:
                self.frames.append((stamped, read, head_byte, payload))
                if not self.first.done():
                    self.first.set_result(None)
            elif opcode == 9:  # ping: a masked pong with the same payload
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                assert self._sock is not None
                self._sock.send(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)

    def messages(self) -> Iterator[tuple[float, float, dict[str, Any]]]:
        """Every message received, as ``(its last frame at the socket, read, parsed
        JSON)``."""
        inflater = zlib.decompressobj(-15)
        parts: list[bytes] = []
        compressed = False
        for stamped, read, head_byte, payload in self.frames:
            if not parts:
                compressed = self.deflate and bool(head_byte & 0x40)
            parts.append(payload)
            if not head_byte & 0x80:  # not the last frame of its message
                continue
            data = b"".join(parts)
            parts = []
            if compressed:
                if self.no_context_takeover:
                    inflater = zlib.decompressobj(-15)
                data = inflater.decompress(data + b"\x00\x00\xff\xff")
            yield stamped, read, json.loads(data)


def client_process(conn: Connection, port: int, path: str, sockets: int, nice: int) -> None:
    """One process of ``--clients processes``: ``sockets`` :class:`RawClient` s, which it
    opens, then records from ``"start"`` to ``"stop"``; it sends back the latencies (at
    the socket, and as read) and the frames received in between."""
    os.nice(nice)
    _raise_fd_limit()
    asyncio.run(_client_process(conn, port, path, sockets))


async def _client_process(conn: Connection, port: int, path: str, sockets: int) -> None:
    loop = asyncio.get_running_loop()
    clients: list[RawClient] = []
    for start in range(0, sockets, 50):
        kind = SSEClient if path.endswith("/sse") else RawClient
        batch = [kind(port, path) for _ in range(start, min(sockets, start + 50))]
        await asyncio.gather(*(client.connect() for client in batch))
        await asyncio.gather(*(client.first for client in batch))
        clients.extend(batch)
    conn.send("open")
    command, started = await loop.run_in_executor(None, conn.recv)
    assert command == "start"
    assert await loop.run_in_executor(None, conn.recv) == "stop"
    for client in clients:
        client.close()
    at_socket: list[float] = []
    as_read: list[float] = []
    frames = 0
    for client in clients:
        parsed = client.messages()
        assert next(parsed)[2] == {"type": "ready"}
        for stamped, read, message in parsed:
            if stamped >= started:
                frames += 1
                at_socket.extend(event_latencies(message, stamped))
                as_read.extend(event_latencies(message, read))
    conn.send((at_socket, as_read, frames))
    conn.close()


class SSEClient(RawClient):
    """:class:`RawClient` over Server-Sent Events (``--live sse``): a GET of the stream,
    whose chunked body it cuts into ``data:`` events, each kept as a text frame."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(port, path)
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self._events = bytearray()

    def received(self, data: bytes, stamped: float, read: float) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded and self._head("http/1.1 200") is None:
            return
        events = self._events
        while (line := buffer.find(b"\r\n")) >= 0:  # a chunk: size, CRLF, data, CRLF
            size = int(bytes(buffer[:line]), 16)
            if len(buffer) < line + 4 + size:
                return
            events += buffer[line + 2 : line + 2 + size]
            del buffer[: line + 4 + size]
            while (cut := events.find(b"\n\n")) >= 0:
                event = bytes(events[:cut])
                del events[: cut + 2]
                if event.startswith(b"data: "):
                    self.frames.append((stamped, read, 0x81, event[6:]))
                    if not self.first.done():
                        self.first.set_result(None)


class ProcessClients:
    """``--clients processes``: the sockets spread over ``processes`` processes of
    :func:`client_process`, at ``nice``."""

    def __init__(self, port: int, path: str, sockets: int, processes: int, nice: int) -> None:
        #: Seconds from each event's ``at`` to its frame at the client's socket, and as read.
        self.latencies: list[float] = []
        self.read_latencies: list[float] = []
        self.frames = 0
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        for index in range(processes):
            share = sockets // processes + (index < sockets % processes)
            ours, theirs = context.Pipe()
            process = context.Process(
                target=client_process, args=(theirs, port, path, share, nice), daemon=True
            )
            self._pipes.append(ours)
            self._processes.append(process)

    async def open(self, stack: contextlib.AsyncExitStack) -> None:
        stack.callback(self._end)
        for process in self._processes:
            process.start()
        for pipe in self._pipes:
            assert await asyncio.to_thread(pipe.recv) == "open"

    def start(self) -> None:
        self._cpu = sum(cpu_seconds(process.pid) for process in self._processes)
        started = time.time()
        for pipe in self._pipes:
            pipe.send(("start", started))

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(process.pid) for process in self._processes) - self._cpu

    async def stop(self) -> None:
        for pipe in self._pipes:
            pipe.send("stop")
        for pipe in self._pipes:
            at_socket, as_read, frames = await asyncio.to_thread(pipe.recv)
            self.latencies.extend(at_socket)
            self.read_latencies.extend(as_read)
            self.frames += frames

    def _end(self) -> None:
        for process in self._processes:
            process.join(30)
            if process.is_alive():
                process.kill()


async def probe(http: httpx.AsyncClient, phase: Phase, until: float, interval: float) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        assert (await http.get("/ping")).status_code == 200
        phase.ping.append(time.perf_counter() - started)
        started = time.perf_counter()
        answer = await http.get("/flowrra/api/executions?limit=25")
        assert answer.status_code == 200, answer.text
        phase.listing.append(time.perf_counter() - started)
        await asyncio.sleep(interval)


async def submit(producer: Flowrra, rate: float, until: float) -> int:
    sent = 0
    started = time.monotonic()
    while time.monotonic() < until:
        await producer.submit("work", sent)
        sent += 1
        await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
    return sent


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.sockets * 2 + 256)), hard))
    prefix = f"bench-ui-live-{uuid.uuid4().hex[:8]}"
    url = f"{args.redis}{'&' if '?' in args.redis else '?'}prefix={prefix}"
    redis_port = urlsplit(args.redis).port or 6379
    port = free_port()
    env = {
        **os.environ,
        "BENCH_UI_REDIS_URL": url,
        "BENCH_UI_GC_FREEZE": "1" if args.gc_freeze else "",
        "BENCH_UI_WAKE_BATCH": str(args.wake_batch or ""),
        "PYTHONPATH": os.pathsep.join([str(APPS), os.environ.get("PYTHONPATH", "")]),
    }
    flowrra_cli = str(Path(sys.executable).with_name("flowrra"))
    web_command = [
        sys.executable,
        "-m",
        "uvicorn",
        "live_app:api",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--ws-max-queue",
        "32",
        "--ws-per-message-deflate",
        str(args.deflate).lower(),
        "--ws",
        args.ws,
        "--loop",
        args.loop,
    ]
    # Started once, before anything is measured: blocking the loop here costs nothing.
    web = subprocess.Popen(web_command, cwd=APPS, env=env, preexec_fn=_raise_fd_limit)  # noqa: ASYNC220
    worker_command = [flowrra_cli, "worker", "live_app:flowrra"]
    worker = subprocess.Popen(worker_command, cwd=APPS, env=env)  # noqa: ASYNC220
    producer = Flowrra.from_urls(broker=url, backend=url)

    @producer.task()
    async def work(n: int) -> int:
        return n

    rows: list[dict[str, Any]] = []
    watcher = aioredis.Redis.from_url(args.redis)
    try:
        await wait_for(port, web)
        async with (
            producer.producer(),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
        ):
            for sockets in (0, args.sockets):
                phase = Phase()
                async with contextlib.AsyncExitStack() as stack:
                    clients: InlineClients | ProcessClients
                    if args.clients == "inline":
                        clients = InlineClients(f"ws://127.0.0.1:{port}/flowrra/ws", sockets)
                    else:
                        processes = min(args.client_processes, max(1, sockets))
                        live_path = "/sse" if args.live == "sse" else "/flowrra/ws"
                        clients = ProcessClients(
                            port, live_path, sockets, processes, args.client_nice
                        )
                    await clients.open(stack)
                    connections = redis_connections(web.pid, redis_port)
                    [(_, subscribers)] = await watcher.pubsub_numsub(producer.backend.keys.events)  # type: ignore[attr-defined]
                    await http.post("/lag/reset")
                    web_cpu, started = cpu_seconds(web.pid), time.monotonic()
                    clients.start()
                    until = time.monotonic() + args.seconds
                    submitted, _ = await asyncio.gather(
                        submit(producer, args.rate, until),
                        probe(http, phase, until, args.probe_interval),
                    )
                    await asyncio.sleep(2)  # the last events arrive
                    wall = time.monotonic() - started
                    cpu_share = (
                        (cpu_seconds(web.pid) - web_cpu) / wall * 100,
                        clients.cpu_seconds() / wall * 100,
                    )
                    lag = (await http.get("/lag")).json()
                    connections = max(connections, redis_connections(web.pid, redis_port))
                    await clients.stop()
                rows.append(
                    {
                        "sockets": sockets,
                        "tasks": submitted,
                        "events_received": len(clients.latencies),
                        "frames": clients.frames,
                        "cpu": cpu_share,
                        "redis_connections": connections,
                        "event_subscribers": subscribers,
                        "latency_ms": (
                            percentile(clients.latencies, 0.5) * 1000,
                            percentile(clients.latencies, 0.99) * 1000,
                        ),
                        "read_latency_ms": (
                            percentile(clients.read_latencies, 0.5) * 1000,
                            percentile(clients.read_latencies, 0.99) * 1000,
                        ),
                        "lag_ms": (lag["median_ms"], lag["p99_ms"], lag["max_ms"]),
                        "full_gc": (lag["full_gc"], lag["full_gc_max_ms"]),
                        "ping_ms": (
                            percentile(phase.ping, 0.5) * 1000,
                            percentile(phase.ping, 0.99) * 1000,
                        ),
                        "list_ms": (
                            percentile(phase.listing, 0.5) * 1000,
                            percentile(phase.listing, 0.99) * 1000,
                        ),
                    }
                )
    finally:
        for process in (web, worker):
            process.send_signal(signal.SIGTERM)
        for process in (web, worker):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        keys = [key async for key in watcher.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await watcher.delete(*keys)
        await watcher.aclose()
    return rows


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| WebSockets | tasks | events received | frames | Redis connections (web) "
        "| event subscribers "
        "| event latency p50 / p99 (ms) | as read p50 / p99 (ms) | loop lag p50 / p99 / max (ms) "
        "| full gc (web): count, longest (ms) "
        "| /ping p50 / p99 (ms) | /api/executions p50 / p99 (ms) | CPU web / clients (%) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        latency = "—" if not r["events_received"] else "{:.1f} / {:.1f}".format(*r["latency_ms"])
        read = "—" if not r["events_received"] else "{:.1f} / {:.1f}".format(*r["read_latency_ms"])
        lines.append(
            f"| {r['sockets']:,} | {r['tasks']:,} | {r['events_received']:,} | {r['frames']:,} "
            f"| {r['redis_connections']} | {r['event_subscribers']} | {latency} | {read} "
            "| {:.1f} / {:.1f} / {:.1f} ".format(*r["lag_ms"])
            + "| {}, {:.1f} ".format(*r["full_gc"])
            + "| {:.1f} / {:.1f} ".format(*r["ping_ms"])
            + "| {:.1f} / {:.1f} ".format(*r["list_ms"])
            + "| {:.0f} / {:.0f} |".format(*r["cpu"])
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="tasks a second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--redis", default=os.environ.get("FLOWRRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    )
    parser.add_argument(
        "--live",
        default="ws",
        choices=["ws", "sse"],
        help="the clients' stream: the UI's WebSocket, or the same stream as Server-Sent"
        " Events (the bench app's /sse; --clients processes only)",
    )
    parser.add_argument(
        "--wake-batch",
        type=int,
        default=0,
        help="the web process's Fanout.wake_batch (clients woken a turn; 0: the default)",
    )
    parser.add_argument(
        "--loop",
        default="asyncio",
        choices=["asyncio", "uvloop"],
        help="the web process's event loop (uvicorn's --loop; uvloop comes with"
        " uvicorn[standard], as FastAPI's fastapi[standard] installs it)",
    )
    parser.add_argument(
        "--ws",
        default="auto",
        choices=["auto", "websockets", "websockets-sansio", "wsproto"],
        help="uvicorn's WebSocket implementation (its --ws; auto: websockets)",
    )
    parser.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="serve WebSockets without per-message compression (uvicorn's"
        " --ws-per-message-deflate false)",
    )
    parser.add_argument(
        "--clients",
        choices=("processes", "inline"),
        default="processes",
        help="bare clients in --client-processes processes at nice --client-nice (the"
        " default), or websockets clients in the bench process, parsing as frames come",
    )
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--client-nice", type=int, default=10)
    parser.add_argument(
        "--probe-interval", type=float, default=0.2, help="seconds between two probes"
    )
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() in the web process once started"
    )
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    clients = (
        "websockets clients in the bench process"
        if args.clients == "inline"
        else f"bare clients in {args.client_processes} processes at nice {args.client_nice}"
    )
    print(f"per-message deflate {'on' if args.deflate else 'off'}, {clients}\n")
    print(table(rows))
    print(
        f"\n{os.cpu_count()} CPUs, load average {os.getloadavg()}, Python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
