"""Where the controller keeps its desired state: a small key/value interface.

`--store` picks the backend: `sqlite` (the default, a file in the data dir) or
`etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` for controllers sharing an etcd
cluster. `parse_store_url` is pure; the control plane (plane.py) opens what it
describes.
"""

from __future__ import annotations

from dataclasses import dataclass

ETCD_DEFAULT_PORT = 2379
ETCD_DEFAULT_PREFIX = "/stack"
_ETCD_FORM = "etcd://HOST:PORT[,HOST:PORT...][/PREFIX]"


class BadStoreUrl(ValueError):
    """A `--store` value that names no store we can open."""


@dataclass(frozen=True)
class SqliteLocation:
    """The embedded store, in the controller's data dir."""


@dataclass(frozen=True)
class EtcdLocation:
    """An etcd cluster: its client endpoints (`host:port`) and the key prefix we own."""

    endpoints: tuple[str, ...]
    prefix: str = ETCD_DEFAULT_PREFIX


StoreLocation = SqliteLocation | EtcdLocation


def parse_store_url(url: str) -> StoreLocation:
    """`sqlite` (or empty) or `etcd://h1:2379,h2:2379[/prefix]`; BadStoreUrl says what is wrong."""
    text = url.strip()
    if text in ("", "sqlite"):
        return SqliteLocation()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme != "etcd":
        raise BadStoreUrl(f"bad store {url!r}: expected 'sqlite' or {_ETCD_FORM}")
    hosts, slash, path = rest.partition("/")
    endpoints = tuple(_endpoint(url, part) for part in hosts.split(","))
    if len(set(endpoints)) != len(endpoints):
        raise BadStoreUrl(f"bad store {url!r}: an etcd endpoint is listed twice")
    prefix = "/" + path.strip("/") if slash and path.strip("/") else ETCD_DEFAULT_PREFIX
    return EtcdLocation(endpoints, prefix)


def _endpoint(url: str, part: str) -> str:
    part = part.strip()
    if not part:
        raise BadStoreUrl(f"bad store {url!r}: empty etcd endpoint (expected {_ETCD_FORM})")
    if part.startswith("["):  # [v6]:port
        host, bracket, port = part[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise BadStoreUrl(f"bad store {url!r}: bad IPv6 endpoint {part!r}")
        host, port = f"[{host}]", port[1:]
    else:
        host, _, port = part.partition(":")
    if not host or host == "[]":
        raise BadStoreUrl(f"bad store {url!r}: etcd endpoint {part!r} has no host")
    number = _port(url, part, port)
    return f"{host}:{number}"


def _port(url: str, part: str, port: str) -> int:
    if not port:
        return ETCD_DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadStoreUrl(f"bad store {url!r}: etcd endpoint {part!r} has a bad port {port!r}")
    return int(port)
