"""Bounds on what one peer may send another, shared by the controller, agents and stackctl.

A hostile or broken peer must not make the controller allocate without limit:
gRPC's default receive cap is 4 MiB and its send cap is unlimited, so both are
set here, once, for every channel and server.
"""

from __future__ import annotations

from typing import Final

MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""Largest gRPC message any Stack component sends or accepts: 16 MiB.

The largest honest messages are an agent's Observed (about 150 bytes per
process, so some 100,000 processes), a log batch (the agent cuts batches well
below this, see stack.agent.output) and a stack file in Apply. A message above
it is refused with RESOURCE_EXHAUSTED before it is parsed, and the server goes
on serving everyone else.
"""

GRPC_SIZE_OPTIONS: Final = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
"""gRPC channel and server options that apply MAX_MESSAGE_BYTES both ways."""
