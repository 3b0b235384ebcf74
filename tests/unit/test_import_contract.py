"""Every module of the agent and the controller is placed by the import-layer contract.

`./run test` checks the contract (pyproject's [tool.importlinter]) with lint-imports; a
forbidden contract lists its source modules by name, so a new module would escape it
unseen. Here each module must be either in the contract that keeps the wire out of that
program's core, or one of the edges named below, where the wire is decoded on purpose.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

EDGES = {
    "agent": {"session", "h2_stream", "legacy", "main", "lean"},
    "controller": {
        "admin_service", "agent_service", "status", "main", "plane", "web", "console", "election",
        "ha", "roster",
    },
}  # fmt: skip
"""Where each program meets protobuf, gRPC, etcd, TLS or HTTP (see README's Layout)."""


def contract(contract_id: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    found: dict[str, Any] = next(c for c in contracts if c["id"] == contract_id)
    return found


@pytest.mark.parametrize("program", ["agent", "controller"])
def test_each_module_is_in_the_core_contract_or_a_named_edge(program: str) -> None:
    core = contract(f"{program}-edge")
    assert {"stack.v1", "stack.wire", "grpc"} <= set(core["forbidden_modules"])
    listed = {name.rsplit(".", 1)[1] for name in core["source_modules"]}
    modules = {path.stem for path in (ROOT / "stack" / program).glob("*.py")} - {"__init__"}
    unplaced = modules - listed - EDGES[program]
    assert not unplaced, f"add stack.{program}.{sorted(unplaced)} to [{program}-edge] or EDGES"
    assert not listed & EDGES[program], "a module is either core or edge"
    assert listed <= modules, f"the contract names modules that are gone: {listed - modules}"
