"""Durations (``500ms``, ``10s``, ``5m``) and sizes (``256MiB``) as config values."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, ByteSize, PlainSerializer, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 10s or 5m")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"'{value}' is not a duration (examples: 500ms, 10s, 5m, 1h)")
    return float(m.group(1)) * _SECONDS[m.group(2)]


def check_size(value: object) -> object:
    """What pydantic's ByteSize parses, with a message that shows the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB")
    if isinstance(value, str) and not _SIZE.match(value):
        raise ValueError(f"'{value}' is not a size (examples: 512KiB, 256MiB, 1GiB)")
    return value


def format_duration(seconds: float) -> str:
    if seconds < 1 and seconds * 1000 == int(seconds * 1000):
        return f"{int(seconds * 1000)}ms"
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": ["string", "number"], "pattern": r"^\d+(\.\d+)?(ms|s|m|h)?$",
                    "description": "seconds, or a number with ms, s, m or h"}),
]
# pydantic's ByteSize does the parsing (KiB/MiB/GiB are binary, KB/MB/GB decimal)
Size = Annotated[
    ByteSize,
    BeforeValidator(check_size),
    WithJsonSchema({"type": ["string", "integer"], "pattern": r"^\d+(\.\d+)?(B|KiB|MiB|GiB|KB|MB|GB)?$",
                    "description": "bytes, or a number with KiB, MiB or GiB"}),
]
