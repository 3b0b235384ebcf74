"""Terminal safety through stackctl: escape sequences from a real worker's output and from a
hostile agent's reports are shown escaped in text output, raw only with `logs --raw`."""

from __future__ import annotations

import json
import re
import subprocess

from stack.v1 import agent_pb2, types_pb2
from tests.support.cluster import Cluster
from tests.support.fake_agent import FakeAgent
from tests.support.processes import ROOT, STACKCTL, stack_env
from tests.support.programs.worker import HOSTILE_LINE
from tests.support.wait import wait_for
from tests.support.workers import watcher_toml

# What a terminal would obey: ESC, BEL, CR, BS and the other C0/C1 controls.
OBEYED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
OSC52_SHOWN = "\\x1b]52;c;cm0gLXJmIH4=\\x07"


def stackctl(cluster: Cluster, *args: str) -> str:
    """stackctl's stdout as the terminal would get it: bytes, no newline translation."""
    argv = [*STACKCTL, "--controller", cluster.address, *args]
    proc = subprocess.run(argv, capture_output=True, env=stack_env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc
    return proc.stdout.decode()


def test_a_workers_escape_sequences_are_shown_escaped_and_raw_only_with_raw(
    cluster: Cluster,
) -> None:
    cluster.apply(watcher_toml("w", cluster.tag, "--hostile"))
    cluster.wait_running("w", 1)

    def shown() -> str:
        out = stackctl(cluster, "logs", "w", "-n", "5")
        return out if "clipboard:" in out else ""

    text = wait_for(shown, 30, "the worker's line in stackctl logs")
    assert not OBEYED.search(text), repr(text)
    assert OSC52_SHOWN in text
    assert "\\x1b[2J\\x1b[H" in text and "cr:safe\\rEVIL" in text and "ok\\x08\\x08NO" in text

    raw = stackctl(cluster, "logs", "w", "-n", "5", "--raw")
    assert raw.rstrip("\n").endswith(" w[1] " + HOSTILE_LINE), repr(raw)

    document = cluster.stackctl("-o", "json", "logs", "w", "-n", "5", check=True).out
    assert "\\u001b]52;c;" in document  # JSON's own escape, as before
    assert [line["text"] for line in json.loads(document)["lines"]] == [HOSTILE_LINE]


def test_a_hostile_agents_text_is_shown_escaped_in_events_status_and_agents(
    cluster: Cluster,
) -> None:
    # Placed only on the scripted agent (h2), so what it reports is about its own worker.
    cluster.apply(
        '[watchers.evil]\ncmd = "sleep 3600"\n[watchers.evil.placement]\nlabels = { role = "x" }\n'
    )
    hello = agent_pb2.Hello(
        host_id="h2",
        labels={"role": "x", "note": HOSTILE_LINE},
        version=HOSTILE_LINE,
        address=HOSTILE_LINE,
    )
    with FakeAgent(cluster.address, hello=hello, heartbeat=0.5) as agent:
        (wid,) = agent.wids("evil")
        process = types_pb2.ProcessStatus(
            watcher="evil", wid=wid, pid=4242, host_id="h2",
            state=types_pb2.PROCESS_STATE_RUNNING, message=HOSTILE_LINE,
            health=types_pb2.HEALTH_UNHEALTHY, health_message=HOSTILE_LINE,
            last_exit=types_pb2.LastExit(code=1, message=HOSTILE_LINE),
        )  # fmt: skip
        agent.report([process])
        agent.events([types_pb2.Event(watcher="evil", wid=wid, kind="exit", message=HOSTILE_LINE)])

        def event_shown() -> str:
            out = stackctl(cluster, "events", "--watcher", "evil")
            return out if "clipboard:" in out else ""

        events = wait_for(event_shown, 30, "the agent's event in stackctl events")
        status = wait_for(
            lambda: (out := stackctl(cluster, "status", "evil")).count("clipboard:") and out,
            30,
            "the agent's messages in stackctl status",
        )
        agents = stackctl(cluster, "agents")
        for name, text in (("events", events), ("status", status), ("agents", agents)):
            assert not OBEYED.search(text), f"{name}: {text!r}"
            assert OSC52_SHOWN in text, f"{name}: {text!r}"
        document = cluster.stackctl("-o", "json", "agents", check=True).json()
        assert {a["host_id"]: a["version"] for a in document["agents"]}["h2"] == HOSTILE_LINE
