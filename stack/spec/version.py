"""One version of a watcher's processes: the spec they run, at a restart token, with
the sockets they inherit.

The controller's rolling changes pin worker ids to versions and compare them by label;
the agent names the version of every process it starts with the same label, so that
both sides agree on which processes are which without comparing whole specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from stack.spec.model import SocketSpec, WatcherSpec, version_fingerprint, version_label


@dataclass(frozen=True)
class WatcherVersion:
    """A spec at a restart token, with the sockets its processes inherit (in fd order,
    as they were when it was current)."""

    spec: WatcherSpec
    restart_token: int
    sockets: tuple[SocketSpec, ...] = ()

    @cached_property
    def label(self) -> str:
        """How agents name the version of a process (ProcessStatus.version)."""
        return version_label(self.restart_token, version_fingerprint(self.spec, self.sockets))
