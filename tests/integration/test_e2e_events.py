"""The event history through stackctl: the last 20 by default, each host's share safe from
a flooding agent, kept across restarts of a SQLite controller, `events -f`/`logs -f`
following across a restart, and exiting 1 with one line when no controller comes back
within 10 s."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from stack.v1 import admin_pb2, agent_pb2, types_pb2
from tests.support.cluster import Cluster
from tests.support.fake_agent import FakeAgent
from tests.support.following import assert_both_go_on, following
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml

GIVE_UP = 10.0


def all_events(cluster: Cluster) -> list[dict[str, Any]]:
    result = cluster.stackctl("-o", "json", "events", "-n", "0", check=True)
    events: list[dict[str, Any]] = result.json()["events"]
    return events


def stored_event_count(cluster: Cluster) -> int:
    """Events in the controller's SQLite store, read as a test oracle."""
    path = cluster.root / "controller" / "controller.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
    return int(count)


def test_events_shows_the_last_20_by_default_n_for_more_and_0_for_all(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=0))
    admin = cluster.admin()
    for count in range(1, 31):  # events enough, made quickly: stackctl is what reads them
        admin.Scale(admin_pb2.ScaleRequest(watcher="w", count=count % 2), timeout=10)

    def last(*args: str) -> list[int]:
        document = cluster.stackctl("-o", "json", "events", *args, check=True).json()
        return [event["seq"] for event in document["events"]]

    # The agent's events of the last scales come in a little later: until they have,
    # two reads may differ.
    every = wait_for(lambda: (seqs := last("-n", "0")) == last("-n", "0") and seqs, 20, "quiet")
    assert len(every) > 30 and every == sorted(every)
    assert last() == every[-20:]
    assert last("-n", "25") == every[-25:]
    shown = cluster.stackctl("events", check=True).out.splitlines()
    assert len(shown) == 20
    assert len(cluster.stackctl("events", "-n", "0", check=True).out.splitlines()) == len(every)


def test_a_restarted_sqlite_controller_keeps_the_history_and_numbers_on(
    cluster: Cluster,
) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    cluster.wait_running("w", 2)
    cluster.stackctl("scale", "w", "1", check=True)
    before = all_events(cluster)
    assert {"apply", "spawn", "scale"} <= {e["kind"] for e in before}

    cluster.controller.stop()  # a clean stop writes what it had not written yet
    cluster.start_controller()
    after = all_events(cluster)
    assert after[: len(before)] == before
    # Killed, it keeps what its writer had written (a fraction of a second behind).
    cluster.stackctl("scale", "w", "2", check=True)
    written = len(all_events(cluster))
    wait_for(lambda: stored_event_count(cluster) >= written, 10, "the events in the store")
    kept = all_events(cluster)[:written]
    cluster.controller.kill9()
    cluster.start_controller()
    cluster.stackctl("scale", "w", "3", check=True)
    again = all_events(cluster)
    assert again[:written] == kept
    new = again[written:]
    assert new and all(e["seq"] > kept[-1]["seq"] for e in new)
    assert any(e["message"] == "scale w: 2 -> 3" for e in new)


def test_events_and_logs_follow_across_a_controller_restart(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, "--tick", "0.1"))
    cluster.wait_running("w", 1)
    with (
        following(cluster.address, "events", "-f") as events,
        following(cluster.address, "logs", "w", "-f", "-n", "0") as logs,
    ):
        wait_for(lambda: len(logs.items) >= 5, 10, "log lines before the restart")
        cluster.controller.stop()
        cluster.start_controller()
        assert_both_go_on(events, logs, lambda: cluster.stackctl("scale", "w", "2", check=True))


def test_a_follow_exits_1_with_one_line_when_no_controller_comes_back(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, "--tick", "0.2"))
    cluster.wait_running("w", 1)
    with (
        following(cluster.address, "events", "-f") as events,
        following(cluster.address, "logs", "w", "-f") as logs,
    ):
        wait_for(lambda: events.items and logs.items, 10, "both follows to print")
        stopped = time.monotonic()
        cluster.controller.stop()
        for follow in (events, logs):
            code, err = follow.wait(GIVE_UP + 20)
            took = time.monotonic() - stopped
            assert code == 1, err
            assert err.startswith("stackctl: ") and err.count("\n") == 1, err
            assert "no controller took the follow back within 10s" in err, err
            assert took >= GIVE_UP, took


def test_a_flooding_agent_pushes_out_only_its_own_events_and_its_excess_is_counted(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path / "stack")
    cluster.controller.argv += ["--event-history", "300", "--agent-event-rate", "50"]
    with closing(cluster.start()):
        cluster.apply(watcher_toml("w", cluster.tag, numprocesses=3))
        cluster.wait_running("w", 3)
        cluster.stackctl("scale", "w", "2", check=True)
        others = wait_for(
            lambda: len(e := all_events(cluster)) >= 8 and e, 10, "the events of h1 and of apply"
        )
        sent = 0
        with (
            following(cluster.address, "events", "-f", "-n", "0") as follow,
            FakeAgent(cluster.address, hello=agent_pb2.Hello(host_id="h2")) as noisy,
        ):
            wait_for(lambda: len(follow.items) > len(others), 10, "the follow to print the history")
            for batch in range(40):  # far past the history and the agent's rate
                noisy.events(
                    [types_pb2.Event(kind="noise", message=f"{batch}.{n}") for n in range(100)]
                )
                sent += 100
            summary = wait_for(
                lambda: [e for e in follow.items if e["kind"] == "events_dropped"],
                15,
                "the summary of the dropped events",
            )
        delivered = sum(1 for e in follow.items if e["kind"] == "noise")
        dropped = sum(int(e["message"].split(": ")[1].split()[0]) for e in summary)
        assert delivered + dropped == sent, (delivered, dropped, summary)
        assert delivered >= 500 and all(e["host_id"] == "h2" for e in summary)
        history = all_events(cluster)
        kept = {e["seq"] for e in history}
        ever = {e["seq"] for e in follow.items if e["host_id"] != "h2"}
        assert ever and ever <= kept, "the flood pushed out another host's events"
        assert len(history) == 300
        text = cluster.stackctl("events", "-n", "0", check=True).out
        assert "h2  -  events_dropped  agent h2 sent more than 50 events a second" in text
