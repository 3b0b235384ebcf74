"""Reading and validating a stack file (TOML) into a StackSpec.

This is the only door into the domain model from user text, so every check
happens here, before anything is applied: unknown keys, wrong types (a bool is
not an integer, even though Python thinks so), ranges, undefined sockets and
substitutions that could never be expanded. The first problem found, in a
fixed order (file order of sections and keys, then cross-checks), is raised as
one `SpecError` naming the file, the key path and what is wrong.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import shlex
import signal
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from stack.spec.errors import SpecError
from stack.spec.model import (
    COLORS,
    HOOKS,
    MAX_PROCESSES,
    NAME_RULE,
    STREAM_CLASSES,
    FlappingSpec,
    HealthSpec,
    HookSpec,
    PlacementSpec,
    SocketSpec,
    StackSpec,
    StreamSpec,
    UpdateSpec,
    WatcherSpec,
    _frozen_map,
    valid_name,
)
from stack.spec.substitute import SubstitutionError, check_key, find_references, split_key
from stack.spec.suggest import closest, did_you_mean

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
INT64_MAX = 2**63 - 1
UMASK_MAX = 0o777

RLIMITS = (
    "nofile", "nproc", "core", "cpu", "fsize", "data", "stack", "as", "memlock", "rss",
    "msgqueue", "nice", "rtprio", "sigpending",
)  # fmt: skip
"""Resource limits a watcher may set as `rlimit_<name>`."""

FAMILIES = {"AF_INET": "AF_INET", "AF_INET6": "AF_INET6", "AF_UNIX": "AF_UNIX",
            "INET": "AF_INET", "INET6": "AF_INET6", "UNIX": "AF_UNIX"}  # fmt: skip
TYPES = {"SOCK_STREAM": "SOCK_STREAM", "SOCK_DGRAM": "SOCK_DGRAM",
         "STREAM": "SOCK_STREAM", "DGRAM": "SOCK_DGRAM"}  # fmt: skip
PLACEMENT_MODES = ("spread", "each")
HEALTH_TYPES = ("tcp", "http", "exec")
STREAM_CLASS_PREFIXES = ("circus.stream.", "stack.")
"""A stream class may be written as Circus's dotted name, or with Stack's prefix."""
ROTATE_WHEN = ("S", "M", "H", "D", "MIDNIGHT", *(f"W{day}" for day in range(7)))
"""TimedRotatingFileStream's units: seconds, minutes, hours, days, midnight, a weekday."""
_STREAM_ONLY_FOR = {
    "rotate_when": ("TimedRotatingFileStream",), "rotate_interval": ("TimedRotatingFileStream",),
    "color": ("FancyStdoutStream",),
}  # fmt: skip
"""Stream options that only these classes use."""
_STREAM_NOT_FOR = {
    "max_bytes": {"WatchedFileStream": "another tool rotates its file",
                  "TimedRotatingFileStream": "it rotates by time"},
    "backup_count": {"WatchedFileStream": "another tool rotates its file"},
}  # fmt: skip
"""Stream options that these classes refuse, and why."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_PORT = re.compile(r"[0-9]+")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse_signal(value: str | int) -> str:
    """A signal given as "TERM", "SIGTERM", "term", "15" or 15, as its name without SIG."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"unknown signal {value!r}")
    if isinstance(value, int) or value.strip().isdigit():
        number = int(value)
        try:
            return signal.Signals(number).name.removeprefix("SIG")
        except ValueError:
            raise ValueError(f"unknown signal {number}") from None
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return signal.Signals[name].name.removeprefix("SIG")
    except KeyError:
        raise ValueError(f"unknown signal {value!r}") from None


def tcp_port(target: str) -> int | None:
    """The port of a tcp health check's target, or None when it names a socket."""
    return int(target) if _PORT.fullmatch(target) else None


