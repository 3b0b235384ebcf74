"""`stack-agent`: the per-host daemon (engine + session to the controller).

Start-up order matters: adopt what a previous life of the agent left running, apply
the persisted Assignment around it (so workers run even while the controller is
unreachable), then connect. SIGTERM/SIGINT stop every worker gracefully, close the
sockets and exit 0. SIGHUP re-executes the agent in place (see reexec.py): a newly
installed version and the flags file take effect, and no worker stops. The three are
read from a signalfd (see control_signals.py), so none is lost across a re-execution.

Under systemd (`Type=notify`) the agent reports READY=1 as soon as the persisted
Assignment is applied: it never waits for the controller, since an agent must serve
its host while the control plane is away. STATUS lines then say whether the
controller is connected, and STOPPING=1 is sent when the workers start stopping;
RELOADING=1 before a re-execution, and READY=1 again from the new image.

With `--tls-dir DIR` the agent presents DIR/agents/HOSTID.crt and trusts only a
controller whose certificate DIR/ca.crt signed; bad TLS files stop it at start with
one line, before any worker runs.
"""

from __future__ import annotations

if __name__ == "__main__":  # this process is the agent: before asyncio imports ssl
    from stack.agent.lean import keep_out_openssl

    keep_out_openssl()

import argparse
import asyncio
import grp
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NoReturn

from stack import aio
from stack.agent import control_signals, flags_file, reexec
from stack.agent.engine import Engine
from stack.agent.handover import Handover
from stack.agent.lean import let_in_openssl
from stack.agent.reexec import ReexecError
from stack.agent.session import Session
from stack.agent.settings import AgentSettings, default_data_dir
from stack.agent.tls_check import check_at_start
from stack.sdnotify import Notifier
from stack.security.layout import CertDir, CertError, Role
from stack.security.local import check_addresses, is_unix
from stack.security.safe_files import UnsafeFile, private_dir
from stack.security.tls_files import TlsError, is_loopback, resolve
from stack.spec.model import NAME_RULE, valid_name
from stack.spec.reports import Severity
from stack.spec.session import LOOK_SECONDS
from stack.usage import HelpParser, standard_options

if TYPE_CHECKING:
    from stack.agent.metrics import HostMetrics
    from stack.web.server import HttpServer

log = logging.getLogger("stack.agent")


class _Parser(HelpParser):
    where = ""
    """Prefixed to error messages (the flags file line being parsed)."""
    examples = (
        "# The agent of host web-1, for a controller on another host",
        "stack-agent --controller ctl.lan:7450 --tls-dir /etc/stack/tls \\",
        "    --host-id web-1 --label role=web",
    )

    def error(self, message: str) -> NoReturn:
        where = f"{self.where}: " if self.where else ""
        print(f"stack-agent: {where}{message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a label is key=value, got {text!r}")
    if not valid_name(key):
        raise argparse.ArgumentTypeError(f"label key {key!r} {NAME_RULE}")
    return key, value


def _host_id(text: str) -> str:
    """A host id names files, certificates and store keys: keep it a plain name."""
    if not valid_name(text):
        raise argparse.ArgumentTypeError(f"host id {text!r} {NAME_RULE}")
    return text


def _group(text: str) -> int:
    try:
        return grp.getgrgid(int(text)).gr_gid if text.isdigit() else grp.getgrnam(text).gr_gid
    except (KeyError, OverflowError):
        raise argparse.ArgumentTypeError(f"no group {text!r} on this host") from None


