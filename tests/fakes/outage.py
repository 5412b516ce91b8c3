"""Loopback stand-ins for a network that fails: a TCP switch and fixed-answer HTTP servers.

``Switch`` listens on 127.0.0.1 and, as the test decides, forwards every connection to a real
server (``up``), refuses connections (``down``: the port is closed, as for a stopped server),
or answers every HTTP request with a status such as 500 (``answer``), as a proxy in front of
an unhealthy service does. Going down also cuts the connections already open, so a pooled
database connection sees the outage too.

``StatusServer`` is a plain threaded HTTP server that answers every request with one status
and body (a Discord or Telegram 401), or never answers (``hang``); it serves code that runs
its own event loop, such as ``referral-bot run`` called in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Switch:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "up"
        self.status = 500
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def up(self) -> None:
        self.mode = "up"
        if self._server is None:
            await self.start()

    async def answer(self, status: int) -> None:
        """Answer every HTTP request with ``status`` (503, 500...) instead of forwarding."""
        self.mode, self.status = "answer", status
        self._cut()
        if self._server is None:
            await self.start()

    async def down(self) -> None:
        """Close the port (connections are refused) and cut every open connection."""
        self.mode = "down"
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._cut()

    async def stop(self) -> None:
        await self.down()

    def _cut(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "answer":
            await self._answer(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open.discard(writer)
        self._open.discard(up_writer)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                body = json.dumps(
                    {"ok": False, "error_code": self.status, "description": "Bad Gateway"}
                ).encode()
                writer.write(
                    f"HTTP/1.1 {self.status} Error\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()


class StatusServer:
    """Every request gets ``status`` with a JSON ``body``; with ``hang`` no answer ever comes."""

    def __init__(self, status: int = 401, body: Any = None, *, hang: bool = False) -> None:
        self.status, self.body, self.hang = status, body, hang
        self.requests: list[str] = []
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                owner.requests.append(f"{self.command} {self.path}")
                if owner.hang:
                    owner._release.wait(30)
                    return
                data = json.dumps(owner.body if owner.body is not None else {}).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *_args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StatusServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def free_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def discord_api(base: str) -> Iterator[None]:
    """Point discord.py's REST client at a loopback server (``base`` without /api/v10)."""
    import discord.http

    old = discord.http.Route.BASE
    discord.http.Route.BASE = f"{base}/api/v10"
    try:
        yield
    finally:
        discord.http.Route.BASE = old
