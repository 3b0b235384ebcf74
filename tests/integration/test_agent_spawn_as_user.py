"""Spawning workers as another user, with gRPC busy in the same process (issue 16, item 10).

A child made by fork() runs gRPC's pthread_atfork handlers, which restart gRPC's
event-engine threads in the child while it is still root and before it execs: those
threads crashed children with SIGSEGV/SIGABRT. Popen forks (rather than vforks) as soon
as it is given a user, a group or extra groups, so the agent drops privileges in an exec
step instead; these tests hold it to that with real processes and a real gRPC server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType

import grpc

from stack.agent.process import Launch, Proc, build_launch, spawn
from stack.spec.model import WatcherSpec
from tests.support.engine import run
from tests.support.users import User, needs_root
from tests.support.wait import until


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


@asynccontextmanager
async def busy_grpc(callers: int = 4) -> AsyncIterator[list[int]]:
    """A gRPC server and client on loopback exchanging calls as fast as they can;
    yields a one-item list counting the calls made."""
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "t.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/t.Echo/Echo")
    calls = [0]

    async def caller() -> None:
        while True:
            await call(b"x" * 256)
            calls[0] += 1

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    try:
        await until(lambda: calls[0] >= 100, 10, "gRPC calls flowing")
        yield calls
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close()
        await server.stop(None)


async def _reaped(proc: Proc) -> int:
    """The worker's return code (negative: the signal that killed it); its pipes closed."""
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        await asyncio.sleep(0.001)
    _close_pipes(proc)
    return os.waitstatus_to_exitcode(status)


def _close_pipes(proc: Proc) -> None:
    for pipe in (proc.out, proc.err):
        if pipe is not None:
            os.close(pipe.fd)


@needs_root
def test_a_thousand_spawns_as_a_user_and_group_beside_busy_grpc_never_abort(user: User) -> None:
    spec = WatcherSpec(name="t", cmd="true", uid=user.name, gid=user.name)
    launch = build_launch(spec, 1, [], os.environ)

    async def scenario() -> dict[int, int]:
        codes: dict[int, int] = {}
        async with busy_grpc() as calls:
            before = calls[0]
            for _ in range(20):
                batch = []
                for _ in range(50):
                    batch.append(spawn(launch, spec, 1, 1))
                    await asyncio.sleep(0)  # let the gRPC callers in between spawns
                for code in await asyncio.gather(*(_reaped(proc) for proc in batch)):
                    codes[code] = codes.get(code, 0) + 1
            assert calls[0] > before, "gRPC was busy while the workers were spawned"
        return codes

    codes = run(scenario(), timeout=240)
    assert codes == {0: 1000}, f"return codes (negative: killed by that signal): {codes}"


@needs_root
def test_a_worker_spawned_as_a_user_gets_ids_no_groups_umask_cwd_env_rlimits_and_sockets(
    user: User, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    os.chown(workdir, user.uid, user.gid)
    spec = WatcherSpec(
        name="t",
        cmd="sleep 300 $(circus.sockets.web)",
        uid=user.name,
        gid=user.name,
        umask=0o027,
        working_dir=str(workdir),
        env=MappingProxyType({"GREETING": "hello"}),
        rlimits=MappingProxyType({"nofile": 512}),
        use_sockets=True,
    )
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    os.setgroups([0, 4])  # the agent's own supplementary groups must not leak in
    try:
        launch = build_launch(spec, 2, [("web", listener.fileno())], os.environ)
        proc = run(_spawned(spec, launch))
    finally:
        os.setgroups([])
    try:
        status = _fields(Path(f"/proc/{proc.pid}/status").read_text())
        assert status["Uid"] == [str(user.uid)] * 4
        assert status["Gid"] == [str(user.gid)] * 4
        assert status["Groups"] == []
        assert status["Umask"] == ["0027"]
        assert os.readlink(f"/proc/{proc.pid}/cwd") == str(workdir)
        environ = dict(
            item.split("=", 1)
            for item in Path(f"/proc/{proc.pid}/environ").read_text().split("\0")
            if item
        )
        assert environ["GREETING"] == "hello" and environ["STACK_WID"] == "2"
        assert environ["LISTEN_PID"] == str(proc.pid) and environ["LISTEN_FDS"] == "1"
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert any(
            line.startswith("Max open files") and line.split()[3:5] == ["512", "512"]
            for line in limits.splitlines()
        ), limits
        inherited = os.stat(f"/proc/{proc.pid}/fd/3")
        assert stat.S_ISSOCK(inherited.st_mode)
        assert inherited.st_ino == os.fstat(listener.fileno()).st_ino
        argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[0].endswith(b"/sleep") and argv[1:3] == [b"300", b"3"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        os.waitpid(proc.pid, 0)
        _close_pipes(proc)
        listener.close()


async def _spawned(spec: WatcherSpec, launch: Launch) -> Proc:
    proc = spawn(launch, spec, 2, 1)
    await until(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep", 10,
                "the worker to exec sleep")  # fmt: skip
    return proc


def _fields(status: str) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}
