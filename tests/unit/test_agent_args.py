"""stack-agent's command line: the log shipping rate, the controller list, the log group."""

from __future__ import annotations

import grp
from pathlib import Path

import pytest

from stack.agent.main import parse_args


def test_ship_rate_and_a_list_of_controllers_reach_the_settings(tmp_path: Path) -> None:
    settings = parse_args(
        ["--data-dir", str(tmp_path), "--ship-rate", "250",
         "--controller", "10.0.0.1:7450, 10.0.0.2:7450"]
    ).settings  # fmt: skip
    assert settings.ship_rate == 250
    assert settings.controller == "10.0.0.1:7450,10.0.0.2:7450"


def test_the_log_group_is_taken_by_name_or_number(tmp_path: Path) -> None:
    root_group = grp.getgrgid(0).gr_name
    base = ["--data-dir", str(tmp_path)]
    assert parse_args(base).settings.log_group is None
    assert parse_args([*base, "--log-group", root_group]).settings.log_group == 0
    assert parse_args([*base, "--log-group", "0"]).settings.log_group == 0


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--ship-rate", "-1"], "--ship-rate must be >= 0"),
        (
            ["--controller", "10.0.0.1:7450,nonsense"],
            "expected unix:PATH or HOST:PORT (several: comma-separated)",
        ),
        (["--log-group", "no-such-group-here"], "no group 'no-such-group-here' on this host"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err
