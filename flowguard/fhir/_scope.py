"""Regions of (recipient, category, purpose, time) and their exact set algebra."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowguard.fhir._common import Path_
from flowguard.model import SELECTOR_KEYS, Selector


@dataclass(frozen=True)
class Box:
    """A region of (recipient, category, purpose, time); None on a dimension = unrestricted.

    recipients: a flow's recipient must match one selector; data/purposes: ancestor-or-self
    of the flow's; time: [start, end)."""

    recipients: tuple[Selector, ...] | None = None
    data: tuple[str, ...] | None = None
    purposes: tuple[str, ...] | None = None
    start: datetime | None = None
    end: datetime | None = None

    def empty(self) -> bool:
        return (self.recipients == () or self.data == () or self.purposes == ()
                or (self.start is not None and self.end is not None
                    and self.start >= self.end))


@dataclass
class Node:
    """One provision: whether it permits (else denies), its conditions, its exceptions."""

    path: Path_
    permit: bool
    cond: Box
    inert: bool = False  # grants (permit) or blocks (deny) nothing flowguard represents
    children: list[Node] = field(default_factory=list)


class Inexact(Exception):
    """A subtraction whose result flowguard cannot write exactly."""


def ancestor_or_self(a: str, b: str) -> bool:
    """`a` is `b` or an ancestor of `b` in a dotted hierarchy."""
    return b == a or b.startswith(a + ".")


def strict_ancestor(a: str, b: str) -> bool:
    return b != a and b.startswith(a + ".")


def unique(items: Sequence[Any]) -> tuple[Any, ...]:
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return tuple(seen)


def hier_intersect(xs: tuple[str, ...] | None,
                   ys: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """What both sets of subtrees cover, as subtrees (exact)."""
    if xs is None:
        return ys
    if ys is None:
        return xs
    kept = [x for x in xs if any(ancestor_or_self(y, x) for y in ys)]
    kept += [y for y in ys if any(strict_ancestor(x, y) for x in xs)]
    return unique(kept)


def _selector_and(a: Selector, b: Selector) -> Selector | None:
    values: dict[str, Any] = {}
    for key in SELECTOR_KEYS:
        av, bv = getattr(a, key), getattr(b, key)
        if av is None and bv is None:
            continue
        if av is None or bv is None:
            values[key] = av if bv is None else bv
            continue
        both = tuple(v for v in av if v in bv)
        if not both:
            return None
        values[key] = both
    return Selector.model_validate(values)


def selectors_intersect(xs: tuple[Selector, ...] | None,
                        ys: tuple[Selector, ...] | None) -> tuple[Selector, ...] | None:
    if xs is None:
        return ys
    if ys is None:
        return xs
    both = [s for x in xs for y in ys if (s := _selector_and(x, y)) is not None]
    return unique(both)


def intersect(a: Box, b: Box) -> Box:
    start = a.start if b.start is None else b.start if a.start is None else max(a.start, b.start)
    end = a.end if b.end is None else b.end if a.end is None else min(a.end, b.end)
    return Box(selectors_intersect(a.recipients, b.recipients),
               hier_intersect(a.data, b.data), hier_intersect(a.purposes, b.purposes),
               start, end)


def covers(wide: Selector, narrow: Selector) -> bool:
    """Every actor `narrow` matches, `wide` matches too (decidable without a policy)."""
    for key in SELECTOR_KEYS:
        wv, nv = getattr(wide, key), getattr(narrow, key)
        if wv is None:
            continue
        if nv is None or any(v not in wv for v in nv):
            return False
    return True


def disjoint(a: Selector, b: Selector) -> bool:
    """No actor matches both (each actor has one id, organization, kind, sector, role)."""
    for key in SELECTOR_KEYS:
        av, bv = getattr(a, key), getattr(b, key)
        if av is not None and bv is not None and not set(av) & set(bv):
            return True
    return False
