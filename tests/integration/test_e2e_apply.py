"""`stackctl apply`: a diff first, only what changed is touched, and what removes or
replaces is applied only once confirmed (asked on a pseudo-terminal, or --yes)."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import subprocess
import time

import grpc
import pytest

from stack.v1 import admin_pb2
from tests.support.cluster import Cluster
from tests.support.processes import STACKCTL, stack_env
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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


class Terminal:
    """stackctl on a pseudo-terminal, as an operator at a shell runs it."""

    def __init__(self, cluster: Cluster, *args: str) -> None:
        argv = [*STACKCTL, "--controller", cluster.address, *args]
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=stack_env(), cwd=cluster.root
        )
        os.close(slave)
        self._master = master
        self.screen = ""

    def wait_for_text(self, text: str, timeout: float = 30.0) -> str:
        """What the terminal shows (colours taken out) once `text` is on it."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._master], [], [], left)[0]:
                raise AssertionError(f"{text!r} never showed; the terminal shows:\n{self.screen}")
            try:
                data = os.read(self._master, 4096)
            except OSError:  # the other side closed: stackctl exited
                data = b""
            if not data:
                raise AssertionError(f"stackctl ended before {text!r}:\n{self.screen}")
            self.screen += ANSI.sub("", data.decode(errors="replace"))
        return self.screen

    def type(self, text: str) -> None:
        os.write(self._master, text.encode())

    def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        """stackctl's exit status and everything it showed."""
        code = self.proc.wait(timeout)
        with contextlib.suppress(OSError):
            while data := os.read(self._master, 4096):
                self.screen += ANSI.sub("", data.decode(errors="replace"))
        os.close(self._master)
        return code, self.screen


QUESTION = "This will remove watcher b. Apply? [y/N]: "


def test_apply_that_removes_asks_on_a_terminal_and_applies_only_when_told_yes(
    cluster: Cluster,
) -> None:
    tag = cluster.tag
    cluster.apply(two_watchers(tag))
    cluster.wait_running("b", 1)
    (cluster.root / "small.toml").write_text(watcher_toml("a", tag, numprocesses=3))

    declined = Terminal(cluster, "apply", "small.toml")
    shown = declined.wait_for_text(QUESTION)
    assert "- watcher b" in shown and "~ watcher a (scale) numprocesses: 2 -> 3" in shown
    declined.type("n\n")
    code, shown = declined.finish()
    assert code == 1 and shown.rstrip().endswith("stackctl: nothing was applied"), shown
    assert [w.name for w in cluster.status().watchers] == ["a", "b"]

    confirmed = Terminal(cluster, "apply", "small.toml")
    confirmed.wait_for_text(QUESTION)
    confirmed.type("y\n")
    code, shown = confirmed.finish()
    assert code == 0 and "applied (generation" in shown, shown
    assert [w.name for w in cluster.status().watchers] == ["a"]
    cluster.wait_running("a", 3)


def test_apply_that_removes_is_refused_without_a_terminal_and_applied_with_yes(
    cluster: Cluster,
) -> None:
    tag = cluster.tag
    cluster.apply(two_watchers(tag))
    a_before = cluster.wait_running("a", 2)
    (cluster.root / "next.toml").write_text(watcher_toml("a", tag, "--lines", "1", numprocesses=2))
    refused = cluster.stackctl("apply", "next.toml")
    assert refused.code == 1
    assert refused.err == (
        "stackctl: this apply would remove watcher b, and replace the workers of watcher a: "
        "nothing was applied; run it on a terminal to confirm, or pass --yes\n"
    )
    assert "- watcher b" in refused.out and "~ watcher a (replaces its workers)" in refused.out
    assert [w.name for w in cluster.status().watchers] == ["a", "b"]
    assert cluster.running_pids("a") == a_before
    # What adds or only scales needs no answer.
    (cluster.root / "more.toml").write_text(two_watchers(tag, a=3) + watcher_toml("c", tag))
    assert "applied (generation" in cluster.stackctl("apply", "more.toml", check=True).out
    applied = cluster.stackctl("apply", "next.toml", "--yes", check=True)
    assert "- watcher b" in applied.out and "- watcher c" in applied.out
    assert [w.name for w in cluster.status().watchers] == ["a"]


def test_a_confirmed_plan_is_not_applied_when_the_stack_changed_in_the_meantime(
    cluster: Cluster,
) -> None:
    tag = cluster.tag
    cluster.apply(two_watchers(tag))
    (cluster.root / "small.toml").write_text(watcher_toml("a", tag, numprocesses=3))
    asking = Terminal(cluster, "apply", "small.toml")
    asking.wait_for_text(QUESTION)
    generation = cluster.status().generation
    cluster.stackctl("scale", "b", "2", check=True)  # someone else, meanwhile
    asking.type("y\n")
    code, shown = asking.finish()
    assert code == 1, shown
    assert (
        f"stackctl: the stack changed since the plan was made (generation {generation}, "
        f"now {generation + 1}): nothing was applied; apply again to see the new plan"
    ) in shown
    assert {w.name: w.numprocesses for w in cluster.status().watchers} == {"a": 2, "b": 2}


def test_a_typo_gets_the_controllers_line_with_did_you_mean_even_with_no_controller(
    cluster: Cluster,
) -> None:
    text = watcher_toml("w", cluster.tag, numprocesess=2)
    (cluster.root / "typo.toml").write_text(text)
    request = admin_pb2.ApplyRequest(content=text, filename="typo.toml", dry_run=True)
    with pytest.raises(grpc.RpcError) as refused:
        cluster.admin().Apply(request)
    said = refused.value.details()
    assert said == "typo.toml: watchers.w.numprocesess: unknown option (did you mean numprocesses?)"

    with_controller = cluster.stackctl("apply", "typo.toml")
    assert (with_controller.code, with_controller.err) == (1, f"stackctl: {said}\n")
    nowhere = f"unix:{cluster.root / 'nowhere.sock'}"
    data_dir = cluster.root / "up-data"
    for args in (
        ("apply", "typo.toml"),
        ("apply", "--yes", "-o", "json", "typo.toml"),
        ("up", "typo.toml", "--data-dir", str(data_dir)),
    ):
        alone = subprocess.run(
            [*STACKCTL, "--controller", nowhere, *args],
            capture_output=True, text=True, env=stack_env(), cwd=cluster.root, timeout=60,
        )  # fmt: skip
        assert (alone.returncode, alone.stderr, alone.stdout) == (1, f"stackctl: {said}\n", "")
    assert not data_dir.exists(), "up started nothing"
    assert not cluster.status().watchers, "nothing was applied"

    (cluster.root / "good.toml").write_text(watcher_toml("w", cluster.tag))
    good = subprocess.run(
        [*STACKCTL, "--controller", nowhere, "apply", "good.toml"],
        capture_output=True, text=True, env=stack_env(), cwd=cluster.root, timeout=60,
    )  # fmt: skip
    assert good.returncode == 1 and "cannot reach the controller" in good.stderr
