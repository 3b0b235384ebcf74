"""Reading a Circus INI file into a stack, the way circusd reads it.

What circusd does with the file, the stack gets: `[watcher:NAME]` and `[socket:NAME]`
become watchers and sockets with the same options; `[env]`, `[env:a,b]` and
`[env:glob*]` are merged into the watchers' env in file order; `[plugin:NAME]` of the
flapping plugin gives every watcher its flapping settings; `include` and `include_dir`
are read relative to the including file; `$(circus.env.X)` and `((circus.env.X))` are
expanded wherever circusd expands them, and `$VAR` in env values. What has no
equivalent (Python hooks and plugins, the daemon's own endpoints, pidfile and logs)
is reported in a Note, once per item, with what to use instead. See stack.spec.foreign.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

from stack.spec.foreign import CIRCUS, Draft, Reading
from stack.spec.ini import CIRCUS as DIALECT
from stack.spec.ini import Option, Section
from stack.spec.load import RLIMITS
from stack.spec.model import NAME_RULE, valid_name
from stack.spec.suggest import did_you_mean

STACKCTL_ENV = "stackctl's environment (circusd used its own)"

_DAEMON = {
    "endpoint": "stackctl talks to the controller (--controller)",
    "endpoint_owner": "stackctl talks to the controller (--controller)",
    "pubsub_endpoint": "stackctl events -f follows the events",
    "multicast_endpoint": "agents dial the controller; there is nothing to discover",
    "check_delay": "",
    "stats_endpoint": "stackctl stats gives the figures",
    "statsd": "stackctl stats gives the figures",
    "statsd_close_outputs": "",
    "httpd": "there is no web console: stackctl status, events and logs",
    "httpd_host": "there is no web console: stackctl status, events and logs",
    "httpd_port": "there is no web console: stackctl status, events and logs",
    "httpd_close_outputs": "",
    "debug": "",
    "debug_gc": "",
    "pidfile": "stack-agent and stack-controller are run by systemd or stackctl up",
    "loglevel": "stack-agent and stack-controller keep their own logs",
    "logoutput": "stack-agent and stack-controller keep their own logs",
    "loggerconfig": "stack-agent and stack-controller keep their own logs",
    "fqdn_prefix": "",
    "stream_backend": "",
    "use_papa": "the agent keeps sockets and workers across its own restarts",
}
"""[circus] options of the daemon itself: ignored, with what does their job in Stack."""
_CIRCUS_OPTIONS = ("include", "include_dir", "umask", "warmup_delay", *_DAEMON)

_PLUGINS = {
    "circus.plugins.statsd.StatsdEmitter": "stackctl stats -o json gives the same figures",
    "circus.plugins.statsd.FullStats": "stackctl stats -o json gives the same figures",
    "circus.plugins.watchdog.WatchDog": "give the watcher a [health] check",
    "circus.plugins.http_observer.HttpObserver": 'a [health] check of type "http"',
    "circus.plugins.redis_observer.RedisObserver": 'a [health] check of type "exec"',
    "circus.plugins.resource_watcher.ResourceWatcher": (
        'rlimit_as, or a [health] check of type "exec" that measures the worker'
    ),
    "circus.plugins.command_reloader.CommandReloader": (
        "run stackctl reload WATCHER when you deploy a new program"
    ),
}
"""Circus's own plugins and what does their job in Stack."""
_FLAPPING_PLUGIN = "circus.plugins.flapping.Flapping"
FLAPPING_OPTIONS: dict[str, Callable[[Draft, Option, str, str | None], Any]] = {
    "attempts": Draft.integer,
    "window": Draft.number,
    "retry_in": Draft.number,
    "max_retry": Draft.integer,
}

