from stack.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("host_id", "labels", "capacity", "version", "last_generation", "last_fencing_token", "observed", "address", "started_at", "reexecuted_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_GENERATION_FIELD_NUMBER: _ClassVar[int]
    LAST_FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    REEXECUTED_AT_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    labels: _containers.ScalarMap[str, str]
    capacity: int
    version: str
    last_generation: int
    last_fencing_token: int
    observed: Observed
    address: str
    started_at: float
    reexecuted_at: float
    def __init__(self, host_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[int] = ..., version: _Optional[str] = ..., last_generation: _Optional[int] = ..., last_fencing_token: _Optional[int] = ..., observed: _Optional[_Union[Observed, _Mapping]] = ..., address: _Optional[str] = ..., started_at: _Optional[float] = ..., reexecuted_at: _Optional[float] = ...) -> None: ...

class Observed(_message.Message):
    __slots__ = ("generation", "processes", "watchers", "sockets")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    SOCKETS_FIELD_NUMBER: _ClassVar[int]
    generation: int
    processes: _containers.RepeatedCompositeFieldContainer[_types_pb2.ProcessStatus]
    watchers: _containers.RepeatedCompositeFieldContainer[_types_pb2.WatcherObserved]
    sockets: _containers.RepeatedCompositeFieldContainer[_types_pb2.SocketStatus]
    def __init__(self, generation: _Optional[int] = ..., processes: _Optional[_Iterable[_Union[_types_pb2.ProcessStatus, _Mapping]]] = ..., watchers: _Optional[_Iterable[_Union[_types_pb2.WatcherObserved, _Mapping]]] = ..., sockets: _Optional[_Iterable[_Union[_types_pb2.SocketStatus, _Mapping]]] = ...) -> None: ...

class EventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_types_pb2.Event]
    def __init__(self, events: _Optional[_Iterable[_Union[_types_pb2.Event, _Mapping]]] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[_types_pb2.LogLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[_types_pb2.LogLine, _Mapping]]] = ...) -> None: ...

class LogTailReply(_message.Message):
    __slots__ = ("request_id", "lines", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    lines: _containers.RepeatedCompositeFieldContainer[_types_pb2.LogLine]
    error: str
    def __init__(self, request_id: _Optional[int] = ..., lines: _Optional[_Iterable[_Union[_types_pb2.LogLine, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class Reloading(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "observed", "events", "logs", "log_tail", "reloading")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    RELOADING_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    observed: Observed
    events: EventBatch
    logs: LogBatch
    log_tail: LogTailReply
    reloading: Reloading
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., observed: _Optional[_Union[Observed, _Mapping]] = ..., events: _Optional[_Union[EventBatch, _Mapping]] = ..., logs: _Optional[_Union[LogBatch, _Mapping]] = ..., log_tail: _Optional[_Union[LogTailReply, _Mapping]] = ..., reloading: _Optional[_Union[Reloading, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("controller_id", "fencing_token", "heartbeat_interval")
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    controller_id: str
    fencing_token: int
    heartbeat_interval: float
    def __init__(self, controller_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., heartbeat_interval: _Optional[float] = ...) -> None: ...

class WatcherAssignment(_message.Message):
    __slots__ = ("spec", "wids", "active", "restart_token", "graceful", "reset_token", "pinned", "probation")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    WIDS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    RESTART_TOKEN_FIELD_NUMBER: _ClassVar[int]
    GRACEFUL_FIELD_NUMBER: _ClassVar[int]
    RESET_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    PROBATION_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.WatcherSpec
    wids: _containers.RepeatedScalarFieldContainer[int]
    active: bool
    restart_token: int
    graceful: bool
    reset_token: int
    pinned: _containers.RepeatedCompositeFieldContainer[PinnedVersion]
    probation: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, spec: _Optional[_Union[_types_pb2.WatcherSpec, _Mapping]] = ..., wids: _Optional[_Iterable[int]] = ..., active: _Optional[bool] = ..., restart_token: _Optional[int] = ..., graceful: _Optional[bool] = ..., reset_token: _Optional[int] = ..., pinned: _Optional[_Iterable[_Union[PinnedVersion, _Mapping]]] = ..., probation: _Optional[_Iterable[int]] = ...) -> None: ...

class PinnedVersion(_message.Message):
    __slots__ = ("spec", "restart_token", "wids", "sockets")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    RESTART_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WIDS_FIELD_NUMBER: _ClassVar[int]
    SOCKETS_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.WatcherSpec
    restart_token: int
    wids: _containers.RepeatedScalarFieldContainer[int]
    sockets: _containers.RepeatedCompositeFieldContainer[_types_pb2.SocketSpec]
    def __init__(self, spec: _Optional[_Union[_types_pb2.WatcherSpec, _Mapping]] = ..., restart_token: _Optional[int] = ..., wids: _Optional[_Iterable[int]] = ..., sockets: _Optional[_Iterable[_Union[_types_pb2.SocketSpec, _Mapping]]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("generation", "fencing_token", "watchers", "sockets")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    SOCKETS_FIELD_NUMBER: _ClassVar[int]
    generation: int
    fencing_token: int
    watchers: _containers.RepeatedCompositeFieldContainer[WatcherAssignment]
    sockets: _containers.RepeatedCompositeFieldContainer[_types_pb2.SocketSpec]
    def __init__(self, generation: _Optional[int] = ..., fencing_token: _Optional[int] = ..., watchers: _Optional[_Iterable[_Union[WatcherAssignment, _Mapping]]] = ..., sockets: _Optional[_Iterable[_Union[_types_pb2.SocketSpec, _Mapping]]] = ...) -> None: ...

class SignalCommand(_message.Message):
    __slots__ = ("watcher", "wid", "signal", "children")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    WID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    wid: int
    signal: str
    children: bool
    def __init__(self, watcher: _Optional[str] = ..., wid: _Optional[int] = ..., signal: _Optional[str] = ..., children: _Optional[bool] = ...) -> None: ...

class LogTailRequest(_message.Message):
    __slots__ = ("request_id", "watcher", "stream", "lines")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    watcher: str
    stream: str
    lines: int
    def __init__(self, request_id: _Optional[int] = ..., watcher: _Optional[str] = ..., stream: _Optional[str] = ..., lines: _Optional[int] = ...) -> None: ...

class Redirect(_message.Message):
    __slots__ = ("leader_address",)
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    leader_address: str
    def __init__(self, leader_address: _Optional[str] = ...) -> None: ...

class StatsWanted(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    def __init__(self, seconds: _Optional[float] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("fencing_token", "welcome", "assignment", "signal", "log_tail", "redirect", "stats_wanted")
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_FIELD_NUMBER: _ClassVar[int]
    STATS_WANTED_FIELD_NUMBER: _ClassVar[int]
    fencing_token: int
    welcome: Welcome
    assignment: Assignment
    signal: SignalCommand
    log_tail: LogTailRequest
    redirect: Redirect
    stats_wanted: StatsWanted
    def __init__(self, fencing_token: _Optional[int] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., signal: _Optional[_Union[SignalCommand, _Mapping]] = ..., log_tail: _Optional[_Union[LogTailRequest, _Mapping]] = ..., redirect: _Optional[_Union[Redirect, _Mapping]] = ..., stats_wanted: _Optional[_Union[StatsWanted, _Mapping]] = ...) -> None: ...
