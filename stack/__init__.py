"""Stack: a multi-host process and socket manager."""

__version__ = "0.1.0"
