"""The agent's sockets and output capture with real processes and real connections."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

from stack.agent.engine import Engine
from stack.spec.model import SocketSpec, StreamSpec
from stack.v1 import types_pb2
from tests.support.engine import (
    assignment,
    python_cmd,
    run,
    running_pids,
    settings,
    statuses,
    watcher,
)
from tests.support.wait import until

SERVER = (
    # Serves its pid to each connection; on SIGTERM it stops accepting (never drops one).
    "import os, select, signal, socket, sys\n"
    "s = socket.socket(fileno=int(sys.argv[1]))\n"
    "r, w = os.pipe()\n"
    "os.set_blocking(w, False)\n"
    "signal.set_wakeup_fd(w)\n"
    "signal.signal(signal.SIGTERM, lambda *_: None)\n"
    "print('ready', flush=True)\n"
    "while r not in select.select([s, r], [], [])[0]:\n"
    "    try:\n"
    "        c, _ = s.accept()\n"
    "    except BlockingIOError:\n"
    "        continue\n"
    "    c.setblocking(True)\n"
    "    c.sendall(str(os.getpid()).encode())\n"
    "    c.close()\n"
)


def _ask(port: int) -> int:
    # Patient: during a restart a connection waits in the socket's backlog until a new
    # worker accepts it, which on a loaded machine can take seconds. Served late is served;
    # only a refused or dropped connection is a failure.
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        data = b""
        while chunk := conn.recv(64):
            data += chunk
    return int(data)


def _bound_port(engine: Engine) -> int:
    return int(engine.observed().sockets[0].address.rsplit(":", 1)[1])


def test_four_workers_share_one_socket_and_keep_serving_while_restarting(tmp_path: Path) -> None:
    cmd, args = python_cmd(SERVER)
    web = SocketSpec(name="web", port=0)

    def workers(restart_token: int) -> types_pb2.WatcherAssignment:
        return watcher(
            "web",
            cmd,
            [1, 2, 3, 4],
            args=(*args, "$(stack.sockets.web)"),
            use_sockets=True,
            restart_token=restart_token,
            graceful_timeout=2,
        )

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(workers(0), sockets=(web,)))
            pids = await until(
                lambda: len(r := running_pids(engine.observed(), "web")) == 4 and r,
                what="4 workers",
            )
            await until(lambda: len(engine.tail("web", "out", 10)) == 4, what="4 workers ready")
            port = _bound_port(engine)
            served: set[int] = set()

            async def every_worker_answered() -> bool:
                served.add(await asyncio.to_thread(_ask, port))
                return served == set(pids.values())

            deadline = time.monotonic() + 60
            while not await every_worker_answered() and time.monotonic() < deadline:
                pass
            assert served == set(pids.values()), "every worker accepts on the shared socket"

            answers: list[int] = []
            done = asyncio.Event()

            def hammer() -> None:
                deadline = time.monotonic() + 120  # bounded even if the restart never ends
                while not done.is_set() and time.monotonic() < deadline:
                    answers.append(_ask(port))  # raises if one connection is refused

            client = asyncio.create_task(asyncio.to_thread(hammer))
            await until(lambda: answers, what="the first answers before the restart")
            engine.apply(assignment(workers(1), sockets=(web,), generation=2))

            def replaced() -> dict[int, int] | None:
                new = running_pids(engine.observed(), "web")
                fresh = len(new) == 4 and set(new.values()).isdisjoint(pids.values())
                return new if fresh and set(answers[-20:]) & set(new.values()) else None

            new = await until(replaced, what="4 new workers answering")
            done.set()
            await client
            assert set(answers) & set(pids.values()), "old workers served before the restart"
            assert set(answers) & set(new.values()), "new workers served after it"

    run(scenario())


def test_socket_worker_sees_listen_fds_and_its_own_pid(tmp_path: Path) -> None:
    cmd, args = python_cmd(
        "import os, sys\n"
        "print(os.environ['LISTEN_FDS'], os.environ['LISTEN_PID'], os.environ['LISTEN_FDNAMES'],"
        " sys.argv[1], os.environ['STACK_WATCHER'], os.environ['STACK_WID'], flush=True)\n"
        "import time; time.sleep(60)\n"
    )

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(
                assignment(
                    watcher(
                        "act", cmd, [7], args=(*args, "$(circus.sockets.web)"), sockets=["web"]
                    ),
                    sockets=(SocketSpec(name="web", port=0), SocketSpec(name="other", port=0)),
                )
            )
            lines = await until(lambda: engine.tail("act", "out", 1), what="the env line")
            pid = running_pids(engine.observed(), "act")[7]
            assert lines[0].text.split() == ["1", str(pid), "web", "3", "act", "7"]
            assert lines[0].host_id == "test-host" and lines[0].wid == 7

    run(scenario())


def test_unix_socket_is_bound_with_replace(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    path.touch()

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(sockets=(SocketSpec(name="u", path=str(path), replace=True),)))
            status = engine.observed().sockets[0]
            assert status.error.startswith("socket u: cannot bind"), "a plain file is not replaced"
            path.unlink()
            engine.apply(
                assignment(
                    sockets=(SocketSpec(name="u", path=str(path), umask=0o077),), generation=2
                )
            )
            assert engine.observed().sockets[0].error == ""
            assert path.is_socket() and path.stat().st_mode & 0o777 == 0o700
        assert not path.exists()

    run(scenario())


LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(\d+)\] (.*)$")


def test_output_is_timestamped_rotated_and_tailed(tmp_path: Path) -> None:
    cmd, args = python_cmd(
        "import sys\n"
        "for i in range(300):\n"
        "    print(f'line {i:03d}', flush=i % 50 == 0)\n"
        "print('oops', file=sys.stderr, flush=True)\n"
        "sys.stdout.write('no newline at the end')\n"
    )
    small = StreamSpec(max_bytes=2000, backup_count=3)
    on_disk: list[str] = []

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(
                assignment(watcher("log", cmd, [1], args=args, respawn=False, stdout_stream=small))
            )
            await until(
                lambda: (
                    statuses(engine.observed(), "log").get(1)
                    and statuses(engine.observed(), "log")[1].state
                    == types_pb2.PROCESS_STATE_EXITED
                ),
                what="writer exited",
            )
            tail = engine.tail("log", "out", 3)
            assert [line.text for line in tail] == ["line 298", "line 299", "no newline at the end"]
            assert [line.text for line in engine.tail("log", "err", 5)] == ["oops"]
            on_disk.extend(line.text for line in engine.tail("log", "out", 1000))
            both = engine.tail("log", "", 1000)
            assert len(both) == len(on_disk) + 1 and [b.at for b in both] == sorted(
                b.at for b in both
            )
            shipped = engine.take_logs(1000)
            assert len(shipped) == 302 and all(s.host_id == "test-host" for s in shipped)
        logs = tmp_path / "agent" / "logs"
        out = logs / "log.out.log"
        rotated = [logs / f"log.out.log.{n}" for n in (1, 2, 3)]
        assert out.exists() and all(p.exists() for p in rotated)
        assert not (logs / "log.out.log.4").exists()
        assert all(p.stat().st_size <= 2000 for p in [out, *rotated])
        current = out.read_text().splitlines()
        assert current[-1].endswith("[1] no newline at the end")
        assert all(LINE.match(line) for line in current)
        older = rotated[0].read_text().splitlines()
        numbers = [
            int(m.group(2).split()[1])
            for line in [*older, *current[:-1]]
            if (m := LINE.match(line))
        ]
        assert numbers == list(range(numbers[0], 300)), "rotation keeps lines whole and in order"
        files = [*(p.read_text().splitlines() for p in reversed(rotated)), current]
        assert on_disk == [LINE.sub(r"\2", line) for lines in files for line in lines]
        assert 0 < int(on_disk[0].split()[1]) < 200, "the tail reaches into the oldest backup"
        assert (logs / "log.err.log").read_text().endswith("[1] oops\n")

    run(scenario())


def test_fast_writer_never_blocks_and_lines_dropped_from_shipping_are_counted(
    tmp_path: Path,
) -> None:
    total = 500_000  # 100 bytes each: 50 MB
    cmd, args = python_cmd(
        "import sys\n"
        "line = b'x' * 99 + b'\\n'\n"
        f"for _ in range({total // 1000}):\n"
        "    sys.stdout.buffer.write(line * 1000)\n"
    )

    async def scenario() -> None:
        # The buffer alone: no rate cap (test_log_shipping_rate.py covers that).
        async with Engine(settings(tmp_path, ship_lines=10_000, ship_rate=0)) as engine:
            engine.apply(
                assignment(
                    watcher(
                        "fast",
                        cmd,
                        [1],
                        args=args,
                        respawn=False,
                        stdout_stream=StreamSpec(max_bytes=0),
                    )
                )
            )
            await until(
                lambda: (
                    statuses(engine.observed(), "fast").get(1)
                    and statuses(engine.observed(), "fast")[1].state
                    == types_pb2.PROCESS_STATE_EXITED
                ),
                # A writer blocked on its pipe would never finish; how fast it finishes is a
                # figure of the machine (and of its load), not of the agent.
                timeout=90,
                what="writer finished",
            )
            assert statuses(engine.observed(), "fast")[1].last_exit.code == 0

            def dropped() -> int:
                events = [e for e in engine.take_events() if e.kind == "logs_dropped"]
                counts.extend(int(e.message.split()[0]) for e in events)
                return sum(counts)

            counts: list[int] = []
            await until(lambda: dropped() == total - 10_000, what="the drop count")
            kept = engine.take_logs(20_000)
            assert len(kept) == 10_000, "the newest lines are kept for shipping"
        size = (tmp_path / "agent" / "logs" / "fast.out.log").stat().st_size
        prefix = len("2026-11-29T01:02:03.123Z [1] ")
        assert size == total * (100 + prefix), "the file keeps every line"

    run(scenario())


def test_a_flood_of_tiny_lines_into_a_file_rotating_every_few_keeps_the_agent_turning(
    tmp_path: Path,
) -> None:
    """30,000 lines of a few bytes, to a file that rotates every 7 of them, all at once.
    Before, the agent wrote a whole peek of the pipe in one turn of its loop, and each
    write's journal summed the peek's lines up to it: the turn took tens of seconds, and
    another watcher waited that long to start. The lines are still all written, whole
    and in order, across the turns."""
    total, backups = 30_000, 10
    cmd, args = python_cmd(
        f"import sys\nsys.stdout.write(''.join(f'{{i}}\\n' for i in range({total})))\n"
    )
    flood = watcher(
        "flood", cmd, [1], args=args, respawn=False,
        stdout_stream=StreamSpec(max_bytes=300, backup_count=backups),
    )  # fmt: skip
    other = watcher("other", "sleep 600", [1])
    gaps: list[float] = []

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:

            def last_line_written() -> bool:
                return [line.text for line in engine.tail("flood", "out", 1)] == [f"{total - 1}"]

            async def watch_the_loop() -> None:
                while not last_line_written():
                    before = time.monotonic()
                    await asyncio.sleep(0.01)
                    gaps.append(time.monotonic() - before)

            watching = asyncio.create_task(watch_the_loop())
            engine.apply(assignment(flood))
            await until(lambda: engine.tail("flood", "out", 1), what="the flood to begin")
            engine.apply(assignment(flood, other, generation=2))
            await until(lambda: running_pids(engine.observed(), "other"), what="the other watcher")
            await asyncio.wait_for(watching, 60)

    run(scenario())
    # A turn now takes tens of milliseconds (a few hundred under load); before, seconds.
    assert max(gaps) < 1.5, f"the loop stood still for {max(gaps):.1f} s"
    logs = tmp_path / "agent" / "logs"
    files = [logs / f"flood.out.log.{n}" for n in range(backups, 0, -1)] + [logs / "flood.out.log"]
    lines = [line for path in files for line in path.read_text().splitlines()]
    numbers = [int(LINE.sub(r"\2", line)) for line in lines]
    assert numbers == list(range(total - len(numbers), total)) and len(numbers) > 50


def test_a_moved_socket_is_bound_anew_and_its_workers_replaced_other_changes_are_not(
    tmp_path: Path, reserved_port: int
) -> None:
    cmd, args = python_cmd(SERVER)
    spec = watcher("web", cmd, [1], args=(*args, "$(circus.sockets.web)"), use_sockets=True)

    def pid_of(engine: Engine) -> int:
        return running_pids(engine.observed(), "web").get(1, 0)

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            engine.apply(assignment(spec, sockets=(SocketSpec(name="web", port=0),)))
            old = (await until(lambda: running_pids(engine.observed(), "web"), what="worker"))[1]
            port = _bound_port(engine)
            assert await asyncio.to_thread(_ask, port) == old
            # Same address, another backlog: applied to the bound socket, nobody replaced.
            bigger = SocketSpec(name="web", port=0, backlog=16)
            engine.apply(assignment(spec, sockets=(bigger,), generation=2))
            await until(lambda: engine.observed().generation == 2, what="applied")
            assert _bound_port(engine) == port and pid_of(engine) == old
            assert await asyncio.to_thread(_ask, port) == old
            # Another port: bound anew, and the worker replaced to get it.
            moved = SocketSpec(name="web", port=reserved_port)
            engine.apply(assignment(spec, sockets=(moved,), generation=3))
            new = await until(lambda: pid_of(engine) not in (0, old) and pid_of(engine), what="new")
            assert _bound_port(engine) == moved.port
            assert await asyncio.to_thread(_ask, moved.port) == new
            # An address that cannot be bound: the worker is kept, and says why.
            bad = SocketSpec(name="web", host="192.0.2.1", port=1)
            engine.apply(assignment(spec, sockets=(bad,), generation=4))
            (bound,) = engine.observed().sockets
            assert "cannot bind 192.0.2.1:1" in bound.error

            def kept() -> str:
                return statuses(engine.observed(), "web")[1].blocked

            assert "cannot bind 192.0.2.1:1" in await until(kept, what="kept, blocked")
            assert pid_of(engine) == new
            assert [e.kind for e in engine.take_events()].count("socket_error") == 1

    run(scenario())