def _address(text: str) -> str:
    """unix:PATH or HOST:PORT, or several comma-separated (the controllers of an HA group)."""
    try:
        return check_addresses(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _metrics_address(text: str) -> str:
    from stack.agent.metrics import check_address  # only --metrics-listen needs it

    try:
        return check_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class Arguments:
    settings: AgentSettings
    log_level: str
    check: bool
    """--check: only prove this program can start (see reexec.py) and exit."""


def parse_args(argv: list[str] | None = None) -> Arguments:
    """The command line's flags over those of its --flags-file (exit 2 with one line)."""
    parser = _parser()
    given = sys.argv[1:] if argv is None else argv
    path = parser.parse_known_args(given)[0].flags_file
    from_file: list[str] = []
    if path is not None:
        try:
            lines = flags_file.parse(Path(path).read_text(), str(path))
        except OSError as exc:
            parser.error(f"--flags-file {path}: cannot read: {exc.strerror}")
        except (flags_file.FlagsFileError, UnicodeDecodeError) as exc:
            parser.error(f"--flags-file {exc}")
        for line in lines:  # each line alone, so that an error names its line
            parser.where = f"{path}: line {line.number}"
            parser.parse_args(list(line.words))
        parser.where = ""
        from_file = flags_file.argv(lines)
    args = parser.parse_args([*from_file, *given])
    if args.ship_rate < 0:
        parser.error("--ship-rate must be >= 0")
    if not valid_name(args.host_id):  # the hostname default is not run through type=
        parser.error(f"argument --host-id: host id {args.host_id!r} {NAME_RULE}")
    try:
        pair = CertDir(args.tls_dir).pair(Role.agent, args.host_id) if args.tls_dir else None
        tls_files = resolve(args.tls_dir, args.ca, args.cert, args.key, pair)
    except (CertError, TlsError) as exc:
        parser.error(str(exc))
    settings = AgentSettings(
        data_dir=args.data_dir,
        host_id=args.host_id,
        controller=args.controller,
        labels=MappingProxyType(dict(args.label)),
        stats_interval=args.stats_interval,
        stats_rest_interval=args.stats_rest_interval,
        heartbeat_interval=args.heartbeat_interval,
        ship_rate=args.ship_rate,
        log_group=args.log_group,
        metrics_listen=args.metrics_listen or "",
        metrics_per_process=args.metrics_per_process,
        tls=tls_files,
    )
    return Arguments(settings, args.log_level, args.check)


def _parser() -> _Parser:
    defaults = AgentSettings(data_dir=default_data_dir())
    parser = _Parser(
        prog="stack-agent",
        description="Stack's per-host agent: binds the sockets and runs the workers its "
        "controller assigns to this host, and reports what they do. Workers keep running "
        "while the controller is away, and across a reload (SIGHUP) of the agent.",
        add_help=False,
    )
    parser.add_argument(
        "--controller",
        type=_address,
        default=os.environ.get("STACK_CONTROLLER") or defaults.controller,
        metavar="ADDRESS",
        help="The controller: unix:PATH or HOST:PORT, or several comma-separated "
        f"($STACK_CONTROLLER; default {defaults.controller}).",
    )
    parser.add_argument(
        "--host-id",
        type=_host_id,
        default=defaults.host_id,
        metavar="ID",
        help="This host's name in the fleet (default: the hostname).",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=defaults.data_dir,
        metavar="DIR",
        help="Where the agent keeps its assignment, worker records and logs "
        f"(default {defaults.data_dir}).",
    )
    parser.add_argument(
        "--label",
        type=_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A label placement can ask for, e.g. role=web (repeat it for more).",
    )
    parser.add_argument(
        "--stats-interval",
        type=_positive,
        default=defaults.stats_interval,
        metavar="SECONDS",
        help=f"Seconds between samples of the workers' cpu and memory while someone "
        f"looks (a status, a metrics scrape) (default {defaults.stats_interval:g}).",
    )
    parser.add_argument(
        "--stats-rest-interval",
        type=_positive,
        default=defaults.stats_rest_interval,
        metavar="SECONDS",
        help=f"Seconds between those samples while nobody looks "
        f"(default {defaults.stats_rest_interval:g}).",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=_positive,
        default=defaults.heartbeat_interval,
        metavar="SECONDS",
        help=f"Seconds between reports to the controller at least "
        f"(default {defaults.heartbeat_interval:g}).",
    )
    parser.add_argument(
        "--ship-rate",
        type=int,
        default=defaults.ship_rate,
        metavar="LINES",
        help=f"Output lines a second shipped to the controller at most; 0: no limit "
        f"(default {defaults.ship_rate}; the log files keep every line).",
    )
    parser.add_argument(
        "--log-group",
        type=_group,
        metavar="GROUP",
        help="A group (name or number) whose members may read the output files, created "
        "0640 with it (without it they are 0600).",
    )
    parser.add_argument(
        "--metrics-listen",
        type=_metrics_address,
        metavar="HOST:PORT",
        help="Serve this host's Prometheus metrics at /metrics here, plaintext on a loopback "
        "address (the controller's --metrics-listen serves the whole fleet's).",
    )
    parser.add_argument(
        "--metrics-per-process",
        action="store_true",
        help="Add series for each worker process (CPU, memory, start time).",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        metavar="LEVEL",
        help="What the agent logs on stderr (default INFO).",
    )
    parser.add_argument(
        "--flags-file",
        type=Path,
        metavar="PATH",
        help="More flags, one per line (# comments), read again on every reload; the "
        "command line's win.",
    )
    parser.add_argument(
        reexec.CHECK_FLAG,
        action="store_true",
        help="Check that this program and its flags can start the agent, print what it "
        "found and exit (a reload runs this first).",
    )
    standard_options(parser)
    tls = parser.add_argument_group("mutual TLS")
    tls.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="A `stackctl certs` directory: ca.crt and agents/HOSTID.crt, .key.",
    )
    tls.add_argument(
        "--ca", type=Path, metavar="PATH", help="The CA certificate the controller is signed by."
    )
    tls.add_argument("--cert", type=Path, metavar="PATH", help="This host's agent certificate.")
    tls.add_argument("--key", type=Path, metavar="PATH", help="This host's private key.")
    return parser


