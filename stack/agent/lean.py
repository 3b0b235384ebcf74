"""What the agent's process keeps out of its memory, decided before anything is imported.

The agent runs on every host of a fleet, so each MiB it maps is paid many times over.
asyncio imports `ssl` whether or not anything uses it, and `hashlib` loads `_hashlib`:
together they map OpenSSL's libcrypto and libssl, about 4.5 MiB of the agent's RSS.
A plaintext agent never uses either: the certificate checks run in a child process
(see tls_check.py), and hashlib falls back to CPython's built-in sha256 (asyncio, hmac
and hashlib all treat a missing module as absent, which is what they were written
for). An agent that dials its controller with TLS lets them in (`let_in_openssl`) when
it first dials: its stream does TLS with ssl on memory buffers (h2_stream.py), never
through asyncio, which was imported without it. So does an agent given
`--metrics-listen`: prometheus_client imports ssl.

This must run before the first `import asyncio`, so only the agent's own entry points
call it (`python -m stack.agent.main` and the `stack-agent` script): a test or a tool
that imports the agent's modules keeps its `ssl`.
"""

from __future__ import annotations

import sys

KEPT_OUT = ("ssl", "_ssl", "_hashlib")
"""Modules the agent's process does without: importing one raises ImportError."""


def keep_out_openssl() -> None:
    """Make the modules of KEPT_OUT unimportable in this process, unless already loaded."""
    for name in KEPT_OUT:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # None: "not importable"


def let_in_openssl() -> None:
    """Undo keep_out_openssl for a feature that imports ssl: the TLS of the stream to the
    controller, and `--metrics-listen` (its prometheus_client imports ssl at module level),
    pay the 4.5 MiB, nothing else."""
    for name in KEPT_OUT:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def main() -> None:
    """The `stack-agent` script: keep OpenSSL out, then run the agent."""
    keep_out_openssl()
    from stack.agent.main import main as run

    run()
