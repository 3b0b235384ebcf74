"""The edge between Stack's domain types (stack.spec) and its wire messages (stack.v1).

Every conversion between a frozen dataclass and a protobuf message is written here,
once: `spec` for watchers and sockets, `agent` for what crosses an agent's session
(assignments, what agents observe, events, output lines, the session's messages).
The gRPC servicers, the agent's session, the CLI's client and the tests call these;
the decisions in between never see a generated type.
"""
