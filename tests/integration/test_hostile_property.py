"""Property: whatever a client throws at the controller, it keeps serving.

Malformed and oversized messages go to both services over real gRPC: every
AdminService method with random field values, random bytes through a raw
channel, and AgentService.Connect with a first message that is not a Hello,
random bytes and Hellos of every size. After each, the controller must still
answer Status, and a well-formed request that is refused must be refused with a
status that says why (never UNKNOWN or INTERNAL, the marks of a handler that
crashed). Example counts are bounded so the module runs in a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.controller.agent_service import MAX_HELLO_TEXT, hello_problem
from stack.security.limits import MAX_MESSAGE_BYTES
from stack.v1 import admin_pb2, admin_pb2_grpc, agent_pb2
from stack.wire.agent import hello_from_proto
from tests.support.cluster import Cluster
from tests.support.harness import channel as open_channel

ADMIN = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
STREAMS = {"Logs", "Events"}
"""Server-streaming methods: asked never to follow, so each call ends."""
EXPLAINED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ABORTED,  # an Apply whose if_generation is not the stack's
}
"""How a well-formed but unreasonable request may be refused."""
FEW = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "h2", "web", "..", "a b", "../x", "\x00", "x" * 65, "$(circus.env.X)"]),
    st.integers(65, 70_000).map(lambda n: "é" * n),  # long, and 2 bytes a character
)
scalars: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: texts,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=40),
}


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for a message of `descriptor`: scalars, lists, maps, nested messages."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            if entry.GetOptions().map_entry:
                fields[field.name] = st.dictionaries(texts, texts, max_size=4)
                continue
            if depth >= 2:
                continue
            inner = messages(entry, depth + 1)
            is_list = field.is_repeated
            fields[field.name] = st.lists(inner, max_size=3) if is_list else inner
        elif field.type in scalars:
            value = scalars[field.type]
            is_list = field.is_repeated
            fields[field.name] = st.lists(value, max_size=4) if is_list else value
        elif field.type == FieldDescriptor.TYPE_ENUM:
            fields[field.name] = st.integers(0, 20)
    return st.fixed_dictionaries({}, optional=fields)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("property") / "stack")
    try:
        yield running.start()
    finally:
        running.close()


@pytest.fixture(scope="module")
def channel(cluster: Cluster) -> Iterator[grpc.Channel]:
    """A channel that may send more than the controller accepts (to test its cap)."""
    opened = open_channel(
        cluster.address, options=[("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES)]
    )
    yield opened
    opened.close()


def still_serving(cluster: Cluster) -> None:
    cluster.admin().Status(admin_pb2.StatusRequest(), timeout=5)
    assert cluster.controller.alive()


def call_admin(channel: grpc.Channel, method: str, request: Message) -> grpc.StatusCode:
    """Call `method` and return its status code (OK when it answered)."""
    stub = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
    try:
        reply = getattr(stub, method)(request, timeout=5)
        if method in STREAMS:
            list(reply)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@FEW
@given(data=st.data())
def test_admin_calls_with_random_field_values_are_answered_or_explained(
    cluster: Cluster, channel: grpc.Channel, data: st.DataObject
) -> None:
    method = data.draw(st.sampled_from(sorted(ADMIN.methods_by_name)))
    descriptor = ADMIN.methods_by_name[method].input_type
    values = data.draw(messages(descriptor), label="fields")
    request_type = getattr(admin_pb2, descriptor.name)
    request = request_type(**values)
    if method in STREAMS:
        request.follow = False
    code = call_admin(channel, method, request)
    assert code == grpc.StatusCode.OK or code in EXPLAINED, (method, code)
    still_serving(cluster)


@FEW
@given(
    method=st.sampled_from(sorted(ADMIN.methods_by_name)),
    payload=st.one_of(
        st.binary(max_size=2000), st.binary(min_size=1, max_size=8).map(lambda b: b * 500)
    ),
)
def test_random_bytes_to_any_admin_method_leave_the_controller_serving(
    cluster: Cluster, channel: grpc.Channel, method: str, payload: bytes
) -> None:
    path = f"/{ADMIN.full_name}/{method}"
    if method in STREAMS:
        call = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
    else:
        call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        reply = call(payload, timeout=5)
        if method in STREAMS:
            for _ in reply:  # bytes that parse as follow=true stream until the deadline
                break
    except grpc.RpcError as error:
        # gRPC answers bytes that do not parse with UNKNOWN "... Error parsing message".
        details = error.details() or ""
        assert error.code() != grpc.StatusCode.UNKNOWN or "Error parsing message" in details
    still_serving(cluster)


def connect(channel: grpc.Channel, first: bytes) -> grpc.StatusCode:
    """Open AgentService.Connect, send one raw message, read until the stream ends."""
    call = channel.stream_stream(
        f"/{agent_pb2.DESCRIPTOR.services_by_name['AgentService'].full_name}/Connect",
        request_serializer=None,
        response_deserializer=None,
    )
    try:
        for _ in call(iter([first]), timeout=5):
            pass
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


agent_bodies = st.sampled_from(["observed", "events", "logs", "log_tail"])


@FEW
@given(data=st.data())
def test_a_first_agent_message_that_is_not_a_hello_is_refused(
    cluster: Cluster, channel: grpc.Channel, data: st.DataObject
) -> None:
    body = data.draw(agent_bodies)
    field = agent_pb2.AgentMessage.DESCRIPTOR.fields_by_name[body]
    values = data.draw(messages(field.message_type), label=body)
    message = agent_pb2.AgentMessage(
        **{body: getattr(agent_pb2, field.message_type.name)(**values)}
    )
    assert connect(channel, message.SerializeToString()) == grpc.StatusCode.INVALID_ARGUMENT
    still_serving(cluster)


@FEW
@given(payload=st.binary(max_size=3000))
def test_random_bytes_as_an_agent_stream_leave_the_controller_serving(
    cluster: Cluster, channel: grpc.Channel, payload: bytes
) -> None:
    connect(channel, payload)
    still_serving(cluster)
    assert cluster.agent_state() == "ready", "the real agent keeps its session"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    host_id=texts.filter(lambda h: h != "h1"),
    labels=st.dictionaries(texts, texts, max_size=3),
    padding=st.sampled_from(
        [0, MAX_HELLO_TEXT, 1000, MAX_MESSAGE_BYTES // 2, MAX_MESSAGE_BYTES + 1]
    ),
)
def test_hellos_of_any_names_and_size_are_answered_or_refused_and_the_controller_serves(
    cluster: Cluster, channel: grpc.Channel, host_id: str, labels: dict[str, str], padding: int
) -> None:
    hello = agent_pb2.Hello(host_id=host_id, labels=labels, address="p" * padding)
    data = agent_pb2.AgentMessage(hello=hello).SerializeToString()
    code = connect(channel, data)
    if len(data) > MAX_MESSAGE_BYTES:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    elif hello_problem(hello_from_proto(hello)) == "":
        assert code == grpc.StatusCode.OK  # welcomed; the stream ends with ours
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    still_serving(cluster)
    assert cluster.agent_state() == "ready", "the real agent keeps its session"
