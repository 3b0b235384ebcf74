"""`stack-controller`: the command line and the daemon's life cycle.

Parses the flags into ControllerSettings, opens the store (bumping its term),
serves AgentService and AdminService on one gRPC port and stops cleanly on
SIGTERM/SIGINT (agents keep their workers). Expected failures are one line on
stderr and exit status 1.

It always serves a unix socket in its data dir that only its user (and
`--socket-group`) can open: the certificate-less way in, for stackctl and an agent
on the same host (see stack.security.local). It accepts that socket itself, checks
each peer's credentials and relays the allowed ones to gRPC (local_relay.py). With
`--tls-dir` (or `--ca/--cert/--key`) it also serves a TCP port with mutual TLS, where every call
passes the role check (stack.security.roles). A plaintext TCP port, even on
loopback, would let any user who reaches it run commands as root on every agent,
so it takes `--insecure`, and a warning says so at start.

Under systemd (`Type=notify`) it reports READY=1 once the gRPC server listens,
and STOPPING=1 when it begins to shut down.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import grp
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import grpc

from stack import aio
from stack.controller import web
from stack.controller.admin_service import AdminService, CountingInterceptor
from stack.controller.agent_service import AgentService
from stack.controller.containment import AgentLimits
from stack.controller.events import MAX_EVENT_HISTORY, EventSettings
from stack.controller.local_access import LocalAccess
from stack.controller.local_relay import LocalRelay
from stack.controller.plane import ControlPlane
from stack.controller.settings import ControllerSettings, default_data_dir
from stack.controller.store.base import StoreError
from stack.sdnotify import Notifier
from stack.security.certs import CertDir, Role
from stack.security.limits import GRPC_SIZE_OPTIONS
from stack.security.local import SOCKET_NAME, LocalSocket, LocalSocketError
from stack.security.roles import RoleInterceptor
from stack.security.tls import TlsError, TlsMaterial, load, resolve, server_credentials
from stack.spec.model import MAX_PROCESSES
from stack.usage import HelpParser, standard_options
from stack.v1 import admin_pb2_grpc, agent_pb2_grpc

log = logging.getLogger("stack.controller")
PROG = "stack-controller"

DEFAULT_LISTEN = "127.0.0.1:7450"
"""The TCP port served with TLS or --insecure when --listen is not given."""

KEEPALIVE_OPTIONS = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
    ("grpc.http2.max_ping_strikes", 0),
)
"""Let agents ping every couple of seconds (how they notice a hung controller)."""

PENDING_CALLS = 20_000
"""Calls gRPC's core holds for the event loop to take (twice the 10,000 agents of
`bench/many_agents.py`). The asyncio server takes them one at a time, one per pass of
a loop that a connect storm keeps busy, so the calls of a storm wait in core's queue;
gRPC's defaults refuse a growing share of them past 1,000 waiting and all past 3,000
(the agent sees CANCELLED, or INTERNAL when it was writing its Hello, and dials again,
which only makes the storm longer). Past this bound a flood of calls is still refused."""
PENDING_OPTIONS = (
    ("grpc.server.max_pending_requests", PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", PENDING_CALLS),
)
SERVER_OPTIONS = (
    ("grpc.so_reuseport", 0),
    *GRPC_SIZE_OPTIONS,
    *KEEPALIVE_OPTIONS,
    *PENDING_OPTIONS,
)
"""The controller's gRPC server options."""

GC_THRESHOLDS = (50_000, 20, 10)
"""The cyclic collector's thresholds in the controller (Python's are 700, 10, 10). With
10,000 agents heartbeating, the defaults ran a young collection 38 times a second and a
full one, over every object of 10,000 sessions (about a second each), every few seconds:
47 % of the controller's time (a gc.callbacks probe in the controller during
`bench/many_agents.py --agents 10000`). Reference counting frees what a heartbeat
replaces; the collector only has cycles to find (ended streams, their tasks): a young
collection every 50,000 objects, and a full one after 10 middle ones (10 million objects,
minutes apart at that rate), so that the cycles that reach the old generation are still
freed. Objects made before serving are frozen out of it."""


class StartError(Exception):
    """The controller cannot start (port in use, store unusable)."""


