from stack.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApplyRequest(_message.Message):
    __slots__ = ("filename", "content", "dry_run", "if_generation")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    IF_GENERATION_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content: str
    dry_run: bool
    if_generation: int
    def __init__(self, filename: _Optional[str] = ..., content: _Optional[str] = ..., dry_run: _Optional[bool] = ..., if_generation: _Optional[int] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("op", "kind", "name", "details", "replaces")
    OP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    op: str
    kind: str
    name: str
    details: _containers.RepeatedScalarFieldContainer[str]
    replaces: bool
    def __init__(self, op: _Optional[str] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., details: _Optional[_Iterable[str]] = ..., replaces: _Optional[bool] = ...) -> None: ...

class ApplyReply(_message.Message):
    __slots__ = ("changes", "applied", "generation", "warnings")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    applied: bool
    generation: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., applied: _Optional[bool] = ..., generation: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ScaleRequest(_message.Message):
    __slots__ = ("watcher", "count", "relative")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    count: int
    relative: bool
    def __init__(self, watcher: _Optional[str] = ..., count: _Optional[int] = ..., relative: _Optional[bool] = ...) -> None: ...

class ScaleReply(_message.Message):
    __slots__ = ("watcher", "previous", "numprocesses")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    NUMPROCESSES_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    previous: int
    numprocesses: int
    def __init__(self, watcher: _Optional[str] = ..., previous: _Optional[int] = ..., numprocesses: _Optional[int] = ...) -> None: ...

class WatchersRequest(_message.Message):
    __slots__ = ("watchers", "all", "rolling")
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    ROLLING_FIELD_NUMBER: _ClassVar[int]
    watchers: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    rolling: bool
    def __init__(self, watchers: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., rolling: _Optional[bool] = ...) -> None: ...

class WatchersReply(_message.Message):
    __slots__ = ("watchers",)
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    watchers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, watchers: _Optional[_Iterable[str]] = ...) -> None: ...

class SignalRequest(_message.Message):
    __slots__ = ("watcher", "signal", "wid", "children")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    WID_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    signal: str
    wid: int
    children: bool
    def __init__(self, watcher: _Optional[str] = ..., signal: _Optional[str] = ..., wid: _Optional[int] = ..., children: _Optional[bool] = ...) -> None: ...

class SignalReply(_message.Message):
    __slots__ = ("agents", "processes")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    agents: int
    processes: int
    def __init__(self, agents: _Optional[int] = ..., processes: _Optional[int] = ...) -> None: ...

class RemoveRequest(_message.Message):
    __slots__ = ("watcher",)
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    def __init__(self, watcher: _Optional[str] = ...) -> None: ...

