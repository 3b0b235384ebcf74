"""What a hook command is given: its environment at each moment (no process is run)."""

from __future__ import annotations

import signal
from types import MappingProxyType

from stack.agent.hook_commands import Facts, hook_env
from stack.spec.model import WatcherSpec

AGENT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
SPEC = WatcherSpec(name="web", cmd="run", env=MappingProxyType({"GREETING": "hi"}))


def test_a_watcher_hook_gets_the_watchers_env_and_no_worker_facts() -> None:
    env = hook_env(SPEC, "before_start", AGENT_ENV)
    assert env == {"GREETING": "hi", "STACK_WATCHER": "web", "STACK_HOOK": "before_start"}


def test_copy_env_gives_the_agents_environment_first() -> None:
    spec = WatcherSpec(name="web", cmd="run", copy_env=True, env=MappingProxyType({"HOME": "/srv"}))
    env = hook_env(spec, "after_stop", AGENT_ENV)
    assert env["PATH"] == "/usr/bin:/bin" and env["HOME"] == "/srv"


def test_a_worker_hook_gets_its_wid_pid_signal_and_exit_status() -> None:
    env = hook_env(SPEC, "before_signal", AGENT_ENV, Facts(2, 4242, signum=signal.SIGTERM))
    assert (env["STACK_WID"], env["STACK_PID"], env["STACK_SIGNAL"]) == ("2", "4242", "SIGTERM")
    assert "STACK_EXIT_CODE" not in env
    reaped = hook_env(SPEC, "after_reap", AGENT_ENV, Facts(2, 4242, 3 << 8))
    assert (reaped["STACK_EXIT_CODE"], reaped["STACK_EXIT_SIGNAL"]) == ("3", "0")
    killed = hook_env(SPEC, "after_reap", AGENT_ENV, Facts(2, 4242, signal.SIGKILL))
    assert (killed["STACK_EXIT_CODE"], killed["STACK_EXIT_SIGNAL"]) == ("0", "9")
    unknown = hook_env(SPEC, "after_reap", AGENT_ENV, Facts(2, 4242, None))
    assert "STACK_EXIT_CODE" not in unknown and "STACK_EXIT_SIGNAL" not in unknown
