"""Regions of (recipient, category, purpose, time) and their exact set algebra."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
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
    if ys is None or xs == ys:
        return xs
    kept = [x for x in xs if any(ancestor_or_self(y, x) for y in ys)]
    kept += [y for y in ys if any(strict_ancestor(x, y) for x in xs)]
    return unique(kept)


def _selector_and(a: Selector, b: Selector) -> Selector | None:
    if a == b:
        return a
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
    if ys is None or xs == ys:
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


class TooComplex(Exception):
    """The provisions split into more regions than an import may hold."""


def _same(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    return a == b or (a is not None and b is not None and set(a) == set(b))


def _covered(big: tuple[str, ...] | None, small: tuple[str, ...] | None) -> bool:
    if big is None:
        return True
    return small is not None and all(any(ancestor_or_self(b, s) for b in big) for s in small)


def contains(big: Box, small: Box) -> bool:
    """Every point of `small` is in `big` (a sufficient test: False when unsure)."""
    if big.recipients is not None and (small.recipients is None or not all(
            any(covers(b, s) for b in big.recipients) for s in small.recipients)):
        return False
    if not (_covered(big.data, small.data) and _covered(big.purposes, small.purposes)):
        return False
    if big.start is not None and (small.start is None or small.start < big.start):
        return False
    return big.end is None or (small.end is not None and small.end <= big.end)


def _union_values(a: tuple[Any, ...], b: tuple[Any, ...], tree: bool) -> tuple[Any, ...]:
    both = unique([*a, *b])
    if tree:   # a sub-category next to its ancestor adds nothing
        both = tuple(x for x in both if not any(strict_ancestor(y, x) for y in both))
    return both


def _merge_scope(a: Box, b: Box) -> Box | None:
    """The scope that is exactly `a` or `b` (time aside), when they differ in one of
    recipients, data and purposes only."""
    same = (_same(a.recipients, b.recipients), _same(a.data, b.data),
            _same(a.purposes, b.purposes))
    if sum(same) != 2:
        return None
    if not same[0]:
        if a.recipients is None or b.recipients is None:
            return None
        return replace(a, recipients=_union_values(a.recipients, b.recipients, False))
    if not same[1]:
        if a.data is None or b.data is None:
            return None
        return replace(a, data=_union_values(a.data, b.data, True))
    if a.purposes is None or b.purposes is None:
        return None
    return replace(a, purposes=_union_values(a.purposes, b.purposes, True))


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)
_Key = tuple[frozenset[Any] | None, ...]
_Span = tuple[datetime, datetime]


def _key(box: Box) -> _Key:
    return tuple(None if v is None else frozenset(v)
                 for v in (box.recipients, box.data, box.purposes))


def _sweep(spans: list[_Span]) -> list[_Span]:
    """Spans that overlap or meet, merged; sorted."""
    out: list[_Span] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def normalize(boxes: Sequence[Box], limit: int,
              spend: Callable[[int], None] = lambda n: None) -> list[Box]:
    """The same union of regions in fewer boxes: none empty, none inside another, periods
    of one scope that overlap or meet merged, and boxes of one period whose scopes differ
    in one dimension only merged. Deterministic order (scopes as first seen, then by
    time). `spend` is told the work done; raises `TooComplex` when more than `limit`
    boxes remain."""
    scopes: dict[_Key, Box] = {}
    spans: dict[_Key, list[_Span]] = {}
    for box in boxes:
        if box.empty():
            continue
        key = _key(box)
        if key not in scopes:
            scopes[key] = Box(box.recipients, box.data, box.purposes)
        spans.setdefault(key, []).append((box.start or _EARLIEST, box.end or _LATEST))
    spend(len(boxes))
    changed = True
    while changed:
        changed = False
        for key in spans:
            spans[key] = _sweep(spans[key])
        keys = list(spans)
        spend(len(keys) * len(keys))
        for a in keys:
            for b in keys:
                if a == b or a not in spans or b not in spans:
                    continue
                if contains(scopes[b], scopes[a]):
                    spend(len(spans[a]) + len(spans[b]))
                    kept = [s for s in spans[a] if not any(
                        t[0] <= s[0] and s[1] <= t[1] for t in spans[b])]
                    if len(kept) < len(spans[a]):
                        spans[a] = kept
                        changed = True
                    if not kept:
                        del spans[a]
                    continue
                merged = _merge_scope(scopes[a], scopes[b])
                common = set(spans[a]) & set(spans[b]) if merged is not None else set()
                if merged is None or not common:
                    continue
                spend(len(spans[a]) + len(spans[b]))
                new = _key(merged)
                if new in (a, b):
                    continue
                scopes.setdefault(new, merged)
                spans.setdefault(new, []).extend(sorted(common))
                for k in (a, b):
                    spans[k] = [s for s in spans[k] if s not in common]
                    if not spans[k]:
                        del spans[k]
                changed = True
    out = [Box(scope.recipients, scope.data, scope.purposes,
               None if start == _EARLIEST else start, None if end == _LATEST else end)
           for key, found in spans.items() for scope in (scopes[key],)
           for start, end in found]
    if len(out) > limit:
        raise TooComplex(len(out))
    return out
