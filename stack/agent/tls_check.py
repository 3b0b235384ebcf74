"""The agent's TLS files, checked by a child process: the agent never loads cryptography.

Checking a certificate (signed by the CA, valid now, matching its key, naming this
host as an agent) and explaining a failed handshake need cryptography, about 10 MiB
of RSS in a process that otherwise holds under 30, on every host of a fleet. The
agent runs `python -m stack.security.tls_probe` for them (see there) and keeps only
the PEM bytes its stream's TLS context is made of (h2_stream.client_context).

The files are re-read for every connection, so that rotated ones take effect on the
next; the child runs again only when one of them changed (device, inode, size,
mtime), so a reconnecting agent does not start a Python per attempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from stack.agent.control_signals import unblocked_for_child
from stack.agent.helpers import HelperError, run_helper
from stack.agent.reaper import Reaper
from stack.security.layout import Role
from stack.security.tls_files import TlsError, TlsFiles

PROBE = (sys.executable, "-m", "stack.security.tls_probe")
TIMEOUT = 60.0
"""Seconds a check may take (a Python start and cryptography's import, on a busy host)."""


@dataclass(frozen=True)
class Pems:
    """What the stream's TLS context is made of: the three files' bytes."""

    ca: bytes
    cert: bytes
    key: bytes

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return "Pems(...)"


def signature(files: TlsFiles) -> tuple[tuple[int, int, int, int], ...] | None:
    """What changes when a file is replaced or rewritten; None if one cannot be read."""
    try:
        found = [os.stat(path) for path in (files.ca, files.cert, files.key)]
    except OSError:
        return None
    return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in found)


def _check_argv(files: TlsFiles) -> list[str]:
    return [*PROBE, "check", Role.agent.value, str(files.ca), str(files.cert), str(files.key)]


def _checked_name(output: bytes) -> str:
    """The certificate's name from the probe's line; TlsError with its reason."""
    lines = output.decode("utf-8", "replace").strip().splitlines()
    try:
        verdict = json.loads(lines[-1])
    except (ValueError, IndexError):
        said = lines[-1][:200] if lines else "nothing"
        raise TlsError(f"the TLS check printed {said!r}, not a verdict") from None
    if "error" in verdict:
        raise TlsError(str(verdict["error"]))
    return str(verdict["name"])


def check_at_start(files: TlsFiles) -> str:
    """The name the agent certificate is for; TlsError saying what is wrong. Blocking:
    for start-up, before the reaper and the event loop run."""
    with unblocked_for_child():
        done = subprocess.run(
            _check_argv(files), stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT
        )
    return _checked_name(done.stdout or done.stderr)


class TlsChecker:
    """The files' bytes for each connection, checked again whenever they changed."""

    def __init__(self, files: TlsFiles, reaper: Reaper) -> None:
        self.files = files
        self._reaper = reaper
        self._checked: tuple[tuple[int, int, int, int], ...] | None = None

    async def pems(self) -> Pems:
        """The files as they are now; TlsError if they changed and fail the check."""
        now = signature(self.files)
        if now is None or now != self._checked:
            try:
                output, _ = await run_helper(_check_argv(self.files), self._reaper, TIMEOUT)
            except HelperError as exc:
                raise TlsError(f"TLS check: {exc}") from None
            _checked_name(output)
            self._checked = now
        try:
            return Pems(
                self.files.ca.read_bytes(),
                self.files.cert.read_bytes(),
                self.files.key.read_bytes(),
            )
        except OSError as exc:
            raise TlsError(f"cannot read {exc.filename}: {exc.strerror}") from None

    async def diagnose(self, address: str, peer: str) -> str | None:
        """Why a TLS connection to `address` fails (tls.diagnose, in the child)."""
        f = self.files
        argv = [*PROBE, "diagnose", address, peer, str(f.ca), str(f.cert), str(f.key)]
        try:
            output, _ = await run_helper(argv, self._reaper, TIMEOUT)
            reason = json.loads(output.decode("utf-8", "replace").strip().splitlines()[-1])
        except (HelperError, ValueError, IndexError):
            return None
        found = reason.get("reason")
        return None if found is None else str(found)
