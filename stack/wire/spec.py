"""Watchers and sockets: the domain model (stack.spec.model) to wire messages and back.

Each `*_from_proto` also reads a message of an older sender, whose newer fields are
unset: it gives what that sender meant (a FileStream, one process per batch...).
"""

from __future__ import annotations

from stack.spec.model import (
    STREAM_CLASSES,
    FlappingSpec,
    HealthSpec,
    HookSpec,
    PlacementSpec,
    SocketSpec,
    StreamSpec,
    UpdateSpec,
    WatcherSpec,
    _frozen_map,
)
from stack.v1 import types_pb2 as pb


def stream_to_proto(spec: StreamSpec) -> pb.StreamSpec:
    return pb.StreamSpec(
        filename=spec.filename,
        max_bytes=spec.max_bytes,
        backup_count=spec.backup_count,
        stream_class=spec.class_,
        rotate_when=spec.rotate_when,
        rotate_interval=spec.rotate_interval,
        color=spec.color,
    )


def stream_from_proto(msg: pb.StreamSpec) -> StreamSpec:
    # A message from before stream classes existed has "" and 0: a FileStream.
    return StreamSpec(
        filename=msg.filename,
        max_bytes=msg.max_bytes,
        backup_count=msg.backup_count,
        class_=msg.stream_class or STREAM_CLASSES[0],
        rotate_when=msg.rotate_when,
        rotate_interval=msg.rotate_interval or 1,
        color=msg.color,
    )


def hook_to_proto(spec: HookSpec) -> pb.HookSpec:
    return pb.HookSpec(cmd=spec.cmd, ignore_errors=spec.ignore_errors, timeout=spec.timeout)


def hook_from_proto(msg: pb.HookSpec) -> HookSpec:
    return HookSpec(cmd=msg.cmd, ignore_errors=msg.ignore_errors, timeout=msg.timeout)


def flapping_to_proto(spec: FlappingSpec) -> pb.FlappingSpec:
    return pb.FlappingSpec(
        attempts=spec.attempts, window=spec.window, retry_in=spec.retry_in, max_retry=spec.max_retry
    )


def flapping_from_proto(msg: pb.FlappingSpec) -> FlappingSpec:
    return FlappingSpec(
        attempts=msg.attempts, window=msg.window, retry_in=msg.retry_in, max_retry=msg.max_retry
    )


def placement_to_proto(spec: PlacementSpec) -> pb.PlacementSpec:
    msg = pb.PlacementSpec(mode=spec.mode, max_per_host=spec.max_per_host)
    msg.labels.update(spec.labels)
    return msg


def placement_from_proto(msg: pb.PlacementSpec) -> PlacementSpec:
    labels = _frozen_map(dict(msg.labels))
    return PlacementSpec(mode=msg.mode or "spread", max_per_host=msg.max_per_host, labels=labels)


def update_to_proto(spec: UpdateSpec) -> pb.UpdateSpec:
    return pb.UpdateSpec(max_parallel=spec.max_parallel, min_uptime=spec.min_uptime)


def update_from_proto(msg: pb.UpdateSpec) -> UpdateSpec:
    # A message from before updates existed has 0, which no valid spec has.
    return UpdateSpec(max_parallel=msg.max_parallel or 1, min_uptime=msg.min_uptime)


_HEALTH_FIELDS = ("type", "target", "interval", "timeout", "retries")


def health_to_proto(spec: HealthSpec) -> pb.HealthSpec:
    return pb.HealthSpec(**{name: getattr(spec, name) for name in _HEALTH_FIELDS})


def health_from_proto(msg: pb.HealthSpec) -> HealthSpec:
    return HealthSpec(**{name: getattr(msg, name) for name in _HEALTH_FIELDS})


_WATCHER_SCALARS = (
    "name", "cmd", "numprocesses", "warmup_delay", "working_dir", "shell", "uid", "gid",
    "copy_env", "stop_signal", "stop_children", "graceful_timeout", "respawn", "max_retry",
    "autostart", "priority", "singleton", "use_sockets", "close_child_stdin", "max_age",
    "max_age_variance", "umask", "on_demand", "send_hup", "stdin_socket", "executable",
    "copy_path", "virtualenv", "close_child_stdout", "close_child_stderr", "autorestart",
    "startsecs",
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
    msg.placement.CopyFrom(placement_to_proto(spec.placement))
    msg.update.CopyFrom(update_to_proto(spec.update))
    msg.health.CopyFrom(health_to_proto(spec.health))
    for moment, hook in spec.hooks.items():
        msg.hooks[moment].CopyFrom(hook_to_proto(hook))
    msg.shell_args.extend(spec.shell_args)
    msg.exitcodes.extend(spec.exitcodes)
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
        placement=placement_from_proto(msg.placement),
        update=update_from_proto(msg.update),
        health=health_from_proto(msg.health),
        hooks=_frozen_map({moment: hook_from_proto(hook) for moment, hook in msg.hooks.items()}),
        shell_args=tuple(msg.shell_args),
        # A message from before exitcodes existed has none; a valid spec has at least one.
        exitcodes=tuple(msg.exitcodes) or (0,),
    )


_SOCKET_FIELDS = (
    "name", "host", "port", "path", "family", "type", "backlog", "umask", "replace",
    "so_reuseport", "blocking",
)  # fmt: skip


def socket_to_proto(spec: SocketSpec) -> pb.SocketSpec:
    return pb.SocketSpec(**{name: getattr(spec, name) for name in _SOCKET_FIELDS})


def socket_from_proto(msg: pb.SocketSpec) -> SocketSpec:
    return SocketSpec(**{name: getattr(msg, name) for name in _SOCKET_FIELDS})