def load_stack_file(path: str | Path) -> StackSpec:
    """Read and validate a stack file; messages name the file as given."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(filename, "", "no such file") from None
    except UnicodeDecodeError as err:
        raise SpecError(filename, "", f"not UTF-8 text ({err.reason})") from None
    except OSError as err:
        raise SpecError(filename, "", f"cannot read: {err.strerror or err}") from None
    return load_stack(text, filename)


def load_stack(text: str, filename: str = "<stack>") -> StackSpec:
    """Validate the text of a stack file; raises SpecError on the first problem."""
    return load_stack_data(_parse_toml(text, filename), filename)


def load_stack_data(data: dict[str, Any], filename: str = "<stack>") -> StackSpec:
    """Validate a stack file's tables as TOML would give them (another format's
    reader builds them: stack.spec.foreign); raises SpecError on the first problem."""
    return _Loader(filename).stack(data)


def _parse_toml(text: str, filename: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        found = _TOML_POSITION.search(message)
        if found:
            where = f"line {found.group(1)}"
            message = message[: found.start()]
        else:
            where = f"line {text.count(chr(10)) + 1}"
            message = message.replace(" (at end of document)", "")
        raise SpecError(filename, where, f"invalid TOML: {message}") from None


def _toml_key(key: str) -> str:
    """A key as TOML would need it written: bare when it can be, else quoted."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _show(value: Any) -> str:
    """A value as the user would write it in TOML, shortened for one-line messages."""
    if isinstance(value, float) and not math.isfinite(value):
        shown = str(value)
    else:
        try:
            shown = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


