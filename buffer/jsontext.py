"""Values as JSON text, encoded once when a reading is stored and spliced as-is into payloads.

orjson (C/Rust, wheels for the Pi's aarch64 and armv7l) encodes a reading's values about ten
times faster than the standard library, and encoding is most of what storing a reading
costs. Both give the same JSON for what a reading holds (finite floats in shortest
round-trip form, ints, bools, UTF-8 text; a NaN or infinity from a bad register becomes
null). The standard library stays as the fallback where orjson has no wheel, and for
anything orjson refuses (an int beyond 64 bits).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

_stdlib = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

_fast: Callable[[Any], bytes] | None
try:
    import orjson

    _fast = orjson.dumps
except ImportError:  # no wheel for this machine: the standard library, a few µs slower per reading
    _fast = None


def values_json(values: Mapping[str, object]) -> str:
    """Strict JSON text of a mapping of point values (non-finite floats become null)."""
    if _fast is not None:
        try:
            return _fast(values).decode()
        except TypeError:  # orjson.JSONEncodeError: e.g. an int beyond 64 bits
            pass
    try:
        return _stdlib(values)
    except ValueError:
        return _stdlib({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()})