class RemoveReply(_message.Message):
    __slots__ = ("watcher",)
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    def __init__(self, watcher: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("watcher",)
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    def __init__(self, watcher: _Optional[str] = ...) -> None: ...

class WatcherStatus(_message.Message):
    __slots__ = ("name", "numprocesses", "active", "phase", "message", "running", "pending", "pending_reason", "processes", "retry_at", "rollout")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMPROCESSES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    PENDING_REASON_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    numprocesses: int
    active: bool
    phase: _types_pb2.WatcherPhase
    message: str
    running: int
    pending: int
    pending_reason: str
    processes: _containers.RepeatedCompositeFieldContainer[_types_pb2.ProcessStatus]
    retry_at: float
    rollout: str
    def __init__(self, name: _Optional[str] = ..., numprocesses: _Optional[int] = ..., active: _Optional[bool] = ..., phase: _Optional[_Union[_types_pb2.WatcherPhase, str]] = ..., message: _Optional[str] = ..., running: _Optional[int] = ..., pending: _Optional[int] = ..., pending_reason: _Optional[str] = ..., processes: _Optional[_Iterable[_Union[_types_pb2.ProcessStatus, _Mapping]]] = ..., retry_at: _Optional[float] = ..., rollout: _Optional[str] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("watchers", "generation")
    WATCHERS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    watchers: _containers.RepeatedCompositeFieldContainer[WatcherStatus]
    generation: int
    def __init__(self, watchers: _Optional[_Iterable[_Union[WatcherStatus, _Mapping]]] = ..., generation: _Optional[int] = ...) -> None: ...

class AgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("host_id", "address", "labels", "state", "processes", "last_seen", "version", "generation", "started_at", "reexecuted_at", "ignored_processes", "refused_reports", "dropped_events", "dropped_log_lines")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    REEXECUTED_AT_FIELD_NUMBER: _ClassVar[int]
    IGNORED_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REPORTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_LOG_LINES_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    address: str
    labels: _containers.ScalarMap[str, str]
    state: str
    processes: int
    last_seen: float
    version: str
    generation: int
    started_at: float
    reexecuted_at: float
    ignored_processes: int
    refused_reports: int
    dropped_events: int
    dropped_log_lines: int
    def __init__(self, host_id: _Optional[str] = ..., address: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[str] = ..., processes: _Optional[int] = ..., last_seen: _Optional[float] = ..., version: _Optional[str] = ..., generation: _Optional[int] = ..., started_at: _Optional[float] = ..., reexecuted_at: _Optional[float] = ..., ignored_processes: _Optional[int] = ..., refused_reports: _Optional[int] = ..., dropped_events: _Optional[int] = ..., dropped_log_lines: _Optional[int] = ...) -> None: ...

class AgentsReply(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("watcher", "lines", "follow", "stream", "host", "since")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    lines: int
    follow: bool
    stream: str
    host: str
    since: float
    def __init__(self, watcher: _Optional[str] = ..., lines: _Optional[int] = ..., follow: _Optional[bool] = ..., stream: _Optional[str] = ..., host: _Optional[str] = ..., since: _Optional[float] = ...) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ("follow", "watcher", "lines", "after_seq")
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    follow: bool
    watcher: str
    lines: int
    after_seq: int
    def __init__(self, follow: _Optional[bool] = ..., watcher: _Optional[str] = ..., lines: _Optional[int] = ..., after_seq: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("watcher",)
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    def __init__(self, watcher: _Optional[str] = ...) -> None: ...

class GetReply(_message.Message):
    __slots__ = ("spec", "active", "toml")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    TOML_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.WatcherSpec
    active: bool
    toml: str
    def __init__(self, spec: _Optional[_Union[_types_pb2.WatcherSpec, _Mapping]] = ..., active: _Optional[bool] = ..., toml: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("show_secrets",)
    SHOW_SECRETS_FIELD_NUMBER: _ClassVar[int]
    show_secrets: bool
    def __init__(self, show_secrets: _Optional[bool] = ...) -> None: ...

class ExportReply(_message.Message):
    __slots__ = ("toml",)
    TOML_FIELD_NUMBER: _ClassVar[int]
    toml: str
    def __init__(self, toml: _Optional[str] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("host_id",)
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    def __init__(self, host_id: _Optional[str] = ...) -> None: ...

class DrainReply(_message.Message):
    __slots__ = ("host_id", "processes")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    processes: int
    def __init__(self, host_id: _Optional[str] = ..., processes: _Optional[int] = ...) -> None: ...

class RebalanceRequest(_message.Message):
    __slots__ = ("watcher",)
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    def __init__(self, watcher: _Optional[str] = ...) -> None: ...

class RebalanceReply(_message.Message):
    __slots__ = ("watcher", "moved")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    moved: int
    def __init__(self, watcher: _Optional[str] = ..., moved: _Optional[int] = ...) -> None: ...

class ControllersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ControllerInfo(_message.Message):
    __slots__ = ("controller_id", "address", "leader", "version")
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    controller_id: str
    address: str
    leader: bool
    version: str
    def __init__(self, controller_id: _Optional[str] = ..., address: _Optional[str] = ..., leader: _Optional[bool] = ..., version: _Optional[str] = ...) -> None: ...

class StoreMember(_message.Message):
    __slots__ = ("endpoint", "healthy", "error")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    healthy: bool
    error: str
    def __init__(self, endpoint: _Optional[str] = ..., healthy: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ControllersReply(_message.Message):
    __slots__ = ("controllers", "leader_address", "fencing_token", "store", "members", "answered_by")
    CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    controllers: _containers.RepeatedCompositeFieldContainer[ControllerInfo]
    leader_address: str
    fencing_token: int
    store: str
    members: _containers.RepeatedCompositeFieldContainer[StoreMember]
    answered_by: str
    def __init__(self, controllers: _Optional[_Iterable[_Union[ControllerInfo, _Mapping]]] = ..., leader_address: _Optional[str] = ..., fencing_token: _Optional[int] = ..., store: _Optional[str] = ..., members: _Optional[_Iterable[_Union[StoreMember, _Mapping]]] = ..., answered_by: _Optional[str] = ...) -> None: ...