class _Loader:
    """Turns parsed TOML into the model; every method raises SpecError on a problem."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def fail(self, path: str, message: str) -> NoReturn:
        raise SpecError(self.filename, path, message)

    # -- value checks ---------------------------------------------------------------

    def table(self, path: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, got {_show(value)}")
        return value

    def string(self, path: str, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {_show(value)}")
        return value

    def boolean(self, path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {_show(value)}")
        return value

    def integer(self, path: str, value: Any, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, got {_show(value)}")
        if value < low:
            self.fail(path, f"must be >= {low}, got {value}")
        if value > high:
            self.fail(path, f"must be <= {high}, got {value}")
        return value

    def number(self, path: str, value: Any, *, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"must be a number, got {_show(value)}")
        if not math.isfinite(value):
            self.fail(path, f"must be a finite number, got {_show(value)}")
        if positive and value <= 0:
            self.fail(path, f"must be > 0, got {value}")
        if value < 0:
            self.fail(path, f"must be >= 0, got {value}")
        return float(value)

    def umask(self, path: str, value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"(0o)?[0-7]{1,4}", value.strip()):
            value = int(value.strip().removeprefix("0o"), 8)
        elif isinstance(value, str):
            self.fail(path, f"must be an octal number like 0o022, got {_show(value)}")
        number = self.integer(path, value, 0, 2**63)
        if number > UMASK_MAX:
            self.fail(path, f"must be <= 0o777, got 0o{number:o}")
        return number

    def name(self, section: str, value: str) -> str:
        """`value` as the name of an entry of `section` (watchers, sockets), or SpecError."""
        if not valid_name(value):
            self.fail(f"{section}.{_toml_key(value)}", f"name {NAME_RULE}")
        return value

    # -- the stack ------------------------------------------------------------------

    def stack(self, data: dict[str, Any]) -> StackSpec:
        self.check_keys_top(data)
        sockets_table = self.table("sockets", data.get("sockets", {}))
        watchers_table = self.table("watchers", data.get("watchers", {}))
        sockets: dict[str, SocketSpec] = {}
        for name, value in sockets_table.items():
            path = f"sockets.{name}"
            sockets[name] = self.socket(path, self.name("sockets", name), self.table(path, value))
        watchers: dict[str, WatcherSpec] = {}
        for name, value in watchers_table.items():
            path = f"watchers.{name}"
            spec = self.watcher(path, self.name("watchers", name), self.table(path, value))
            self.check_watcher_sockets(path, spec, sockets)
            watchers[name] = spec
        return StackSpec(watchers=_frozen_map(watchers), sockets=_frozen_map(sockets))

    def check_keys_top(self, data: dict[str, Any]) -> None:
        for key in data:
            if key not in ("sockets", "watchers"):
                hint = did_you_mean(key, ("sockets", "watchers")).strip()
                self.fail(
                    key,
                    f"unknown section {hint}"
                    if hint
                    else "unknown section (expected [sockets.NAME] or [watchers.NAME])",
                )

    def unknown(self, path: str, key: str, known: Any) -> NoReturn:
        """`path: unknown option (did you mean KNOWN?)`."""
        self.fail(path, f"unknown option{did_you_mean(key, known)}")

    # -- sockets --------------------------------------------------------------------

    def socket(self, path: str, name: str, table: dict[str, Any]) -> SocketSpec:
        fields: dict[str, Any] = {}
        for key, value in table.items():
            where = f"{path}.{key}"
            if key in ("host", "path"):
                fields[key] = self.string(where, value)
            elif key == "port":
                fields[key] = self.integer(where, value, 0, 65535)
            elif key == "family":
                fields[key] = self.choice(where, value, FAMILIES)
            elif key == "type":
                fields[key] = self.choice(where, value, TYPES)
            elif key == "backlog":
                fields[key] = self.integer(where, value, 1, INT32_MAX)
            elif key == "umask":
                fields[key] = self.umask(where, value)
            elif key in ("replace", "so_reuseport", "blocking"):
                fields[key] = self.boolean(where, value)
            else:
                self.unknown(where, key, _SOCKET_OPTIONS)
        if fields.get("path") and "family" not in fields:
            fields["family"] = "AF_UNIX"
        if fields.get("family") == "AF_INET6" and "host" not in fields:
            fields["host"] = "::1"  # the loopback, like AF_INET's default
        spec = SocketSpec(name=name, **fields)
        if spec.family == "AF_UNIX":
            if not spec.path:
                self.fail(f"{path}.path", "required for an AF_UNIX socket")
        elif spec.path:
            self.fail(f"{path}.family", f"must be AF_UNIX when a path is set, got {spec.family}")
        elif not spec.host:
            self.fail(f"{path}.host", f"required for an {spec.family} socket")
        else:
            self.check_host_family(f"{path}.host", spec.host, spec.family)
        return spec

    def choice(self, path: str, value: Any, choices: dict[str, str]) -> str:
        text = self.string(path, value)
        if text.upper() not in choices:
            wanted = ", ".join(key for key, full in choices.items() if key == full)
            self.fail(path, f"must be one of {wanted}, got {_show(value)}")
        return choices[text.upper()]

    def check_host_family(self, path: str, host: str, family: str) -> None:
        if host.startswith("["):
            self.fail(path, f"write IPv6 addresses without brackets, got {_show(host)}")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return  # a host name: resolved by the agent when it binds
        wanted = 6 if family == "AF_INET6" else 4
        if address.version != wanted:
            self.fail(path, f"not an IPv{wanted} address for an {family} socket, got {_show(host)}")

    # -- watchers -------------------------------------------------------------------

    def watcher(self, path: str, name: str, table: dict[str, Any]) -> WatcherSpec:
        fields: dict[str, Any] = {}
        rlimits: dict[str, int] = {}
        for key, value in table.items():
            where = f"{path}.{key}"
            if key.startswith("rlimit_") and key.removeprefix("rlimit_") in RLIMITS:
                rlimits[key.removeprefix("rlimit_")] = self.integer(where, value, -1, INT64_MAX)
            elif key in _WATCHER_OPTIONS:
                fields[key] = _WATCHER_OPTIONS[key](self, where, value)
            elif key.startswith("rlimit_"):
                limit = closest(key.removeprefix("rlimit_"), RLIMITS)
                self.fail(
                    where, "unknown option" + (f" (did you mean rlimit_{limit}?)" if limit else "")
                )
            else:
                self.unknown(where, key, _WATCHER_OPTIONS)
        if "cmd" not in fields:
            self.fail(f"{path}.cmd", "required")
        self.check_watcher_options(path, fields)
        if fields.get("singleton") and fields.get("numprocesses", 1) > 1:
            self.fail(
                f"{path}.numprocesses",
                f"must be <= 1 for a singleton watcher, got {fields['numprocesses']}",
            )
        placement = fields.get("placement", PlacementSpec())
        if fields.get("singleton") and placement.mode == "each":
            self.fail(
                f"{path}.placement.mode", 'must be "spread" for a singleton watcher, got "each"'
            )
        if fields.get("sockets"):
            if fields.get("use_sockets") is False:
                self.fail(f"{path}.use_sockets", "must be true when sockets are listed")
            fields["use_sockets"] = True
        return WatcherSpec(name=name, rlimits=_frozen_map(rlimits), **fields)

    def check_watcher_options(self, path: str, fields: dict[str, Any]) -> None:
        """The checks between a watcher's own options; turns `autorestart` into the
        model's respawn and autorestart."""
        if "autorestart" in fields:
            value = fields.pop("autorestart")
            respawn = value is not False
            if fields.get("respawn", respawn) != respawn:
                self.fail(
                    f"{path}.autorestart",
                    f"contradicts respawn = {_show(fields['respawn'])} (write only one of them)",
                )
            fields["respawn"] = respawn
            fields["autorestart"] = "unexpected" if value == "unexpected" else ""
        if fields.get("shell_args") and not fields.get("shell"):
            self.fail(f"{path}.shell_args", "only used with shell = true")
        for key in ("copy_path", "virtualenv"):
            if fields.get(key) and not fields.get("copy_env"):
                self.fail(f"{path}.{key}", "needs copy_env = true")

    def cmd(self, path: str, value: Any) -> str:
        text = self.string(path, value)
        if not text.strip():
            self.fail(path, "must not be empty")
        return text

    def args(self, path: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as err:
                self.fail(path, f"cannot be split into arguments: {err}")
        if not isinstance(value, list):
            self.fail(path, f"must be a string or a list of strings, got {_show(value)}")
        for index, item in enumerate(value):
            self.string(f"{path}[{index}]", item)
        return tuple(value)

    def ident(self, path: str, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(self.integer(path, value, 0, 2**32 - 2))
        if not isinstance(value, str):
            self.fail(path, f"must be a name or a number, got {_show(value)}")
        return value

    def stop_signal(self, path: str, value: Any) -> str:
        try:
            return parse_signal(value)
        except ValueError as err:
            self.fail(path, str(err))

    def socket_names(self, path: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(path, f"must be a list of socket names, got {_show(value)}")
        seen: list[str] = []
        for index, item in enumerate(value):
            name = self.string(f"{path}[{index}]", item)
            if name in seen:
                self.fail(path, f"socket {name!r} is listed twice")
            seen.append(name)
        return tuple(seen)

    def env(self, path: str, value: Any) -> Any:
        table = self.table(path, value)
        env: dict[str, str] = {}
        for key, item in table.items():
            where = f"{path}.{key}"
            if not key or "=" in key or "\0" in key:
                self.fail(where, "invalid environment variable name")
            if isinstance(item, bool):
                env[key] = "true" if item else "false"
            elif isinstance(item, int | float):
                env[key] = str(item)
            elif isinstance(item, str):
                if "\0" in item:
                    self.fail(where, "must not contain a NUL character")
                env[key] = item
            else:
                self.fail(where, f"must be a string, got {_show(item)}")
        return _frozen_map(env)

    def flapping(self, path: str, value: Any) -> FlappingSpec:
        fields: dict[str, Any] = {}
        for key, item in self.table(path, value).items():
            where = f"{path}.{key}"
            if key == "attempts":
                fields[key] = self.integer(where, item, 1, INT32_MAX)
            elif key == "window":
                fields[key] = self.number(where, item, positive=True)
            elif key == "retry_in":
                fields[key] = self.number(where, item)
            elif key == "max_retry":
                fields[key] = self.integer(where, item, -1, INT32_MAX)
            else:
                self.unknown(where, key, ("attempts", "window", "retry_in", "max_retry"))
        return FlappingSpec(**fields)

    def placement(self, path: str, value: Any) -> PlacementSpec:
        fields: dict[str, Any] = {}
        for key, item in self.table(path, value).items():
            where = f"{path}.{key}"
            if key == "mode":
                mode = self.string(where, item)
                if mode not in PLACEMENT_MODES:
                    self.fail(where, f'must be "spread" or "each", got {_show(item)}')
                fields[key] = mode
            elif key == "max_per_host":
                fields[key] = self.integer(where, item, 0, INT32_MAX)
            elif key == "labels":
                fields[key] = self.labels(where, item)
            else:
                self.unknown(where, key, ("mode", "max_per_host", "labels"))
        return PlacementSpec(**fields)

    def labels(self, path: str, value: Any) -> Any:
        labels: dict[str, str] = {}
        for key, item in self.table(path, value).items():
            where = f"{path}.{key}"
            if not key or "=" in key or "," in key:
                self.fail(where, "invalid label name (empty, or with '=' or ',')")
            labels[key] = self.string(where, item)
        return _frozen_map(labels)

    def update(self, path: str, value: Any) -> UpdateSpec:
        fields: dict[str, Any] = {}
        for key, item in self.table(path, value).items():
            where = f"{path}.{key}"
            if key == "max_parallel":
                fields[key] = self.integer(where, item, 1, INT32_MAX)
            elif key == "min_uptime":
                fields[key] = self.number(where, item)
            else:
                self.unknown(where, key, ("max_parallel", "min_uptime"))
        return UpdateSpec(**fields)

    def health(self, path: str, value: Any) -> HealthSpec:
        fields: dict[str, Any] = {}
        target: Any = None
        for key, item in self.table(path, value).items():
            where = f"{path}.{key}"
            if key == "type":
                kind = self.string(where, item)
                if kind not in HEALTH_TYPES:
                    self.fail(where, f'must be "tcp", "http" or "exec", got {_show(item)}')
                fields[key] = kind
            elif key == "target":
                target = item
            elif key in ("interval", "timeout"):
                fields[key] = self.number(where, item, positive=True)
            elif key == "retries":
                fields[key] = self.integer(where, item, 1, INT32_MAX)
            else:
                self.unknown(where, key, ("type", "target", "interval", "timeout", "retries"))
        if "type" not in fields:
            self.fail(f"{path}.type", 'required ("tcp", "http" or "exec")')
        if target is None:
            self.fail(f"{path}.target", "required")
        fields["target"] = self.health_target(f"{path}.target", fields["type"], target)
        return HealthSpec(**fields)

    def health_target(self, path: str, kind: str, value: Any) -> str:
        """The target as the model keeps it; a tcp socket name is cross-checked later."""
        if kind == "tcp":
            if isinstance(value, int) and not isinstance(value, bool):
                return str(self.integer(path, value, 1, 65535))
            if not isinstance(value, str):
                self.fail(path, f"must be a port or a socket name, got {_show(value)}")
            if tcp_port(value) is not None:
                self.fail(path, f"write a port as an integer, got {_show(value)}")
            return value
        text = self.string(path, value)
        if kind == "http":
            if not (text.startswith("/") or text.startswith("http://")):
                self.fail(
                    path, f'must be a path starting with "/" or an http:// URL, got {_show(text)}'
                )
            return text
        if not text.strip():
            self.fail(path, "must not be empty")
        return text

    def stream(self, path: str, value: Any) -> StreamSpec:
        fields: dict[str, Any] = {}
        for key, item in self.table(path, value).items():
            where = f"{path}.{key}"
            if key == "class":
                fields["class_"] = self.stream_class(where, item)
            elif key == "filename":
                fields[key] = self.string(where, item)
            elif key == "max_bytes":
                fields[key] = self.integer(where, item, 0, INT64_MAX)
            elif key == "backup_count":
                fields[key] = self.integer(where, item, 0, INT32_MAX)
            elif key == "rotate_when":
                when = self.string(where, item)
                if when.upper() not in ROTATE_WHEN:
                    self.fail(where, f"must be S, M, H, D, W0 to W6 or midnight, got {_show(item)}")
                fields[key] = when.upper()
            elif key == "rotate_interval":
                fields[key] = self.integer(where, item, 1, INT32_MAX)
            elif key == "color":
                color = self.string(where, item)
                if color.lower() not in COLORS:
                    self.fail(where, f"must be one of {', '.join(COLORS)}, got {_show(item)}")
                fields[key] = color.lower()
            else:
                self.unknown(where, key, _STREAM_OPTIONS)
        kind = fields.get("class_", STREAM_CLASSES[0])
        for key in fields:
            if kind not in _STREAM_ONLY_FOR.get(key, (kind,)):
                self.fail(f"{path}.{key}", f"not used by {kind}")
            if kind in _STREAM_NOT_FOR.get(key, {}):
                self.fail(f"{path}.{key}", f"not used by {kind} ({_STREAM_NOT_FOR[key][kind]})")
        if kind == "TimedRotatingFileStream" and "rotate_when" not in fields:
            self.fail(f"{path}.rotate_when", "required for TimedRotatingFileStream")
        return StreamSpec(**fields)

    def stream_class(self, path: str, value: Any) -> str:
        text = self.string(path, value)
        for prefix in STREAM_CLASS_PREFIXES:
            if text.startswith(prefix) and text.removeprefix(prefix) in STREAM_CLASSES:
                return text.removeprefix(prefix)
        if text not in STREAM_CLASSES:
            self.fail(
                path,
                f"must be one of {', '.join(STREAM_CLASSES)}, got {_show(value)}"
                + did_you_mean(text.rpartition(".")[2], STREAM_CLASSES, cutoff=0.85),
            )
        return text

    def hooks(self, path: str, value: Any) -> Any:
        hooks: dict[str, HookSpec] = {}
        for key, item in self.table(path, value).items():
            where = f"{path}.{key}"
            if key not in HOOKS:
                self.fail(where, f"unknown hook{did_you_mean(key, HOOKS)}")
            hooks[key] = self.hook(where, item)
        return _frozen_map(hooks)

    def hook(self, path: str, value: Any) -> HookSpec:
        """A command line, or a table with cmd, ignore_errors and timeout."""
        if isinstance(value, str):
            return HookSpec(cmd=self.command_line(path, value))
        if not isinstance(value, dict):
            self.fail(path, f"must be a command line or a table with cmd, got {_show(value)}")
        fields: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}"
            if key == "cmd":
                fields[key] = self.command_line(where, item)
            elif key == "ignore_errors":
                fields[key] = self.boolean(where, item)
            elif key == "timeout":
                fields[key] = self.number(where, item, positive=True)
            else:
                self.unknown(where, key, ("cmd", "ignore_errors", "timeout"))
        if "cmd" not in fields:
            self.fail(f"{path}.cmd", "required")
        return HookSpec(**fields)

    def command_line(self, path: str, value: Any) -> str:
        """A non-empty string that splits into arguments like a shell would."""
        text = self.cmd(path, value)
        try:
            shlex.split(text)
        except ValueError as err:
            self.fail(path, f"cannot be split into arguments: {err}")
        return text

    def autorestart(self, path: str, value: Any) -> bool | str:
        if not (isinstance(value, bool) or value == "unexpected"):
            self.fail(path, f'must be true, false or "unexpected", got {_show(value)}')
        return value  # type: ignore[no-any-return]

    def exitcodes(self, path: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            self.fail(path, f"must be a list of exit codes like [0, 2], got {_show(value)}")
        codes: list[int] = []
        for index, item in enumerate(value):
            code = self.integer(f"{path}[{index}]", item, 0, 255)
            if code in codes:
                self.fail(path, f"exit code {code} is listed twice")
            codes.append(code)
        return tuple(codes)

    def optional_string(self, path: str, value: Any) -> str:
        """A string that may be left out but, when given, is not blank."""
        text = self.string(path, value)
        if not text.strip():
            self.fail(path, "must not be empty")
        return text

    # -- cross-checks ---------------------------------------------------------------

    def check_watcher_sockets(
        self, path: str, spec: WatcherSpec, sockets: dict[str, SocketSpec]
    ) -> None:
        for name in spec.sockets:
            if name not in sockets:
                self.fail(f"{path}.sockets", f"undefined socket {name!r}")
        if spec.sockets:
            inherited = set(spec.sockets)
        elif spec.use_sockets:
            inherited = set(sockets)
        else:
            inherited = set()
        if spec.stdin_socket and spec.stdin_socket not in sockets:
            self.fail(f"{path}.stdin_socket", f"undefined socket {spec.stdin_socket!r}")
        if spec.on_demand and not (inherited or spec.stdin_socket):
            self.fail(
                f"{path}.on_demand",
                "needs a socket to wait on (use_sockets, sockets or stdin_socket)",
            )
        target = spec.health.target
        if spec.health.type == "tcp" and tcp_port(target) is None:
            where = f"{path}.health.target"
            if target not in sockets:
                self.fail(where, f"undefined socket {target!r}")
            if target not in inherited:
                self.fail(
                    where,
                    f"socket {target!r} is not inherited by the watcher "
                    "(set use_sockets = true or list it in sockets)",
                )
        texts = [("cmd", spec.cmd)] + [(f"args[{i}]", arg) for i, arg in enumerate(spec.args)]
        for key, text in texts:
            where = f"{path}.{key}"
            try:
                found = find_references(text)
                for written, ref in found:
                    check_key(ref, written)
            except SubstitutionError as err:
                self.fail(where, str(err))
            for written, ref in found:
                kind, arg = split_key(ref)
                if kind == "sockets" and arg not in sockets:
                    self.fail(where, f"{written}: undefined socket {arg!r}")
                if kind == "sockets" and arg not in inherited:
                    self.fail(
                        where,
                        f"{written}: socket {arg!r} is not inherited by the watcher "
                        "(set use_sockets = true or list it in sockets)",
                    )
                if kind == "env" and not spec.copy_env and arg not in spec.env:
                    self.fail(where, f"{written}: {arg!r} is not set in the watcher's env")


_WATCHER_OPTIONS: dict[str, Callable[[_Loader, str, Any], Any]] = {
    "cmd": _Loader.cmd,
    "args": _Loader.args,
    "numprocesses": lambda ld, p, v: ld.integer(p, v, 0, MAX_PROCESSES),
    "warmup_delay": lambda ld, p, v: ld.number(p, v),
    "working_dir": _Loader.string,
    "shell": _Loader.boolean,
    "uid": _Loader.ident,
    "gid": _Loader.ident,
    "env": _Loader.env,
    "copy_env": _Loader.boolean,
    "stop_signal": _Loader.stop_signal,
    "stop_children": _Loader.boolean,
    "graceful_timeout": lambda ld, p, v: ld.number(p, v),
    "respawn": _Loader.boolean,
    "max_retry": lambda ld, p, v: ld.integer(p, v, -1, INT32_MAX),
    "autostart": _Loader.boolean,
    "priority": lambda ld, p, v: ld.integer(p, v, INT32_MIN, INT32_MAX),
    "singleton": _Loader.boolean,
    "use_sockets": _Loader.boolean,
    "sockets": _Loader.socket_names,
    "close_child_stdin": _Loader.boolean,
    "max_age": lambda ld, p, v: ld.number(p, v),
    "max_age_variance": lambda ld, p, v: ld.number(p, v),
    "stdout_stream": _Loader.stream,
    "stderr_stream": _Loader.stream,
    "flapping": _Loader.flapping,
    "umask": _Loader.umask,
    "placement": _Loader.placement,
    "update": _Loader.update,
    "health": _Loader.health,
    "hooks": _Loader.hooks,
    "on_demand": _Loader.boolean,
    "send_hup": _Loader.boolean,
    "stdin_socket": _Loader.optional_string,
    "executable": _Loader.optional_string,
    "shell_args": _Loader.args,
    "copy_path": _Loader.boolean,
    "virtualenv": _Loader.optional_string,
    "close_child_stdout": _Loader.boolean,
    "close_child_stderr": _Loader.boolean,
    "autorestart": _Loader.autorestart,
    "exitcodes": _Loader.exitcodes,
    "startsecs": lambda ld, p, v: ld.number(p, v),
}
"""Every watcher option except `rlimit_*`, with the check that parses it."""

_SOCKET_OPTIONS = (
    "host", "port", "path", "family", "type", "backlog", "umask", "replace", "so_reuseport",
    "blocking",
)  # fmt: skip
_STREAM_OPTIONS = (
    "class", "filename", "max_bytes", "backup_count", "rotate_when", "rotate_interval", "color",
)  # fmt: skip
