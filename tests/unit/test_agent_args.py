"""stack-agent's command line: the log shipping rate and the controller list."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.agent.main import parse_args


def test_ship_rate_and_a_list_of_controllers_reach_the_settings(tmp_path: Path) -> None:
    settings, _ = parse_args(
        ["--data-dir", str(tmp_path), "--ship-rate", "250",
         "--controller", "10.0.0.1:7450, 10.0.0.2:7450"]
    )  # fmt: skip
    assert settings.ship_rate == 250
    assert settings.controller == "10.0.0.1:7450,10.0.0.2:7450"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--ship-rate", "-1"], "--ship-rate must be >= 0"),
        (["--controller", "10.0.0.1:7450,nonsense"], "expected HOST:PORT[,HOST:PORT...]"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err
