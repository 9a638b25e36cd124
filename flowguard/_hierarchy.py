"""Dotted hierarchies (data categories, purposes): `health` is the parent of `health.diagnosis`."""

from __future__ import annotations

from collections.abc import Iterable


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class Hierarchy:
    """The declared ids plus the parents they declare implicitly, with precomputed relations."""

    __slots__ = ("_ancestors", "_children", "_descendants", "_leaves", "ids")

    def __init__(self, declared: Iterable[str]) -> None:
        ids: set[str] = set()
        for name in declared:
            ids.add(name)
            ids.update(_parents(name))
        self.ids: frozenset[str] = frozenset(ids)
        children: dict[str, set[str]] = {name: set() for name in ids}
        for name in ids:
            parents = _parents(name)
            if parents:
                children[parents[-1]].add(name)
        self._children = {k: tuple(sorted(v)) for k, v in children.items()}
        self._ancestors: dict[str, tuple[str, ...]] = {
            name: (*_parents(name), name) for name in ids
        }
        descendants: dict[str, set[str]] = {name: {name} for name in ids}
        for name in ids:
            for parent in _parents(name):
                descendants[parent].add(name)
        self._descendants = {k: frozenset(v) for k, v in descendants.items()}
        self._leaves = {
            k: tuple(sorted(d for d in v if not self._children[d]))
            for k, v in self._descendants.items()
        }

    def __contains__(self, name: object) -> bool:
        return name in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def children(self, name: str) -> tuple[str, ...]:
        return self._children[name]

    def is_leaf(self, name: str) -> bool:
        return not self._children[name]

    def ancestors_or_self(self, name: str) -> tuple[str, ...]:
        """From the root down to `name` itself (which need not be declared)."""
        found = self._ancestors.get(name)
        return found if found is not None else (*_parents(name), name)

    def descendants_or_self(self, name: str) -> frozenset[str]:
        return self._descendants[name]

    def leaves(self, name: str) -> tuple[str, ...]:
        """The leaves that `name` stands for (itself when it is a leaf), sorted."""
        return self._leaves[name]

    def all_leaves(self) -> tuple[str, ...]:
        return tuple(sorted(k for k, v in self._children.items() if not v))

    def overlapping(self, name: str) -> frozenset[str]:
        """Ancestors, self and descendants."""
        return self._descendants[name] | frozenset(self._ancestors[name])
