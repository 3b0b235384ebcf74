"""`--store` URLs: sqlite by default, etcd endpoints and prefix, one-line errors otherwise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stack.controller.plane import ControlPlane
from stack.controller.settings import ControllerSettings
from stack.controller.store import (
    BadStoreUrl,
    EtcdLocation,
    SqliteLocation,
    parse_store_url,
)
from stack.controller.store.base import StoreError
from stack.controller.store.sqlite import SqliteStore


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", SqliteLocation()),
        ("sqlite", SqliteLocation()),
        ("etcd://h1:2379", EtcdLocation(("h1:2379",))),
        ("etcd://h1:2379,h2:2380,h3", EtcdLocation(("h1:2379", "h2:2380", "h3:2379"))),
        ("etcd://10.0.0.1:2379/", EtcdLocation(("10.0.0.1:2379",))),
        ("etcd://h1:2379/prod/stack/", EtcdLocation(("h1:2379",), "/prod/stack")),
        ("etcd://[::1]:2379,[fe80::2]", EtcdLocation(("[::1]:2379", "[fe80::2]:2379"))),
        (" etcd://h1:1 ", EtcdLocation(("h1:1",))),
    ],
)
def test_good_store_urls(url: str, expected: object) -> None:
    assert parse_store_url(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("etcd:/h1:2379", "expected 'sqlite' or etcd://"),
        ("postgres://db", "expected 'sqlite' or etcd://"),
        ("sqlite3", "expected 'sqlite' or etcd://"),
        ("etcd://", "empty etcd endpoint"),
        ("etcd://h1:2379,,h2:2379", "empty etcd endpoint"),
        ("etcd://:2379", "has no host"),
        ("etcd://h1:http", "bad port 'http'"),
        ("etcd://h1:70000", "bad port '70000'"),
        ("etcd://h1:0", "bad port '0'"),
        ("etcd://[::1:2379", "bad IPv6 endpoint"),
        ("etcd://h1:2379,h1:2379", "listed twice"),
    ],
)
def test_bad_store_urls_say_what_is_wrong_in_one_line(url: str, complaint: str) -> None:
    with pytest.raises(BadStoreUrl) as error:
        parse_store_url(url)
    message = str(error.value)
    assert complaint in message
    assert repr(url) in message
    assert "\n" not in message


def test_the_control_plane_opens_sqlite_by_default(tmp_path: Path) -> None:
    plane = asyncio.run(ControlPlane.open(ControllerSettings(data_dir=tmp_path, store="sqlite")))
    try:
        assert isinstance(plane.store, SqliteStore) and plane.ha is None
        assert (tmp_path / "controller.db").exists()
    finally:
        plane.close()


def test_the_control_plane_turns_a_bad_url_into_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="bad store 'etcd://h1:x'"):
        asyncio.run(ControlPlane.open(ControllerSettings(data_dir=tmp_path, store="etcd://h1:x")))
