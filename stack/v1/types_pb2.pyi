from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STATE_UNSPECIFIED: _ClassVar[ProcessState]
    PROCESS_STATE_STARTING: _ClassVar[ProcessState]
    PROCESS_STATE_RUNNING: _ClassVar[ProcessState]
    PROCESS_STATE_STOPPING: _ClassVar[ProcessState]
    PROCESS_STATE_EXITED: _ClassVar[ProcessState]
    PROCESS_STATE_BACKOFF: _ClassVar[ProcessState]
    PROCESS_STATE_FATAL: _ClassVar[ProcessState]
    PROCESS_STATE_STOPPED: _ClassVar[ProcessState]
    PROCESS_STATE_UNKNOWN: _ClassVar[ProcessState]

class Health(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_UNSPECIFIED: _ClassVar[Health]
    HEALTH_STARTING: _ClassVar[Health]
    HEALTH_HEALTHY: _ClassVar[Health]
    HEALTH_UNHEALTHY: _ClassVar[Health]

class ExitReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXIT_REASON_UNSPECIFIED: _ClassVar[ExitReason]
    EXIT_REASON_CRASHED: _ClassVar[ExitReason]
    EXIT_REASON_STOPPED: _ClassVar[ExitReason]
    EXIT_REASON_FLAPPING: _ClassVar[ExitReason]
    EXIT_REASON_SPAWN_ERROR: _ClassVar[ExitReason]
    EXIT_REASON_KILLED: _ClassVar[ExitReason]
    EXIT_REASON_MAX_AGE: _ClassVar[ExitReason]
    EXIT_REASON_RESTARTED: _ClassVar[ExitReason]
    EXIT_REASON_UNHEALTHY: _ClassVar[ExitReason]

class WatcherPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WATCHER_PHASE_UNSPECIFIED: _ClassVar[WatcherPhase]
    WATCHER_PHASE_ACTIVE: _ClassVar[WatcherPhase]
    WATCHER_PHASE_STOPPED: _ClassVar[WatcherPhase]
    WATCHER_PHASE_FLAPPING: _ClassVar[WatcherPhase]
    WATCHER_PHASE_FATAL: _ClassVar[WatcherPhase]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_ERROR: _ClassVar[Severity]
PROCESS_STATE_UNSPECIFIED: ProcessState
PROCESS_STATE_STARTING: ProcessState
PROCESS_STATE_RUNNING: ProcessState
PROCESS_STATE_STOPPING: ProcessState
PROCESS_STATE_EXITED: ProcessState
PROCESS_STATE_BACKOFF: ProcessState
PROCESS_STATE_FATAL: ProcessState
PROCESS_STATE_STOPPED: ProcessState
PROCESS_STATE_UNKNOWN: ProcessState
HEALTH_UNSPECIFIED: Health
HEALTH_STARTING: Health
HEALTH_HEALTHY: Health
HEALTH_UNHEALTHY: Health
EXIT_REASON_UNSPECIFIED: ExitReason
EXIT_REASON_CRASHED: ExitReason
EXIT_REASON_STOPPED: ExitReason
EXIT_REASON_FLAPPING: ExitReason
EXIT_REASON_SPAWN_ERROR: ExitReason
EXIT_REASON_KILLED: ExitReason
EXIT_REASON_MAX_AGE: ExitReason
EXIT_REASON_RESTARTED: ExitReason
EXIT_REASON_UNHEALTHY: ExitReason
WATCHER_PHASE_UNSPECIFIED: WatcherPhase
WATCHER_PHASE_ACTIVE: WatcherPhase
WATCHER_PHASE_STOPPED: WatcherPhase
WATCHER_PHASE_FLAPPING: WatcherPhase
WATCHER_PHASE_FATAL: WatcherPhase
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_ERROR: Severity

class StreamSpec(_message.Message):
    __slots__ = ("filename", "max_bytes", "backup_count", "stream_class", "rotate_when", "rotate_interval", "color")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    BACKUP_COUNT_FIELD_NUMBER: _ClassVar[int]
    STREAM_CLASS_FIELD_NUMBER: _ClassVar[int]
    ROTATE_WHEN_FIELD_NUMBER: _ClassVar[int]
    ROTATE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    filename: str
    max_bytes: int
    backup_count: int
    stream_class: str
    rotate_when: str
    rotate_interval: int
    color: str
    def __init__(self, filename: _Optional[str] = ..., max_bytes: _Optional[int] = ..., backup_count: _Optional[int] = ..., stream_class: _Optional[str] = ..., rotate_when: _Optional[str] = ..., rotate_interval: _Optional[int] = ..., color: _Optional[str] = ...) -> None: ...

class HookSpec(_message.Message):
    __slots__ = ("cmd", "ignore_errors", "timeout")
    CMD_FIELD_NUMBER: _ClassVar[int]
    IGNORE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    cmd: str
    ignore_errors: bool
    timeout: float
    def __init__(self, cmd: _Optional[str] = ..., ignore_errors: _Optional[bool] = ..., timeout: _Optional[float] = ...) -> None: ...

class FlappingSpec(_message.Message):
    __slots__ = ("attempts", "window", "retry_in", "max_retry")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    RETRY_IN_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRY_FIELD_NUMBER: _ClassVar[int]
    attempts: int
    window: float
    retry_in: float
    max_retry: int
    def __init__(self, attempts: _Optional[int] = ..., window: _Optional[float] = ..., retry_in: _Optional[float] = ..., max_retry: _Optional[int] = ...) -> None: ...

class PlacementSpec(_message.Message):
    __slots__ = ("mode", "max_per_host", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_HOST_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    max_per_host: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, mode: _Optional[str] = ..., max_per_host: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UpdateSpec(_message.Message):
    __slots__ = ("max_parallel", "min_uptime")
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    MIN_UPTIME_FIELD_NUMBER: _ClassVar[int]
    max_parallel: int
    min_uptime: float
    def __init__(self, max_parallel: _Optional[int] = ..., min_uptime: _Optional[float] = ...) -> None: ...

class HealthSpec(_message.Message):
    __slots__ = ("type", "target", "interval", "timeout", "retries")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    type: str
    target: str
    interval: float
    timeout: float
    retries: int
    def __init__(self, type: _Optional[str] = ..., target: _Optional[str] = ..., interval: _Optional[float] = ..., timeout: _Optional[float] = ..., retries: _Optional[int] = ...) -> None: ...

class WatcherSpec(_message.Message):
    __slots__ = ("name", "cmd", "args", "numprocesses", "warmup_delay", "working_dir", "shell", "uid", "gid", "env", "copy_env", "rlimits", "stop_signal", "stop_children", "graceful_timeout", "respawn", "max_retry", "autostart", "priority", "singleton", "use_sockets", "sockets", "close_child_stdin", "max_age", "max_age_variance", "stdout_stream", "stderr_stream", "flapping", "umask", "placement", "update", "health", "hooks", "on_demand", "send_hup", "stdin_socket", "executable", "shell_args", "copy_path", "virtualenv", "close_child_stdout", "close_child_stderr", "autorestart", "exitcodes", "startsecs")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class RlimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class HooksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: HookSpec
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[HookSpec, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    NUMPROCESSES_FIELD_NUMBER: _ClassVar[int]
    WARMUP_DELAY_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    COPY_ENV_FIELD_NUMBER: _ClassVar[int]
    RLIMITS_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STOP_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    GRACEFUL_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RESPAWN_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRY_FIELD_NUMBER: _ClassVar[int]
    AUTOSTART_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SINGLETON_FIELD_NUMBER: _ClassVar[int]
    USE_SOCKETS_FIELD_NUMBER: _ClassVar[int]
    SOCKETS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_CHILD_STDIN_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_STREAM_FIELD_NUMBER: _ClassVar[int]
    STDERR_STREAM_FIELD_NUMBER: _ClassVar[int]
    FLAPPING_FIELD_NUMBER: _ClassVar[int]
    UMASK_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HOOKS_FIELD_NUMBER: _ClassVar[int]
    ON_DEMAND_FIELD_NUMBER: _ClassVar[int]
    SEND_HUP_FIELD_NUMBER: _ClassVar[int]
    STDIN_SOCKET_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    SHELL_ARGS_FIELD_NUMBER: _ClassVar[int]
    COPY_PATH_FIELD_NUMBER: _ClassVar[int]
    VIRTUALENV_FIELD_NUMBER: _ClassVar[int]
    CLOSE_CHILD_STDOUT_FIELD_NUMBER: _ClassVar[int]
    CLOSE_CHILD_STDERR_FIELD_NUMBER: _ClassVar[int]
    AUTORESTART_FIELD_NUMBER: _ClassVar[int]
    EXITCODES_FIELD_NUMBER: _ClassVar[int]
    STARTSECS_FIELD_NUMBER: _ClassVar[int]
    name: str
    cmd: str
    args: _containers.RepeatedScalarFieldContainer[str]
    numprocesses: int
    warmup_delay: float
    working_dir: str
    shell: bool
    uid: str
    gid: str
    env: _containers.ScalarMap[str, str]
    copy_env: bool
    rlimits: _containers.ScalarMap[str, int]
    stop_signal: str
    stop_children: bool
    graceful_timeout: float
    respawn: bool
    max_retry: int
    autostart: bool
    priority: int
    singleton: bool
    use_sockets: bool
    sockets: _containers.RepeatedScalarFieldContainer[str]
    close_child_stdin: bool
    max_age: float
    max_age_variance: float
    stdout_stream: StreamSpec
    stderr_stream: StreamSpec
    flapping: FlappingSpec
    umask: int
    placement: PlacementSpec
    update: UpdateSpec
    health: HealthSpec
    hooks: _containers.MessageMap[str, HookSpec]
    on_demand: bool
    send_hup: bool
    stdin_socket: str
    executable: str
    shell_args: _containers.RepeatedScalarFieldContainer[str]
    copy_path: bool
    virtualenv: str
    close_child_stdout: bool
    close_child_stderr: bool
    autorestart: str
    exitcodes: _containers.RepeatedScalarFieldContainer[int]
    startsecs: float
    def __init__(self, name: _Optional[str] = ..., cmd: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., numprocesses: _Optional[int] = ..., warmup_delay: _Optional[float] = ..., working_dir: _Optional[str] = ..., shell: _Optional[bool] = ..., uid: _Optional[str] = ..., gid: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., copy_env: _Optional[bool] = ..., rlimits: _Optional[_Mapping[str, int]] = ..., stop_signal: _Optional[str] = ..., stop_children: _Optional[bool] = ..., graceful_timeout: _Optional[float] = ..., respawn: _Optional[bool] = ..., max_retry: _Optional[int] = ..., autostart: _Optional[bool] = ..., priority: _Optional[int] = ..., singleton: _Optional[bool] = ..., use_sockets: _Optional[bool] = ..., sockets: _Optional[_Iterable[str]] = ..., close_child_stdin: _Optional[bool] = ..., max_age: _Optional[float] = ..., max_age_variance: _Optional[float] = ..., stdout_stream: _Optional[_Union[StreamSpec, _Mapping]] = ..., stderr_stream: _Optional[_Union[StreamSpec, _Mapping]] = ..., flapping: _Optional[_Union[FlappingSpec, _Mapping]] = ..., umask: _Optional[int] = ..., placement: _Optional[_Union[PlacementSpec, _Mapping]] = ..., update: _Optional[_Union[UpdateSpec, _Mapping]] = ..., health: _Optional[_Union[HealthSpec, _Mapping]] = ..., hooks: _Optional[_Mapping[str, HookSpec]] = ..., on_demand: _Optional[bool] = ..., send_hup: _Optional[bool] = ..., stdin_socket: _Optional[str] = ..., executable: _Optional[str] = ..., shell_args: _Optional[_Iterable[str]] = ..., copy_path: _Optional[bool] = ..., virtualenv: _Optional[str] = ..., close_child_stdout: _Optional[bool] = ..., close_child_stderr: _Optional[bool] = ..., autorestart: _Optional[str] = ..., exitcodes: _Optional[_Iterable[int]] = ..., startsecs: _Optional[float] = ...) -> None: ...

class SocketSpec(_message.Message):
    __slots__ = ("name", "host", "port", "path", "family", "type", "backlog", "umask", "replace", "so_reuseport", "blocking")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    UMASK_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    SO_REUSEPORT_FIELD_NUMBER: _ClassVar[int]
    BLOCKING_FIELD_NUMBER: _ClassVar[int]
    name: str
    host: str
    port: int
    path: str
    family: str
    type: str
    backlog: int
    umask: int
    replace: bool
    so_reuseport: bool
    blocking: bool
    def __init__(self, name: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., path: _Optional[str] = ..., family: _Optional[str] = ..., type: _Optional[str] = ..., backlog: _Optional[int] = ..., umask: _Optional[int] = ..., replace: _Optional[bool] = ..., so_reuseport: _Optional[bool] = ..., blocking: _Optional[bool] = ...) -> None: ...

class LastExit(_message.Message):
    __slots__ = ("code", "signal", "reason", "at", "message", "code_unknown")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    code: int
    signal: int
    reason: ExitReason
    at: float
    message: str
    code_unknown: bool
    def __init__(self, code: _Optional[int] = ..., signal: _Optional[int] = ..., reason: _Optional[_Union[ExitReason, str]] = ..., at: _Optional[float] = ..., message: _Optional[str] = ..., code_unknown: _Optional[bool] = ...) -> None: ...

class ProcessStatus(_message.Message):
    __slots__ = ("watcher", "wid", "pid", "state", "started_at", "restarts", "cpu_percent", "rss_bytes", "num_fds", "num_children", "last_exit", "host_id", "message", "health", "health_message", "version", "blocked", "replacements", "cpu_seconds")
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    WID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_FDS_FIELD_NUMBER: _ClassVar[int]
    NUM_CHILDREN_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    watcher: str
    wid: int
    pid: int
    state: ProcessState
    started_at: float
    restarts: int
    cpu_percent: float
    rss_bytes: int
    num_fds: int
    num_children: int
    last_exit: LastExit
    host_id: str
    message: str
    health: Health
    health_message: str
    version: str
    blocked: str
    replacements: int
    cpu_seconds: float
    def __init__(self, watcher: _Optional[str] = ..., wid: _Optional[int] = ..., pid: _Optional[int] = ..., state: _Optional[_Union[ProcessState, str]] = ..., started_at: _Optional[float] = ..., restarts: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., num_fds: _Optional[int] = ..., num_children: _Optional[int] = ..., last_exit: _Optional[_Union[LastExit, _Mapping]] = ..., host_id: _Optional[str] = ..., message: _Optional[str] = ..., health: _Optional[_Union[Health, str]] = ..., health_message: _Optional[str] = ..., version: _Optional[str] = ..., blocked: _Optional[str] = ..., replacements: _Optional[int] = ..., cpu_seconds: _Optional[float] = ...) -> None: ...

class WatcherObserved(_message.Message):
    __slots__ = ("name", "phase", "retry_at", "flapping_retries", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    FLAPPING_RETRIES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    phase: WatcherPhase
    retry_at: float
    flapping_retries: int
    message: str
    def __init__(self, name: _Optional[str] = ..., phase: _Optional[_Union[WatcherPhase, str]] = ..., retry_at: _Optional[float] = ..., flapping_retries: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class SocketStatus(_message.Message):
    __slots__ = ("name", "fd", "address", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FD_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    fd: int
    address: str
    error: str
    def __init__(self, name: _Optional[str] = ..., fd: _Optional[int] = ..., address: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("at", "host_id", "watcher", "wid", "kind", "message", "severity", "seq")
    AT_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    WID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    at: float
    host_id: str
    watcher: str
    wid: int
    kind: str
    message: str
    severity: Severity
    seq: int
    def __init__(self, at: _Optional[float] = ..., host_id: _Optional[str] = ..., watcher: _Optional[str] = ..., wid: _Optional[int] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., seq: _Optional[int] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("at", "host_id", "watcher", "wid", "stream", "text")
    AT_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    WATCHER_FIELD_NUMBER: _ClassVar[int]
    WID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    at: float
    host_id: str
    watcher: str
    wid: int
    stream: str
    text: str
    def __init__(self, at: _Optional[float] = ..., host_id: _Optional[str] = ..., watcher: _Optional[str] = ..., wid: _Optional[int] = ..., stream: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...
