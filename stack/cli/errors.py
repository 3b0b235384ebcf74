"""The one error a stackctl command raises: a line for the operator, and exit status 1.

Kept apart from the client, so that commands that never talk to the controller (`certs`,
`--help`) can raise it without loading grpc.
"""

from __future__ import annotations


class CommandError(Exception):
    """A command failed; the message is the one line stackctl prints on stderr."""
