"""The agent's gRPC stream over h2 (stack.agent.h2_stream) against a real grpcio server on
127.0.0.1 or a unix socket: what the controller would see of it and it of the controller.

The server here is a generic bytes-in, bytes-out gRPC service, so each test states what
the controller does (echo, end, abort, stop reading) and checks what the stream makes
of it. The agent's whole session over this stream is tested in test_agent_session.py,
and with TLS in test_tls.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from stack.agent import h2_stream
from stack.agent.h2_stream import Stream, StreamError, parse_target
from stack.security.limits import GRPC_SIZE_OPTIONS, MAX_MESSAGE_BYTES

METHOD = "/test.Echo/Chat"
Handler = Callable[[AsyncIterator[bytes], Any], AsyncIterator[bytes]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, address: str = "127.0.0.1:0") -> AsyncIterator[str]:
    """A gRPC server whose one method is `handler`; yields the address to dial."""
    server = grpc.aio.server(options=GRPC_SIZE_OPTIONS)  # the controller's bounds
    method = grpc.stream_stream_rpc_method_handler(handler)  # bytes as they are
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Echo", {"Chat": method}),)
    )
    port = server.add_insecure_port(address)
    await server.start()
    try:
        yield address if address.startswith("unix:") else f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def dial(address: str, max_message: int = MAX_MESSAGE_BYTES) -> Stream:
    return await Stream.open(address, METHOD, max_message=max_message, user_agent="test")


async def echo(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
    async for message in requests:
        yield message


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_messages_go_both_ways_whole_and_in_order_even_past_every_flow_control_window() -> None:
    sizes = [0, 1, 5, 70_000, h2_stream.WINDOW + 123_456, 300]

    async def scenario() -> None:
        async with serving(echo) as address, await dial(address) as stream:
            sent = [bytes([n % 251]) * n for n in sizes]
            writer = asyncio.ensure_future(_write_all(stream, sent))
            got = [await stream.read() for _ in sent]
            await writer
            assert [len(m or b"") for m in got] == sizes
            assert got == sent

    run(scenario)


async def _write_all(stream: Stream, messages: list[bytes]) -> None:
    for message in messages:
        await stream.write(message)


def test_a_stream_the_controller_ends_well_reads_as_none_after_its_last_message() -> None:
    async def two(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        yield b"one"
        yield b"two"

    async def scenario() -> None:
        async with serving(two) as address, await dial(address) as stream:
            assert [await stream.read() for _ in range(4)] == [b"one", b"two", None, None]

    run(scenario)


def test_done_writing_is_the_end_the_controller_reads_and_the_stream_still_reads() -> None:
    async def count(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        seen = [message async for message in requests]
        yield str(len(seen)).encode()

    async def scenario() -> None:
        async with serving(count) as address, await dial(address) as stream:
            for _ in range(3):
                await stream.write(b"x")
            await stream.done_writing()
            assert await stream.read() == b"3"
            assert await stream.read() is None

    run(scenario)


@pytest.mark.parametrize("at_once", [True, False], ids=["before any message", "after one"])
def test_an_error_status_fails_the_stream_with_its_code_and_whole_message(at_once: bool) -> None:
    text = "not the leader; try the controller at 198.18.0.2 (é 100%)"

    async def refuse(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        if not at_once:
            yield b"hello"
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, text)

    async def scenario() -> None:
        async with serving(refuse) as address, await dial(address) as stream:
            if not at_once:
                assert await stream.read() == b"hello"
            for _ in range(2):  # and again: a failed stream stays failed
                with pytest.raises(StreamError) as failed:
                    await stream.read()
                assert (failed.value.code, failed.value.details) == ("FAILED_PRECONDITION", text)
            with pytest.raises(StreamError):
                await stream.write(b"more")

    run(scenario)


def test_the_stream_works_over_a_unix_socket(tmp_path: Path) -> None:
    async def scenario() -> None:
        address = f"unix:{tmp_path / 'controller.sock'}"
        async with serving(echo, address) as dialed, await dial(dialed) as stream:
            await stream.write(b"over a unix socket")
            assert await stream.read() == b"over a unix socket"

    run(scenario)


def test_messages_over_the_size_bound_are_refused_both_ways() -> None:
    async def big(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        yield b"y" * 2000

    async def scenario() -> None:
        async with serving(big) as address, await dial(address, max_message=1000) as stream:
            with pytest.raises(StreamError) as sending:
                await stream.write(b"x" * 1001)
            assert sending.value.code == "RESOURCE_EXHAUSTED"
            with pytest.raises(StreamError) as reading:
                await stream.read()
            assert reading.value.code == "RESOURCE_EXHAUSTED"
            assert "2000 bytes" in reading.value.details

    run(scenario)


def test_a_controller_that_reads_nothing_holds_the_writer_back_instead_of_its_memory() -> None:
    """Flow control: the writer waits once the controller's window and the socket's
    buffers are full; what it queued is bounded by them, not by what it was asked to send."""
    stalled = asyncio.Event()

    async def deaf(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        await stalled.wait()
        yield b"late"

    async def scenario() -> None:
        chunk = b"z" * 65536
        written = 0
        async with serving(deaf) as address, await dial(address) as stream:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    for _ in range(1024):  # 64 MiB, far past any window and buffer
                        await stream.write(chunk)
                        written += 1
            stalled.set()
            assert 0 < written < 1024, f"{written} writes of 64 KiB went through"
            assert await stream.read() == b"late"

    run(scenario)


def test_a_refused_connection_and_a_bad_address_are_unavailable_with_a_reason() -> None:
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

        async def scenario() -> None:
            with pytest.raises(StreamError) as refused:
                await dial(f"127.0.0.1:{port}")
            assert refused.value.code == "UNAVAILABLE"
            assert "refused" in refused.value.details.lower()

        run(scenario)
    for bad in ("controller", "host:", "host:port", "host:70000", ":1"):
        with pytest.raises(StreamError) as failed:
            parse_target(bad)
        assert failed.value.code == "UNAVAILABLE" and repr(bad) in failed.value.details


def test_a_controller_that_stops_answering_fails_the_stream_by_its_pings() -> None:
    """A listener that accepts and then says nothing, as a paused controller does: the
    stream fails as UNAVAILABLE once a ping goes unanswered, not at some TCP timeout."""

    async def scenario() -> None:
        held: list[asyncio.StreamWriter] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # keep the connection open; read and answer nothing

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            stream = await dial(f"127.0.0.1:{port}")
            started = time.monotonic()
            with pytest.raises(StreamError) as gone:
                await stream.read()
            waited = time.monotonic() - started
            stream.close()
        assert gone.value.code == "UNAVAILABLE"
        assert "ping" in gone.value.details
        bound = h2_stream.KEEPALIVE_TIME + h2_stream.PING_TIMEOUT
        assert bound - 0.5 < waited < bound + 20, waited  # the margin is for a loaded CPU

    run(scenario)
