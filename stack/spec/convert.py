"""Conversions between the domain model (stack.spec.model) and wire messages (stack.v1).

The one place where dataclasses meet protobuf, so that neither leaks into the other.
"""

from __future__ import annotations

from stack.spec.model import FlappingSpec, SocketSpec, StreamSpec, WatcherSpec, _frozen_map
from stack.v1 import types_pb2 as pb


def stream_to_proto(spec: StreamSpec) -> pb.StreamSpec:
    return pb.StreamSpec(
        filename=spec.filename, max_bytes=spec.max_bytes, backup_count=spec.backup_count
    )


def stream_from_proto(msg: pb.StreamSpec) -> StreamSpec:
    return StreamSpec(filename=msg.filename, max_bytes=msg.max_bytes, backup_count=msg.backup_count)


def flapping_to_proto(spec: FlappingSpec) -> pb.FlappingSpec:
    return pb.FlappingSpec(
        attempts=spec.attempts, window=spec.window, retry_in=spec.retry_in, max_retry=spec.max_retry
    )


def flapping_from_proto(msg: pb.FlappingSpec) -> FlappingSpec:
    return FlappingSpec(
        attempts=msg.attempts, window=msg.window, retry_in=msg.retry_in, max_retry=msg.max_retry
    )


_WATCHER_SCALARS = (
    "name", "cmd", "numprocesses", "warmup_delay", "working_dir", "shell", "uid", "gid",
    "copy_env", "stop_signal", "stop_children", "graceful_timeout", "respawn", "max_retry",
    "autostart", "priority", "singleton", "use_sockets", "close_child_stdin", "max_age",
    "max_age_variance", "umask",
)  # fmt: skip


def watcher_to_proto(spec: WatcherSpec) -> pb.WatcherSpec:
    msg = pb.WatcherSpec(**{name: getattr(spec, name) for name in _WATCHER_SCALARS})
    msg.args.extend(spec.args)
    msg.sockets.extend(spec.sockets)
    msg.env.update(spec.env)
    msg.rlimits.update(spec.rlimits)
    msg.stdout_stream.CopyFrom(stream_to_proto(spec.stdout_stream))
    msg.stderr_stream.CopyFrom(stream_to_proto(spec.stderr_stream))
    msg.flapping.CopyFrom(flapping_to_proto(spec.flapping))
    return msg


def watcher_from_proto(msg: pb.WatcherSpec) -> WatcherSpec:
    return WatcherSpec(
        **{name: getattr(msg, name) for name in _WATCHER_SCALARS},
        args=tuple(msg.args),
        sockets=tuple(msg.sockets),
        env=_frozen_map(dict(msg.env)),
        rlimits=_frozen_map(dict(msg.rlimits)),
        stdout_stream=stream_from_proto(msg.stdout_stream),
        stderr_stream=stream_from_proto(msg.stderr_stream),
        flapping=flapping_from_proto(msg.flapping),
    )


_SOCKET_FIELDS = (
    "name", "host", "port", "path", "family", "type", "backlog", "umask", "replace",
    "so_reuseport", "blocking",
)  # fmt: skip


def socket_to_proto(spec: SocketSpec) -> pb.SocketSpec:
    return pb.SocketSpec(**{name: getattr(spec, name) for name in _SOCKET_FIELDS})


def socket_from_proto(msg: pb.SocketSpec) -> SocketSpec:
    return SocketSpec(**{name: getattr(msg, name) for name in _SOCKET_FIELDS})
