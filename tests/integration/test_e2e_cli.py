"""The stackctl program (the installed console script) against a real controller and agent:
global options anywhere, the status page, --wait progress, rolling restarts, restarts
and replacements counted apart, versions, completion from the controller."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import stack
from stack.v1 import admin_pb2
from tests.integration.test_e2e_apply import Terminal
from tests.support.cluster import Cluster
from tests.support.processes import Result
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml

BIN = Path(sys.executable).parent


def program(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"no {name} program beside {sys.executable} (./run test installs it)")
    return str(path)


def stackctl(cluster: Cluster, *args: str, check: bool = True) -> Result:
    """The real `stackctl`, as a user runs it, with the cluster's controller in the env."""
    env = dict(os.environ, STACK_CONTROLLER=cluster.address, COLUMNS="")
    proc = subprocess.run(
        [program("stackctl"), *args], capture_output=True, text=True, env=env,
        cwd=cluster.root, timeout=120,
    )  # fmt: skip
    result = Result(proc.returncode, proc.stdout, proc.stderr)
    if check:
        assert result.code == 0, f"stackctl {' '.join(args)}: {result}"
    return result


def test_global_options_go_before_or_after_the_command(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    cluster.wait_running("w", 2)
    after = json.loads(stackctl(cluster, "status", "-o", "json").out)
    before = json.loads(stackctl(cluster, "-o", "json", "status").out)
    assert [w["name"] for w in after["watchers"]] == [w["name"] for w in before["watchers"]]
    assert after["watchers"][0]["running"] == 2
    moved = stackctl(cluster, "status", "w", "--controller", cluster.address, "-o", "yaml")
    assert yaml.safe_load(moved.out)["watchers"][0]["name"] == "w"
    scaled = stackctl(cluster, "scale", "w", "3", "--output=json")
    assert json.loads(scaled.out) == {"watcher": "w", "previous": 2, "numprocesses": 3}
    agents = stackctl(cluster, "agents", "-o", "wide").out
    assert agents.split()[0] == "HOST" and "h1" in agents


def test_status_is_a_line_per_watcher_then_its_processes_within_80_columns(
    cluster: Cluster,
) -> None:
    cluster.apply(
        watcher_toml("web", cluster.tag, numprocesses=2)
        + watcher_toml("ticker", cluster.tag, "--exit", "4", respawn=False)
    )
    cluster.wait_running("web", 2)
    wait_for(lambda: cluster.processes("ticker") and cluster.processes("ticker")[0].last_exit.code,
             15, "the ticker to exit")  # fmt: skip
    lines = stackctl(cluster, "status").out.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    summaries = [line for line in lines if line and not line.startswith(" ")]
    assert summaries == ["ticker  0/1 running, active", "web     2/2 running, active"]
    ticker = lines[lines.index(summaries[0]) + 2]
    assert ticker.split()[:3] == ["1", "-", "exited"] and "exit 4 (crashed)" in ticker
    assert stackctl(cluster, "status", "--summary").out.splitlines() == summaries
    wide = stackctl(cluster, "status", "web", "-o", "wide").out.splitlines()
    assert wide[1].split()[:8] == [
        "WID", "HOST", "PID", "STATE", "UPTIME", "RESTARTS", "REPLACED", "CPU",
    ]  # fmt: skip


def test_status_cuts_a_long_message_and_get_shows_it_whole_in_text_json_and_yaml(
    cluster: Cluster,
) -> None:
    program = "/nonexistent/" + "a-directory-with-a-long-name/" * 3 + "program"
    cluster.apply(
        f'[watchers.ghost]\ncmd = "{program}"\n'
        "[watchers.ghost.flapping]\nattempts = 2\nwindow = 5\nretry_in = 60\n"
    )
    wait_for(lambda: any(program in p.message or program in p.last_exit.message
                         for p in cluster.processes("ghost")),
             15, "the spawn error in status")  # fmt: skip
    status = stackctl(cluster, "status", "ghost").out
    assert program not in status and "…" in status, status
    text = stackctl(cluster, "get", "ghost").out
    assert tomllib.loads(text)["watchers"]["ghost"]["cmd"] == program, "still a stack file"
    config, processes = text.split("\n\n# processes:\n")
    reply = cluster.admin().Get(admin_pb2.GetRequest(watcher="ghost"))
    assert config.rstrip("\n") == reply.toml.rstrip("\n"), "the configuration as before"
    header, row = processes.splitlines()
    assert header.split() == ["#", "HOST", "WID", "STATE", "MESSAGE"]
    assert row.split()[:3] == ["#", "h1", "1"] and program in row and "spawn error" in row
    for output in ("json", "yaml"):
        shown = stackctl(cluster, "get", "ghost", "-o", output).out
        document = json.loads(shown) if output == "json" else yaml.safe_load(shown)
        assert document["spec"]["cmd"] == program and document["active"] is True
        [process] = document["processes"]
        assert (process["host_id"], process["wid"]) == ("h1", 1)
        assert process["state"] in ("backoff", "exited", "fatal") and program in process["message"]


def test_wait_prints_each_step_and_how_long_it_took_when_not_on_a_terminal(
    cluster: Cluster,
) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=1))
    cluster.wait_running("w", 1)
    lines = stackctl(cluster, "scale", "w", "4", "--wait").out.splitlines()
    assert lines[0] == "w: 1 -> 4"
    assert lines[-1].startswith("done in ") and lines[-1].endswith(": w has 4 of 4 running")
    for step in lines[1:-1]:
        assert step.startswith("w has ") and step.endswith("s)"), step
    stopped = stackctl(cluster, "stop", "w", "--wait").out.splitlines()
    assert stopped[0] == "stopping w" and stopped[-1].endswith(": w has none running")
    quiet = stackctl(cluster, "start", "w", "--wait", "-o", "json").out
    assert json.loads(quiet) == {"watchers": ["w"]}  # a document alone, no step lines


