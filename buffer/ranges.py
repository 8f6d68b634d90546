"""Seq ranges: acknowledgements applied as range statements, eviction ranges announced."""

from __future__ import annotations

from collections.abc import Iterable


def to_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, de-duplicated seqs as inclusive ``(first, last)`` runs of consecutive integers."""
    out: list[tuple[int, int]] = []
    first = last = None
    for s in sorted(set(seqs)):
        if last is not None and s == last + 1:
            last = s
            continue
        if first is not None and last is not None:
            out.append((first, last))
        first = last = s
    if first is not None and last is not None:
        out.append((first, last))
    return out


def merge_closest(ranges: list[tuple[int, int]], at_most: int) -> list[tuple[int, int]]:
    """Join ranges across their smallest gaps until at most ``at_most`` remain."""
    if len(ranges) <= at_most or at_most < 1:
        return ranges
    gaps = sorted(range(len(ranges) - 1), key=lambda i: ranges[i + 1][0] - ranges[i][1])
    join = set(gaps[: len(ranges) - at_most])
    out: list[tuple[int, int]] = []
    first = ranges[0][0]
    for i, (_, last) in enumerate(ranges):
        if i in join:
            continue
        out.append((first, last))
        if i + 1 < len(ranges):
            first = ranges[i + 1][0]
    return out
