"""`stack-controller`: the command line and the daemon's life cycle.

Parses the flags into ControllerSettings, opens the store (bumping its term),
serves AgentService and AdminService on one gRPC port and stops cleanly on
SIGTERM/SIGINT (agents keep their workers). Expected failures are one line on
stderr and exit status 1. Under systemd (`Type=notify`) it reports READY=1 once
the gRPC server listens, and STOPPING=1 when it begins to shut down.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from stack.controller.admin import AdminService
from stack.controller.agents import AgentService
from stack.controller.controller import Controller
from stack.controller.settings import ControllerSettings, default_data_dir
from stack.controller.store.base import StoreError
from stack.controller.store.sqlite import SqliteStore
from stack.sdnotify import Notifier
from stack.v1 import admin_pb2_grpc, agent_pb2_grpc

log = logging.getLogger("stack.controller")
PROG = "stack-controller"


class StartError(Exception):
    """The controller cannot start (port in use, store unusable)."""


def parse_args(argv: Sequence[str] | None = None) -> ControllerSettings:
    """The settings from the command line (exit 2 on a usage error)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Stack's controller: desired state, placement and the admin API."
    )
    parser.add_argument("--listen", default="127.0.0.1:7450", help="host:port to serve on")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"store directory (default {default_data_dir()})",
    )
    parser.add_argument(
        "--agent-timeout",
        type=float,
        default=10.0,
        help="seconds of silence before an agent is down",
    )
    parser.add_argument(
        "--reschedule-after",
        type=float,
        default=30.0,
        help="seconds an agent may stay down before its processes are placed elsewhere",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level on stderr",
    )
    args = parser.parse_args(argv)
    if args.agent_timeout <= 0:
        parser.error("--agent-timeout must be > 0")
    if args.reschedule_after < 0:
        parser.error("--reschedule-after must be >= 0")
    return ControllerSettings(
        listen=args.listen,
        data_dir=args.data_dir if args.data_dir is not None else default_data_dir(),
        agent_timeout=args.agent_timeout,
        reschedule_after=args.reschedule_after,
        log_level=args.log_level,
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
    notifier = notifier or Notifier(None)
    check_listen(settings.listen)
    try:
        store = SqliteStore(settings.store_path)
        term = await asyncio.to_thread(store.acquire_term)
    except StoreError as exc:
        raise StartError(str(exc)) from exc
    try:
        controller = Controller(settings, store, term)
        await controller.load()
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentService(controller), server)  # type: ignore[no-untyped-call]
        admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminService(controller), server)  # type: ignore[no-untyped-call]
        try:
            port = server.add_insecure_port(settings.listen)
        except RuntimeError as exc:
            raise StartError(f"cannot listen on {settings.listen}: {exc}") from exc
        if port == 0:
            raise StartError(f"cannot listen on {settings.listen}: address in use or invalid")
        await server.start()
        host = settings.listen.rsplit(":", 1)[0]
        print(f"{PROG}: serving on {host}:{port}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        notifier.ready(f"serving on {host}:{port}")
        try:
            async with asyncio.TaskGroup() as tg:
                watcher = tg.create_task(controller.watch_agents(), name="watch-agents")
                await stop.wait()
                log.info("stopping (agents keep their workers)")
                notifier.stopping("stopping (agents keep their workers)")
                controller.shut_down()
                await server.stop(grace=2.0)
                watcher.cancel()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> None:
    """The console entry point."""
    settings = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format=f"{PROG}: %(levelname)s %(name)s: %(message)s",
    )
    notifier = Notifier.from_environment()
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