def check_tls(settings: AgentSettings) -> None:
    """Stop at start, with one line, when the TLS files cannot work; warn about plaintext."""
    if settings.tls is None:
        addresses = [a for a in settings.controller.split(",") if not is_unix(a)]
        if not all(is_loopback(address.rpartition(":")[0]) for address in addresses):
            log.warning(
                "INSECURE: dialing controller %s without TLS: anyone on the path can push work",
                settings.controller,
            )
        return
    try:
        name = check_at_start(settings.tls)  # in a child: the agent never loads cryptography
    except TlsError as exc:
        print(f"stack-agent: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if name != settings.host_id:
        print(
            f"stack-agent: certificate {settings.tls.cert} is for host {name}, "
            f"not {settings.host_id}",
            file=sys.stderr,
        )
        raise SystemExit(1)


STATUS_INTERVAL = 2.0
"""Seconds between checks of what `systemctl status` should say."""
LEAVE_TIMEOUT = 0.5
"""Seconds a reload waits for the controller to take its Reloading notice."""


class _Signals:
    """SIGTERM/SIGINT (stop) and SIGHUP (re-execute), read from the signalfd (see
    control_signals.py), as flags and one wake-up event."""

    def __init__(self, source: control_signals.SignalFd) -> None:
        self.source = source
        self.stop = False
        self.reload_at = 0.0
        """Monotonic time of the pending SIGHUP; 0: none."""
        self.wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def listen(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.source.fileno(), self._read)
        self._read()

    def stop_listening(self) -> None:
        """Read no more: whatever is sent from now on stays pending for the next image
        (or for this one, should the exec fail). A reload asked for since the last one
        began is left pending too, for the next image to honour."""
        if self._loop is not None:
            self._loop.remove_reader(self.source.fileno())
            self._loop = None
        if self.reload_at:
            self.reload_at = 0.0
            control_signals.pend(signal.SIGHUP)

    def _read(self) -> None:
        for signum in self.source.read():
            if signum == signal.SIGHUP:
                self.reload_at = self.reload_at or time.monotonic()
            else:
                self.stop = True
            self.wake.set()


async def run(
    settings: AgentSettings,
    source: control_signals.SignalFd,
    notifier: Notifier | None = None,
    handover: Handover | None = None,
) -> Handover | None:
    """Run until SIGTERM/SIGINT (read from `source`), which stops every worker before
    returning None; or until a SIGHUP whose check passed: then return the handover for
    the next image, every worker left running."""
    notifier = notifier or Notifier(None)
    signals = _Signals(source)
    signals.listen(asyncio.get_running_loop())
    program = reexec.this_program()
    result: Handover | None = None
    served = await _metrics_server(settings)
    async with Engine(settings, handover) as engine:
        if handover is None:
            notifier.status("adopting what runs and restoring the persisted assignment")
            await engine.restore()
        session = Session(settings, engine, handover.controller if handover else "")
        if served is not None:
            http, metrics = served
            metrics.snapshot = engine.snapshot
            metrics.looked_at = lambda: engine.want_stats(LOOK_SECONDS)
            metrics.connected = session.connected.is_set
            metrics.lines = lambda: (engine.lines_shipped, engine.lines_dropped)
        notifier.ready(_status(session, engine))
        async with aio.TaskGroup() as tg:
            tasks = [aio.start(tg, session.run(), "session", forever=True, logger=log)]
            if served is not None:
                tasks.append(aio.start(tg, http.run(), "metrics", forever=True, logger=log))
                accounts = metrics.keep_accounts(settings.stats_interval)
                tasks.append(aio.start(tg, accounts, "metrics-accounts", forever=True, logger=log))
            if notifier.enabled:
                status = _report_status(notifier, session, engine)
                tasks.append(aio.start(tg, status, "sd-status", forever=True, logger=log))
            while not signals.stop:
                await signals.wake.wait()
                signals.wake.clear()
                if signals.stop or not signals.reload_at:
                    continue
                requested, signals.reload_at = signals.reload_at, 0.0
                if not await _new_program_starts(program, engine, settings):
                    continue
                if signals.stop:
                    break
                signals.stop_listening()  # a TERM from now on is for the next image
                log.info("re-executing %s in place; every worker keeps running", program.path)
                notifier.reloading("re-executing in place; workers keep running")
                told = time.monotonic()
                if await session.leave(LEAVE_TIMEOUT):  # so the controller marks nothing down
                    took = (time.monotonic() - told) * 1000
                    log.info("the controller took the reload notice in %.1f ms", took)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                result = engine.hand_over(requested, session.address, notifier.env_value)
                break
            if result is None:
                log.info("stopping: stopping every worker")
                notifier.stopping("stopping every worker")
                for task in tasks:
                    task.cancel()
    if result is None:
        log.info("stopped")
    return result


async def _metrics_server(settings: AgentSettings) -> tuple[HttpServer, HostMetrics] | None:
    """The bound /metrics server of `--metrics-listen` and the series it serves, or None
    (exit 1 if it cannot bind). Without the flag no metrics module is imported: an agent
    nobody scrapes does not keep their code (about 0.15 MiB)."""
    if not settings.metrics_listen:
        return None
    let_in_openssl()  # prometheus_client imports ssl
    from stack.agent.metrics import HostMetrics
    from stack.metrics.exposition import Exposition
    from stack.metrics.tally import Tally
    from stack.metrics.text import CONTENT_TYPE
    from stack.web.server import HttpServer, metrics_page

    metrics = HostMetrics(settings.host_id, settings.metrics_per_process)
    exposition = Exposition(Tally(), metrics.read)
    http = HttpServer(
        metrics_page(exposition.scrape, CONTENT_TYPE), settings.metrics_listen, name="metrics"
    )
    try:
        port = await http.bind()
    except OSError as exc:
        print(f"stack-agent: cannot listen on {settings.metrics_listen}: "
              f"{exc.strerror or exc}", file=sys.stderr)  # fmt: skip
        raise SystemExit(1) from None
    host = settings.metrics_listen.rpartition(":")[0]
    print(f"stack-agent: serving the metrics on {host}:{port} (plaintext)", file=sys.stderr,
          flush=True)  # fmt: skip
    return http, metrics


async def _new_program_starts(
    program: reexec.Program, engine: Engine, settings: AgentSettings
) -> bool:
    """Run the new program's check; on failure say why (log line and event)."""
    try:
        report = await reexec.check(program, engine.reaper, settings.host_id, settings.data_dir)
    except ReexecError as exc:
        text = f"reload refused, the agent keeps running as it is: {exc}"
        log.error("%s", text)
        engine.event("reload_failed", "", 0, str(exc), Severity.ERROR)
        return False
    log.info("the new program checked out: version %s", report.version)
    return True


def _status(session: Session, engine: Engine) -> str:
    """One line for `systemctl status`: the watchers and the controller connection."""
    count = len(engine.watchers)
    watchers = f"{count} watcher{'' if count == 1 else 's'}"
    if session.connected.is_set():
        return f"{watchers}; connected to controller {session.address}"
    return f"{watchers}; controller {session.address} not connected, workers keep running"


async def _report_status(notifier: Notifier, session: Session, engine: Engine) -> None:
    """Keep the service manager's STATUS line current (sent only when it changes)."""
    shown = _status(session, engine)
    while True:
        await asyncio.sleep(STATUS_INTERVAL)
        text = _status(session, engine)
        if text != shown:
            notifier.status(text)
            shown = text


def main(argv: list[str] | None = None) -> None:
    control_signals.hold()  # before any thread starts: each inherits the mask
    arguments = parse_args(argv)
    settings = arguments.settings
    logging.basicConfig(
        level=arguments.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        private_dir(settings.data_dir)
    except OSError as exc:
        why = str(exc) if isinstance(exc, UnsafeFile) else exc.strerror
        print(f"stack-agent: cannot use data dir {settings.data_dir}: {why}", file=sys.stderr)
        raise SystemExit(1) from None
    check_tls(settings)
    if arguments.check:
        print(reexec.check_report(settings.host_id, settings.data_dir), flush=True)
        return
    try:
        handover = reexec.take_handover()
    except ReexecError as exc:  # the worker records on disk are used instead (see restore)
        log.error("%s: adopting the workers from the records on disk", exc)
        handover = None
    notifier = Notifier.from_environment()
    source = control_signals.SignalFd()
    while True:
        handover = asyncio.run(run(settings, source, notifier, handover))
        if handover is None:
            return
        program = reexec.this_program()
        try:
            reexec.exec_into(program, handover, reexec.kept_fds(handover))
        except OSError as exc:
            log.error("cannot re-execute %s: %s; this image carries on", program.path, exc)


if __name__ == "__main__":
    main()
