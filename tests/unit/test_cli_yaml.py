"""`-o yaml`: our own emitter reads back (with PyYAML, a YAML 1.1 parser) as the data it
was given, whatever the strings hold."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.cli.documents import status_document
from stack.cli.yaml_text import dump
from stack.v1 import admin_pb2, types_pb2

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["yes", "No", "null", "~", "1e3", "0x1f", "2026-01-01", "a: b", "- x",
                       "#c", "", " lead", "trail ", "multi\nline\n", "keep\n\n", "\t", "on"])
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_any_plain_document_reads_back_the_same(document: Any) -> None:
    assert yaml.safe_load(dump(document)) == document


def test_a_status_reads_back_as_its_json_document() -> None:
    process = types_pb2.ProcessStatus(
        watcher="webapp", wid=1, pid=42, state=types_pb2.PROCESS_STATE_RUNNING,
        message="exit 1: \x1b[31mred\x1b[0m\nsecond line", version="0-abc",
        last_exit=types_pb2.LastExit(code=1, reason=types_pb2.EXIT_REASON_CRASHED, at=1.5),
    )  # fmt: skip
    reply = admin_pb2.StatusReply(
        watchers=[admin_pb2.WatcherStatus(name="webapp", numprocesses=1, processes=[process])],
        generation=3,
    )
    document = status_document(reply)
    text = dump(document)
    assert yaml.safe_load(text) == document
    assert "\x1b" not in text  # control characters are escaped, never raw
    assert "  - name: webapp\n" in text and "generation: 3\n" in text


def test_block_style_plain_words_and_a_literal_block_for_text_of_several_lines() -> None:
    document = {"toml": '[watchers.a]\ncmd = "sleep 1"\n', "state": "running", "flag": "yes"}
    assert dump(document) == (
        'toml: |\n  [watchers.a]\n  cmd = "sleep 1"\nstate: running\nflag: "yes"\n'
    )
