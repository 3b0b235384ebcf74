"""Text from workers shown on a terminal, never obeyed by it.

A worker's output line (or an agent's message) written raw to a terminal can command it:
an escape sequence writes the clipboard (OSC 52), disguises a link (OSC 8) or clears the
screen, and a bare carriage return or backspace overwrites what was printed before.
`safe` writes control characters, and the invisible characters that reorder or hide text
(bidirectional overrides, zero-width spaces), as visible escapes such as `\\x1b`, in the
spelling of Python's `repr`; tabs are kept. stackctl's renderers and the agent's
StdoutStream both use it. Pure, and no import of the wire.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    "["
    "\x00-\x08\x0a-\x1f"  # C0 controls but the tab: ESC, CR, BS, BEL, LF...
    "\x7f-\x9f"  # DEL and the C1 controls (8-bit CSI and OSC among them)
    "\u061c\u180e\u200b\u200e\u200f"  # invisible marks and spaces
    "\u2028-\u202e"  # line and paragraph separators, bidirectional embeddings and overrides
    "\u2060-\u2064\u2066-\u206f"  # invisible operators, bidirectional isolates
    "\ufeff\ufff9-\ufffb"  # zero-width no-break space, interlinear annotations
    "\U000e0001\U000e0020-\U000e007f"  # tag characters
    "]"
)
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or code_escape(char)


def code_escape(char: str) -> str:
    """`\\x1b`, `\\u202e`, `\\U000e0001`: a character by its code, as Python and YAML
    write it in a quoted string."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(text: str) -> str:
    """`text` with every control or hiding character written as a visible escape.

    Idempotent: what it returns has none left, so escaping twice changes nothing.
    """
    return _UNSAFE.sub(_escape, text)
