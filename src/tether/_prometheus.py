"""Prometheus's text exposition format, written for the acceptor's and the pool's
``/metrics`` alike (one writer, so both escape and format samples the same way)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels_text(labels: Mapping[str, str]) -> str:
    """``{k="v",...}``, or nothing for no labels."""
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


class TextWriter:
    """Lines of one exposition: ``family`` adds a metric's HELP, TYPE and samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{labels_text(labels)} {float(value)!r}")
