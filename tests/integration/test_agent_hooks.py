"""Hook commands around a watcher's workers, with real workers and real hook processes:
who runs them, with what, what a failing or hanging one does, and that none holds up
another watcher."""

from __future__ import annotations

import secrets
from pathlib import Path
from types import MappingProxyType

import psutil

from stack.agent.engine import Engine
from stack.spec.assignment import WatcherAssignment
from stack.spec.model import HOOKS, HookSpec
from stack.spec.observed import ProcessState
from stack.spec.reports import Event, Severity
from tests.support.engine import assignment, run, running_pids, settings, statuses, watcher
from tests.support.users import User, needs_root, shared_dir
from tests.support.wait import until

SLEEP = "sleep 300"


def _hooks(**hooks: str | HookSpec) -> MappingProxyType[str, HookSpec]:
    return MappingProxyType(
        {k: v if isinstance(v, HookSpec) else HookSpec(cmd=v) for k, v in hooks.items()}
    )


class Events:
    """Every event the engine raised so far (take_events drains them)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[Event] = []

    def of(self, kind: str) -> list[str]:
        self.seen += self.engine.take_events()
        return [event.message for event in self.seen if event.kind == kind]


@needs_root
def test_every_hook_runs_as_the_worker_user_with_the_watchers_env_and_its_facts(
    user: User, tmp_path: Path
) -> None:
    with shared_dir("stack-hooks-") as shared:
        shared.chmod(0o777)
        log = shared / "hooks.log"
        line = (
            'echo "$STACK_HOOK uid=$(id -u) wid=$STACK_WID pid=$STACK_PID '
            'signal=$STACK_SIGNAL exit=$STACK_EXIT_CODE/$STACK_EXIT_SIGNAL $GREETING"'
        )
        hooks = _hooks(**{moment: f"sh -c '{line} >> {log}'" for moment in HOOKS})
        env = MappingProxyType({"GREETING": "hello", "PATH": "/usr/bin:/bin"})

        def spec(active: bool) -> WatcherAssignment:
            return watcher("w", SLEEP, [1], uid=user.name, hooks=hooks, env=env, active=active)

        def lines() -> list[str]:
            return log.read_text().splitlines() if log.exists() else []

        async def scenario() -> int:
            async with Engine(settings(tmp_path)) as engine:
                engine.apply(assignment(spec(True), generation=1))
                pid = (await until(lambda: running_pids(engine.observed(), "w"), what="w"))[1]
                await until(lambda: len(lines()) == 4, what="the start's four hooks")
                assert engine.signal("w", 0, "CONT", False) == 1
                await until(lambda: len(lines()) == 6, what="the signal's two hooks")
                engine.apply(assignment(spec(False), generation=2))
                await until(lambda: len(lines()) == 11, what="the stop's five hooks")
                return pid

        pid = run(scenario())
        got = lines()
    uid = f"uid={user.uid}"
    expected_start = [
        f"before_start {uid} wid= pid= signal= exit=/ hello",
        f"before_spawn {uid} wid=1 pid= signal= exit=/ hello",
    ]
    assert got[:2] == expected_start
    assert sorted(got[2:4]) == [
        f"after_spawn {uid} wid=1 pid={pid} signal= exit=/ hello",
        f"after_start {uid} wid= pid= signal= exit=/ hello",
    ]
    assert got[4:6] == [
        f"before_signal {uid} wid=1 pid={pid} signal=SIGCONT exit=/ hello",
        f"after_signal {uid} wid=1 pid={pid} signal=SIGCONT exit=/ hello",
    ]
    assert got[6:8] == [
        f"before_stop {uid} wid= pid= signal= exit=/ hello",
        f"before_signal {uid} wid=1 pid={pid} signal=SIGTERM exit=/ hello",
    ]
    assert sorted(got[8:11]) == sorted([
        f"after_signal {uid} wid=1 pid={pid} signal=SIGTERM exit=/ hello",
        f"after_reap {uid} wid=1 pid={pid} signal= exit=0/15 hello",
        f"after_stop {uid} wid= pid= signal= exit=/ hello",
    ])  # fmt: skip


def test_a_failing_before_spawn_aborts_each_spawn_until_the_worker_is_fatal(
    tmp_path: Path,
) -> None:
    failing = "sh -c 'echo no database >&2; exit 3'"
    spec = watcher("w", SLEEP, [1], max_retry=2, hooks=_hooks(before_spawn=failing))
    ignored = watcher(
        "ok", SLEEP, [1], hooks=_hooks(before_spawn=HookSpec(cmd=failing, ignore_errors=True))
    )

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            events = Events(engine)
            engine.apply(assignment(spec, ignored))
            fatal = await until(
                lambda: (p := statuses(engine.observed(), "w").get(1))
                and p.state == ProcessState.FATAL
                and p,
                what="w fatal",
            )
            assert fatal.message == (
                "fatal: could not start after 2 attempts: spawn aborted: before_spawn hook "
                "failed: exit code 3: no database"
            )
            assert fatal.pid == 0
            assert "before_spawn hook failed: exit code 3: no database" in events.of("hook_failed")
            # ignore_errors: the failure is reported and the worker spawned all the same
            await until(lambda: running_pids(engine.observed(), "ok"), what="ok running")
            said = "before_spawn hook failed: exit code 3: no database (ignore_errors)"
            assert said in events.of("hook_failed")
            assert [e.watcher for e in events.seen if e.kind == "spawn"] == ["ok"]

    run(scenario())


def test_a_hook_past_its_timeout_is_killed_with_its_group_and_holds_up_no_other_watcher(
    tmp_path: Path,
) -> None:
    marker = f"60.{secrets.randbelow(10**6):06d}"  # how `ps` tells the hook's sleeps apart
    hanging = HookSpec(cmd=f"sh -c 'sleep {marker} & sleep {marker}'", timeout=5.0)
    slow = watcher("slow", SLEEP, [1], priority=10, hooks=_hooks(before_start=hanging))
    other = watcher("other", SLEEP, [1])

    def sleeps() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            if proc.info["cmdline"] == ["sleep", marker]:
                found.append(proc)
        return found

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            events = Events(engine)
            engine.apply(assignment(slow, other))
            await until(lambda: running_pids(engine.observed(), "other"), what="other running")
            assert not events.of("hook_failed"), "the other watcher waited for the hook"
            await until(lambda: len(sleeps()) == 2, what="the hook's two sleeps")
            await until(lambda: events.of("hook_failed"), what="the timeout", timeout=30)
            assert events.of("hook_failed") == [
                "before_start hook timed out after 5s (its process group was killed)"
            ]
            await until(lambda: not sleeps(), what="the hook's group gone", timeout=10)
            refused = statuses(engine.observed(), "slow")[1]
            assert refused.state == ProcessState.STOPPED and refused.pid == 0
            assert refused.message == (
                "not started: before_start hook timed out after 5s (its process group was "
                "killed)"
            )

    run(scenario())


def test_a_failing_before_signal_keeps_the_signal_from_the_worker(tmp_path: Path) -> None:
    def spec(active: bool) -> WatcherAssignment:
        hooks = _hooks(before_signal="false")
        return watcher("w", SLEEP, [1], graceful_timeout=0.5, hooks=hooks, active=active)

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            events = Events(engine)
            engine.apply(assignment(spec(True), generation=1))
            pid = (await until(lambda: running_pids(engine.observed(), "w"), what="w"))[1]
            assert engine.signal("w", 0, "USR1", False) == 1  # would kill sleep
            await until(lambda: events.of("hook_failed"), what="the refusal")
            assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            assert running_pids(engine.observed(), "w") == {1: pid}
            # A stop whose signal is refused still ends: SIGKILL at graceful_timeout.
            engine.apply(assignment(spec(False), generation=2))
            await until(lambda: events.of("stopped"), what="the stop")
            assert events.of("stopped") == [f"pid {pid} SIGKILLed after graceful_timeout"]

    run(scenario())


def test_a_start_refused_by_before_start_is_tried_again_by_a_reset_and_after_start_only_reports(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "ready"
    hooks = _hooks(before_start=f"test -e {flag}", after_start="false")

    def spec(reset_token: int) -> WatcherAssignment:
        return watcher("w", SLEEP, [1, 2], hooks=hooks, reset_token=reset_token)

    async def scenario() -> None:
        async with Engine(settings(tmp_path)) as engine:
            events = Events(engine)
            engine.apply(assignment(spec(0), generation=1))
            await until(lambda: events.of("hook_failed"), what="the refusal")
            refused = statuses(engine.observed(), "w")
            assert {p.state for p in refused.values()} == {ProcessState.STOPPED}
            assert refused[2].message == "not started: before_start hook failed: exit code 1"
            assert not events.of("spawn")
            flag.touch()
            engine.apply(assignment(spec(1), generation=2))  # stackctl start / reset
            await until(lambda: len(running_pids(engine.observed(), "w")) == 2, what="started")
            await until(lambda: len(events.of("hook_failed")) == 2, what="after_start")
            assert events.of("hook_failed")[1] == "after_start hook failed: exit code 1"
            warned = [e for e in events.seen if e.kind == "hook_failed"][1]
            assert warned.severity == Severity.WARNING
            assert len(running_pids(engine.observed(), "w")) == 2  # it only reports

    run(scenario())