def parse_args(argv: Sequence[str] | None = None) -> ControllerSettings:
    """The settings from the command line (exit 2 on a usage error)."""
    parser = HelpParser(
        prog=PROG,
        description="Stack's controller: keeps the desired state, places workers on the "
        "agents, gives each agent its share and serves stackctl. It always serves a local "
        "socket for its own user; with TLS (or --insecure) a TCP port too.",
        add_help=False,
    )
    parser.examples = (
        "# One controller, agents and stackctl on other hosts with TLS",
        "stack-controller --tls-dir /etc/stack/tls --listen 0.0.0.0:7450",
        "",
        "# One of three controllers sharing an etcd cluster",
        "stack-controller --store etcd://h1:2379,h2:2379,h3:2379/stack \\",
        "    --advertise h1:7450 --listen 0.0.0.0:7450 --tls-dir /etc/stack/tls",
    )
    parser.add_argument(
        "--listen",
        default=None,
        metavar="HOST:PORT",
        help=f"The TCP port for agents and stackctl on other hosts, with TLS or --insecure "
        f"(default {DEFAULT_LISTEN} then).",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"Where the store and the local socket live (default {default_data_dir()}).",
    )
    parser.add_argument(
        "--socket",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"The local socket, for its user (and --socket-group) only "
        f"(default DATA_DIR/{SOCKET_NAME}).",
    )
    parser.add_argument(
        "--socket-group",
        type=_group,
        default=None,
        metavar="GROUP",
        help="A group whose members may use the local socket too (socket 0660, its "
        "directory 0750).",
    )
    parser.add_argument(
        "--agent-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="Seconds of silence before an agent is down (default 10).",
    )
    parser.add_argument(
        "--max-heartbeats-per-second",
        type=float,
        default=500.0,
        metavar="RATE",
        help="Heartbeats a second all agents together may send at most: a fleet larger "
        "than RATE x 2 s is told a longer interval, and an agent is down only after "
        "as many intervals of silence as the agent timeout holds at 2 s (default 500: "
        "1,000 agents keep 2 s and 10 s).",
    )
    parser.add_argument(
        "--reschedule-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="Seconds an agent may stay down before its processes are placed elsewhere "
        "(default 30).",
    )
    parser.add_argument(
        "--max-processes",
        type=int,
        default=MAX_PROCESSES,
        metavar="N",
        help=f"Most processes one watcher may have (1 to {MAX_PROCESSES}; "
        f"default {MAX_PROCESSES}).",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        metavar="LEVEL",
        help="What the controller logs on stderr (default INFO).",
    )
    standard_options(parser)
    ha = parser.add_argument_group("high availability")
    ha.add_argument(
        "--store",
        default="sqlite",
        metavar="URL",
        help="sqlite (embedded, the default) or etcd://HOST:PORT[,HOST:PORT...][/PREFIX].",
    )
    ha.add_argument(
        "--advertise",
        default="",
        metavar="HOST:PORT",
        help="Where agents and stackctl reach this controller (default: --listen).",
    )
    ha.add_argument(
        "--lease-ttl",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="The leader's etcd lease: a hung leader is replaced within about this (default 5).",
    )
    for flag, what in (
        ("--etcd-ca", "The CA of a TLS-enabled etcd."),
        ("--etcd-cert", "Our client certificate for etcd."),
        ("--etcd-key", "The key of --etcd-cert."),
    ):
        ha.add_argument(flag, type=Path, default=None, metavar="PATH", help=what)
    history = parser.add_argument_group("event history")
    history.add_argument(
        "--event-history",
        type=int,
        default=EventSettings.capacity,
        metavar="N",
        help=f"Events kept, in memory and in the store (default {EventSettings.capacity:,}).",
    )
    history.add_argument(
        "--agent-event-rate",
        type=float,
        default=EventSettings.agent_rate,
        metavar="N",
        help=f"Events a second one agent may send, in bursts of 10 times that; the excess "
        f"is counted and dropped (default {EventSettings.agent_rate:g}).",
    )
    limits = parser.add_argument_group("what one agent may send")
    defaults = AgentLimits()
    limits.add_argument(
        "--agent-log-rate",
        type=_rate,
        default=defaults.log_byte_rate,
        metavar="BYTES",
        help=f"Output bytes a second one agent may ship (default {defaults.log_byte_rate:.0f}).",
    )
    web = parser.add_argument_group("metrics and web console")
    web.add_argument(
        "--metrics-listen",
        default="",
        metavar="HOST:PORT",
        help="Serve Prometheus metrics at /metrics here: HTTPS with TLS (viewer and admin "
        "certificates), else plaintext on a loopback address (elsewhere with --insecure).",
    )
    web.add_argument(
        "--http-listen",
        default="",
        metavar="HOST:PORT",
        help="Serve the web console (and /metrics) here: HTTPS with TLS (viewers read, "
        "admins act), plaintext only with --insecure.",
    )
    web.add_argument(
        "--metrics-per-process",
        action="store_true",
        help="Add series for each worker process (CPU, memory, start time): one set per "
        "process, so mind the number of series on a large fleet.",
    )
    tls = parser.add_argument_group("mutual TLS")
    tls.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="A `stackctl certs` directory: ca.crt, controller.crt and .key.",
    )
    tls.add_argument(
        "--ca", type=Path, metavar="PATH", help="The CA agents and users are signed by."
    )
    tls.add_argument("--cert", type=Path, metavar="PATH", help="This controller's certificate.")
    tls.add_argument("--key", type=Path, metavar="PATH", help="This controller's private key.")
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="Serve the TCP port in plaintext: anyone who reaches it, any local user "
        "included, controls the fleet.",
    )
    args = parser.parse_args(argv)
    if args.agent_timeout <= 0:
        parser.error("--agent-timeout must be > 0")
    if not args.max_heartbeats_per_second > 0:
        parser.error("--max-heartbeats-per-second must be > 0")
    if args.reschedule_after < 0:
        parser.error("--reschedule-after must be >= 0")
    if args.lease_ttl < 1:
        parser.error("--lease-ttl must be >= 1 (etcd leases last whole seconds)")
    if (args.etcd_cert is None) != (args.etcd_key is None):
        parser.error("--etcd-cert and --etcd-key go together")
    if args.etcd_cert is not None and args.etcd_ca is None:
        parser.error("--etcd-cert needs --etcd-ca (the CA etcd's certificates are signed by)")
    if not 1 <= args.max_processes <= MAX_PROCESSES:
        parser.error(f"--max-processes must be between 1 and {MAX_PROCESSES}")
    if not 1 <= args.event_history <= MAX_EVENT_HISTORY:
        parser.error(f"--event-history must be between 1 and {MAX_EVENT_HISTORY:,}")
    if not args.agent_event_rate > 0:
        parser.error("--agent-event-rate must be > 0")
    pair = CertDir(args.tls_dir).pair(Role.controller, "") if args.tls_dir else None
    try:
        tls_files = resolve(args.tls_dir, args.ca, args.cert, args.key, pair)
    except TlsError as exc:
        parser.error(str(exc))
    listen = args.listen
    if listen is None:
        listen = DEFAULT_LISTEN if tls_files is not None or args.insecure else ""
    return ControllerSettings(
        listen=listen,
        data_dir=args.data_dir if args.data_dir is not None else default_data_dir(),
        socket=args.socket,
        socket_group=args.socket_group,
        agent_timeout=args.agent_timeout,
        reschedule_after=args.reschedule_after,
        max_heartbeats=args.max_heartbeats_per_second,
        store=args.store,
        advertise=args.advertise,
        lease_ttl=args.lease_ttl,
        etcd_ca=args.etcd_ca,
        etcd_cert=args.etcd_cert,
        etcd_key=args.etcd_key,
        log_level=args.log_level,
        tls=tls_files,
        insecure=args.insecure,
        max_processes=args.max_processes,
        events=EventSettings(
            capacity=args.event_history,
            agent_rate=args.agent_event_rate,
            agent_burst=max(1, round(10 * args.agent_event_rate)),
        ),
        agent_limits=replace(defaults, log_byte_rate=args.agent_log_rate),
        metrics_listen=args.metrics_listen,
        http_listen=args.http_listen,
        metrics_per_process=args.metrics_per_process,
    )


