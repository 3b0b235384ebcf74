"""$(circus.X) / $(stack.X) substitutions, as the agent expands them per worker."""

from __future__ import annotations

import pytest

from stack.spec.substitute import SubstitutionError, expand, references

FDS = {"web": 5, "admin": 6}
ENV = {"PORT": "8080", "EMPTY": ""}


def _expand(text: str) -> str:
    return expand(text, watcher="webapp", wid=3, socket_fds=FDS, env=ENV)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python3 -m app --fd $(circus.sockets.web)", "python3 -m app --fd 5"),
        ("--fd=$(stack.sockets.admin)", "--fd=6"),
        ("worker-$(circus.wid)", "worker-3"),
        ("$(stack.wid)$(stack.wid)", "33"),
        ("--port $(circus.env.PORT)", "--port 8080"),
        ("[$(circus.env.EMPTY)]", "[]"),
        ("--name $(circus.name)", "--name webapp"),
        ("$(CIRCUS.WID) $(Stack.Name)", "3 webapp"),
        ("no references at all", "no references at all"),
        ("$(HOME) and $(other.wid) stay", "$(HOME) and $(other.wid) stay"),
        ("", ""),
    ],
)
def test_expand_replaces_every_reference(text: str, expected: str) -> None:
    assert _expand(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "$(circus.sockets.db)",
            "$(circus.sockets.db): socket 'db' is not inherited by watcher 'webapp'",
        ),
        (
            "$(stack.env.MISSING)",
            "$(stack.env.MISSING): 'MISSING' is not in the environment of watcher 'webapp'",
        ),
        (
            "$(circus.pid)",
            "unknown substitution $(circus.pid) (known: sockets.NAME, wid, env.NAME, name)",
        ),
        (
            "$(stack.sockets)",
            "unknown substitution $(stack.sockets) (known: sockets.NAME, wid, env.NAME, name)",
        ),
        (
            "$(circus.wid.x)",
            "unknown substitution $(circus.wid.x) (known: sockets.NAME, wid, env.NAME, name)",
        ),
        ("run $(circus.wid", "malformed substitution '$(circus.wid'"),
        ("run $(circus.)", "malformed substitution '$(circus.)'"),
    ],
)
def test_expand_rejects_unknown_or_unavailable_references(text: str, message: str) -> None:
    with pytest.raises(SubstitutionError) as caught:
        _expand(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_env_is_case_sensitive_but_the_prefix_is_not() -> None:
    with pytest.raises(SubstitutionError):
        _expand("$(CIRCUS.env.port)")
    assert _expand("$(CIRCUS.env.PORT)") == "8080"


def test_references_lists_keys_in_order_as_written() -> None:
    text = "run --fd $(circus.sockets.web) --id $(stack.wid) $(circus.env.A.B) $(circus.nope)"
    assert references(text) == ["sockets.web", "wid", "env.A.B", "nope"]
    assert references("plain") == []


def test_references_rejects_a_malformed_reference() -> None:
    with pytest.raises(SubstitutionError, match="malformed substitution"):
        references("--fd $(circus.sockets.web")


def test_an_expanded_value_is_not_expanded_again() -> None:
    text = expand("$(circus.env.A)", watcher="w", wid=1, socket_fds={}, env={"A": "$(circus.wid)"})
    assert text == "$(circus.wid)"
