"""Least knowledge: an agent is told, and keeps on disk, only the watchers it runs.

Two real agents on one controller, `h1` labelled role=web and `h2` role=db; the
db watcher carries a password. The web host must hold no trace of it, neither in
what it was sent (the Assignment it persisted) nor anywhere in its data dir.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from stack.agent.persist import ASSIGNMENT_FILE, load_assignment
from tests.support.cluster import Cluster, running_cluster
from tests.support.processes import worker_processes
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml


def stack(tag: str, secret: str, db_count: int = 1) -> str:
    db = watcher_toml(
        "db", f"{tag}-db", "--tick", "60", "--ignore-term",
        sockets=["dbsock"], numprocesses=db_count, graceful_timeout=3,
    )  # fmt: skip
    return (
        "[sockets.websock]\nport = 0\n[sockets.dbsock]\nport = 0\n"
        + watcher_toml("web", tag, "--tick", "60", sockets=["websock"])
        + '[watchers.web.placement]\nlabels = { role = "web" }\n'
        + db
        + f'[watchers.db.env]\nDB_PASSWORD = "{secret}"\n'
        + '[watchers.db.placement]\nlabels = { role = "db" }\n'
    )


def persisted(data_dir: Path) -> tuple[list[str], list[str]]:
    """(watcher names, socket names) of the Assignment an agent keeps on disk."""
    assignment = load_assignment(data_dir)
    assert assignment is not None
    return [w.spec.name for w in assignment.watchers], [s.name for s in assignment.sockets]


def files_holding(data_dir: Path, needle: bytes) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_host_its_labels_exclude_holds_no_trace_of_the_other_watchers_env(
    tmp_path: Path,
) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    with running_cluster(
        tmp_path / "stack",
        agent_options=("--stats-interval", "0.5", "--heartbeat-interval", "0.5",
                       "--label", "role=web"),
    ) as cluster:  # fmt: skip
        cluster.add_agent("h2", "--label", "role=db")
        web_dir, db_dir = cluster.root / "agent", cluster.root / "h2"
        cluster.apply(stack(cluster.tag, secret))
        cluster.wait_running("web", 1)
        cluster.wait_running("db", 1)
        assert {p.host_id for p in cluster.processes("db")} == {"h2"}

        assert persisted(web_dir) == (["web"], ["websock"])
        assert persisted(db_dir) == (["db"], ["dbsock"])
        assert files_holding(web_dir, secret.encode()) == []
        assert files_holding(web_dir, b"DB_PASSWORD") == []
        assert files_holding(db_dir, secret.encode()) == [db_dir / ASSIGNMENT_FILE]

        # The last worker id leaving a host takes the watcher (and its secret) with it;
        # coming back while its worker still stops (it ignores SIGTERM for 3 s), worker
        # 1 waits for its predecessor: never two at a time.
        cluster.apply(stack(cluster.tag, secret, db_count=0))
        wait_for(lambda: persisted(db_dir) == ([], []), what="h2 to forget db")
        cluster.apply(stack(cluster.tag, secret, db_count=1))
        _assert_one_db_worker_at_a_time(cluster)
        cluster.wait_running("db", 1)
        wait_for(lambda: len(db_workers(cluster)) == 1, what="one db worker")
        assert persisted(db_dir) == (["db"], ["dbsock"])
        assert files_holding(web_dir, secret.encode()) == []


def db_workers(cluster: Cluster) -> list[int]:
    return [p.pid for p in worker_processes(f"{cluster.tag}-db")]


def _assert_one_db_worker_at_a_time(cluster: Cluster) -> None:
    def settled() -> bool:
        pids = db_workers(cluster)
        assert len(pids) <= 1, f"two db workers at once: {pids}"
        running = cluster.running_pids("db")
        return bool(running) and set(running.values()) == set(pids)

    wait_for(settled, 15, "db to run again on h2")
