"""Readiness and status notifications to a service manager (systemd's `Type=notify`).

Under `Type=notify`, systemd passes the address of a unix datagram socket in
`$NOTIFY_SOCKET` and considers the service started only when the main process
sends `READY=1` there. Other lines (`STATUS=...`, `STOPPING=1`) show up in
`systemctl status`. The protocol is one datagram of newline-separated
`KEY=VALUE` lines, so it is done here with the standard library instead of a
dependency. A leading "@" in the address names an abstract socket.

Both daemons use this module, which is why it sits outside `agent` and
`controller` (they never import each other). Without `$NOTIFY_SOCKET` (a
daemon started by hand, or by a test) every call is a no-op. A failed send is
logged, never raised: the service manager's view must not bring a daemon down.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"


def socket_address(value: str) -> str | None:
    """The address to send to for a `$NOTIFY_SOCKET` value, or None when unusable.

    systemd uses an absolute path or an abstract name written with a leading "@";
    anything else (a relative path, vsock addresses of newer systemd) is not supported.
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends notifications to one service manager socket (or nowhere)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        """The socket address (abstract names start with NUL), None when disabled."""

    @classmethod
    def from_environment(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """The notifier `$NOTIFY_SOCKET` asks for.

        With `unset` (the default) the variable is removed from `environ`, so that
        workers started with `copy_env` do not inherit it and send their own
        `READY=1` in the daemon's name.
        """
        env: MutableMapping[str, str] = os.environ if environ is None else environ
        value = env.pop(ENV, None) if unset else env.get(ENV)
        if not value:
            return cls(None)
        address = socket_address(value)
        if address is None:
            log.warning("ignoring %s=%r: not an absolute path or @abstract name", ENV, value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def env_value(self) -> str:
        """The `$NOTIFY_SOCKET` value naming this socket ("" when disabled): what a daemon
        that re-executes itself passes to its next image."""
        if self.address is None:
            return ""
        return "@" + self.address[1:] if self.address.startswith("\0") else self.address

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send `KEY=VALUE` lines in one datagram; True when it was delivered."""
        if self.address is None:
            return False
        payload = "".join(f"{key}={_one_line(value)}\n" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(payload.encode(), self.address)
        except OSError as exc:
            shown = self.address.replace("\0", "@", 1)
            log.warning("cannot notify the service manager at %s: %s", shown, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        """The daemon serves: systemd finishes starting the unit."""
        return self.send({"READY": "1", "STATUS": status})

    def status(self, status: str) -> bool:
        """A one-line state shown by `systemctl status`."""
        return self.send({"STATUS": status})

    def reloading(self, status: str) -> bool:
        """The daemon reloads (re-executes itself); READY=1 follows once it serves again."""
        usec = str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
        return self.send({"RELOADING": "1", "MONOTONIC_USEC": usec, "STATUS": status})

    def stopping(self, status: str) -> bool:
        """The daemon is shutting down on purpose (not a crash)."""
        return self.send({"STOPPING": "1", "STATUS": status})


def _one_line(value: str) -> str:
    """A value must not break the line protocol."""
    return " ".join(value.splitlines())
