"""`stack-agent`: the per-host daemon (engine + session to the controller).

Start-up order matters: stop the leftovers of a previous life, apply the persisted
Assignment (so workers run even while the controller is unreachable), then connect.
SIGTERM/SIGINT stop every worker gracefully, close the sockets and exit 0.

Under systemd (`Type=notify`) the agent reports READY=1 as soon as the persisted
Assignment is applied: it never waits for the controller, since an agent must serve
its host while the control plane is away. STATUS lines then say whether the
controller is connected, and STOPPING=1 is sent when the workers start stopping.

With `--tls-dir DIR` the agent presents DIR/agents/HOSTID.crt and trusts only a
controller whose certificate DIR/ca.crt signed; bad TLS files stop it at start with
one line, before any worker runs.
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import logging
import os
import signal
import sys
from pathlib import Path
from types import MappingProxyType
from typing import NoReturn

from stack.agent.engine import Engine
from stack.agent.session import Session
from stack.agent.settings import AgentSettings, default_data_dir
from stack.sdnotify import Notifier
from stack.security.certs import CertDir, CertError, Role
from stack.security.safe_files import UnsafeFile, private_dir
from stack.security.tls import TlsError, is_loopback, load, resolve
from stack.spec.model import NAME_RULE, valid_name

log = logging.getLogger("stack.agent")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"stack-agent: {message}", file=sys.stderr)
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
    """HOST:PORT, or several comma-separated (the controllers of an HA group)."""
    parts = [part.strip() for part in text.split(",")]
    for part in parts:
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"expected HOST:PORT[,HOST:PORT...], got {text!r}")
    return ",".join(parts)


def parse_args(argv: list[str] | None = None) -> tuple[AgentSettings, str]:
    defaults = AgentSettings(data_dir=default_data_dir())
    parser = _Parser(prog="stack-agent", description="Stack's per-host agent.")
    parser.add_argument(
        "--controller",
        type=_address,
        default=os.environ.get("STACK_CONTROLLER") or defaults.controller,
        help="HOST:PORT of the controller (env STACK_CONTROLLER; default 127.0.0.1:7450)",
    )
    parser.add_argument(
        "--host-id", type=_host_id, default=defaults.host_id, help="default: the hostname"
    )
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    parser.add_argument("--label", type=_label, action="append", default=[], metavar="K=V")
    parser.add_argument("--stats-interval", type=_positive, default=defaults.stats_interval)
    parser.add_argument("--heartbeat-interval", type=_positive, default=defaults.heartbeat_interval)
    parser.add_argument(
        "--ship-rate",
        type=int,
        default=defaults.ship_rate,
        metavar="LINES",
        help=f"output lines per second shipped to the controller at most; 0: no limit "
        f"(default {defaults.ship_rate}; the log files keep every line)",
    )
    parser.add_argument(
        "--log-group",
        type=_group,
        metavar="GROUP",
        help="a group (name or number) whose members may read the output files (created "
        "0640 with it); without it they are 0600",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    tls = parser.add_argument_group("mutual TLS")
    tls.add_argument(
        "--tls-dir", type=Path, metavar="DIR", help="a `stackctl certs` dir: agents/HOSTID.crt"
    )
    tls.add_argument(
        "--ca", type=Path, metavar="PATH", help="CA certificate the controller is signed by"
    )
    tls.add_argument("--cert", type=Path, metavar="PATH", help="this host's agent certificate")
    tls.add_argument("--key", type=Path, metavar="PATH", help="this host's private key")
    args = parser.parse_args(argv)
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
        heartbeat_interval=args.heartbeat_interval,
        ship_rate=args.ship_rate,
        log_group=args.log_group,
        tls=tls_files,
    )
    return settings, args.log_level


def check_tls(settings: AgentSettings) -> None:
    """Stop at start, with one line, when the TLS files cannot work; warn about plaintext."""
    if settings.tls is None:
        hosts = [address.rpartition(":")[0] for address in settings.controller.split(",")]
        if not all(is_loopback(host) for host in hosts):
            log.warning(
                "INSECURE: dialing controller %s without TLS: anyone on the path can push work",
                settings.controller,
            )
        return
    try:
        material = load(settings.tls, (Role.agent,))
    except TlsError as exc:
        print(f"stack-agent: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if material.identity.name != settings.host_id:
        print(
            f"stack-agent: certificate {settings.tls.cert} is for host {material.identity.name}, "
            f"not {settings.host_id}",
            file=sys.stderr,
        )
        raise SystemExit(1)


STATUS_INTERVAL = 2.0
"""Seconds between checks of what `systemctl status` should say."""


async def run(settings: AgentSettings, notifier: Notifier | None = None) -> None:
    """Run until SIGTERM/SIGINT; stops every worker before returning."""
    notifier = notifier or Notifier(None)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Engine(settings) as engine:
        notifier.status("restoring the persisted assignment")
        await engine.restore()
        session = Session(settings, engine)
        notifier.ready(_status(session, engine))
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(session.run(), name="session")]
            if notifier.enabled:
                tasks.append(
                    tg.create_task(_report_status(notifier, session, engine), name="sd-status")
                )
            await stop.wait()
            log.info("stopping: stopping every worker")
            notifier.stopping("stopping every worker")
            for task in tasks:
                task.cancel()
    log.info("stopped")


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
    settings, level = parse_args(argv)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        private_dir(settings.data_dir)
    except OSError as exc:
        why = str(exc) if isinstance(exc, UnsafeFile) else exc.strerror
        print(f"stack-agent: cannot use data dir {settings.data_dir}: {why}", file=sys.stderr)
        raise SystemExit(1) from None
    check_tls(settings)
    asyncio.run(run(settings, Notifier.from_environment()))


if __name__ == "__main__":
    main()
