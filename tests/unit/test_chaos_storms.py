"""bench/chaos.py's crash storms spare a watcher in a rolling change, including its last
batch's wait, which the kernel cannot show (chaos seed 344659512: a storm killed a worker
of the web app's last batch while every worker already ran the new version; the rollout
halted, as documented, and five checks counted the pinned-back worker as not settled).

The Player runs against a stand-in fleet here: what it reads of the leader's status and
what stackctl answers are the inputs of this logic; the harness's runs use the real fleet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.chaoskit.checks import History
from bench.chaoskit.faults import Journal, Player
from bench.chaoskit.plan import AdminOp, Op
from bench.chaoskit.stackfile import RULES
from bench.chaoskit.topology import HOSTS
from stack.v1 import admin_pb2
from tests.support.processes import Result

WEB = "webapp"


@dataclass
class LeaderStandIn:
    """Answers status with the rollouts in `rollouts` (None: no leader answers), and runs
    `during_stackctl` while a stackctl command is under way."""

    root: Path
    tag: str = "storms"
    rollouts: dict[str, str] | None = field(default_factory=dict)
    during_stackctl: Callable[[], None] = lambda: None

    def status(self) -> admin_pb2.StatusReply | None:
        if self.rollouts is None:
            return None
        return admin_pb2.StatusReply(
            watchers=[
                admin_pb2.WatcherStatus(name=name, rollout=self.rollouts.get(name, ""))
                for name in RULES
            ]
        )

    def stackctl(self, *args: str) -> Result:
        self.during_stackctl()
        return Result(0, "ok", "")


def player(tmp_path: Path) -> tuple[Player, LeaderStandIn]:
    leader = LeaderStandIn(tmp_path)
    history = History.start({name: 2 for name in RULES}, {name: 1 for name in RULES}, HOSTS)
    return Player(leader, history, Journal(), seed=1), leader  # type: ignore[arg-type]


def test_a_watcher_is_spared_from_its_apply_until_the_leader_shows_its_rollout_over(
    tmp_path: Path,
) -> None:
    p, leader = player(tmp_path)
    assert p.rolling() == set()
    seen_during: list[set[str]] = []

    def storm_during_the_apply() -> None:  # the leader has not had the apply yet
        p._note_rollouts()
        seen_during.append(p.rolling())

    leader.during_stackctl = storm_during_the_apply
    p.write(AdminOp(Op.apply, 0.0, watcher=WEB))
    assert seen_during == [{WEB}]
    # every worker runs the new version, but the last batch waits out min_uptime
    leader.rollouts = {WEB: "rolling out: 3 of 4 replaced, replacing 4"}
    p._note_rollouts()
    assert p.rolling() == {WEB}
    leader.rollouts = None  # no leader answers: nothing is forgotten
    p._note_rollouts()
    assert p.rolling() == {WEB}
    leader.rollouts = {}
    p._note_rollouts()
    assert p.rolling() == set()


def test_a_halted_rollout_is_spared_too(tmp_path: Path) -> None:
    p, leader = player(tmp_path)
    leader.rollouts = {WEB: "rollout halted: worker 6 exited"}
    p._note_rollouts()
    assert p.rolling() == {WEB}


def test_a_scale_spares_nothing(tmp_path: Path) -> None:
    p, _ = player(tmp_path)
    p.write(AdminOp(Op.scale, 0.0, watcher=WEB, count=3))
    p._note_rollouts()
    assert p.rolling() == set()
