"""The controller's local socket, accepted by the controller itself so that it can check
who connects.

gRPC does not show a service the peer's credentials of a unix socket, so the controller
accepts the connections of its public socket (`controller.sock`) here, in its own event
loop, reads each one's SO_PEERCRED, decides (local_access.py), and either refuses it (a
line saying why, then the connection is closed, and a log line, rate-limited) or relays
its bytes both ways, unchanged, to gRPC's real listener: a socket in a directory only
the controller's user can enter (see stack.security.local). HTTP/2 passes through a byte
relay untouched, so clients, agents and follows see no difference.

Bounded: one uid holds at most `max_connections_per_uid` connections (refused beyond),
and each direction of a connection holds at most `buffer_bytes` (plus one read) that
its receiver has not taken; beyond, the relay stops reading from the sender, whose own
flow control then holds it back. A permitted but broken client cannot grow the
controller past that.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from stack import aio
from stack.controller.local_access import LocalAccess, PeerCredentials, RefusalLog, allowed
from stack.security.local import BUSY, DENIED, refusal_line

log = logging.getLogger("stack.controller.local")

_PEERCRED = struct.Struct("3i")


def peer_credentials(sock: Any) -> PeerCredentials:
    """SO_PEERCRED of a connected unix socket: the peer's pid, uid and gid."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def account_groups(uid: int) -> list[int]:
    """The gids of the account of `uid` (primary and supplementary); none without one."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return []
    return os.getgrouplist(entry.pw_name, entry.pw_gid)


class _End(asyncio.Protocol):
    """One side of a relayed connection: what it reads, the other side writes."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.other: _End | None = None
        self.eof = False
        self.early = b""
        """What the client sent before gRPC's side was connected (one read at most)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.pair.relay.access.buffer_bytes)
        self.pair.made(self)

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None or other.transport is None:
            # Not linked yet: keep it, and read no more until linked. (Pausing in
            # connection_made does not hold on every 3.11: the reader may start anyway.)
            self.early += data
            if self.transport is not None:
                self.transport.pause_reading()
            return
        other.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other
        if other is None or other.transport is None:
            return True  # not linked yet: link() passes the end on after the bytes before it
        if other.eof:
            return False  # both ways are done: close
        if other.transport.can_write_eof():
            other.transport.write_eof()
            return True
        return False

    def pause_writing(self) -> None:
        # Our receiver is behind: stop taking bytes from the side that sends them.
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.lost(self)


class _Pair:
    """An allowed client's connection and its connection to gRPC; counted against the
    client's uid until both are closed."""

    def __init__(self, relay: LocalRelay, peer: PeerCredentials) -> None:
        self.relay = relay
        self.peer = peer
        self.client = _End(self)
        self.upstream: _End | None = None
        self._open = 2  # the client's side, and gRPC's (or the attempt to reach it)
        self.allowed = False

    def made(self, end: _End) -> None:
        if end is self.client:
            self.relay.admit(self)
        else:
            self.link(end)  # before gRPC's first bytes can be read

    def link(self, upstream: _End) -> None:
        """gRPC's side is connected: start relaying."""
        self.upstream = upstream
        client = self.client
        if client.transport is None or client.transport.is_closing():
            if upstream.transport is not None:
                upstream.transport.close()
            return
        client.other, upstream.other = upstream, client
        assert upstream.transport is not None
        if client.early:
            upstream.transport.write(client.early)
            client.early = b""
        if client.eof and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        client.transport.resume_reading()

    def unreachable(self) -> None:
        """gRPC's side could not be connected."""
        self.close()
        self._closed_one()

    def close(self) -> None:
        for end in (self.client, self.upstream):
            if end is not None and end.transport is not None:
                end.transport.close()

    def lost(self, end: _End) -> None:
        self.close()  # one side gone: the other goes too, once it has sent what it holds
        self._closed_one()

    def _closed_one(self) -> None:
        self._open -= 1
        if self._open == 0:
            self.relay.release(self)


