"""Prometheus' text exposition format (version 0.0.4), written directly.

The fleet's series are many (a few per watcher on each host, and per agent: tens of
thousands on a large fleet) and must be written in a few milliseconds. prometheus_client
spends about five microseconds on a sample; a `Family` here has its label names
formatted once and spends under half a microsecond. It writes counters and gauges.

Most series keep their value from one scrape to the next (processes running, lines
dropped), so a caller keeps each series' line with the value it says (`kept_lines`)
and writes it again only when the value changed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@functools.lru_cache(maxsize=65536)
def label_value(value: str) -> str:
    """`value` escaped for a label: backslash, double quote and newline."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value: integers without a fraction, `+Inf`, `-Inf`, `NaN`."""
    if value.__class__ is int:
        return str(value)
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    whole = int(value)
    return str(whole) if whole == value else repr(float(value))


@dataclass(frozen=True, eq=False)
class Family:
    """A metric family: its name as exposed, kind, help and label names (each is one
    object: compared and hashed by identity, which is cheap)."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    _parts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _header: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.labels:
            parts: tuple[str, ...] = (f"{self.name} ",)
        else:
            first, *rest = self.labels
            parts = (
                f'{self.name}{{{first}="',
                *(f'",{label}="' for label in rest),
                '"} ',
            )
        object.__setattr__(self, "_parts", parts)
        escaped = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        header = f"# HELP {self.name} {escaped}\n# TYPE {self.name} {self.kind}\n"
        object.__setattr__(self, "_header", header)

    def header(self) -> str:
        """The `# HELP` and `# TYPE` lines."""
        return self._header

    def start(self, values: Sequence[str]) -> str:
        """A sample's line up to its value: the name and labels, and the space."""
        return self.line(values, 0)[:-2]

    def line(self, values: Sequence[str], value: float) -> str:
        """One sample, newline included; `values` in the order of the label names."""
        parts = self._parts
        if len(parts) == 1:
            return f"{parts[0]}{number(value)}\n"
        if len(parts) == 3:
            return f"{parts[0]}{label_value(values[0])}{parts[1]}{label_value(values[1])}{parts[2]}{number(value)}\n"  # noqa: E501
        if len(parts) == 4:
            a, b, c = values
            return f"{parts[0]}{label_value(a)}{parts[1]}{label_value(b)}{parts[2]}{label_value(c)}{parts[3]}{number(value)}\n"  # noqa: E501
        pieces = [parts[0]]
        for part, label in zip(parts[1:], values, strict=True):
            pieces.append(label_value(label))
            pieces.append(part)
        pieces.append(number(value))
        pieces.append("\n")
        return "".join(pieces)

    def lines(self, samples: Iterable[tuple[Sequence[str], float]]) -> str:
        line = self.line
        return "".join(line(values, value) for values, value in samples)

    def text(self, samples: Iterable[tuple[Sequence[str], float]]) -> str:
        """The whole family: header and samples."""
        return self.header() + self.lines(samples)


Kept = dict[tuple[str, ...], tuple[float, str]]
"""Label values -> (the value, its line): the lines of one family as last written."""

NOTHING_KEPT: Mapping[tuple[str, ...], tuple[float, str]] = {}


def kept_lines(
    family: Family,
    samples: Iterable[tuple[tuple[str, ...], float]],
    kept: Mapping[tuple[str, ...], tuple[float, str]],
) -> tuple[str, Kept]:
    """The lines of `samples` and what to keep of them for the next call: the line of a
    series whose value is the one `kept` has is that line again, not written anew.
    Series of `kept` that are not in `samples` are not kept."""
    fresh: Kept = {}
    out: list[str] = []
    line = family.line
    for values, value in samples:
        known = kept.get(values)
        if known is None or known[0] != value:
            known = (value, line(values, value))
        fresh[values] = known
        out.append(known[1])
    return "".join(out), fresh
