"""deploy/ha: the units pass `systemd-analyze verify`, and each host's settings are ones the
daemons accept and that agree with each other."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stack.controller.main import parse_args
from stack.security.certs import init_dir

HA = Path(__file__).resolve().parents[2] / "deploy" / "ha"
HOSTS = ("host1", "host2", "host3")


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing")
@pytest.mark.parametrize("unit", ["stack-etcd.service", "stack-controller.service"])
def test_the_ha_units_pass_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    text = (HA / unit).read_text()
    binary = text.split("ExecStart=", 1)[1].split()[0]
    local = Path(sys.executable).parent / Path(binary).name
    if binary.startswith("/usr/local/bin/"):
        if not local.exists():
            pytest.skip(f"{local.name} is not installed next to {sys.executable}")
        text = text.replace(f"ExecStart={binary}", f"ExecStart={local}")
    elif not Path(binary).exists():
        pytest.skip(f"{binary} is not installed (apt-get install etcd-server)")
    copy = tmp_path / unit
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.stdout + result.stderr).strip() == ""
    assert result.returncode == 0


@pytest.mark.parametrize("host", HOSTS)
def test_each_hosts_controller_flags_parse_and_name_all_three_etcd_members(
    host: str, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"  # what systemd's LoadCredential= makes of /etc/stack/tls
    init_dir(credentials, ["192.0.2.11", "192.0.2.12", "192.0.2.13"])
    options = env_file(HA / host / "stack-controller.env")["STACK_CONTROLLER_OPTS"]
    unit = (HA / "stack-controller.service").read_text()
    fixed = unit.split("ExecStart=", 1)[1].splitlines()[0].split()[1:]
    argv = [a for a in fixed if not a.startswith("$")] + shlex.split(options)
    argv = [a.replace("%S", str(tmp_path)).replace("%d", str(credentials)) for a in argv]
    settings = parse_args(argv)
    etcd = env_file(HA / host / "etcd.env")
    address = etcd["ETCD_ADVERTISE_CLIENT_URLS"].removeprefix("https://")
    members = [url.split("=https://")[1] for url in etcd["ETCD_INITIAL_CLUSTER"].split(",")]
    clients = ",".join(member.replace(":2380", ":2379") for member in members)
    assert settings.store == f"etcd://{clients}/stack"
    assert address in settings.store
    assert settings.advertise == settings.listen
    assert settings.advertise.split(":")[0] == address.split(":")[0]
    assert settings.etcd_ca is not None and settings.tls is not None


def test_the_three_etcd_members_agree_on_the_cluster_and_differ_in_name() -> None:
    files = [env_file(HA / host / "etcd.env") for host in HOSTS]
    assert len({f["ETCD_INITIAL_CLUSTER"] for f in files}) == 1
    assert [f["ETCD_NAME"] for f in files] == ["etcd1", "etcd2", "etcd3"]
    for f in files:
        assert (
            f"{f['ETCD_NAME']}={f['ETCD_INITIAL_ADVERTISE_PEER_URLS']}" in f["ETCD_INITIAL_CLUSTER"]
        )
        assert int(f["ETCD_MAX_TXN_OPS"]) > 128
