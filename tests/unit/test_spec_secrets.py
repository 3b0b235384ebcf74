"""Secrets: what is masked whatever its name, and which choices put one in `ps`."""

from __future__ import annotations

import tomllib

import pytest

from stack.spec.diff import diff_stacks
from stack.spec.dump import dump_stack, dump_watcher
from stack.spec.load import load_stack
from stack.spec.secrets import MASK, carries_credentials, exposures, mask_credentials, masked


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgres://app:hunter2@db/app", f"postgres://app:{MASK}@db/app"),
        ("--dsn=redis://:s3cr3t@cache:6379/0", f"--dsn=redis://:{MASK}@cache:6379/0"),
        ("amqp://u:p/w:x@mq amqp://v:q@mq2", f"amqp://u:{MASK}@mq amqp://v:{MASK}@mq2"),
        ("mongodb+srv://root:pa%40ss@cluster", f"mongodb+srv://root:{MASK}@cluster"),
        ("http://host:8080/path", "http://host:8080/path"),
        ("ssh://git@github.com/x", "ssh://git@github.com/x"),
        ("user:pw@host", "user:pw@host"),
        ("", ""),
    ],
)
def test_a_password_in_a_url_is_masked_whatever_surrounds_it(text: str, shown: str) -> None:
    assert mask_credentials(text) == shown
    assert carries_credentials(text) == (shown != text)


LEAKY = """
[watchers.leaky]
cmd = "app --pw $(circus.env.DB_PASSWORD) --db $(circus.env.DATABASE) --id $(circus.wid)"
args = ["--cache", "redis://:cache-pw@cache", "$(circus.env.PLAIN)"]
[watchers.leaky.env]
DB_PASSWORD = "hunter2"
DATABASE = "mysql://root:db-pw@db/x"
PLAIN = "nothing-secret"
[watchers.leaky.health]
type = "http"
target = "http://probe:probe-pw@127.0.0.1:8080/healthz"

[watchers.quiet]
cmd = "app"
[watchers.quiet.env]
DB_PASSWORD = "hunter2"
"""


def test_each_secret_that_reaches_the_command_line_is_named_once() -> None:
    ps = "every user of the host can read it in ps"
    assert exposures(load_stack(LEAKY)) == [
        f"watchers.leaky.cmd: $(circus.env.DB_PASSWORD) puts the secret DB_PASSWORD on the "
        f"command line: {ps}",
        f"watchers.leaky.cmd: $(circus.env.DATABASE) puts a URL with a password on the "
        f"command line: {ps}",
        f"watchers.leaky.args: a URL with a password is on the command line: {ps}",
    ]
    plain = '[watchers.a]\ncmd = "app $(circus.env.USER)"\ncopy_env = true\n'
    assert exposures(load_stack(plain)) == []


def test_masked_hides_secret_names_and_url_passwords_in_every_shown_field() -> None:
    spec = masked(load_stack(LEAKY).watchers["leaky"])
    assert dict(spec.env) == {
        "DB_PASSWORD": MASK,
        "DATABASE": f"mysql://root:{MASK}@db/x",
        "PLAIN": "nothing-secret",
    }
    assert spec.args == ("--cache", f"redis://:{MASK}@cache", "$(circus.env.PLAIN)")
    assert spec.health.target == f"http://probe:{MASK}@127.0.0.1:8080/healthz"
    for text in (dump_watcher(load_stack(LEAKY).watchers["leaky"], mask_secrets=True),
                 dump_stack(load_stack(LEAKY), mask_secrets=True)):  # fmt: skip
        for secret in ("hunter2", "db-pw", "cache-pw", "probe-pw"):
            assert secret not in text
        tomllib.loads(text)
    full = dump_stack(load_stack(LEAKY))
    assert load_stack(full) == load_stack(LEAKY), "unmasked, the export applies as it was"


def test_a_diff_masks_url_passwords_and_says_only_that_a_masked_one_changed() -> None:
    old = load_stack(LEAKY)
    new = load_stack(
        LEAKY.replace("db-pw", "db-pw-2").replace("cache-pw", "other").replace("--pw", "-p")
    )
    (change,) = diff_stacks(old, new)
    tail = "$(circus.env.DB_PASSWORD) --db $(circus.env.DATABASE) --id $(circus.wid)"
    assert change.details == (
        f"cmd: 'app --pw {tail}' -> 'app -p {tail}'",
        "args: (secret) changed",
        "env.DATABASE: (secret) changed",
    )
    added = diff_stacks(load_stack(""), load_stack('[watchers.a]\ncmd = "x http://u:pw@h"\n'))
    assert added[0].details[0] == f"cmd: 'x http://u:{MASK}@h'"
