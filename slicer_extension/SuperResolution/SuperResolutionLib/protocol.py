"""The line protocol between the worker process and the module (standard library only).

The worker writes one JSON object per line on stdout, behind :data:`PREFIX`::

    @rmisr {"kind": "progress", "fraction": 0.42, "stage": "super-resolution", "text": "8 / 20 slices"}
    @rmisr {"kind": "error", "text": "in.mha: no such file or folder"}
    @rmisr {"kind": "done", "output": "/tmp/.../output.mha", "quality": "/tmp/.../quality.json"}

Any other line (warnings, library messages) is plain log text for the Python console. ``fraction`` is the
fraction of the whole job done (0..1); an ``error`` line is the one sentence shown to the user; ``done`` ends a
successful run. Lines are flushed as they are written, so the module sees progress while the worker runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["PREFIX", "KINDS", "Message", "encode", "decode", "emit"]

PREFIX = "@rmisr "
KINDS = ("progress", "error", "done")


@dataclass(frozen=True)
class Message:
    """One protocol line: its ``kind`` and the other fields of the JSON object."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Progress fraction clipped to 0..1 (0 when absent)."""
        return min(1.0, max(0.0, float(self.fields.get("fraction", 0.0))))

    @property
    def text(self) -> str:
        return str(self.fields.get("text", ""))


def encode(kind: str, **fields: Any) -> str:
    """The protocol line (without newline) for a message; ``kind`` must be one of :data:`KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}; use one of {KINDS}")
    return PREFIX + json.dumps({"kind": kind, **fields}, allow_nan=False)


def decode(line: str) -> Message | None:
    """The message on a protocol line; ``None`` for plain log text (including malformed protocol lines)."""
    line = line.rstrip("\r\n")
    if not line.startswith(PREFIX):
        return None
    try:
        data = json.loads(line[len(PREFIX) :])
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    kind = data.pop("kind")
    return Message(kind, data)


def emit(kind: str, stream: TextIO | None = None, **fields: Any) -> None:
    """Write one protocol line and flush it (default: ``sys.stdout``)."""
    stream = sys.stdout if stream is None else stream
    stream.write(encode(kind, **fields) + "\n")
    stream.flush()
