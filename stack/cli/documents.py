"""What `-o json` and `-o yaml` print: replies as documents with stable keys.

A reply becomes a dict with every field under its proto name, enum values as lowercase
names without their prefix (`running`), 64-bit integers as numbers and an unset
sub-message as null, so the keys are the same whatever the values. One document goes out
as indented JSON or as YAML (stack.cli.yaml_text); the items of a follow (`-f`) as one
JSON object per line, or as YAML documents separated by `---`. No rich here: `status -o
json` must not pay for it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from stack.cli.formats import enum_name, live_processes
from stack.cli.yaml_text import dump
from stack.v1 import admin_pb2


def _scalar(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(field.enum_type, value)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.hex()
    return value


def to_json(message: Message) -> dict[str, Any]:
    """A message as a dict with every field (proto field names, enums as names).

    Unlike MessageToDict, 64-bit integers stay numbers, enum values drop their
    prefix, and an unset sub-message is `null` rather than missing: the keys are
    the same whatever the values.
    """
    document: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            document[field.name] = {
                str(key): _scalar(value_field, item) for key, item in sorted(value.items())
            }
        elif field.is_repeated:
            document[field.name] = [_scalar(field, item) for item in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not message.HasField(field.name):
            document[field.name] = None
        else:
            document[field.name] = _scalar(field, value)
    return document


def status_document(reply: admin_pb2.StatusReply, host: str = "") -> dict[str, Any]:
    """`status -o json`: {"generation", "watchers": [{..., "processes": [...]}]}."""
    document = to_json(reply)
    if host:
        for watcher in document["watchers"]:
            watcher["processes"] = [p for p in watcher["processes"] if p["host_id"] == host]
    return document


_STATS_KEYS = ("cpu_percent", "rss_bytes", "num_fds", "num_children")


def stats_document(reply: admin_pb2.StatusReply, host: str = "") -> dict[str, Any]:
    """`stats -o json`: per watcher its live processes' figures and their totals."""
    watchers = []
    for watcher in reply.watchers:
        processes: list[dict[str, Any]] = [
            {
                "wid": p.wid,
                "host_id": p.host_id,
                "pid": p.pid,
                "cpu_percent": p.cpu_percent,
                "rss_bytes": p.rss_bytes,
                "num_fds": p.num_fds,
                "num_children": p.num_children,
            }
            for p in live_processes(watcher.processes, host)
        ]
        total = {key: sum(p[key] for p in processes) for key in _STATS_KEYS}
        watchers.append({"name": watcher.name, "processes": processes, "total": total})
    return {"watchers": watchers}


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def print_json_line(document: Any) -> None:
    """One compact JSON document per line (for streams that follow)."""
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def print_document(document: Any, output: str) -> None:
    """One document on stdout, as `output` (`json` or `yaml`) says."""
    if output == "yaml":
        sys.stdout.write(dump(document))
        sys.stdout.flush()
    else:
        print_json(document)


def print_item(document: Any, output: str) -> None:
    """One item of a follow: a JSON line, or a YAML document of its own."""
    if output == "yaml":
        sys.stdout.write("---\n" + dump(document))
        sys.stdout.flush()
    else:
        print_json_line(document)
