"""The floor under the UI's live fan-out (issue 15): what it costs plain asyncio, with no
ASGI server, no WebSocket library and no JSON, to write one event's frame to 1,000
sockets on this machine, and how late the last socket gets it.

A server on a free port accepts ``--sockets`` TCP connections from ``--client-processes``
client processes at ``nice`` ``--client-nice`` (as ``ui_live.py``'s clients: they only
note when each frame arrives). It then sends ``--events`` events, ``--rate`` a second:
for each, one prebuilt server WebSocket frame (``--size`` bytes of payload, the size of a
UI event frame) written to every socket with ``transport.write``, in one turn of the
loop; ``--deflate`` compresses it per connection first (a ``zlib`` stream each, as
per-message deflate with context takeover must). It prints, in ms, how long a fan-out
holds the loop (median / p99) and the delivery latency from the fan-out's start to each
frame's arrival (median / p99 over every socket's every event), and µs per socket.

    python bench/ws_floor.py [--sockets 1000] [--events 120] [--rate 6] [--deflate]

What ``ui_live.py`` measures on top of this: uvicorn, the ``websockets`` library and
Starlette's send path per frame, and the UI's own fan-out. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import socket
import statistics
import struct
import time
import zlib
from multiprocessing.connection import Connection

_HEADER = struct.Struct("!d")  # the fan-out's start time, first in each payload


def _frame(payload: bytes) -> bytes:
    """An unmasked server text frame (RFC 6455) of ``payload``."""
    if len(payload) < 126:
        return bytes([0x81, len(payload)]) + payload
    return bytes([0x81, 126]) + struct.pack("!H", len(payload)) + payload


def client_process(conn: Connection, port: int, sockets: int, size: int, nice: int) -> None:
    os.nice(nice)
    asyncio.run(_client(conn, port, sockets, size))


async def _client(conn: Connection, port: int, sockets: int, size: int) -> None:
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    class Reader(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            now = time.time()
            self.buffer += data
            while len(self.buffer) >= 4 + _HEADER.size:  # 4: the frame header, <= 4 bytes
                length = self.buffer[1] & 0x7F
                start = 2 if length < 126 else 4
                if length == 126:
                    length = struct.unpack_from("!H", self.buffer, 2)[0]
                if len(self.buffer) < start + length:
                    return
                payload, self.buffer = (
                    self.buffer[start : start + length],
                    self.buffer[start + length :],
                )
                if payload[:1] == b"D":  # deflated: the sent time is not readable here
                    latencies.append(now - float(payload[1:].split(b"|", 1)[0]))
                else:
                    latencies.append(now - _HEADER.unpack_from(payload)[0])

    for _ in range(sockets):
        await loop.create_connection(Reader, "127.0.0.1", port)
    conn.send("connected")
    await asyncio.to_thread(conn.recv)  # "stop"
    conn.send(latencies)


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    connections: list[asyncio.Transport] = []
    all_connected = asyncio.Event()

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connections.append(transport)
            if len(connections) == args.sockets:
                all_connected.set()

    listener = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    context = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    share = args.sockets // args.client_processes
    for n in range(args.client_processes):
        here, there = context.Pipe()
        count = share if n < args.client_processes - 1 else args.sockets - share * n
        proc = context.Process(
            target=client_process, args=(there, port, count, args.size, args.client_nice)
        )
        proc.start()
        pipes.append(here)
        procs.append(proc)
    for pipe in pipes:
        await asyncio.to_thread(pipe.recv)
    await all_connected.wait()
    streams = [zlib.compressobj(wbits=-15) for _ in connections] if args.deflate else []
    filler = b"x" * max(args.size - _HEADER.size, 0)
    holds: list[float] = []
    for _ in range(args.events):
        started = time.time()
        clock = time.perf_counter()
        if args.deflate:
            # the time as text, so the client reads it without inflating
            text = b"D" + repr(started).encode() + b"|"
            for transport, stream in zip(connections, streams, strict=True):
                body = stream.compress(filler) + stream.flush(zlib.Z_SYNC_FLUSH)
                transport.write(_frame(text + body[:-4]))
        else:
            frame = _frame(_HEADER.pack(started) + filler)
            for transport in connections:
                transport.write(frame)
        holds.append(time.perf_counter() - clock)
        await asyncio.sleep(1 / args.rate)
    await asyncio.sleep(1.0)
    latencies: list[float] = []
    for pipe in pipes:
        pipe.send("stop")
        latencies += await asyncio.to_thread(pipe.recv)
    for proc in procs:
        proc.join(5)
    for transport in connections:
        transport.close()
    listener.close()

    def p99(values: list[float]) -> float:
        return sorted(values)[int(len(values) * 0.99)] * 1000

    print(
        f"{args.sockets} sockets, {args.events} events at {args.rate}/s, "
        f"{args.size} bytes, deflate {'on' if args.deflate else 'off'}: "
        f"{len(latencies):,} frames received of {args.sockets * args.events:,}"
    )
    print(
        "| fan-out holds the loop, median / p99 (ms) | per socket (µs) "
        "| delivery median / p99 (ms) |"
    )
    print("|---:|---:|---:|")
    print(
        f"| {statistics.median(holds) * 1000:.1f} / {p99(holds):.1f} "
        f"| {statistics.median(holds) / args.sockets * 1e6:.1f} "
        f"| {statistics.median(latencies) * 1000:.1f} / {p99(latencies):.1f} |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--events", type=int, default=120)
    parser.add_argument("--rate", type=float, default=6.0)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--client-nice", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
