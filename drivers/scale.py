"""Scaling raw device values into engineering units, shared by every protocol."""

from __future__ import annotations


def apply_scale(raw: int | float, scale: float, offset: float) -> int | float:
    if scale == 1 and offset == 0:
        return raw
    value = raw * scale + offset
    # 253 * 0.1 is 25.300000000000001 in binary; the device meant 25.3.
    return round(value, 9)
