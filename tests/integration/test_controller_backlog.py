"""A burst of calls that waits for a busy event loop is held, not refused.

The controller's asyncio gRPC server takes incoming calls one at a time, one per pass
of its event loop; in a connect storm the loop is busy and the calls wait in gRPC's
core. With gRPC's defaults core refuses a growing share of them past 1,000 waiting
(the caller sees CANCELLED), which is what failed the simulated agents' streams in
`bench/many_agents.py --agents 10000`. Here a real asyncio server with the
controller's options is kept from taking calls (its loop blocked) while a client
process opens a burst of streams on loopback; then the loop runs again and every
stream must be answered. The same burst against gRPC's defaults shows the refusals
the options prevent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import grpc

from stack.controller.main import PENDING_CALLS, SERVER_OPTIONS
from tests.support.wait import wait_for

BURST = 2000
"""Streams opened at once: between gRPC's default soft (1,000) and hard (3,000) limits,
where it refuses a share that grows with the queue (about 250 of 2,000 expected)."""
METHOD = "/backlog.Test/Echo"

CLIENT = """
import asyncio, collections, json, sys
import grpc

async def main(address, count):
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        echo = channel.stream_stream(sys.argv[3])
        calls = [echo() for _ in range(count)]
        ended = set()  # refused before their message was written
        for i, call in enumerate(calls):
            try:
                await call.write(b"hello")
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                ended.add(i)
        print("sent", flush=True)

        async def answer(i, call):
            if i in ended:
                return (await call.code()).name
            try:
                reply = await call.read()
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            call.cancel()
            return "answered" if reply == b"hello" else repr(reply)

        codes = await asyncio.gather(*(answer(i, c) for i, c in enumerate(calls)))
        print(json.dumps(collections.Counter(codes)), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _echo(requests: Any, context: Any) -> Any:
    async for message in requests:
        yield message
        return


def _endpoint(field: str) -> tuple[str, int]:
    """An address:port of /proc/net/tcp{,6} (hex, in host byte order by 32-bit word)."""
    address, port = field.split(":")
    raw = bytes.fromhex(address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(port, 16)


def _tcp_queues_drained(port: int) -> bool:
    """True when no established TCP socket to or from 127.0.0.1:`port` has bytes queued,
    so the server's core has read (and taken in) every stream the client wrote."""
    server = ("127.0.0.1", port)
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):  # gRPC may bind 127.0.0.1 as IPv6
        with open(name) as table:
            rows += [line.split() for line in table.readlines()[1:]]
    ours = [
        r for r in rows if r[3] == "01" and server in (_endpoint(r[1]), _endpoint(r[2]))
    ]
    return bool(ours) and all(r[4] == "00000000:00000000" for r in ours)


def _block_until(proc: subprocess.Popen[str], port: int, deadline: float) -> None:
    """Keep the event loop blocked (no call is taken) until the client wrote every
    stream and the server's socket is drained."""
    assert proc.stdout is not None
    while True:
        assert time.monotonic() < deadline, "the client did not write its streams in time"
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            assert line == "sent\n", f"client said {line!r}"
            break
    # Waiting without giving the loop a turn, on purpose: it must not take calls yet.
    left = max(0.0, deadline - time.monotonic())
    wait_for(lambda: _tcp_queues_drained(port), left, "the server to read the streams", 0.01)


async def _burst(options: Sequence[tuple[str, Any]]) -> dict[str, int]:
    """How the BURST streams ended: "answered", or the status code they failed with."""
    server = grpc.aio.server(options=list(options))
    handler = grpc.method_handlers_generic_handler(
        "backlog.Test", {"Echo": grpc.stream_stream_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, f"127.0.0.1:{port}", str(BURST), METHOD],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _block_until(proc, port, time.monotonic() + 60)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await server.stop(None)
    assert proc.returncode == 0, out
    codes: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return codes


def test_a_burst_waiting_for_the_loop_is_answered_in_full() -> None:
    assert PENDING_CALLS > BURST
    codes = asyncio.run(_burst(SERVER_OPTIONS))
    assert codes == {"answered": BURST}


def test_grpc_defaults_refuse_part_of_the_same_burst() -> None:
    """The premise of the controller's options: without them this burst loses streams."""
    codes = asyncio.run(_burst([]))
    assert sum(codes.values()) == BURST
    assert codes.get("answered", 0) < BURST, codes
    assert set(codes) <= {"answered", "CANCELLED", "INTERNAL"}, codes