def test_wait_on_a_terminal_draws_a_bar_instead_of_step_lines_and_says_when_done(
    cluster: Cluster,
) -> None:
    # warmup_delay spaces the starts, so the bar has steps to draw.
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=1, warmup_delay=1))
    cluster.wait_running("w", 1)
    terminal = Terminal(cluster, "scale", "w", "3", "--wait")
    terminal.wait_for_text("done in ", 60)
    code, shown = terminal.finish()
    lines = [line for line in re.split(r"[\r\n]+", shown) if line.strip()]
    assert code == 0, shown
    assert lines[0] == "w: 1 -> 3"
    assert any(re.search(r"^w .* 2/3 ", line) for line in lines), "a bar with its count"
    assert not [line for line in lines if line.startswith("w has ")], "no step lines"
    assert lines[-1].startswith("done in ") and lines[-1].endswith(": w has 3 of 3 running")


def test_a_rolling_restart_says_it_started_and_wait_follows_it_to_the_end(
    cluster: Cluster,
) -> None:
    update = {"max_parallel": 1, "min_uptime": 0.5}
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=3, update=update))
    first = cluster.wait_running("w", 3)
    started = stackctl(cluster, "restart", "w", "--rolling")
    assert started.out == "rolling restart of w started (stackctl status w shows how far it is)\n"
    assert cluster.status("w").watchers[0].rollout, "it returned while the rollout goes on"
    wait_for(lambda: not cluster.status("w").watchers[0].rollout, 60, "the rollout to end")
    second = cluster.running_pids("w")
    followed = stackctl(cluster, "restart", "w", "--rolling", "--wait", "--timeout", "60")
    lines = followed.out.splitlines()
    assert lines[0] == "rolling restart of w started"
    assert any(line.startswith("w: rolling out: 1 of 3 replaced") for line in lines), lines
    assert lines[-1].startswith("done in ") and lines[-1].endswith("w has 3 of 3 replaced")
    third = cluster.running_pids("w")
    assert not set(first.values()) & set(second.values()), "every worker was replaced"
    assert not set(second.values()) & set(third.values()), "every worker was replaced"


def test_restarts_count_failures_and_replaced_counts_planned_replacements(
    cluster: Cluster,
) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, numprocesses=2))
    cluster.wait_running("w", 2)

    def counts() -> dict[int, tuple[int, int]]:
        return {p.wid: (p.restarts, p.replacements) for p in cluster.processes("w")}

    stackctl(cluster, "restart", "w", "--wait")
    assert counts() == {1: (0, 1), 2: (0, 1)}, "a restart the user asked for is no failure"
    stackctl(cluster, "reload", "w")
    wait_for(lambda: counts() == {1: (0, 2), 2: (0, 2)}, 20, "the reload to replace both")
    before = cluster.wait_running("w", 2)
    os.kill(before[1], signal.SIGKILL)
    wait_for(lambda: counts() == {1: (1, 2), 2: (0, 2)}, 15, "worker 1 to be restarted")
    stackctl(cluster, "stop", "w", "--wait")
    stackctl(cluster, "start", "w", "--wait")
    assert counts() == {1: (1, 2), 2: (0, 2)}, "a stop and a start are neither"
    wide = stackctl(cluster, "status", "w", "-o", "wide").out.splitlines()
    assert [line.split()[5:7] for line in wide[2:]] == [["1", "2"], ["0", "2"]]


def test_each_program_says_its_version_and_wire_protocol() -> None:
    for name in ("stackctl", "stack-agent", "stack-controller"):
        proc = subprocess.run([program(name), "--version"], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"{name} {stack.__version__} (wire protocol stack.v1)\n"


@pytest.mark.parametrize("name", ["stack-agent", "stack-controller"])
def test_the_daemons_help_looks_like_stackctls(name: str) -> None:
    proc = subprocess.run([program(name), "--help"], capture_output=True, text=True, timeout=60)
    page = proc.stdout
    assert proc.returncode == 0 and page.startswith(f"Usage: {name} [OPTIONS]\n\n  ")
    assert "\nOptions:\n  --" in page and "\nExamples:\n  # " in page
    assert "\n  --version " in page
    assert "  -h, --help" in page and "Show this help and exit." in page
    assert max(len(line) for line in page.splitlines()) <= 80
    stackctl_page = subprocess.run(
        [program("stackctl"), "scale", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    for section in ("Usage: ", "\nOptions:\n", "\nExamples:\n  # "):
        assert section in stackctl_page and section in page


def test_completion_names_the_controllers_watchers_and_hosts(cluster: Cluster) -> None:
    cluster.apply(watcher_toml("web", cluster.tag) + watcher_toml("worker", cluster.tag))
    cluster.wait_running("web", 1)

    def complete(line: str) -> list[str]:
        current = "" if line.endswith(" ") else line.split()[-1]
        return stackctl(cluster, "__complete", "bash", current, line).out.split()

    assert complete("stackctl scale ") == ["web", "worker"]
    assert complete("stackctl logs wo") == ["worker"]
    assert complete("stackctl drain ") == ["h1"]
    elsewhere = f"stackctl --controller unix:{cluster.root / 'none.sock'} scale "
    assert complete(elsewhere) == []  # the line's own controller, which does not answer
