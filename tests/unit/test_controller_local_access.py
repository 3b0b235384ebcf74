"""Who may use the local socket, and how often a refusal is logged."""

from __future__ import annotations

from stack.controller.local_access import LocalAccess, RefusalLog, allowed

OWNER = 1000
OPERATORS = 4242


def test_root_and_the_controllers_user_are_allowed_without_a_lookup() -> None:
    asked: list[int] = []

    def lookup(uid: int) -> list[int]:
        asked.append(uid)
        return [OPERATORS]

    access = LocalAccess(owner_uid=OWNER, group=OPERATORS)
    assert allowed(0, access, lookup) and allowed(OWNER, access, lookup)
    assert asked == []


def test_without_a_group_every_other_uid_is_refused() -> None:
    access = LocalAccess(owner_uid=OWNER)
    assert not allowed(1001, access, lambda uid: [OPERATORS])


def test_a_member_of_the_group_by_any_of_its_accounts_groups_is_allowed() -> None:
    table = {1001: [1001, OPERATORS], 1002: [1002], 1003: []}
    access = LocalAccess(owner_uid=OWNER, group=OPERATORS)
    assert [allowed(uid, access, lambda u: table[u]) for uid in (1001, 1002, 1003)] == [
        True,
        False,
        False,
    ]


def test_refusals_are_logged_in_a_burst_then_one_a_second_with_the_quiet_ones_counted() -> None:
    log = RefusalLog(LocalAccess(owner_uid=OWNER, refusals_per_second=1.0, refusals_burst=5))
    burst = [log.note(0.0) for _ in range(105)]
    assert burst[:5] == [0] * 5 and burst[5:] == [None] * 100
    assert log.note(0.5) is None
    assert log.note(1.0) == 101, "the next line tells how many went unlogged"
    assert log.note(1.0) is None
    assert log.note(10.0) == 1
