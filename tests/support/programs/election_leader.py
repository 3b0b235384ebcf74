"""A controller-shaped leader for the election tests: campaign, then write while leading.

Usage: election_leader.py ENDPOINTS PREFIX ADDRESS TTL
Prints one line per fact, flushed: "leading TOKEN", "wrote N", "refused: ...",
"lost". Its work loop writes `stack/writer` = "ADDRESS:N" through the etcd
store with its token, so a test can SIGSTOP it and see what etcd accepts after.
"""

from __future__ import annotations

import asyncio
import sys

from stack.controller.election import Election
from stack.controller.store.base import StaleTerm, StoreError
from stack.controller.store.etcd import EtcdStore
from stack.controller.store.etcd_client import leader_key


def say(line: str) -> None:
    print(line, flush=True)


async def main(endpoints: list[str], prefix: str, address: str, ttl: float) -> None:
    store = EtcdStore(endpoints, prefix)
    election = Election(endpoints, leader_key(prefix), address, ttl)

    async def work(token: int) -> None:
        say(f"leading {token}")
        n = 0
        while True:
            n += 1
            try:
                await asyncio.to_thread(
                    store.commit, token, {"stack/writer": f"{address}:{n}".encode()}, []
                )
                say(f"wrote {n}")
            except (StaleTerm, StoreError) as exc:
                say(f"refused: {exc}")
            await asyncio.sleep(0.05)

    await election.lead(work)
    say("lost")
    election.close()
    store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].split(","), sys.argv[2], sys.argv[3], float(sys.argv[4])))
