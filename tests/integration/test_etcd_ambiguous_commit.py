"""A commit whose answer was lost and whose retry found a newer leader is not "nothing changed".

Replays what bench/chaos.py found (seed 4): etcd took a controller's commit, the answer
never came back (a member paused, a partition), the controller's term went stale
meanwhile, and the retry of the same commit was refused by the fencing token. The
controller then told stackctl "lost its leadership, nothing was changed", while the change
was in the store. Here a proxy in front of a real etcd member withholds the answer, the
lease runs out while it does, another store takes the leader key, and the proxy lets the
retry through.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.controller.store.base import StaleTerm
from tests.support.etcd import EtcdCluster, etcd_cluster, requires_etcd
from tests.support.etcd_term import TermTakingEtcdStore
from tests.support.wait import wait_for

pytestmark = requires_etcd


class Proxy:
    """A TCP proxy on 127.0.0.1 to `upstream` whose directions can be held back: bytes are
    left unread in the kernel until the direction is let go, or the connections cut."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.answers = threading.Event()
        self.requests = threading.Event()
        self.answers.set()
        self.requests.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._open: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, self.requests),
                             daemon=True).start()  # fmt: skip
            threading.Thread(target=self._pump, args=(server, client, self.answers),
                             daemon=True).start()  # fmt: skip

    def _pump(self, src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while True:
                flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                flowing.wait()
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close every connection made so far (the held bytes are lost), and let new ones
        flow."""
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._open.clear()
        self.requests.set()
        self.answers.set()

    def close(self) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()


@pytest.fixture
def member() -> Iterator[EtcdCluster]:
    with etcd_cluster(1) as cluster:
        yield cluster


def test_a_commit_taken_by_etcd_whose_retry_is_fenced_says_it_may_have_been_made(
    member: EtcdCluster, tmp_path: Path
) -> None:
    prefix = f"/ambiguous-{uuid.uuid4().hex[:8]}"
    host, port = member.endpoints[0].split(":")
    proxy = Proxy((host, int(port)))
    old = TermTakingEtcdStore([proxy.endpoint], prefix, lease_ttl=1.0, timeout=15.0)
    new = TermTakingEtcdStore(member.endpoints, prefix, lease_ttl=1.0)
    try:
        term = old.acquire_term()
        old.commit(term, {"stack/w": b"1"}, [])
        proxy.answers.clear()  # etcd takes the next commit; its answer stays in the proxy
        outcome: list[BaseException | None] = []

        def commit() -> None:
            try:
                old.commit(term, {"stack/w": b"2"}, [])
                outcome.append(None)
            except Exception as exc:
                outcome.append(exc)

        committing = threading.Thread(target=commit)
        committing.start()
        wait_for(lambda: new.load("stack/") == {"stack/w": b"2"}, 10, "etcd to take the commit")
        proxy.requests.clear()  # the old leader's keepalives stop reaching etcd
        newer = new.acquire_term()  # once its lease ran out
        assert newer > term
        proxy.cut()  # the answer is lost; the retry of the commit goes through
        committing.join(20)
        assert not committing.is_alive()
        stored = new.load("stack/")
    finally:
        old.close()
        new.close()
        proxy.close()

    (error,) = outcome
    assert isinstance(error, StaleTerm), error
    assert error.maybe_written, "the retry's refusal says nothing of the first attempt"
    assert stored == {"stack/w": b"2"}
