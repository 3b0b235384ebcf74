"""Stack: a multi-host process and socket manager."""

__version__ = "0.1.0"

WIRE_PROTOCOL = "stack.v1"
"""The protobuf package the programs speak (proto/stack/v1): agents, controllers and
stackctl of one wire protocol understand each other, whatever their versions."""


def version_line(program: str) -> str:
    """What `--version` prints: `stackctl 0.1.0 (wire protocol stack.v1)`."""
    return f"{program} {__version__} (wire protocol {WIRE_PROTOCOL})"
