"""What relaying the controller's local socket costs a flood: bytes through the relay
beside the same bytes straight from the sender, in one run.

Run: .venv/bin/python bench/local_relay.py [--mib 64] [--rounds 7]

The controller accepts its local socket itself, checks each peer's credentials, and
relays the bytes to gRPC's own socket (stack.controller.local_relay); a `logs -f`
of a flooding worker is the most any local connection carries. Here a sender writes
--mib MiB as fast as it can on a unix socket and a reader takes them, straight
(sender -> reader) and through a LocalRelay (sender -> relay -> reader), in turn,
--rounds times, all in one asyncio loop: what the relay adds is the difference.
Prints the median MiB/s and CPU seconds per GiB of each and the relay's share;
asserts nothing. For scale: one agent ships at most 4 MiB/s of output (see README,
Security), and a follower is sent at most what its agents ship.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stack.controller.local_access import LocalAccess
from stack.controller.local_relay import LocalRelay

CHUNK = 64 * 1024


async def one_turn(path: str, mib: int) -> tuple[float, float]:
    """(seconds, cpu seconds) to read `mib` MiB from whatever serves `path`."""
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    wall, cpu = time.perf_counter(), time.process_time()
    left = mib * 1024 * 1024
    while left > 0:
        data = await reader.read(1 << 20)
        if not data:
            raise RuntimeError("the sender stopped early")
        left -= len(data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    writer.close()
    return wall, cpu


async def bench(root: Path, ns: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    total = ns.mib * 1024 * 1024

    async def send(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * CHUNK
        for _ in range(total // CHUNK):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    sender = await asyncio.start_unix_server(send, str(root / "sender.sock"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(root / "relay.sock"))
    listener.listen()
    listener.setblocking(False)
    relay = LocalRelay(listener, str(root / "sender.sock"), LocalAccess(os.geteuid()))
    relaying = asyncio.create_task(relay.run())
    results: dict[str, list[tuple[float, float]]] = {"straight": [], "through the relay": []}
    try:
        for _ in range(ns.rounds):
            results["straight"].append(await one_turn(str(root / "sender.sock"), ns.mib))
            results["through the relay"].append(await one_turn(str(root / "relay.sock"), ns.mib))
    finally:
        relaying.cancel()
        sender.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=64, help="MiB sent each turn")
    parser.add_argument("--rounds", type=int, default=7, help="turns of each")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stack-relay-") as tmp:
        results = asyncio.run(bench(Path(tmp), ns))
    print("| path | MiB/s | cpu s per GiB (sender, relay, reader: one process) |")
    print("|---|---|---|")
    rates = {}
    for name, turns in results.items():
        wall = statistics.median(w for w, _ in turns)
        cpu = statistics.median(c for _, c in turns)
        rates[name] = (ns.mib / wall, cpu * 1024 / ns.mib)
        print(f"| {name} | {rates[name][0]:,.0f} | {rates[name][1]:.2f} |")
    extra = rates["through the relay"][1] - rates["straight"][1]
    print(f"\nMedians of {ns.rounds} turns of {ns.mib} MiB each, in turn in one run.")
    print(f"The relay's cost: {extra:.2f} cpu s per GiB relayed, "
          f"{extra * 4 / 1024 * 100:.2f}% of a core at 4 MiB/s (one agent's output cap).")


if __name__ == "__main__":
    main()
