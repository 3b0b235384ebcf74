"""The local socket's relay with real unix sockets: bytes pass unchanged both ways, and
a client that stops reading holds the controller to a bounded buffer."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from stack.controller.local_access import LocalAccess
from stack.controller.local_relay import LocalRelay

READ_CHUNK = 256 * 1024
"""The most asyncio reads at once from a socket: the one read the relay may hold beyond
its buffer on each side."""


def listening(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)
    return listener


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def relayed(tmp_path: Path, upstream_handler: object, access: LocalAccess) -> tuple[
    LocalRelay, asyncio.Task[None], asyncio.Server
]:  # fmt: skip
    upstream = await asyncio.start_unix_server(upstream_handler, str(tmp_path / "up.sock"))  # type: ignore[arg-type]
    relay = LocalRelay(listening(tmp_path / "pub.sock"), str(tmp_path / "up.sock"), access)
    task = asyncio.create_task(relay.run())
    return relay, task, upstream


def test_bytes_pass_unchanged_both_ways(tmp_path: Path) -> None:
    payload = os.urandom(8 * 1024 * 1024)

    async def scenario() -> bytes:
        _, task, upstream = await relayed(tmp_path, echo, LocalAccess(os.geteuid()))
        try:
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / "pub.sock"))

            async def send() -> None:
                writer.write(payload)
                await writer.drain()
                writer.write_eof()

            sending = asyncio.create_task(send())
            got = await reader.read(-1)  # until the relay passes the echo's end on
            await sending
            writer.close()
            return got
        finally:
            task.cancel()
            upstream.close()

    assert asyncio.run(scenario()) == payload


def test_a_client_that_stops_reading_holds_a_bounded_buffer(tmp_path: Path) -> None:
    access = LocalAccess(os.geteuid(), buffer_bytes=64 * 1024)
    offered = 64 * 1024 * 1024
    sent = [0]

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * 65536
        while sent[0] < offered:
            writer.write(chunk)
            await writer.drain()
            sent[0] += len(chunk)

    async def scenario() -> tuple[int, int]:
        relay, task, upstream = await relayed(tmp_path, flood, access)
        try:
            _, writer = await asyncio.open_unix_connection(str(tmp_path / "pub.sock"))
            # Poll until the flood stalls: no byte sent for half a second.
            deadline, last, since = time.monotonic() + 30, -1, time.monotonic()
            while time.monotonic() < deadline:
                if sent[0] != last:
                    last, since = sent[0], time.monotonic()
                elif time.monotonic() - since > 0.5:
                    break
                await asyncio.sleep(0.05)
            held = relay.buffered()
            writer.close()
            return sent[0], held
        finally:
            task.cancel()
            upstream.close()

    flooded, held = asyncio.run(scenario())
    assert held <= 2 * (access.buffer_bytes + READ_CHUNK), held
    assert flooded < offered // 4, "the flood stalls instead of filling the controller"
