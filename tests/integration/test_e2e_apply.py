"""`stackctl apply`: a diff first, and only what changed is touched."""

from __future__ import annotations

from tests.integration.cluster import Cluster, wait_for, watcher_toml


def two_watchers(tag: str, a: int = 2, b: int = 1, a_flags: tuple[str, ...] = ()) -> str:
    return watcher_toml("a", tag, *a_flags, numprocesses=a) + watcher_toml("b", tag, numprocesses=b)


def test_dry_run_prints_the_diff_and_changes_nothing(cluster: Cluster) -> None:
    tag = cluster.tag
    cluster.apply(two_watchers(tag))
    pids = cluster.wait_running("a", 2)
    path = cluster.root / "next.toml"
    path.write_text(watcher_toml("a", tag, numprocesses=4) + watcher_toml("c", tag))
    result = cluster.stackctl("apply", str(path), "--dry-run", check=True)
    assert "numprocesses: 2 -> 4" in result.out
    assert "+ watcher c" in result.out and "- watcher b" in result.out
    assert [w.name for w in cluster.status().watchers] == ["a", "b"]
    assert cluster.running_pids("a") == pids


def test_numprocesses_change_only_scales_and_cmd_change_restarts_only_that_watcher(
    cluster: Cluster,
) -> None:
    tag = cluster.tag
    cluster.apply(two_watchers(tag))
    a_before = cluster.wait_running("a", 2)
    b_before = cluster.wait_running("b", 1)

    cluster.apply(two_watchers(tag, a=3))
    a_scaled = cluster.wait_running("a", 3)
    assert {w: a_scaled[w] for w in a_before} == a_before
    assert cluster.running_pids("b") == b_before

    cluster.apply(two_watchers(tag, a=3, a_flags=("--lines", "1")))

    def a_replaced() -> bool:
        now = cluster.running_pids("a")
        return len(now) == 3 and set(now.values()).isdisjoint(a_scaled.values())

    wait_for(a_replaced, 15, "every process of a to be replaced")
    assert cluster.running_pids("b") == b_before


def test_reload_starts_each_new_process_before_stopping_the_old(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2, graceful_timeout=5))
    before = cluster.wait_running("w", 2)
    assert cluster.stackctl("reload", "w").code == 0

    def replaced() -> bool:
        now = cluster.running_pids("w")
        return len(now) == 2 and set(now.values()).isdisjoint(before.values())

    wait_for(replaced, 15, "both workers to be replaced")
    events = cluster.stackctl(
        "-o", "json", "events", "-n", "0", "--watcher", "w", check=True
    ).json()["events"]
    start = max(i for i, e in enumerate(events) if e["kind"] == "reload")
    after = events[start:]
    for wid in (1, 2):
        kinds = [e["kind"] for e in after if e["wid"] == wid]
        spawn = kinds.index("spawn")
        gone = min(kinds.index(k) for k in ("exit", "stopped") if k in kinds)
        assert spawn < gone, f"wid {wid}: {kinds}"
