"""The agent's own files as agents before this one wrote them: protobuf, read once.

Agents used to keep their Assignment on disk (assignment.pb) and hand over their
Assignment and unshipped events to a re-executed image as serialized wire messages.
They now keep Stack's own plain form (stack.spec.plain), which a change of the
protocol does not change. An agent upgraded in place still meets the old form once:
in the data dir it finds after a crash, or in the handover of the image it replaces.
This module reads that form into the domain types, and is the only one of the agent's
state and persistence that touches stack.v1.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from stack.spec.assignment import Assignment
from stack.spec.reports import Event
from stack.v1 import agent_pb2, types_pb2
from stack.wire.agent import assignment_from_proto, event_from_proto


def assignment_from_bytes(data: bytes) -> Assignment:
    """An Assignment serialized as a wire message; ValueError if it is not one."""
    try:
        return assignment_from_proto(agent_pb2.Assignment.FromString(data))
    except DecodeError as exc:
        raise ValueError(f"not an Assignment message: {exc}") from None


def event_from_bytes(data: bytes) -> Event:
    """An Event serialized as a wire message; ValueError if it is not one."""
    try:
        return event_from_proto(types_pb2.Event.FromString(data))
    except DecodeError as exc:
        raise ValueError(f"not an Event message: {exc}") from None