_TEXT, _INT, _NUMBER, _BOOL = "text", "int", "number", "bool"
_WATCHER_OPTIONS = {
    "cmd": _TEXT, "args": _TEXT, "shell": _BOOL, "shell_args": _TEXT, "working_dir": _TEXT,
    "uid": _TEXT, "gid": _TEXT, "copy_env": _BOOL, "copy_path": _BOOL, "warmup_delay": _NUMBER,
    "autostart": _BOOL, "numprocesses": _INT, "stdin_socket": _TEXT,
    "close_child_stdin": _BOOL, "close_child_stdout": _BOOL, "close_child_stderr": _BOOL,
    "send_hup": _BOOL, "stop_signal": _TEXT, "stop_children": _BOOL, "max_retry": _INT,
    "graceful_timeout": _NUMBER, "priority": _INT, "singleton": _BOOL, "use_sockets": _BOOL,
    "max_age": _NUMBER, "max_age_variance": _NUMBER, "on_demand": _BOOL, "virtualenv": _TEXT,
    "respawn": _BOOL, "executable": _TEXT,
}  # fmt: skip
"""Watcher options that Stack has under the same name, with their type."""
_WATCHER_NOTED = {
    "virtualenv_py_ver": "not needed: the workers run the virtualenv's own python",
    "use_papa": "not needed: the agent keeps sockets and workers across its own restarts",
    "env": "circusd ignores it here; [env:NAME] sections set a watcher's env",
}
_WATCHER_PREFIXES = ("rlimit_", "stdout_stream.", "stderr_stream.", "hooks.", "flapping.")
_STREAM_OPTIONS = {
    "class": _TEXT, "filename": _TEXT, "max_bytes": _INT, "backup_count": _INT,
    "rotate_when": _TEXT, "rotate_interval": _INT, "color": _TEXT,
}  # fmt: skip
_STREAM_NOTED = {
    "time_format": "Stack stamps every line with its own time format",
    "utc": "Stack stamps every line with its own time format",
    "refresh_time": "not needed",
}
_SOCKET_OPTIONS = {
    "umask": _TEXT, "host": _TEXT, "port": _INT, "path": _TEXT, "family": _TEXT, "type": _TEXT,
    "backlog": _INT, "replace": _BOOL, "so_reuseport": _BOOL, "blocking": _BOOL,
}  # fmt: skip
_SOCKET_NOTED = {
    "interface": "binding to one network interface is not carried: bind to its address (host)",
    "proto": "not carried: the kernel's default protocol for the family and type is used",
    "use_papa": "not needed: the agent keeps sockets across its own restarts",
}

_ENV_REFERENCE = re.compile(
    r"\$\(circus\.env\.([\w.\-]+)\)|\(\(circus\.env\.([\w.\-]+)\)\)", re.IGNORECASE
)
_DOUBLE_PARENS = re.compile(r"\(\(((?:circus|stack)\.[\w.\-]+)\)\)", re.IGNORECASE)
_SOCKET_REFERENCE = re.compile(r"(\$\((?:circus|stack)\.sockets\.)([\w.\-]+)\)", re.IGNORECASE)
_DOLLAR_VARIABLE = re.compile(r"\$([A-Z]+[A-Z0-9_]*)")
"""circusd expands `$PATH` in env values from its environment (upper case names only)."""


def read_circus(text: str, filename: str, environ: Mapping[str, str]) -> Reading:
    """A Circus INI file (and what it includes) as a Reading; SpecError on the first problem."""
    return _CircusReader(filename, environ).read(text)


