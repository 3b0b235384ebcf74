"""The demo: `stackctl up` runs a controller, an agent and the example stack in the foreground."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.integration.cluster import PYTHON, ROOT, _env, free_port, wait_for, worker_processes


def test_up_serves_the_example_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    text = (ROOT / "examples" / "webapp.toml").read_text().replace("8080", str(port))
    stack_file = tmp_path / "webapp.toml"
    stack_file.write_text(text)
    controller = f"127.0.0.1:{free_port()}"
    up = subprocess.Popen(
        [PYTHON, "-m", "stack.cli.main", "--controller", controller, "up", str(stack_file),
         "--data-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=ROOT,
    )  # fmt: skip
    assert up.stdout is not None
    seen: list[str] = []
    try:
        url = f"http://127.0.0.1:{port}"

        def printed_url() -> bool:
            line = up.stdout.readline()  # type: ignore[union-attr]
            seen.append(line)
            return url in line or not line

        wait_for(printed_url, 60, "the demo to print its URL")
        assert any(url in line for line in seen), "".join(seen)
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = reply.read().decode()
        assert re.search(r"hello from worker \d+ \(pid \d+\)", body), body
        assert len(worker_processes("examples.app")) == 4
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
    assert code == 0, "".join(seen) + up.stdout.read()
    assert worker_processes("examples.app") == []
    assert worker_processes("examples.ticker") == []
