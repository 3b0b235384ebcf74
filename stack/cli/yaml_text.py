"""`-o yaml`: our JSON documents written as YAML, by a small emitter of our own.

What stackctl prints is plain data (dicts with string keys, lists, strings, numbers,
booleans and null), never anchors, tags or custom types, so the whole of YAML is not
needed, nor a dependency for it. Block style throughout; a string is written plain only
when it cannot be read back as anything else (it starts with a letter or `_`, is not a
word like `yes` or `null`, and has no character YAML gives a meaning), a text of several
lines as a literal block (`|`), and anything else double-quoted with escapes for every
character YAML does not allow raw. The result reads back to the same data with YAML 1.1
and 1.2 parsers alike (a property test checks it with PyYAML).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from stack.cli.terminal import code_escape

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./+-]*(?: [A-Za-z0-9_./+()-]+)*")
_RESERVED = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"])
"""Words that YAML 1.1 or 1.2 reads as booleans, null or numbers (any case)."""
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]')
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\", "\0": "\\0"}
_NOT_IN_BLOCK = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]"
)


def dump(document: Any) -> str:
    """`document` as a YAML document (ending with a newline)."""
    if _is_scalar(document) or not document:
        return scalar(document, 0) + "\n"
    return "\n".join(_block(document, 0)) + "\n"


def scalar(value: Any, indent: int) -> str:
    """One value on the rest of a line (a literal block goes on over the next lines)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[]"
    return _string(str(value), indent)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, Mapping) and (
        isinstance(value, str) or not isinstance(value, Sequence)
    )


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:  # `1e+100`: YAML 1.1 reads a float only with a dot
        mantissa += ".0"
    return f"{mantissa}{e}{exponent}"


def _string(text: str, indent: int) -> str:
    if _plain(text):
        return text
    if (
        "\n" in text.rstrip("\n")
        and not text.startswith((" ", "\n"))
        and not (_NOT_IN_BLOCK.search(text) or any(line.endswith(" ") for line in text.split("\n")))
    ):
        return _literal(text, indent)
    return _quoted(text)


def _plain(text: str) -> bool:
    return bool(_PLAIN.fullmatch(text)) and text.lower() not in _RESERVED


def _quoted(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or code_escape(char)


def _literal(text: str, indent: int) -> str:
    """A literal block: `|` and the lines indented (chomping keeps the final newlines)."""
    body = text.rstrip("\n")
    trailing = len(text) - len(body)
    chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
    pad = " " * (indent + 2)
    lines = [pad + line if line else "" for line in body.split("\n")]
    lines += [""] * (trailing - 1 if trailing > 1 else 0)
    return "|" + chomp + "\n" + "\n".join(lines)


def _key(key: Any) -> str:
    text = str(key)
    return text if _plain(text) else _quoted(text)


def _block(value: Any, indent: int) -> Iterator[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _is_scalar(item) or not item:
                yield f"{pad}{_key(key)}: {scalar(item, indent)}"
            else:
                yield f"{pad}{_key(key)}:"
                yield from _block(item, indent + 2)
        return
    for item in value:
        if _is_scalar(item) or not item:
            yield f"{pad}- {scalar(item, indent)}"
            continue
        lines = list(_block(item, indent + 2))
        yield f"{pad}- {lines[0][indent + 2 :]}"
        yield from lines[1:]
