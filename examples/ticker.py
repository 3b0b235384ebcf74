"""A tiny worker that prints a timestamped line every 2 seconds, to show log capture.

    python3 -m examples.ticker [--interval SECONDS]

Exits 0 on SIGTERM or SIGINT. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m examples.ticker")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between lines")
    args = parser.parse_args(argv)
    # Blocked signals stay pending, so sigtimedwait is both the sleep and the stop.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    count = 0
    while True:
        count += 1
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        print(f"{now} tick {count} from pid {os.getpid()}", flush=True)
        if signal.sigtimedwait(STOP_SIGNALS, args.interval) is not None:
            print(f"tick stopped after {count} lines", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main())
