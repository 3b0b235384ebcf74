"""The one error a stackctl command raises: a line for the operator, and exit status 1.

Kept apart from the client, so that commands that never talk to the controller (`certs`,
`--help`) can raise it without loading grpc.
"""

from __future__ import annotations


class CommandError(Exception):
    """A command failed; the message is the one line stackctl prints on stderr."""


class UsageError(Exception):
    """The command line asks for what cannot be (`--all` with names, a count that is not
    one): a usage error, exit status 2. Raised before a command changes anything."""

    def __init__(self, message: str, param: str = "") -> None:
        super().__init__(message)
        self.param = param
        """The parameter at fault, as the usage line names it (`N|+N|-N`)."""
