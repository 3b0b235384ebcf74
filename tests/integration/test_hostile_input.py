"""Careless and hostile input over real gRPC: names, process caps, message sizes, secrets
and uid/gid; and renewing the controller's certificate (the Security section's recipe).

One plaintext controller (with `--max-processes 50`) and one agent serve most of the
module; the secrets-over-TLS cases start a TLS stack of their own.
"""

from __future__ import annotations

import os
import pwd
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from stack.security.limits import MAX_MESSAGE_BYTES
from stack.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc
from tests.support.cluster import Cluster
from tests.support.harness import channel as open_channel
from tests.support.processes import AGENT, CONTROLLER, ROOT, stack_env
from tests.support.tls import TlsStack, make_tls_dir
from tests.support.wait import wait_for

RULE = "must match [A-Za-z0-9_.-]{1,64}"
SECRETS = """
[watchers.app]
cmd = "sleep 3600"
[watchers.app.env]
DB_PASSWORD = "hunter2-pw"
api_token = "tok-42-secret"
PLAIN = "visible-value"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("hostile") / "stack")
    running.controller.argv += ["--max-processes", "50"]
    try:
        yield running.start()
    finally:
        running.close()


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if hasattr(result, "__iter__"):
            list(result)
    return caught.value


def answers_status(cluster: Cluster) -> bool:
    return cluster.status().generation >= 0


# -- the process cap ---------------------------------------------------------------------


def test_scale_and_apply_above_max_processes_are_refused_with_one_line(
    cluster: Cluster,
) -> None:
    cluster.apply('[watchers.capped]\ncmd = "sleep 3600"\nnumprocesses = 0\n', "capped.toml")
    scale = cluster.stackctl("scale", "capped", "51")
    assert (scale.code, scale.err) == (
        1,
        "stackctl: scale capped: count must be between 0 and 50, got 51\n",
    )
    (cluster.root / "big.toml").write_text(
        '[watchers.capped]\ncmd = "sleep 3600"\nnumprocesses = 60\n'
    )
    apply = cluster.stackctl("apply", "big.toml")
    assert (apply.code, apply.err) == (
        1,
        "stackctl: big.toml: watchers.capped.numprocesses: must be <= 50 "
        "(the controller's --max-processes), got 60\n",
    )
    err = rpc_error(
        lambda: cluster.admin().Scale(admin_pb2.ScaleRequest(watcher="capped", count=10**9))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [w.numprocesses for w in cluster.status("capped").watchers] == [0]


def test_the_controller_refuses_a_max_processes_it_cannot_honour(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CONTROLLER, "--max-processes", "10001",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=stack_env(), cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == "stack-controller: --max-processes must be between 1 and 10000\n"


# -- names ---------------------------------------------------------------------------------


def name_calls(admin: admin_pb2_grpc.AdminServiceStub, name: str) -> dict[str, Callable[[], Any]]:
    """Every AdminService call that takes a watcher name, with `name`."""
    watchers = admin_pb2.WatchersRequest(watchers=["ok", name])
    return {
        "Scale": lambda: admin.Scale(admin_pb2.ScaleRequest(watcher=name, count=1), timeout=5),
        "Start": lambda: admin.Start(watchers, timeout=5),
        "Stop": lambda: admin.Stop(watchers, timeout=5),
        "Restart": lambda: admin.Restart(watchers, timeout=5),
        "Reload": lambda: admin.Reload(watchers, timeout=5),
        "Reset": lambda: admin.Reset(watchers, timeout=5),
        "Signal": lambda: admin.Signal(
            admin_pb2.SignalRequest(watcher=name, signal="HUP"), timeout=5
        ),
        "Remove": lambda: admin.Remove(admin_pb2.RemoveRequest(watcher=name), timeout=5),
        "Status": lambda: admin.Status(admin_pb2.StatusRequest(watcher=name), timeout=5),
        "Get": lambda: admin.Get(admin_pb2.GetRequest(watcher=name), timeout=5),
        "Logs": lambda: admin.Logs(admin_pb2.LogsRequest(watcher=name, lines=1), timeout=5),
        "Events": lambda: admin.Events(admin_pb2.EventsRequest(watcher=name), timeout=5),
        "Rebalance": lambda: admin.Rebalance(admin_pb2.RebalanceRequest(watcher=name), timeout=5),
    }


@pytest.mark.parametrize("bad", ["a b", "../../etc/passwd", "x" * 65, ""], ids=repr)
def test_a_malformed_watcher_name_is_invalid_argument_in_every_call(
    cluster: Cluster, bad: str
) -> None:
    cluster.apply('[watchers.ok]\ncmd = "sleep 3600"\nnumprocesses = 0\n', "ok.toml")
    shown = bad if len(bad) <= 64 else bad[:64] + "..."
    for method, call in name_calls(cluster.admin(), bad).items():
        if method in ("Status", "Events") and not bad:
            continue  # an empty name there means "all watchers"
        err = rpc_error(call)
        assert (method, err.code(), err.details()) == (
            method,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"watcher name {shown!r} {RULE}",
        )


def test_a_well_formed_unknown_watcher_is_still_not_found(cluster: Cluster) -> None:
    for method, call in name_calls(cluster.admin(), "nope").items():
        err = rpc_error(call)
        assert (method, err.code()) == (method, grpc.StatusCode.NOT_FOUND), err.details()


def test_a_malformed_host_id_is_refused_by_drain_and_by_agent_service(cluster: Cluster) -> None:
    admin = cluster.admin()
    for call in (admin.Drain, admin.Undrain):
        err = rpc_error(lambda call=call: call(admin_pb2.DrainRequest(host_id="h 1"), timeout=5))
        assert (err.code(), err.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            f"host id 'h 1' {RULE}",
        )
    channel = open_channel(cluster.address)
    try:
        stub = agent_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(host_id="../h1"))
        err = rpc_error(lambda: stub.Connect(iter([hello]), timeout=5))
    finally:
        channel.close()
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"host id '../h1' {RULE}",
    )
    assert [a.host_id for a in admin.Agents(admin_pb2.AgentsRequest(), timeout=5).agents] == ["h1"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host-id", "web 1"], f"argument --host-id: host id 'web 1' {RULE}"),
        (["--host-id", ""], f"argument --host-id: host id '' {RULE}"),
        (["--label", "zo/ne=a"], f"argument --label: label key 'zo/ne' {RULE}"),
    ],
)
def test_the_agent_refuses_a_bad_host_id_or_label_key_with_exit_2(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    proc = subprocess.run(
        [*AGENT, "--data-dir", str(tmp_path), *flags],
        capture_output=True, text=True, env=stack_env(), cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (2, f"stack-agent: {message}\n")
    assert not list(tmp_path.iterdir()), "nothing started"


# -- message sizes -------------------------------------------------------------------------


def test_an_oversized_request_is_resource_exhausted_and_the_controller_keeps_serving(
    cluster: Cluster,
) -> None:
    big = MAX_MESSAGE_BYTES + 1024
    # A client that would send it: the controller's own cap must refuse it.
    channel = open_channel(
        cluster.address, options=[("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES)]
    )
    try:
        admin = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        # Under the cap (and over gRPC's 4 MiB default): served.
        fits = "#" * (MAX_MESSAGE_BYTES // 2) + "\n"
        dry = admin.Apply(admin_pb2.ApplyRequest(content=fits, dry_run=True), timeout=10)
        assert not dry.applied
        request = admin_pb2.ApplyRequest(filename="huge.toml", content="#" * big)
        err = rpc_error(lambda: admin.Apply(request, timeout=10))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        agents = agent_pb2_grpc.AgentServiceStub(channel)  # type: ignore[no-untyped-call]
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(host_id="h9", address="a" * big))
        err = rpc_error(lambda: agents.Connect(iter([hello]), timeout=10))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()
    assert answers_status(cluster)
    assert cluster.agent_state() == "ready", "the real agent keeps its session"
    # stackctl refuses to send it at all, in one line.
    (cluster.root / "huge.toml").write_text("#" * big)
    result = cluster.stackctl("apply", "huge.toml")
    assert result.code == 1 and result.err.count("\n") == 1, result
    assert "Traceback" not in result.err


# -- secrets -------------------------------------------------------------------------------


def test_export_masks_secrets_unless_asked_and_show_secrets_round_trips(
    cluster: Cluster,
) -> None:
    cluster.apply(SECRETS, "secrets.toml")
    masked = cluster.stackctl("export", check=True).out
    assert 'DB_PASSWORD = "********"' in masked and 'api_token = "********"' in masked
    assert "hunter2" not in masked and "tok-42" not in masked
    assert 'PLAIN = "visible-value"' in masked

    full = cluster.stackctl("export", "--show-secrets", check=True).out
    assert 'DB_PASSWORD = "hunter2-pw"' in full and 'api_token = "tok-42-secret"' in full
    (cluster.root / "exported.toml").write_text(full)
    again = cluster.stackctl("-o", "json", "apply", "exported.toml", check=True).json()
    assert (again["applied"], again.get("changes", [])) == (False, [])

    # Applying the masked export would replace the secrets: the dry run says so.
    (cluster.root / "masked.toml").write_text(masked)
    dry = cluster.stackctl("apply", "--dry-run", "masked.toml", check=True).out
    assert "env.DB_PASSWORD: (secret) changed" in dry
    assert "hunter2" not in dry


def test_status_and_get_never_show_a_secret_value(cluster: Cluster) -> None:
    cluster.apply(SECRETS, "secrets.toml")
    cluster.wait_running("app", 1)
    shown = [
        cluster.stackctl(*args, check=True).out
        for args in (
            ("status",),
            ("-o", "json", "status"),
            ("status", "app"),
            ("-o", "json", "status", "app"),
            ("get", "app"),
            ("-o", "json", "get", "app"),
        )
    ]
    for out in shown:
        assert "hunter2" not in out and "tok-42" not in out, out
    assert "visible-value" in shown[4], "get shows what is not secret"


LEAKY = """
[watchers.leaky]
cmd = "sh -c 'exec sleep 3600' leaky $(circus.env.DB_PASSWORD) $(circus.env.DATABASE)"
args = ["--dsn", "postgres://app:url-pw-77@db/app"]
[watchers.leaky.env]
DB_PASSWORD = "hunter2-pw"
DATABASE = "mysql://root:env-url-pw-88@db/x"
"""
LEAKED = ("hunter2-pw", "url-pw-77", "env-url-pw-88")


def test_apply_warns_of_secrets_on_the_command_line_and_no_view_shows_a_url_password(
    cluster: Cluster,
) -> None:
    (cluster.root / "leaky.toml").write_text(LEAKY)
    applied = cluster.stackctl("apply", "--yes", "leaky.toml", check=True)
    ps = "every user of the host can read it in ps"
    warnings = [line for line in applied.out.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: watchers.leaky.cmd: $(circus.env.DB_PASSWORD) puts the secret DB_PASSWORD "
        f"on the command line: {ps}",
        "warning: watchers.leaky.cmd: $(circus.env.DATABASE) puts a URL with a password on "
        f"the command line: {ps}",
        f"warning: watchers.leaky.args: a URL with a password is on the command line: {ps}",
    ]
    assert applied.out.rstrip().splitlines()[-1].startswith("applied (generation ")
    assert cluster.wait_running("leaky", 1), "a warning is not a refusal"
    as_json = cluster.stackctl("-o", "json", "apply", "--yes", "leaky.toml", check=True).json()
    assert as_json["warnings"] == [line.removeprefix("warning: ") for line in warnings]

    (cluster.root / "leaky2.toml").write_text(LEAKY.replace("url-pw-77", "url-pw-78"))
    shown = [
        cluster.stackctl(*args, check=True).out
        for args in (
            ("get", "leaky"),
            ("-o", "json", "get", "leaky"),
            ("export",),
            ("-o", "json", "status", "leaky"),
            ("apply", "--dry-run", "leaky2.toml"),
        )
    ]
    for out in shown:
        for secret in (*LEAKED, "url-pw-78"):
            assert secret not in out, out
    assert "postgres://app:********@db/app" in shown[0]
    assert 'DATABASE = "mysql://root:********@db/x"' in shown[2]
    assert "args: (secret) changed" in shown[4]
    full = cluster.stackctl("export", "--show-secrets", check=True).out
    assert all(secret in full for secret in LEAKED)


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    root = tmp_path_factory.mktemp("hostile-tls")
    running = TlsStack(root, make_tls_dir(root, "h1"))
    try:
        yield running.start()
    finally:
        running.close()


def test_only_an_admin_may_export_secrets_over_tls(tls_stack: TlsStack) -> None:
    tls = ("--tls-dir", str(tls_stack.tls))
    (tls_stack.root / "s.toml").write_text(SECRETS)
    applied = tls_stack.stackctl(*tls, "apply", str(tls_stack.root / "s.toml"))
    assert applied.code == 0, applied
    viewer = (*tls, "--cert-name", "vic")
    refused = tls_stack.stackctl(*viewer, "export", "--show-secrets")
    assert (refused.code, refused.err) == (
        1,
        "stackctl: permission denied: only admin may export with --show-secrets\n",
    )
    masked = tls_stack.stackctl(*viewer, "export")
    assert masked.code == 0 and 'DB_PASSWORD = "********"' in masked.out, masked
    full = tls_stack.stackctl(*tls, "export", "--show-secrets")
    assert full.code == 0 and 'DB_PASSWORD = "hunter2-pw"' in full.out, full


def test_a_renewed_controller_certificate_is_served_after_a_restart_and_agents_follow(
    tls_stack: TlsStack,
) -> None:
    renewed = tls_stack.stackctl(
        "certs", "issue", "--dir", str(tls_stack.tls), "--role", "controller",
        "--name", "controller", "--controller-name", "ctl.example", "--force",
    )  # fmt: skip
    assert renewed.code == 0, renewed
    tls_stack.controller.stop()
    tls_stack.controller.start()
    wait_for(lambda: tls_stack.agent_state("h1") == "ready", 30, "h1 to reconnect")
    served = ssl.get_server_certificate(("127.0.0.1", tls_stack.port))
    assert served.strip() == (tls_stack.tls / "controller.crt").read_text().strip()
    status = tls_stack.stackctl("--tls-dir", str(tls_stack.tls), "status")
    assert status.code == 0, status


# -- uid and gid ---------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")


def _unused(lookup: Callable[[int], object]) -> int:
    for candidate in range(54_321, 60_000):
        try:
            lookup(candidate)
        except KeyError:
            return candidate
    raise AssertionError("no unused id")


@needs_root
def test_unknown_users_and_groups_are_clear_spawn_errors(cluster: Cluster) -> None:
    import grp

    uid, gid = _unused(pwd.getpwuid), _unused(grp.getgrgid)
    cases = {
        "nouser": ('uid = "no-such-user-here"', "spawn error: unknown user 'no-such-user-here'"),
        "nogroup": (
            'gid = "no-such-group-here"',
            "spawn error: unknown group 'no-such-group-here'",
        ),
        "nouid": (f"uid = {uid}", f"spawn error: unknown user id {uid} (no passwd entry)"),
        "nogid": (f"gid = {gid}", f"spawn error: unknown group id {gid} (no group entry)"),
    }
    text = "".join(
        f'[watchers.{name}]\ncmd = "sleep 3600"\n{option}\nrespawn = false\n'
        for name, (option, _) in cases.items()
    )
    cluster.apply(text, "ids.toml")

    def messages() -> dict[str, str] | None:
        found = {
            p.watcher: p.last_exit.message
            for w in cluster.status().watchers
            for p in w.processes
            if p.watcher in cases
        }
        return found if all(found.get(name) for name in cases) else None

    seen = wait_for(messages, 15, "a spawn error for each watcher")
    assert seen == {name: message for name, (_, message) in cases.items()}
    events = cluster.admin().Events(admin_pb2.EventsRequest(), timeout=5)
    errors = {e.watcher: e.message for e in events if e.kind == "spawn_error"}
    assert errors == {name: message for name, (_, message) in cases.items()}


@needs_root
def test_a_worker_runs_as_the_watchers_user_and_group(cluster: Cluster) -> None:
    nobody = pwd.getpwnam("nobody")
    cluster.apply('[watchers.asnobody]\ncmd = "sleep 3600"\nuid = "nobody"\n', "nobody.toml")
    (pid,) = cluster.wait_running("asnobody", 1).values()
    status = Path(f"/proc/{pid}/status").read_text()
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}
    assert ids["Uid"] == [str(nobody.pw_uid)] * 4
    assert ids["Gid"] == [str(nobody.pw_gid)] * 4
    assert ids["Groups"] == [], "no supplementary groups of the agent leak in"