def load_tls(settings: ControllerSettings) -> TlsMaterial | None:
    """The controller's checked TLS material, or None for plaintext; StartError if unusable."""
    if settings.tls is None:
        return None
    try:
        return load(settings.tls, (Role.controller,))
    except TlsError as exc:
        raise StartError(str(exc)) from None


def check_exposure(settings: ControllerSettings, tls: TlsMaterial | None) -> None:
    """Refuse a plaintext TCP port (loopback included) unless --insecure (then warn)."""
    if tls is not None or not settings.listen:
        return
    if not settings.insecure:
        raise StartError(
            f"refusing to serve plaintext on {settings.listen}: any user who reaches it could "
            f"run commands as root on every agent; use --tls-dir, or --insecure (on this "
            f"host, stackctl needs neither: unix:{settings.socket_path})"
        )
    log.warning(
        "INSECURE: serving plaintext on %s: anyone who reaches it, any local user included, "
        "can run commands on every agent",
        settings.listen,
    )


def check_listen(listen: str) -> None:
    """Fail early, with a clear line, when the address cannot be bound.

    gRPC would only log its own multi-line error; a plain bind first gives
    the operator one line. (gRPC's own bind below still catches a race.)
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        raise StartError(f"cannot listen on {listen}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise StartError(f"cannot listen on {listen}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise StartError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc


async def serve(settings: ControllerSettings, notifier: Notifier | None = None) -> None:
    """Run the controller until SIGTERM or SIGINT."""
    # Store calls run in threads (asyncio.to_thread): all of them from the start.
    asyncio.get_running_loop().set_default_executor(aio.prestarted_pool("blocking"))
    tls = load_tls(settings)
    check_exposure(settings, tls)
    try:
        web.rights(settings, tls)
    except web.WebError as exc:
        raise StartError(str(exc)) from None
    for address in [settings.listen, *(port.address for port in web.ports(settings))]:
        if address:
            check_listen(address)
    local = LocalSocket(settings.socket_path, settings.socket_group)
    try:
        try:
            local.prepare()  # first: a second controller must not take the store's term
            plane = await ControlPlane.open(settings)
        except (LocalSocketError, StoreError) as exc:
            raise StartError(str(exc)) from None
        try:
            await _serve(plane, local, tls, notifier or Notifier(None))
        except LocalSocketError as exc:
            raise StartError(str(exc)) from None
        finally:
            plane.close()
    finally:
        local.remove()


async def _serve(
    plane: ControlPlane, local: LocalSocket, tls: TlsMaterial | None, notifier: Notifier
) -> None:
    """Serve the local socket (and the TCP port, the HTTP ports) until SIGTERM or SIGINT."""
    controller = plane.controller
    settings = controller.settings
    try:
        web_servers = web.servers(controller, tls)
    except web.WebError as exc:
        raise StartError(str(exc)) from None
    # With TLS, calls on the TCP port pass the role check; the local socket's
    # callers are its owner (and group), trusted as admins (see roles.py).
    counting = CountingInterceptor(controller.metrics.admin_requests)
    interceptors = [counting, RoleInterceptor()] if tls is not None else [counting]
    server = grpc.aio.server(
        options=list(SERVER_OPTIONS),
        interceptors=interceptors,
    )
    agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentService(controller.sessions), server)  # type: ignore[no-untyped-call]
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminService(controller), server)  # type: ignore[no-untyped-call]
    _add_port(server, f"unix:{local.upstream}", LOCAL_CREDENTIALS)
    listener = local.listen()
    local.secure()
    access = LocalAccess(owner_uid=os.geteuid(), group=settings.socket_group)
    relay = LocalRelay(listener, local.upstream, access)
    served = [f"{local.address} (mode {local.modes[1]:o}, peers checked)"]
    if settings.listen:
        credentials = server_credentials(tls) if tls is not None else None
        port = _add_port(server, settings.listen, credentials)
        host = settings.listen.rsplit(":", 1)[0]
        how = f"with mutual TLS ({tls.files.cert})" if tls is not None else "INSECURE"
        served.append(f"{host}:{port} {how}")
    await server.start()
    for where in served:
        print(f"{PROG}: serving on {where}", file=sys.stderr, flush=True)
    for http in web_servers:
        try:
            port = await http.bind()
        except OSError as exc:
            await server.stop(None)
            listener.close()
            raise StartError(f"cannot listen on {http.address}: {exc.strerror or exc}") from exc
        how = "HTTPS" if tls is not None else "plaintext"
        where = f"{http.address.rpartition(':')[0]}:{port}"
        print(f"{PROG}: serving the {http.name} on {where} ({how})", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    notifier.ready(f"serving on {' and '.join(served)}")
    try:
        async with aio.TaskGroup() as tg:
            running = aio.start(tg, plane.run(), "control-plane", forever=True, logger=log)
            relaying = aio.start(
                tg, relay.run(), "relay the local socket", forever=True, logger=log
            )
            serving = [
                aio.start(tg, http.run(), f"serve the {http.name}", forever=True, logger=log)
                for http in web_servers
            ]
            await stop.wait()
            log.info("stopping (agents keep their workers)")
            notifier.stopping("stopping (agents keep their workers)")
            controller.shut_down()
            for task in serving:
                task.cancel()
            relay.stop_accepting()  # calls under way end through it within the grace
            await server.stop(grace=2.0)
            relaying.cancel()
            running.cancel()
    finally:
        listener.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


LOCAL_CREDENTIALS = grpc.local_server_credentials(grpc.LocalConnectionType.UDS)
"""The local socket's: no certificates; calls over it are marked local (see roles.py)."""


def _add_port(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None
) -> int:
    """Bind `address` (plaintext when `credentials` is None); StartError if it cannot be."""
    port: int
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise StartError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise StartError(f"cannot listen on {address}: address in use or invalid")
    return port


def _rate(text: str) -> float:
    """A rate per second, more than 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _group(text: str) -> int:
    """A group name or number, as a gid (argparse type)."""
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        pass
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"no group {text!r} on this host")


def main(argv: Sequence[str] | None = None) -> None:
    """The console entry point."""
    settings = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format=f"{PROG}: %(levelname)s %(name)s: %(message)s",
    )
    notifier = Notifier.from_environment()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()  # modules, classes and settings: never garbage, never scanned again
    try:
        asyncio.run(serve(settings, notifier))
    except StartError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