class _CircusReader:
    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        self.filename = filename
        self.environ = dict(environ)
        self.draft = Draft(filename, CIRCUS, DIALECT)

    # -- files ----------------------------------------------------------------------

    def read(self, text: str) -> Reading:
        self.draft.read_ini(text, self.filename)
        self.include()
        circus = self.draft.sections.get("circus")
        watchers = self.watcher_sections()
        global_env = self.global_env()
        flapping = self.plugins()
        for name, section in self.draft.sections.items():
            if name == "circus" and circus is not None:
                self.circus(circus, list(watchers))
            elif name.startswith("socket:"):
                self.socket(section, global_env)
            elif not (name == "env" or name.split(":", 1)[0] in ("env", "watcher", "plugin")):
                self.draft.unknown_section(
                    section, "Circus", ("circus", "env"), ("watcher", "socket", "plugin", "env")
                )
        envs = self.watcher_envs(watchers, global_env)
        for name, section in watchers.items():
            self.watcher(name, section, envs[name], global_env, flapping)
        return self.draft.finish()

    def include(self) -> None:
        """circusd reads the files that the main file's [circus] names, in one go."""
        circus = self.draft.sections.get("circus")
        if circus is None:
            return
        patterns: list[tuple[Option, str]] = []
        for key, suffix in (("include", ""), ("include_dir", "/*.ini")):
            option = circus.get(key)
            if option is not None:
                value, _ = self.expand_env(option.value, self.environ)
                patterns += [(option, word + suffix) for word in value.split()]
        for option, pattern in patterns:
            self.draft.include(option, f"[circus] {option.key}", [pattern])

    # -- [circus], [plugin:*], [env*] -------------------------------------------------

    def circus(self, section: Section, watchers: list[str]) -> None:
        for key, option in section.options.items():
            label = f"[circus] {key}"
            if key in ("include", "include_dir"):
                continue
            if key == "umask":
                umask = self.draft.octal(option, label)
                for name in watchers:
                    self.draft.put(("watchers", name, "umask"), umask, option.origin, label)
                self.draft.note(
                    "every watcher's umask (workers inherited circusd's)",
                    origin=option.origin,
                    label=label,
                )
            elif key == "warmup_delay":
                self.draft.note(
                    "not carried: Stack starts watchers side by side; a watcher's own "
                    "warmup_delay spaces its workers",
                    origin=option.origin,
                    label=label,
                )
            elif key in _DAEMON:
                advice = _DAEMON[key]
                text = "a setting of circusd itself, ignored" + (f": {advice}" if advice else "")
                self.draft.note(text, origin=option.origin, label=label)
            else:
                self.draft.fail(
                    option.origin, label, f"unknown option{did_you_mean(key, _CIRCUS_OPTIONS)}"
                )

    def plugins(self) -> dict[str, tuple[Option, str, Any]]:
        """The flapping plugin's settings (option, label, value), which become every
        watcher's defaults; every other plugin is reported."""
        flapping: dict[str, tuple[Option, str, Any]] = {}
        for name, section in self.draft.sections.items():
            if not name.startswith("plugin:") or not section.options:
                continue
            label = f"[{name}]"
            use = section.get("use")
            if use is None:
                self.draft.fail(section.origin, label, "use: required (the plugin's class)")
            active = section.get("active")
            if active is not None and not self.draft.boolean(active, f"{label} active"):
                self.draft.note("inactive: ignored", origin=section.origin, label=label)
                continue
            fqn = use.value.strip()
            if fqn != _FLAPPING_PLUGIN and not fqn.endswith(".flapping.Flapping"):
                advice = _PLUGINS.get(
                    fqn, "stackctl events -f -o json streams the events a plugin would read"
                )
                self.draft.note(
                    f"the Python plugin {fqn} is not carried (Stack runs no plugins): {advice}",
                    origin=section.origin,
                    label=label,
                )
                continue
            for key, option in section.options.items():
                if key in FLAPPING_OPTIONS:
                    value, _ = self.expand_env(option.value, self.global_env())
                    where = f"{label} {key}"
                    flapping[key] = (
                        option,
                        where,
                        FLAPPING_OPTIONS[key](self.draft, option, where, value),
                    )
            self.draft.note(
                "its settings are every watcher's [flapping] (Stack counts flapping per worker)",
                origin=section.origin,
                label=label,
            )
        return flapping

    def global_env(self) -> dict[str, str]:
        """circusd's environment plus [env]: what `$(circus.env.X)` sees everywhere."""
        env = dict(self.environ)
        section = self.draft.sections.get("env")
        if section is not None:
            for key, option in section.options.items():
                env[key], _ = self.expand_env(option.value, self.environ)
        return env

    def watcher_sections(self) -> dict[str, Section]:
        found: dict[str, Section] = {}
        for name, section in self.draft.sections.items():
            if not name.startswith("watcher:"):
                continue
            watcher = name.split(":", 1)[1]
            if not section.options:
                self.draft.note(
                    "empty: ignored, as circusd does", origin=section.origin, label=f"[{name}]"
                )
                continue
            if not valid_name(watcher):
                self.draft.fail(section.origin, f"[{name}]", f"the watcher's name {NAME_RULE}")
            found[watcher] = section
        return found

    def watcher_envs(
        self, watchers: dict[str, Section], global_env: Mapping[str, str]
    ) -> dict[str, dict[str, str]]:
        """[env] then every matching [env:...] in file order, `$VAR` expanded, by watcher."""
        envs: dict[str, dict[str, str]] = {name: {} for name in watchers}
        for name, section in self.draft.sections.items():
            if name == "env":
                patterns = ["*"]
            elif name.startswith("env:"):
                patterns = [part.strip() for part in name.split(":", 1)[1].split(",")]
            else:
                continue
            matched = [w for w in watchers if any(fnmatch.fnmatchcase(w, p) for p in patterns)]
            if name != "env" and not matched:
                self.draft.note(
                    "matches no watcher: ignored", origin=section.origin, label=f"[{name}]"
                )
            for key, option in section.options.items():
                value = self.env_value(section, option, global_env, matched)
                for watcher in matched:
                    envs[watcher][key] = value
                    where = ("watchers", watcher, "env", key)
                    self.draft.origins[".".join(where)] = (option.origin, f"[{name}] {key}")
        return envs

    def env_value(
        self, section: Section, option: Option, global_env: Mapping[str, str], watchers: list[str]
    ) -> str:
        label = f"[{section.name}] {option.key}"
        value, from_environ = self.expand_env(option.value, global_env)

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in self.environ:
                from_environ.append(f"${name}")
                return self.environ[name]
            self.draft.note(
                f"${name} is not set in stackctl's environment: left empty, as circusd does",
                origin=option.origin,
                label=label,
                anchor=("watchers", watchers[0], "env", option.key) if watchers else (),
            )
            return ""

        value = _DOLLAR_VARIABLE.sub(variable, value)
        for watcher in watchers:
            self.note_environ(from_environ, option, label, ("watchers", watcher, "env", option.key))
        return value

    # -- [socket:NAME] ----------------------------------------------------------------

    def socket(self, section: Section, global_env: Mapping[str, str]) -> None:
        if not section.options:
            return
        name = section.name.split(":", 1)[1].lower()  # circusd lowercases socket names
        label = f"[{section.name}]"
        if not valid_name(name):
            self.draft.fail(section.origin, label, f"the socket's name {NAME_RULE}")
        table = self.draft.table(("sockets", name), section.origin, label)
        has_path = section.get("path") is not None
        for key, option in section.options.items():
            where = f"{label} {key}"
            anchor = ("sockets", name, key)
            value, from_environ = self.expand_env(option.value, global_env)
            self.note_environ(from_environ, option, where, anchor)
            if key == "umask":
                umask = self.draft.octal(option, where, value)
                self.draft.put(anchor, umask, option.origin, where)
                if value.strip().isdigit() and int(value) != umask:
                    self.draft.note(
                        f"read as octal 0o{umask:03o}, as meant (circusd read it as the "
                        f"decimal {int(value)})",
                        origin=option.origin,
                        label=where,
                        anchor=anchor,
                    )
            elif key in _SOCKET_NOTED:
                self.draft.note(
                    _SOCKET_NOTED[key], origin=option.origin, label=where, anchor=("sockets", name)
                )
            elif key in _SOCKET_OPTIONS:
                unix = value.strip().upper() in ("AF_UNIX", "UNIX")
                if has_path and (key in ("host", "port") or (key == "family" and not unix)):
                    self.draft.note(
                        "ignored, as circusd does: path makes it a unix socket",
                        origin=option.origin,
                        label=where,
                        anchor=("sockets", name),
                    )
                    continue
                parsed = self.typed(_SOCKET_OPTIONS[key], option, where, value)
                self.draft.put(("sockets", name, key), parsed, option.origin, where)
            else:
                self.draft.fail(
                    option.origin,
                    where,
                    f"unknown option{did_you_mean(key, [*_SOCKET_OPTIONS, *_SOCKET_NOTED])}",
                )
        if not has_path and "port" not in table:
            table["port"] = 8080  # circusd's default port
            self.draft.note(
                "port 8080, circusd's default (Stack's is 0: a port the kernel picks)",
                origin=section.origin,
                label=label,
                anchor=("sockets", name, "port"),
            )

    # -- [watcher:NAME] ---------------------------------------------------------------

    def watcher(
        self,
        name: str,
        section: Section,
        env: dict[str, str],
        global_env: Mapping[str, str],
        flapping: dict[str, tuple[Option, str, Any]],
    ) -> None:
        label = f"[{section.name}]"
        at = ("watchers", name)
        self.draft.table(at, section.origin, label)
        copy_env = section.get("copy_env")
        copies = copy_env is not None and self.draft.boolean(copy_env, f"{label} copy_env")
        option_env = {**global_env, **env}
        for key, (option, where, value) in flapping.items():
            self.draft.put((*at, "flapping", key), value, option.origin, where)
        for key, option in section.options.items():
            where = f"{label} {key}"
            if key in ("cmd", "args"):
                value = self.command(option, where, env, copies, (*at, key))
                self.draft.put((*at, key), value, option.origin, where)
                continue
            value, from_environ = self.expand_env(option.value, option_env)
            if key in _WATCHER_OPTIONS:
                self.note_environ(from_environ, option, where, (*at, key))
                parsed = self.typed(_WATCHER_OPTIONS[key], option, where, value)
                if key == "stdin_socket":
                    parsed = str(parsed).lower()
                self.draft.put((*at, key), parsed, option.origin, where)
                if key == "copy_path" and parsed:
                    self.draft.note(
                        "puts the workers' working_dir first in their PYTHONPATH, not the "
                        "agent's own sys.path (Stack's installation): give the application's "
                        "virtualenv as virtualenv",
                        origin=option.origin,
                        label=where,
                        anchor=(*at, key),
                    )
            elif key in _WATCHER_NOTED:
                self.draft.note(_WATCHER_NOTED[key], origin=option.origin, label=where, anchor=at)
            elif key == "check_flapping":
                if not self.draft.boolean(option, where, value):
                    self.draft.note(
                        "not carried: Stack always holds back a worker that flaps; "
                        "flapping.max_retry = -1 never gives up on it",
                        origin=option.origin,
                        label=where,
                        anchor=at,
                    )
            elif key.startswith("rlimit_"):
                self.rlimit(at, key, option, where, value)
            elif key.startswith(("stdout_stream.", "stderr_stream.")):
                self.stream(at, key, option, where, value)
            elif key.startswith("hooks."):
                self.hook(name, key, option, where)
            elif key.startswith("flapping."):
                flap = key.split(".", 1)[1]
                if flap not in FLAPPING_OPTIONS:
                    self.draft.fail(
                        option.origin,
                        where,
                        f"unknown option{did_you_mean(flap, FLAPPING_OPTIONS)}",
                    )
                parsed = FLAPPING_OPTIONS[flap](self.draft, option, where, value)
                self.draft.put((*at, "flapping", flap), parsed, option.origin, where)
            else:
                known = [*_WATCHER_OPTIONS, *_WATCHER_NOTED, "check_flapping"]
                self.draft.fail(option.origin, where, f"unknown option{did_you_mean(key, known)}")
        if env:
            self.draft.table((*at, "env"), section.origin, label).update(env)
        self.note_streams(at, section)

    def command(
        self,
        option: Option,
        label: str,
        env: Mapping[str, str],
        copies: bool,
        anchor: tuple[str, ...],
    ) -> str:
        """cmd or args with Circus's references as Stack's: `((circus.X))` is written
        `$(circus.X)`, socket names in lower case, `$(circus.env.X)` kept when the
        worker's env (or, with copy_env, the agent's) has X, else expanded from
        stackctl's environment as circusd expanded it from its own."""
        by_lower = {key.lower(): key for key in env}
        from_environ: list[str] = []

        def reference(match: re.Match[str]) -> str:
            written = match.group(1) or match.group(2)
            if written.lower() in by_lower:
                return f"$(circus.env.{by_lower[written.lower()]})"
            if copies:
                return f"$(circus.env.{written})"
            value = _lookup(self.environ, written)
            if value is None:
                return match.group(0)
            from_environ.append(match.group(0))
            return value

        text = _ENV_REFERENCE.sub(reference, option.value)
        text = _DOUBLE_PARENS.sub(lambda m: f"$({m.group(1)})", text)
        text = _SOCKET_REFERENCE.sub(lambda m: f"{m.group(1)}{m.group(2).lower()})", text)
        self.note_environ(from_environ, option, label, anchor)
        return text

    def rlimit(self, at: tuple[str, ...], key: str, option: Option, label: str, value: str) -> None:
        limit = key.removeprefix("rlimit_").lower()
        if limit not in RLIMITS:
            self.draft.fail(
                option.origin,
                label,
                f"unknown resource limit{did_you_mean(limit, RLIMITS)}",
            )
        amount = -1 if not value.strip() else self.draft.integer(option, label, value)
        self.draft.put((*at, f"rlimit_{limit}"), amount, option.origin, label)

    def stream(self, at: tuple[str, ...], key: str, option: Option, label: str, value: str) -> None:
        stream, name = key.split(".", 1)
        if name in _STREAM_NOTED:
            self.draft.note(
                f"not carried: {_STREAM_NOTED[name]}",
                origin=option.origin,
                label=label,
                anchor=(*at, stream),
            )
            return
        if name not in _STREAM_OPTIONS:
            known = [*_STREAM_OPTIONS, *_STREAM_NOTED]
            self.draft.fail(option.origin, label, f"unknown option{did_you_mean(name, known)}")
        parsed = self.typed(_STREAM_OPTIONS[name], option, label, value)
        self.draft.put((*at, stream, name), parsed, option.origin, label)

    def note_streams(self, at: tuple[str, ...], section: Section) -> None:
        """A FileStream without max_bytes never rotated under circusd; Stack rotates it."""
        for stream in ("stdout_stream", "stderr_stream"):
            table = self.draft.data["watchers"][at[1]].get(stream)
            if not table or "max_bytes" in table or "filename" not in table:
                continue
            if str(table.get("class", "FileStream")).rpartition(".")[2] != "FileStream":
                continue
            option = section.options[f"{stream}.filename"]
            self.draft.note(
                "circusd never rotated this file; Stack rotates it at 10 MiB and keeps 5 "
                "(max_bytes = 0 never rotates)",
                origin=option.origin,
                label=f"[{section.name}] {option.key}",
                anchor=(*at, stream, "filename"),
            )

    def hook(self, watcher: str, key: str, option: Option, label: str) -> None:
        moment = key.split(".", 1)[1]
        function = option.value.split(",", 1)[0].strip()
        self.draft.note(
            f"not carried: circusd calls the Python function {function} here, and Stack runs "
            f'commands: write one as [watchers.{watcher}.hooks] {moment} = "..."',
            origin=option.origin,
            label=label,
            anchor=("watchers", watcher),
        )

    # -- values ---------------------------------------------------------------------

    def typed(self, kind: str, option: Option, label: str, value: str) -> Any:
        if kind == _INT:
            return self.draft.integer(option, label, value)
        if kind == _NUMBER:
            return self.draft.number(option, label, value)
        if kind == _BOOL:
            return self.draft.boolean(option, label, value)
        return value

    def expand_env(self, text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        """`text` with `$(circus.env.X)` and `((circus.env.X))` expanded from `env` (names
        in any case, as circusd matches them; unknown ones are left as written), and the
        references whose value came from stackctl's environment."""
        from_environ: list[str] = []

        def reference(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            value = _lookup(env, name)
            if value is None:
                return match.group(0)
            if _lookup(self.environ, name) == value and _lookup(self.file_env(), name) is None:
                from_environ.append(match.group(0))
            return value

        return _ENV_REFERENCE.sub(reference, text), from_environ

    def file_env(self) -> dict[str, str]:
        """The variables the file itself sets, in [env] and [env:...] sections."""
        found: dict[str, str] = {}
        for name, section in self.draft.sections.items():
            if name == "env" or name.startswith("env:"):
                found.update({key: option.value for key, option in section.options.items()})
        return found

    def note_environ(
        self, written: list[str], option: Option, label: str, anchor: tuple[str, ...]
    ) -> None:
        for reference in dict.fromkeys(written):
            self.draft.note(
                f"{reference} was taken from {STACKCTL_ENV}",
                origin=option.origin,
                label=label,
                anchor=anchor,
            )


def _lookup(env: Mapping[str, str], name: str) -> str | None:
    """`env[name]`, the name in any case (circusd lower-cases the keys it expands)."""
    if name in env:
        return env[name]
    found = [value for key, value in env.items() if key.lower() == name.lower()]
    return found[-1] if found else None
