"""Conversions between the agent's internal records and stack.v1 messages.

The engine and watchers keep plain Python values; the session and Observed need
protobuf. This is the one place where the two meet on the agent side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from stack.agent.output import Line
from stack.agent.stats import ProcStats
from stack.v1 import types_pb2


@dataclass(frozen=True)
class LastExit:
    """How and why a worker slot's last process ended."""

    code: int
    signal: int
    reason: types_pb2.ExitReason
    """A types_pb2.ExitReason value."""
    at: float
    message: str = ""
    code_unknown: bool = False
    """The exit status could not be known (a worker adopted after an agent crash is not
    the agent's child); `code` and `signal` are then 0."""

    def to_proto(self) -> types_pb2.LastExit:
        return types_pb2.LastExit(
            code=self.code,
            signal=self.signal,
            reason=self.reason,
            at=self.at,
            message=self.message,
            code_unknown=self.code_unknown,
        )


def line_to_proto(line: Line, host_id: str) -> types_pb2.LogLine:
    return types_pb2.LogLine(
        at=line.at,
        host_id=host_id,
        watcher=line.watcher,
        wid=line.wid,
        stream=line.stream,
        text=line.text,
    )


def fill_stats(status: types_pb2.ProcessStatus, stats: ProcStats) -> None:
    status.cpu_percent = stats.cpu_percent
    status.rss_bytes = stats.rss_bytes
    status.num_fds = stats.num_fds
    status.num_children = stats.num_children


def reason_name(reason: types_pb2.ExitReason) -> str:
    """`crashed`, `stopped`, `spawn error`... for event messages."""
    return types_pb2.ExitReason.Name(reason).removeprefix("EXIT_REASON_").lower().replace("_", " ")


def exit_reason(value: int) -> types_pb2.ExitReason:
    """A stored ExitReason number back as one (ValueError for an unknown number)."""
    types_pb2.ExitReason.Name(value)
    return cast(types_pb2.ExitReason, value)
