"""WAN delay proxy: cross-region traffic in user space (these kernels have no `tc netem`).

    python -m ddbbridge_dev.proxy --rtt-ms 150 --route cn-north-1=127.0.0.1:41001 \
        --route ap-southeast-1=127.0.0.1:41002 --ready-file F

One listening port per region, forwarding to that region's emulator. Every chunk read from either side
is released to the other side rtt/2 ms after it arrived: each direction of each connection has its own
queue and writer task, so order is kept per connection, connections never wait for each other, and a
slow chunk never delays the reading of the next one (the delay is latency, not a bandwidth cap).

A control port speaks minimal HTTP: `POST /cut` closes every open connection and refuses new ones (they
are accepted and reset at once) until `POST /restore`; `GET /status` reports the state as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("ddbbridge_dev.proxy")
_CHUNK = 64 * 1024
_EOF = b""


@dataclass(frozen=True)
class Route:
    region: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Route:
        region, _, address = text.partition("=")
        host, _, port = address.rpartition(":")
        if not region or not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"expected REGION=HOST:PORT, got {text!r}")
        return cls(region, host, int(port))


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a failed connection, not a clean empty reply."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


@dataclass
class DelayProxy:
    routes: list[Route]
    rtt_ms: float
    host: str = "127.0.0.1"
    cut: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _connections: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def one_way_seconds(self) -> float:
        return self.rtt_ms / 2000.0

    async def start(self, listen_ports: dict[str, int]) -> None:
        for route in self.routes:
            server = await asyncio.start_server(
                functools.partial(self._accept, route), self.host, listen_ports.get(route.region, 0)
            )
            self._servers.append(server)
            self.ports[route.region] = server.sockets[0].getsockname()[1]

    def _accept(self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            _reset(writer)
            return
        task = asyncio.ensure_future(self._connection(route, reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _connection(
        self, route: Route, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(route.host, route.port)
        except OSError as error:
            LOG.warning("%s: upstream %s:%d unreachable: %s", route.region, route.host, route.port, error)
            _reset(client_writer)
            return
        for writer in (client_writer, upstream_writer):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._writers.add(writer)
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer),
                self._pipe(upstream_reader, client_writer),
            )
        except (OSError, asyncio.IncompleteReadError):
            pass  # one side went away; both are closed below
        finally:
            for writer in (client_writer, upstream_writer):
                self._writers.discard(writer)
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read as fast as data comes; a separate task releases each chunk once its delay is over."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if chunk == _EOF:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        releaser = asyncio.ensure_future(release())
        try:
            while True:
                chunk = await reader.read(_CHUNK)
                queue.put_nowait((loop.time() + self.one_way_seconds, chunk))
                if chunk == _EOF:
                    break
            await releaser
        finally:
            releaser.cancel()

    def cut_links(self) -> int:
        """Close every open connection now; new ones are refused until `restore`."""
        self.cut = True
        writers = list(self._writers)
        for writer in writers:
            _reset(writer)
        for task in list(self._connections):
            task.cancel()
        return len(writers) // 2

    def restore(self) -> None:
        self.cut = False

    def status(self) -> dict[str, Any]:
        return {
            "cut": self.cut,
            "rtt_ms": self.rtt_ms,
            "ports": self.ports,
            "open_connections": len(self._connections),
            "pid": os.getpid(),
        }

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        self.cut_links()
        for server in self._servers:
            await server.wait_closed()


async def _control(proxy: DelayProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request_line = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # headers are not needed
        method, path = [*request_line, "", ""][:2]
        status, document = 200, None
        if method == "POST" and path == "/cut":
            document = {"closed_connections": proxy.cut_links(), **proxy.status()}
            LOG.info("WAN cut")
        elif method == "POST" and path == "/restore":
            proxy.restore()
            document = proxy.status()
            LOG.info("WAN restored")
        elif method == "GET" and path == "/status":
            document = proxy.status()
        else:
            status, document = 404, {"error": f"no route {method} {path}"}
        body = json.dumps(document).encode()
        head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
    finally:
        writer.close()


async def serve(args: argparse.Namespace) -> None:
    proxy = DelayProxy(routes=args.route, rtt_ms=args.rtt_ms, host=args.host)
    await proxy.start({})
    control = await asyncio.start_server(lambda r, w: _control(proxy, r, w), args.host, args.control_port)
    control_port = control.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    LOG.info(
        "proxy rtt %.1f ms, ports %s, control %d (pid %d)",
        args.rtt_ms,
        proxy.ports,
        control_port,
        os.getpid(),
    )
    if args.ready_file:
        path: Path = args.ready_file
        temporary = path.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"ports": proxy.ports, "control_port": control_port, "pid": os.getpid()})
        )
        temporary.replace(path)
    await stop.wait()
    control.close()
    await proxy.close()
    LOG.info("proxy stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddbbridge_dev.proxy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip added; rtt/2 each way")
    parser.add_argument("--route", type=Route.parse, action="append", required=True, help="REGION=HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, help="written with the ports (JSON) once listening")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    if args.rtt_ms < 0:
        parser.error("--rtt-ms must be >= 0")
    handler: logging.Handler = logging.FileHandler(args.log) if args.log else logging.StreamHandler()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=[handler])
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