class LocalRelay:
    """Accepts the local socket's connections, checks each peer and relays the allowed
    ones to gRPC at `upstream` (a unix socket path)."""

    def __init__(
        self,
        listener: socket.socket,
        upstream: str,
        access: LocalAccess,
        *,
        groups_of: Callable[[int], list[int]] = account_groups,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access = access
        self._listener = listener
        self._upstream = upstream
        self._groups_of = groups_of
        self._clock = clock
        self._refusals = RefusalLog(access)
        self._held: dict[int, int] = {}
        """Open connections per uid."""
        self._pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None
        self._tasks: aio.TaskGroup | None = None

    async def run(self) -> None:
        """Accept and relay until cancelled; then close every relayed connection."""
        loop = asyncio.get_running_loop()
        try:
            async with aio.TaskGroup() as tasks:
                self._tasks = tasks
                self._server = await loop.create_unix_server(
                    lambda: _Pair(self, PeerCredentials(0, -1, -1)).client, sock=self._listener
                )
                await asyncio.Event().wait()  # until cancelled
        finally:
            self._tasks = None
            self.stop_accepting()
            for pair in list(self._pairs):
                pair.close()

    def stop_accepting(self) -> None:
        """Close the listening socket; connections already relayed go on."""
        if self._server is not None:
            self._server.close()

    def buffered(self) -> int:
        """Bytes the relay holds now, all connections and both ways."""
        ends = [end for pair in self._pairs for end in (pair.client, pair.upstream) if end]
        return sum(
            len(end.early) + (end.transport.get_write_buffer_size() if end.transport else 0)
            for end in ends
        )

    def held(self, uid: int) -> int:
        """Connections `uid` holds open through the relay now."""
        return self._held.get(uid, 0)

    def admit(self, pair: _Pair) -> None:
        """A client connected: refuse it, or count it and connect it to gRPC."""
        transport = pair.client.transport
        assert transport is not None
        try:
            peer = peer_credentials(transport.get_extra_info("socket"))
        except OSError as exc:
            log.warning("local socket: cannot read a peer's credentials: %s", exc.strerror)
            transport.close()
            return
        pair.peer = peer
        if not allowed(peer.uid, self.access, self._groups_of):
            why = "is not the controller's user, root, or in its operator group"
            self._refuse(pair, DENIED, f"uid {peer.uid}", f"uid {peer.uid} {why}")
            return
        if self.held(peer.uid) >= self.access.max_connections_per_uid:
            told = (f"uid {peer.uid} holds {self.held(peer.uid)} connections already "
                    f"(at most {self.access.max_connections_per_uid})")  # fmt: skip
            self._refuse(pair, BUSY, told, told)
            return
        pair.allowed = True
        self._held[peer.uid] = self.held(peer.uid) + 1
        self._pairs.add(pair)
        if self._tasks is None:  # stopping
            transport.close()
            return
        aio.start(self._tasks, self._connect(pair), f"relay for pid {peer.pid}",
                  reraise=False, logger=log)  # fmt: skip

    async def _connect(self, pair: _Pair) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_unix_connection(lambda: _End(pair), self._upstream)
        except OSError as exc:
            log.warning("local socket: cannot reach gRPC's listener: %s", exc.strerror or exc)
            pair.unreachable()

    def _refuse(self, pair: _Pair, kind: str, told: str, reason: str) -> None:
        """Tell the peer (`told`), close, and log `reason` unless too many did lately."""
        transport = pair.client.transport
        assert transport is not None
        transport.write(refusal_line(kind, told))
        transport.close()
        quiet = self._refusals.note(self._clock())
        if quiet is not None:
            more = f" ({quiet} more refused since the last such line)" if quiet else ""
            log.warning("local socket: refused pid %d: %s%s", pair.peer.pid, reason, more)

    def release(self, pair: _Pair) -> None:
        """Both sides of an allowed connection are closed."""
        if not pair.allowed:
            return
        self._pairs.discard(pair)
        left = self.held(pair.peer.uid) - 1
        if left > 0:
            self._held[pair.peer.uid] = left
        else:
            self._held.pop(pair.peer.uid, None)
