"""Policy analysis over the finite domain: what each actor may receive (`who-can-receive`,
`what-can-receive`), the exact change in what is lawful between two policy versions (`diff`),
and the data of the GDPR Art. 30 record of processing (`ropa`).

The domain is sender x recipient x leaf category x purpose x sub-process, every id the policy
declares (purposes include the parents declared implicitly). For one (recipient, leaf) the
rules that can apply are few (the index of `PolicyIndex`); they split the senders, purposes
and sub-processes into blocks whose members every rule treats alike, so the status of the
whole block is that of any member. Each answer is exact, and each (recipient, leaf) costs a
handful of set operations, memoised by the rules it involves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Literal

from flowguard._hierarchy import Hierarchy
from flowguard.design import (
    NO_RULE,
    CompiledRule,
    LeafStatus,
    PolicyIndex,
    StageOutcome,
    grantor_options,
    stage_status,
)
from flowguard.model import Policy

Dims = tuple[frozenset[str], frozenset[str], frozenset[str]]
"""(senders, purposes, sub-processes)"""
SENDERS, PURPOSES, SUBPROCESSES = 0, 1, 2
Statuses = tuple["LeafStatus | None", ...]
MaskCell = tuple[int, int, int, Statuses]
"""(senders, purposes, sub-processes) as bit masks of a `Space`, and one status per policy
version (None: an id that version does not declare)."""


@dataclass(frozen=True, slots=True)
class Cell:
    """A block of the domain for one (recipient, leaf) where the status is the same."""

    senders: frozenset[str]
    purposes: frozenset[str]
    subprocesses: frozenset[str]
    statuses: Statuses  # one per policy version (None: unknown id)


class _MaskedRule:
    """A compiled rule with its sender, purpose and sub-process sets as bit masks (None: all),
    and the attributes the rule stage reads, at hand."""

    __slots__ = ("forbid", "free", "id", "masks", "p", "rule", "s")

    def __init__(self, rule: CompiledRule, masks: tuple[int | None, int | None, int | None]
                 ) -> None:
        self.rule = rule
        self.masks = masks
        self.id = rule.id
        self.forbid = rule.forbid
        self.free = rule.consent_free
        self.s, self.p = masks[SENDERS], masks[PURPOSES]


class Space:
    """The senders, purposes and sub-processes of a domain, each id a bit of an int: a set of
    them is an int, and splitting and intersecting sets are single machine operations."""

    def __init__(self, actors: Iterable[str], purposes: Iterable[str],
                 subprocesses: Iterable[str]) -> None:
        self.dims = (tuple(sorted(actors)), tuple(sorted(purposes)), tuple(sorted(subprocesses)))
        self.bits = tuple({v: 1 << i for i, v in enumerate(d)} for d in self.dims)
        self.full = tuple((1 << len(d)) - 1 for d in self.dims)
        self._masks: tuple[dict[frozenset[str], int], ...] = ({}, {}, {})
        self._members: tuple[dict[int, frozenset[str]], ...] = ({}, {}, {})
        self._rules: dict[int, _MaskedRule] = {}
        self._statuses: dict[tuple[object, ...], LeafStatus] = {}
        self._keep: list[tuple[object, ...]] = []

    def mask(self, dim: int, values: frozenset[str] | None) -> int | None:
        if values is None:
            return None
        cache = self._masks[dim]
        found = cache.get(values)
        if found is None:
            bits = self.bits[dim]
            found = 0
            for value in values:
                found |= bits.get(value, 0)
            cache[values] = found
        return found

    def known(self, dim: int, values: frozenset[str]) -> int | None:
        """The mask of the ids a version declares, or None when it declares them all."""
        found = self.mask(dim, values)
        return None if found == self.full[dim] else found

    def members(self, dim: int, mask: int) -> frozenset[str]:
        cache = self._members[dim]
        found = cache.get(mask)
        if found is None:
            found = cache[mask] = frozenset(
                v for v, bit in self.bits[dim].items() if mask & bit)
        return found

    def rule(self, rule: CompiledRule) -> _MaskedRule:
        found = self._rules.get(id(rule))
        if found is None or found.rule is not rule:
            found = self._rules[id(rule)] = _MaskedRule(rule, (
                self.mask(SENDERS, rule.senders), self.mask(PURPOSES, rule.purposes),
                self.mask(SUBPROCESSES, rule.subprocesses)))
        return found

    def status(self, applicable: Sequence[CompiledRule], special: bool) -> LeafStatus:
        """The interned status of the rules that apply to a leaf (the same rules, the same
        object, so that cells can be compared and grouped by identity)."""
        key = (special, *map(id, applicable))
        found = self._statuses.get(key)
        if found is None:
            found = self._statuses[key] = stage_status(applicable, special)
            self._keep.append(tuple(applicable))  # the ids in the key stay theirs
        return found

    def combined(self, statuses: Sequence[LeafStatus]) -> LeafStatus:
        key = ("combined", *map(id, statuses))
        found = self._statuses.get(key)
        if found is None:
            found = self._statuses[key] = combine(statuses)
            self._keep.append(tuple(statuses))
        return found

    def summary(self, outcome: StageOutcome, rules: tuple[str, ...], basis: str | None = None,
                law: str | None = None, art9: str | None = None, *,
                explicit: bool = False) -> LeafStatus:
        """An interned status naming rules that apply somewhere in a block (for diffs)."""
        key = ("summary", outcome, rules, basis, law, art9, explicit)
        found = self._statuses.get(key)
        if found is None:
            found = self._statuses[key] = LeafStatus(
                outcome, rules, (), basis, law, art9, explicit)  # type: ignore[arg-type]
        return found

    def cell(self, mask_cell: MaskCell) -> Cell:
        s, p, sp, statuses = mask_cell
        return Cell(self.members(SENDERS, s), self.members(PURPOSES, p),
                    self.members(SUBPROCESSES, sp), statuses)


@dataclass(frozen=True, slots=True)
class _Version:
    actors: frozenset[str]
    purposes: frozenset[str]
    subprocesses: frozenset[str]
    groups: tuple[tuple[bool, tuple[CompiledRule, ...]], ...] | None
    """(leaf is special, its rules) per leaf the category stands for; None: an unknown
    recipient or category."""

    def signature(self) -> tuple[tuple[bool, tuple[str, ...]], ...] | None:
        if self.groups is None:
            return None
        return tuple((special, tuple(r.id for r in rules)) for special, rules in self.groups)


_STAGE_WORST_FIRST = ("forbidden", "no-rule", "needs-consent", "lawful")


def combine(statuses: Sequence[LeafStatus]) -> LeafStatus:
    """The status of a category standing for several leaves: a flow of it is permitted only
    when every leaf is (used where a category is a leaf in one policy version only)."""
    rank = min(_STAGE_WORST_FIRST.index(s.outcome) for s in statuses)
    same = [s for s in statuses if _STAGE_WORST_FIRST.index(s.outcome) == rank]
    first = same[0]
    bases = {(s.basis, s.law, s.art9) for s in same}
    basis, law, art9 = first.basis, first.law, first.art9
    if len(bases) > 1:
        basis, law, art9 = None, None, None
    return LeafStatus(
        first.outcome, tuple(sorted({r for s in same for r in s.rules})),
        tuple(sorted({r for s in same for r in s.permits})), basis, law, art9,
        any(s.explicit for s in same),
        tuple(sorted({o for s in same for o in s.obligations})))


def _refine(universe: int, rules: Sequence[_MaskedRule], dim: int, extra: Sequence[int]
            ) -> list[tuple[int, list[_MaskedRule]]]:
    """Split `universe` into blocks that each rule's set (and each `extra` set) contains or
    misses whole; each block with the rules whose set contains it."""
    blocks: list[tuple[int, list[_MaskedRule]]] = [(universe, [])]
    for r in rules:
        m = r.masks[dim]
        if m is None:
            for _, inside_rules in blocks:
                inside_rules.append(r)
            continue
        refined: list[tuple[int, list[_MaskedRule]]] = []
        for block, block_rules in blocks:
            inside = block & m
            if not inside:
                refined.append((block, block_rules))
            elif inside == block:
                block_rules.append(r)
                refined.append((block, block_rules))
            else:
                refined.append((inside, [*block_rules, r]))
                refined.append((block & ~m, block_rules))
        blocks = refined
    for m in extra:
        refined = []
        for block, block_rules in blocks:
            inside = block & m
            if inside and inside != block:
                refined.append((inside, block_rules))
                refined.append((block & ~m, list(block_rules)))
            else:
                refined.append((block, block_rules))
        blocks = refined
    return blocks


def _cells(space: Space, versions: Sequence[_Version], *, merge: bool = True,
           only: frozenset[str] | None = None) -> list[MaskCell]:
    """The blocks of sender x purpose x sub-process, for one recipient and category, where
    every version's status is constant: split by sub-process, then purpose, then sender,
    each time only by the rules still applicable. With `merge`, blocks with equal statuses
    are joined where they form a larger block. With `only` (rule ids), just the blocks where
    one of those rules applies (elsewhere the rules that apply are the same in every
    version, when the versions differ only in those rules)."""
    if (only is None and len(versions) == 1 and versions[0].groups is not None
            and len(versions[0].groups) == 1):
        special, leaf_rules = versions[0].groups[0]
        cells = _single_cells(space, special, leaf_rules)
        return _merge(cells) if merge else cells
    masked: dict[int, _MaskedRule] = {}
    groups: list[list[tuple[bool, list[_MaskedRule]]] | None] = []
    for v in versions:
        if v.groups is None:
            groups.append(None)
            continue
        leaf_groups = []
        for special, leaf_rules in v.groups:
            ms = [space.rule(r) for r in leaf_rules]
            leaf_groups.append((special, ms))
            for m in ms:
                masked[id(m)] = m
        groups.append(leaf_groups)
    ordered = sorted(masked.values(), key=lambda m: m.rule.id)
    known = [(space.known(SENDERS, v.actors), space.known(PURPOSES, v.purposes),
              space.known(SUBPROCESSES, v.subprocesses)) for v in versions]
    extra = [[mask for k in known if (mask := k[dim]) is not None] for dim in range(3)]
    empty = tuple(None if g is None else NO_RULE for g in groups)
    full_s, full_p, full_sp = space.full
    out: list[MaskCell] = []

    def relevant(block_rules: list[_MaskedRule]) -> bool:
        if only is None:
            return bool(block_rules)
        return any(m.rule.id in only for m in block_rules)

    for sp_block, r1 in _refine(full_sp, ordered, SUBPROCESSES, extra[SUBPROCESSES]):
        if not relevant(r1):
            out.append((full_s, full_p, sp_block, empty))
            continue
        for p_block, r2 in _refine(full_p, r1, PURPOSES, extra[PURPOSES]):
            if not relevant(r2):
                out.append((full_s, p_block, sp_block, empty))
                continue
            for s_block, r3 in _refine(full_s, r2, SENDERS, extra[SENDERS]):
                if only is not None and not relevant(r3):
                    continue
                applicable = set(map(id, r3))
                statuses: list[LeafStatus | None] = []
                for leaf_groups_of, (ks, kp, ksp) in zip(groups, known, strict=True):
                    if (leaf_groups_of is None or (ks is not None and s_block & ks != s_block)
                            or (kp is not None and p_block & kp != p_block)
                            or (ksp is not None and sp_block & ksp != sp_block)):
                        statuses.append(None)
                        continue
                    leaf_statuses = [
                        space.status(tuple(m.rule for m in ms if id(m) in applicable), special)
                        for special, ms in leaf_groups_of]
                    statuses.append(leaf_statuses[0] if len(leaf_statuses) == 1
                                    else space.combined(leaf_statuses))
                out.append((s_block, p_block, sp_block, tuple(statuses)))
    return _merge(out) if merge else out


def _single_cells(space: Space, special: bool, rules: Sequence[CompiledRule]
                  ) -> list[MaskCell]:
    """`_cells` for one policy version and one leaf (the common case), whose ids are all
    in the space."""
    ordered = [space.rule(r) for r in rules]  # sorted by id already
    full_s, full_p, full_sp = space.full
    empty = (NO_RULE,)
    status = space.status
    out: list[MaskCell] = []
    for sp_block, r1 in _refine(full_sp, ordered, SUBPROCESSES, ()):
        if not r1:
            out.append((full_s, full_p, sp_block, empty))
            continue
        for p_block, r2 in _refine(full_p, r1, PURPOSES, ()):
            if not r2:
                out.append((full_s, p_block, sp_block, empty))
                continue
            for s_block, r3 in _refine(full_s, r2, SENDERS, ()):
                out.append((s_block, p_block, sp_block,
                            (status([m.rule for m in r3], special),)))
    return out


def _merge(cells: list[MaskCell]) -> list[MaskCell]:
    """Join blocks with equal statuses (interned: compared by identity) that differ in one
    dimension only, twice over."""
    if len(cells) < 2:
        return cells
    by_id = {tuple(map(id, c[3])): c[3] for c in cells}
    work = [(c[0], c[1], c[2], tuple(map(id, c[3]))) for c in cells]
    for _ in range(2):
        before = len(work)
        for dim in (SENDERS, PURPOSES, SUBPROCESSES):
            a, b = (dim + 1) % 3, (dim + 2) % 3
            joined: dict[tuple[int, int, tuple[int, ...]], int] = {}
            for c in work:
                masks = (c[0], c[1], c[2])
                key = (masks[a], masks[b], c[3])
                joined[key] = joined.get(key, 0) | masks[dim]
            merged: list[tuple[int, int, int, tuple[int, ...]]] = []
            for (ma, mb, ids), m in joined.items():
                dims = [0, 0, 0]
                dims[dim], dims[a], dims[b] = m, ma, mb
                merged.append((dims[0], dims[1], dims[2], ids))
            work = merged
        if len(work) == before:
            break
    return [(s, p, sp, by_id[ids]) for s, p, sp, ids in work]


class Reach:
    """What each actor may receive under one policy: the cells of every (recipient, leaf)
    that some rule mentions (elsewhere: no rule, denied)."""

    def __init__(self, index: PolicyIndex) -> None:
        self.index = index
        self.policy = index.policy
        self.space = Space(index.actor_ids, index.purpose_ids, index.subprocess_ids)
        self._memo: dict[object, list[MaskCell]] = {}
        self._keep: list[object] = []

    def recipients_of(self, leaf: str) -> tuple[str, ...]:
        """The actors some rule for `leaf` names as recipient, sorted."""
        found: set[str] = set()
        for rule in self.index.by_leaf.get(leaf, ()):
            if rule.recipients is None:
                return tuple(sorted(self.index.actor_ids))
            found |= rule.recipients
        return tuple(sorted(found))

    def leaves_of(self, actor: str) -> tuple[str, ...]:
        """The leaves some rule naming `actor` as recipient is about, sorted."""
        return tuple(sorted(leaf for leaf, rules in self.index.by_leaf.items()
                            if any(r.recipients is None or actor in r.recipients
                                   for r in rules)))

    def version(self, recipient: str, category: str) -> _Version:
        """The rules for one recipient and one category (a leaf, or a category standing for
        several leaves)."""
        index = self.index
        tree = index.category_tree
        groups: tuple[tuple[bool, tuple[CompiledRule, ...]], ...] | None = None
        if recipient in index.actor_ids and category in tree:
            groups = tuple((leaf in index.special, index.rules_at(recipient, leaf))
                           for leaf in tree.leaves(category))
        return _Version(index.actor_ids, index.purpose_ids, index.subprocess_ids, groups)

    def mask_cells(self, recipient: str, leaf: str, *, merge: bool = True) -> list[MaskCell]:
        """The cells of a declared recipient and leaf (keys with the same rules share them)."""
        rules = self.index.rules_at(recipient, leaf)
        key = (id(rules), leaf in self.index.special, merge)
        cells = self._memo.get(key)
        if cells is None:
            self._keep.append(rules)
            cells = self._memo[key] = _single_cells(self.space, key[1], rules)
            if merge:
                cells = self._memo[key] = _merge(cells)
        return cells

    def cells(self, recipient: str, leaf: str) -> tuple[Cell, ...]:
        return tuple(self.space.cell(c) for c in self.mask_cells(recipient, leaf))

    def receivable(self, recipient: str, leaf: str) -> Iterator[tuple[Cell, LeafStatus]]:
        for c in self.mask_cells(recipient, leaf):
            status = c[3][0]
            if status is not None and status.outcome in ("lawful", "needs-consent"):
                yield self.space.cell(c), status


# --------------------------------------------------------------------------- compressing sets


class Vocabulary:
    """Readable names for sets of actors, categories and purposes: the largest groups that
    a set contains whole (a sector, a kind, an organization; a parent category)."""

    def __init__(self, *policies: Policy) -> None:
        actors = {}
        organizations = {}
        for policy in reversed(policies):  # the newest version's attributes win
            organizations.update(policy.organizations)
            actors.update(policy.actors)
        self.actors = actors
        self.organizations = organizations
        self.all_actors = frozenset(actors)
        self._cache: dict[frozenset[str], list[tuple[str, str]]] = {}
        members: dict[tuple[str, str], set[str]] = {}
        for actor_id, actor in actors.items():
            org = organizations.get(actor.organization)
            members.setdefault(("organization", actor.organization), set()).add(actor_id)
            if org is not None:
                members.setdefault(("kind", org.kind), set()).add(actor_id)
                members.setdefault(("sector", org.sector), set()).add(actor_id)
        # where two groups have the same actors, the one the rules write wins: a selector
        # `{organization: nordby-kommune}` is echoed as written, not as the sector it fills
        written = {(key, value) for policy in policies for rule in policy.rules
                   for selector in (rule.sender, rule.recipient) if selector is not None
                   for key in ("organization", "kind", "sector")
                   for value in (getattr(selector, key) or ())}
        self._groups = sorted(
            ((key, frozenset(v)) for key, v in members.items() if len(v) > 1),
            key=lambda kv: (-len(kv[1]), kv[0] not in written,
                            ("sector", "kind", "organization").index(kv[0][0]), kv[0][1]))

    def actor_groups(self, actors: frozenset[str]) -> list[tuple[str, str]]:
        """`actors` as (selector key, value) pairs: whole sectors, kinds and organizations
        first, then single actors."""
        cached = self._cache.get(actors)
        if cached is None:
            cached = self._cache[actors] = self._actor_groups(actors)
        return cached

    def _actor_groups(self, actors: frozenset[str]) -> list[tuple[str, str]]:
        left = set(actors)
        found: list[tuple[str, str]] = []
        for (key, value), group in self._groups:
            if group <= left:
                found.append((key, value))
                left -= group
        found += [("actor", a) for a in sorted(left)]
        return found

    def actors_text(self, actors: frozenset[str], *, everyone: str = "every actor") -> str:
        if actors == self.all_actors:
            return everyone
        others = self.all_actors - actors
        if len(others) * 3 < len(self.all_actors):  # mostly everyone: name who is left out
            return f"{everyone} except " + self._actors_text(frozenset(others))
        return self._actors_text(actors)

    def _actors_text(self, actors: frozenset[str]) -> str:
        parts = []
        for key, value in self.actor_groups(actors):
            if key == "actor":
                actor = self.actors.get(value)
                parts.append(f"`{value}`" + (f" of `{actor.organization}`" if actor else ""))
            elif key == "organization":
                parts.append(f"every actor of `{value}`")
            elif key == "kind":
                parts.append(f"every actor of a `{value}`")
            else:
                parts.append(f"every actor in the {value} sector")
        return join(parts)


def cover(items: Iterable[str], ids: frozenset[str], descendants: dict[str, frozenset[str]]
          ) -> list[str]:
    """The fewest ids whose descendants-or-self are all in `items` and together make it up;
    an id in `items` whose descendants are not all there stands for itself alone."""
    chosen = set(items)
    whole: dict[str, bool] = {}
    result = []
    for item in sorted(chosen):
        if "." in item:
            parts = item.split(".")
            covered = False
            for i in range(1, len(parts)):
                ancestor = ".".join(parts[:i])
                if ancestor in chosen:
                    ok = whole.get(ancestor)
                    if ok is None:
                        ok = whole[ancestor] = descendants[ancestor] <= chosen
                    if ok:
                        covered = True
                        break
            if covered:
                continue  # an ancestor covers it
        result.append(item)
    return result


def _leaf_sets(policy: Policy) -> dict[str, frozenset[str]]:
    tree = policy.category_tree
    return {c: frozenset(tree.leaves(c)) for c in tree.ids if not tree.is_leaf(c)}


def leaf_cover(leaves: Iterable[str], policy: Policy,
               leaf_sets: dict[str, frozenset[str]] | None = None) -> list[str]:
    """The fewest categories whose leaves make up exactly `leaves`."""
    tree = policy.category_tree
    ancestors = tree.ancestors_or_self
    sets = leaf_sets if leaf_sets is not None else _leaf_sets(policy)
    chosen = set(leaves)
    whole: dict[str, bool] = {}
    result: list[str] = []
    for leaf in sorted(chosen):
        best = leaf
        for ancestor in ancestors(leaf)[:-1]:
            ok = whole.get(ancestor)
            if ok is None:
                members = sets.get(ancestor)
                ok = whole[ancestor] = members is not None and members <= chosen
            if ok:
                best = ancestor
                break
        if not result or result[-1] != best:
            result.append(best)
    return result


def purpose_cover(purposes: Iterable[str], policy: Policy | Hierarchy) -> list[str]:
    tree = policy if isinstance(policy, Hierarchy) else policy.purpose_tree
    return cover(purposes, tree.ids, _DescendantsOf(tree))


class _DescendantsOf(dict[str, frozenset[str]]):
    """descendants-or-self by purpose, looked up lazily"""

    def __init__(self, tree: Hierarchy) -> None:
        super().__init__()
        self.tree = tree

    def __missing__(self, key: str) -> frozenset[str]:
        value = self[key] = self.tree.descendants_or_self(key)
        return value


def join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def purposes_text(purposes: frozenset[str], policy: Policy | Hierarchy,
                  universe: frozenset[str] | None = None) -> str:
    tree = policy if isinstance(policy, Hierarchy) else policy.purpose_tree
    if purposes == (tree.ids if universe is None else universe):
        return "for any purpose"
    parts = []
    for p in purpose_cover(purposes, tree):
        alone = p in tree and not tree.is_leaf(p) and not tree.descendants_or_self(p) <= purposes
        parts.append(f"`{p}`" + (" (not its sub-purposes)" if alone else ""))
    return "for " + join(parts)


def subprocesses_text(subprocesses: frozenset[str], order: Sequence[str],
                      universe: frozenset[str] | None = None) -> str:
    if subprocesses == (frozenset(order) if universe is None else universe):
        return "at any sub-process"
    rank = {s: i for i, s in enumerate(order)}
    return "at " + join([f"`{s}`" for s in sorted(subprocesses,
                                                  key=lambda s: (rank.get(s, len(rank)), s))])


def status_text(status: LeafStatus | None) -> str:
    """How a category may be received (or why not), in a few words."""
    if status is None:
        return "not in the policy"
    if status.outcome == "lawful":
        law = f", {status.law}" if status.law else ""
        art9 = f", Art. 9(2) {status.art9}" if status.art9 else ""
        basis = status.basis or "a non-consent basis"
        return f"without consent on basis {basis}{law}{art9} (rule {rule_list(status.rules)})"
    if status.outcome == "needs-consent":
        explicit = "explicit " if status.explicit else ""
        return f"with {explicit}consent (rule {rule_list(status.rules)})"
    if status.outcome == "forbidden":
        return f"forbidden by rule {rule_list(status.rules)}"
    return "no permit rule"


def rule_list(ids: Iterable[str]) -> str:
    return ", ".join(f"`{r}`" for r in ids)


# --------------------------------------------------------------------------- who / what


@dataclass(frozen=True, slots=True)
class ReachRow:
    """Some categories an actor may receive, for some purposes at some sub-processes from some
    senders, on one basis."""

    recipient: str
    categories: tuple[str, ...]  # the fewest categories covering `leaves`
    leaves: tuple[str, ...]
    senders: frozenset[str]
    purposes: frozenset[str]
    subprocesses: frozenset[str]
    status: LeafStatus


@dataclass(frozen=True)
class ReachAnswer:
    query: Literal["who-can-receive", "what-can-receive"]
    subject: str  # the category or the actor asked about
    rows: tuple[ReachRow, ...]
    policy: Policy
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(sorted({r.recipient for r in self.rows}))


def who_can_receive(reach: Reach, category: str, *, purpose: str | None = None,
                    subprocess: str | None = None, sender: str | None = None) -> ReachAnswer:
    """Every actor that may receive some leaf of `category`, and how."""
    leaves = reach.index.category_tree.leaves(category)
    pairs = [(r, leaf) for leaf in leaves for r in reach.recipients_of(leaf)]
    rows = _rows(reach, pairs, purpose, subprocess, sender)
    return ReachAnswer("who-can-receive", category, rows, reach.policy,
                       _filters(purpose, subprocess, sender))


def what_can_receive(reach: Reach, actor: str, *, purpose: str | None = None,
                     subprocess: str | None = None, sender: str | None = None) -> ReachAnswer:
    """Every leaf category `actor` may receive, and how."""
    pairs = [(actor, leaf) for leaf in reach.leaves_of(actor)]
    rows = _rows(reach, pairs, purpose, subprocess, sender)
    return ReachAnswer("what-can-receive", actor, rows, reach.policy,
                       _filters(purpose, subprocess, sender))


def _filters(purpose: str | None, subprocess: str | None,
             sender: str | None) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in (("purpose", purpose), ("subprocess", subprocess),
                                     ("from", sender)) if v is not None)


def _rows(reach: Reach, pairs: Iterable[tuple[str, str]], purpose: str | None,
          subprocess: str | None, sender: str | None) -> tuple[ReachRow, ...]:
    grouped: dict[tuple[str, frozenset[str], frozenset[str], frozenset[str], LeafStatus],
                  set[str]] = {}
    for recipient, leaf in pairs:
        for cell, status in reach.receivable(recipient, leaf):
            senders, purposes, subprocesses = cell.senders, cell.purposes, cell.subprocesses
            if purpose is not None:
                if purpose not in purposes:
                    continue
                purposes = frozenset({purpose})
            if subprocess is not None:
                if subprocess not in subprocesses:
                    continue
                subprocesses = frozenset({subprocess})
            if sender is not None:
                if sender not in senders:
                    continue
                senders = frozenset({sender})
            grouped.setdefault((recipient, senders, purposes, subprocesses, status),
                               set()).add(leaf)
    rows = []
    for (recipient, senders, purposes, subprocesses, status), leaves in grouped.items():
        rows.append(ReachRow(recipient, tuple(leaf_cover(leaves, reach.policy)),
                             tuple(sorted(leaves)), senders, purposes, subprocesses, status))
    order = {s: i for i, s in enumerate(reach.policy.subprocesses)}
    rows.sort(key=lambda r: (r.recipient, r.categories, sorted(r.purposes),
                             sorted(order[s] for s in r.subprocesses), sorted(r.senders),
                             r.status.outcome, r.status.rules))
    return tuple(rows)


# --------------------------------------------------------------------------- diff

ChangeKind = Literal["widen", "narrow", "basis", "deny-reason"]
CHANGE_KINDS: tuple[ChangeKind, ...] = ("widen", "narrow", "basis", "deny-reason")
CHANGE_TEXT = {
    "widen": "now lawful where it was not, or with less consent",
    "narrow": "no longer lawful, or only with more consent",
    "basis": "still lawful without consent, on another legal basis",
    "deny-reason": "still denied whatever the consent, for another reason",
}


def level(status: LeafStatus | None) -> int:
    """How permissive: 0 denied whatever the consent, 1 with explicit consent, 2 with
    consent, 3 without consent."""
    if status is None or status.outcome in ("forbidden", "no-rule"):
        return 0
    if status.outcome == "needs-consent":
        return 1 if status.explicit else 2
    return 3


def change_key(status: LeafStatus | None) -> tuple[object, ...]:
    """What a status says about lawfulness (rule names aside)."""
    if status is None:
        return ("unknown",)
    if status.outcome == "needs-consent":
        return ("needs-consent", status.explicit)
    if status.outcome == "lawful":
        return ("lawful", status.basis, status.law, status.art9)
    return (status.outcome,)


def change_kind(old: LeafStatus | None, new: LeafStatus | None) -> ChangeKind | None:
    if change_key(old) == change_key(new):
        return None
    before, after = level(old), level(new)
    if after > before:
        return "widen"
    if after < before:
        return "narrow"
    if before == 3:
        return "basis"
    if old is None or new is None:
        return None  # an id added or removed, denied either way: a vocabulary change
    return "deny-reason"


@dataclass(frozen=True, slots=True)
class Change:
    """A block of the domain whose status changes: recipients x leaves x senders x purposes x
    sub-processes."""

    kind: ChangeKind
    recipients: tuple[str, ...]
    leaves: tuple[str, ...]
    categories: tuple[str, ...]  # the fewest categories covering `leaves` (new policy first)
    senders: frozenset[str]
    purposes: frozenset[str]
    subprocesses: frozenset[str]
    old: LeafStatus | None
    new: LeafStatus | None
    text: str

    @property
    def tuples(self) -> int:
        return (len(self.recipients) * len(self.leaves) * len(self.senders)
                * len(self.purposes) * len(self.subprocesses))


@dataclass(frozen=True)
class VocabularyChange:
    section: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyDiff:
    old: Policy
    new: Policy
    changes: tuple[Change, ...]
    vocabulary: tuple[VocabularyChange, ...]
    old_label: str = "old"
    new_label: str = "new"
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def widened(self) -> bool:
        return any(c.kind == "widen" for c in self.changes)

    @property
    def narrowed(self) -> bool:
        return any(c.kind == "narrow" for c in self.changes)


def diff_policies(old: Policy, new: Policy, *, old_label: str = "old",
                  new_label: str = "new") -> PolicyDiff:
    """Every block of the domain whose status differs between two policy versions, grouped
    into readable statements."""
    io, inew = PolicyIndex(old), PolicyIndex(new)
    ro, rn = Reach(io), Reach(inew)
    universe: Dims = (io.actor_ids | inew.actor_ids, io.purpose_ids | inew.purpose_ids,
                      io.subprocess_ids | inew.subprocess_ids)
    same_vocabulary = _vocabulary(old) == _vocabulary(new)
    old_rules = {r.id: r for r in old.rules}
    new_rules = {r.id: r for r in new.rules}
    changed_rules = frozenset(i for i in old_rules.keys() | new_rules.keys()
                              if old_rules.get(i) != new_rules.get(i))
    space = Space(*universe)
    found: list[tuple[str, str, MaskCell, ChangeKind]] = []
    if same_vocabulary:
        # only where a changed rule applies can a status change; there the rules that did
        # not change are shared, so that each is split by and looked up once
        keys: set[tuple[str, str]] = set()
        for index in (io, inew):
            for rule_id in changed_rules:
                compiled = index.compiled.get(rule_id)
                if compiled is not None:
                    keys.update(product(index.actor_ids if compiled.recipients is None
                                        else compiled.recipients,
                                        index.leaves_of(compiled.rule.data)))
        shared = {i: c for i, c in io.compiled.items() if i not in changed_rules}
        memo: dict[tuple[int, int, bool], list[tuple[MaskCell, ChangeKind]]] = {}
        for recipient, leaf in sorted(keys):
            before = io.rules_at(recipient, leaf)
            after = inew.rules_at(recipient, leaf)
            special = leaf in io.special
            key = (id(before), id(after), special)
            changed = memo.get(key)
            if changed is None:
                versions = (
                    _Version(io.actor_ids, io.purpose_ids, io.subprocess_ids,
                             ((special, before),)),
                    _Version(inew.actor_ids, inew.purpose_ids, inew.subprocess_ids,
                             ((special, tuple(shared.get(r.id, r) for r in after)),)))
                changed = memo[key] = _changes(space, versions, changed_rules)
            found += [(recipient, leaf, c, kind) for c, kind in changed]
    else:
        leaves = sorted(set(io.leaves) | set(inew.leaves))
        candidates = set(io.rules) | set(inew.rules)
        for index, reach in ((io, ro), (inew, rn)):
            tree = index.category_tree
            for leaf in leaves:
                if leaf in tree and not tree.is_leaf(leaf):  # a leaf only in the other one
                    for part in tree.leaves(leaf):
                        candidates.update((r, leaf) for r in reach.recipients_of(part))
        any_memo: dict[object, list[tuple[MaskCell, ChangeKind]]] = {}
        for recipient, leaf in sorted(candidates):
            vo, vn = ro.version(recipient, leaf), rn.version(recipient, leaf)
            signature = (vo.signature(), vn.signature())
            changed = any_memo.get(signature)
            if changed is None:
                changed = any_memo[signature] = _changes(space, (vo, vn), None)
            found += [(recipient, leaf, c, kind) for c, kind in changed]
    changes = _statements(found, space, Vocabulary(old, new), old, new, universe)
    counts: dict[str, int] = {kind: sum(c.tuples for c in changes if c.kind == kind)
                              for kind in CHANGE_KINDS}
    return PolicyDiff(old, new, changes, _vocabulary_changes(old, new), old_label, new_label,
                      counts)


def _changes(space: Space, versions: Sequence[_Version], only: frozenset[str] | None
             ) -> list[tuple[MaskCell, ChangeKind]]:
    """The blocks of one recipient and category whose status changes between two versions."""
    if all(v.groups is None or len(v.groups) == 1 for v in versions):
        cells = _class_changes(space, versions[0], versions[1], only)
    else:  # a category that is a leaf in one version only: decide leaf by leaf
        cells = [c for c in _cells(space, versions, merge=False, only=only)
                 if change_kind(*c[3]) is not None]
    return [(c, kind) for c in _merge(cells) if (kind := change_kind(*c[3])) is not None]


def _class_changes(space: Space, old: _Version, new: _Version,
                   only: frozenset[str] | None = None) -> list[MaskCell]:
    """`_cells` restricted to what `change_kind` reads, for a leaf in each version (or an
    unknown id): per sub-process and block of senders, each version's purposes fall into
    classes (forbidden, no rule, consent, lawful per basis) by bit operations over all
    purposes at once, and the classes of the two versions are intersected. The rules a
    status names are those that apply somewhere in its block. With `only` (rule ids, the
    versions differing in those rules alone), just where one of them applies."""
    versions = (old, new)
    masked: dict[int, _MaskedRule] = {}
    members: list[set[int] | None] = []
    for v in versions:
        if v.groups is None:
            members.append(None)
            continue
        ms = [space.rule(r) for r in v.groups[0][1]]
        members.append({id(m) for m in ms})
        for m in ms:
            masked[id(m)] = m
    ordered = sorted(masked.values(), key=lambda m: m.id)
    known = [(space.known(SENDERS, v.actors), space.known(PURPOSES, v.purposes),
              space.known(SUBPROCESSES, v.subprocesses)) for v in versions]
    specials = [False if v.groups is None else v.groups[0][0] for v in versions]
    extra_s = [k[0] for k in known if k[0] is not None]
    extra_sp = [k[2] for k in known if k[2] is not None]
    full_s, full_p, full_sp = space.full
    out: list[MaskCell] = []
    for sp_block, at_sp in _refine(full_sp, ordered, SUBPROCESSES, extra_sp):
        if not at_sp:
            continue  # no rule in either version: no rule, or an unknown id, in both
        senders, purposes = full_s, full_p
        if only is not None:
            touched = [m for m in at_sp if m.id in only]
            if not touched:
                continue
            senders = _union(full_s, (m.s for m in touched))
            near = _union(full_p, (m.p for m in touched))
            # a rule that applies nowhere near the changed ones cannot change a status there
            at_sp = [m for m in at_sp if (m.s is None or m.s & senders)
                     and (m.p is None or m.p & near)]
        for s_block, block_rules in _refine(senders, at_sp, SENDERS, extra_s):
            if only is not None:
                purposes = _union(full_p, (m.p for m in block_rules if m.id in only))
                if not purposes:
                    continue
            classes: list[list[tuple[int, LeafStatus | None]]] = []
            for v_members, (ks, kp, ksp), special in zip(members, known, specials,
                                                         strict=True):
                if (v_members is None or (ks is not None and s_block & ks != s_block)
                        or (ksp is not None and sp_block & ksp != sp_block)):
                    classes.append([(full_p, None)])
                    continue
                rules = [m for m in block_rules if id(m) in v_members]
                classes.append(_classes(space, rules, special, full_p, kp))
            for old_mask, old_status in classes[0]:
                if not old_mask & purposes:
                    continue
                for new_mask, new_status in classes[1]:
                    both = old_mask & new_mask & purposes
                    if both and change_kind(old_status, new_status) is not None:
                        out.append((s_block, both, sp_block, (old_status, new_status)))
    return out


def _by_rules(hits: Sequence[tuple[str, int]]) -> list[tuple[int, tuple[str, ...]]]:
    """The union of some rules' masks, split into blocks by which of the rules hit them."""
    blocks: list[tuple[int, tuple[str, ...]]] = []
    for rule_id, mask in hits:
        refined: list[tuple[int, tuple[str, ...]]] = []
        for block, ids in blocks:
            inside = block & mask
            if inside:
                refined.append((inside, (*ids, rule_id)))
                mask &= ~inside
            if block & ~inside:
                refined.append((block & ~inside, ids))
        if mask:
            refined.append((mask, (rule_id,)))
        blocks = refined
    return blocks


def _union(full: int, masks: Iterable[int | None]) -> int:
    found = 0
    for mask in masks:
        if mask is None:
            return full
        found |= mask
    return found


def _classes(space: Space, rules: Sequence[_MaskedRule], special: bool, full: int,
             known: int | None) -> list[tuple[int, LeafStatus | None]]:
    """The purposes of one version at one sub-process and block of senders, split by what
    its status says about lawfulness (SPEC §5 steps 2-4, for all purposes at once)."""
    remaining = full if known is None else known
    classes: list[tuple[int, LeafStatus | None]] = []
    if known is not None and full & ~known:
        classes.append((full & ~known, None))
    forbids: list[tuple[str, int]] = []
    for m in rules:
        if m.forbid:
            hit = remaining if m.p is None else remaining & m.p
            if hit:
                forbids.append((m.id, hit))
    for block, ids in _by_rules(forbids):
        remaining &= ~block
        classes.append((block, space.summary("forbidden", ids)))
    for m in rules:  # sorted by id: the smallest non-consent permit is the basis
        if m.forbid or not m.free or not remaining:
            continue
        taken = remaining if m.p is None else remaining & m.p
        if taken:
            remaining &= ~taken
            rule = m.rule.rule
            classes.append((taken, space.summary("lawful", (rule.id,), rule.basis, rule.law,
                                                 rule.art9)))
    consents: list[tuple[str, int]] = []
    for m in rules:
        if m.forbid or m.free or not remaining:
            continue
        covered = remaining if m.p is None else remaining & m.p
        if covered:
            consents.append((m.id, covered))
    for block, ids in _by_rules(consents):
        remaining &= ~block
        classes.append((block, space.summary("needs-consent", ids, explicit=special)))
    if remaining:
        classes.append((remaining, NO_RULE))
    return classes


def _vocabulary(policy: Policy) -> tuple[object, ...]:
    tree = policy.category_tree
    return (policy.organizations, policy.actors, tree.ids,
            frozenset(c for c in tree.ids if policy.is_special(c)), policy.purpose_tree.ids,
            frozenset(policy.subprocesses))


def _statements(found: list[tuple[str, str, MaskCell, ChangeKind]], space: Space,
                vocabulary: Vocabulary, old: Policy, new: Policy,
                universe: Dims) -> tuple[Change, ...]:
    groups: dict[_GroupKey, dict[str, set[str]]] = {}
    statuses: dict[_GroupKey, tuple[LeafStatus | None, LeafStatus | None]] = {}
    for recipient, leaf, (s, p, sp, (old_status, new_status)), kind in found:
        key: _GroupKey = (kind, change_key(old_status), change_key(new_status), s, p, sp)
        groups.setdefault(key, {}).setdefault(recipient, set()).add(leaf)
        pair = statuses.get(key)
        if pair is None:
            statuses[key] = (old_status, new_status)
        elif pair != (old_status, new_status):  # the same change under other rules
            statuses[key] = (_with_rules(pair[0], old_status), _with_rules(pair[1], new_status))
    order = list(dict.fromkeys([*new.subprocesses, *old.subprocesses]))
    leaf_sets = (_leaf_sets(new), _leaf_sets(old), new.category_tree.ids,
                 old.category_tree.ids)
    trees = (new.purpose_tree, old.purpose_tree)
    scopes: dict[tuple[int, int, int], str] = {}
    changes = []
    for key, by_recipient in groups.items():
        kind, _, _, s, p, sp = key
        senders = space.members(SENDERS, s)
        purposes = space.members(PURPOSES, p)
        subprocesses = space.members(SUBPROCESSES, sp)
        scope = scopes.get((s, p, sp))
        if scope is None:
            scope = scopes[(s, p, sp)] = _scope(senders, purposes, subprocesses, vocabulary,
                                                trees, universe, order)
        by_leaves: dict[frozenset[str], list[str]] = {}
        for recipient, received in by_recipient.items():
            by_leaves.setdefault(frozenset(received), []).append(recipient)
        old_status, new_status = statuses[key]
        for leaf_set, recipients in by_leaves.items():
            leaves = tuple(sorted(leaf_set))
            categories = tuple(_cover_in(leaves, new, old, leaf_sets))
            text = _statement(kind, vocabulary.actors_text(frozenset(recipients)),
                              categories, scope, old_status, new_status)
            changes.append(Change(kind, tuple(sorted(recipients)), leaves, categories,
                                  senders, purposes, subprocesses, old_status, new_status,
                                  text))
    changes.sort(key=lambda c: (CHANGE_KINDS.index(c.kind), c.text))
    return tuple(changes)


_GroupKey = tuple[ChangeKind, tuple[object, ...], tuple[object, ...], int, int, int]


def _with_rules(status: LeafStatus | None, other: LeafStatus | None) -> LeafStatus | None:
    """`status` naming the rules of `other` too (the two say the same about lawfulness)."""
    if status is None or other is None or status is other:
        return status
    return replace(status, rules=tuple(sorted({*status.rules, *other.rules})), permits=(),
                   obligations=())


def _cover_in(leaves: Sequence[str], new: Policy, old: Policy,
              leaf_sets: tuple[dict[str, frozenset[str]], dict[str, frozenset[str]],
                               frozenset[str], frozenset[str]]) -> list[str]:
    if leaf_sets[2].issuperset(leaves):
        return leaf_cover(leaves, new, leaf_sets[0])
    if leaf_sets[3].issuperset(leaves):
        return leaf_cover(leaves, old, leaf_sets[1])
    return list(leaves)


def _scope(senders: frozenset[str], purposes: frozenset[str], subprocesses: frozenset[str],
           vocabulary: Vocabulary, trees: tuple[Hierarchy, Hierarchy], universe: Dims,
           order: Sequence[str]) -> str:
    """"for ... at ... [from ...]": the purposes, sub-processes and senders of a change."""
    which = trees[0] if purposes <= trees[0].ids else trees[1]
    others = universe[1] - purposes
    if others and len(others) * 3 < len(universe[1]):
        scope = "for any purpose but " + purposes_text(frozenset(others), which,
                                                       universe[1]).removeprefix("for ")
    else:
        scope = purposes_text(purposes, which, universe[1])
    scope += " " + subprocesses_text(subprocesses, order, universe[2])
    if senders != universe[0]:
        scope += " from " + vocabulary.actors_text(senders, everyone="anyone")
    return scope


def _statement(kind: str, who: str, categories: Sequence[str], scope: str,
               old: LeafStatus | None, new: LeafStatus | None) -> str:
    what = join([f"`{c}`" for c in categories])
    if kind == "widen":
        return f"{who} may now receive {what} {scope} {_how(new)} (before: {_was(old)})"
    if kind == "narrow":
        if level(new) == 0:
            return f"{who} may no longer receive {what} {scope} (before: {_how(old)}; " \
                   f"now: {_was(new)})"
        return f"{who} now needs {_needs(new)} to receive {what} {scope} " \
               f"(before: {_how(old)})"
    if kind == "basis":
        return f"{who} may still receive {what} {scope} without consent, now " \
               f"{_basis(new)} (before: {_basis(old)})"
    return f"{who} still may not receive {what} {scope}: now {_was(new)} " \
           f"(before: {_was(old)})"


def _how(status: LeafStatus | None) -> str:
    if status is not None and status.outcome == "lawful":
        return f"without consent, {_basis(status)}"
    if status is not None and status.outcome == "needs-consent":
        return f"with {_needs(status)} (rule {rule_list(status.rules)})"
    return _was(status)


def _needs(status: LeafStatus | None) -> str:
    return "explicit consent" if status is not None and status.explicit else "consent"


def _basis(status: LeafStatus | None) -> str:
    if status is None:
        return "no basis"
    law = f", {status.law}" if status.law else ""
    art9 = f", Art. 9(2) {status.art9}" if status.art9 else ""
    return f"on basis {status.basis}{law}{art9} (rule {rule_list(status.rules)})"


def _was(status: LeafStatus | None) -> str:
    if status is None:
        return "not in the policy"
    if status.outcome == "forbidden":
        return f"forbidden by rule {rule_list(status.rules)}"
    if status.outcome == "no-rule":
        return "no permit rule"
    if status.outcome == "needs-consent":
        return f"only with {_needs(status)} (rule {rule_list(status.rules)})"
    return f"lawful without consent {_basis(status)}"


def _vocabulary_changes(old: Policy, new: Policy) -> tuple[VocabularyChange, ...]:
    result = []
    sections: list[tuple[str, dict[str, object], dict[str, object]]] = [
        ("organizations", dict(old.organizations), dict(new.organizations)),
        ("actors", dict(old.actors), dict(new.actors)),
        ("data_categories", {c: old.is_special(c) for c in old.category_tree.ids},
         {c: new.is_special(c) for c in new.category_tree.ids}),
        ("purposes", dict.fromkeys(old.purpose_tree.ids), dict.fromkeys(new.purpose_tree.ids)),
        ("subprocesses", dict(old.subprocesses), dict(new.subprocesses)),
        ("rules", {r.id: r for r in old.rules}, {r.id: r for r in new.rules}),
        ("jurisdictions", dict(old.jurisdictions), dict(new.jurisdictions)),
    ]
    for section, before, after in sections:
        added = tuple(sorted(after.keys() - before.keys()))
        removed = tuple(sorted(before.keys() - after.keys()))
        changed = tuple(sorted(k for k in before.keys() & after.keys() if before[k] != after[k]))
        if added or removed or changed:
            result.append(VocabularyChange(section, added, removed, changed))
    if old.default_jurisdiction != new.default_jurisdiction:
        result.append(VocabularyChange("default_jurisdiction",
                                       changed=(f"{old.default_jurisdiction} → "
                                                f"{new.default_jurisdiction}",)))
    return tuple(result)


# --------------------------------------------------------------------------- ROPA


@dataclass(frozen=True)
class RopaRecipient:
    organization: str
    categories: tuple[str, ...]  # covering leaves
    special: tuple[str, ...]
    bases: tuple[str, ...]  # "consent", "explicit consent", "public-task (law)", ...


@dataclass(frozen=True)
class RopaActivity:
    """One processing activity of the record: a purpose."""

    purpose: str
    description: str | None
    categories: tuple[str, ...]
    special: tuple[str, ...]
    bases: tuple[tuple[str, str | None, str | None, tuple[str, ...]], ...]
    """(basis, law, Art. 9(2) condition, rules); basis `consent` or `explicit consent`."""
    recipients: tuple[RopaRecipient, ...]
    subprocesses: tuple[str, ...]
    obligations: tuple[str, ...]
    restrictions: tuple[str, ...]  # the forbid rules that can apply to this purpose
    other_data: tuple[str, ...] = ()
    """Categories marked `personal: false` (aggregates): governed, but not personal data."""
    within_controller: tuple[str, ...] = ()
    """Categories used inside the controller for this purpose: processing, not disclosure."""


@dataclass(frozen=True)
class Ropa:
    policy: Policy
    activities: tuple[RopaActivity, ...]
    unused_purposes: tuple[str, ...]
    subjects: tuple[str, ...]  # sentences describing the categories of data subjects
    restrictions: tuple[str, ...]  # every forbid rule id


def ropa(policy: Policy, reach: Reach | None = None) -> Ropa:
    """The record of processing activities (GDPR Art. 30(1)) as far as the policy says it:
    per purpose, the data that may be disclosed, to whom, on which legal bases."""
    reach = reach or Reach(PolicyIndex(policy))
    index, space = reach.index, reach.space
    # keys with the same rules have the same uses: computed once per distinct rules
    Basis = tuple[str, str | None, str | None]
    per_rules: dict[tuple[int, bool], dict[Basis, int]] = {}
    # (purposes, basis) -> sub-processes, rules, obligations (over all keys)
    globally: dict[tuple[int, Basis], tuple[list[int], set[str], set[str]]] = {}
    # (organization, leaf, basis) -> purposes
    received: dict[tuple[str, str, Basis], int] = {}
    actors = policy.actors
    for (recipient, leaf), rules in index.rules.items():
        special = leaf in index.special
        by_basis = per_rules.get((id(rules), special))
        if by_basis is None:
            by_basis = per_rules[(id(rules), special)] = {}
            for (p, basis), (sp_mask, rule_ids, obligations) in _uses(space, rules,
                                                                      special).items():
                by_basis[basis] = by_basis.get(basis, 0) | p
                found = globally.get((p, basis))
                if found is None:
                    globally[(p, basis)] = ([sp_mask], set(rule_ids), set(obligations))
                else:
                    found[0][0] |= sp_mask
                    found[1].update(rule_ids)
                    found[2].update(obligations)
        organization = actors[recipient].organization
        for basis, p in by_basis.items():
            key = (organization, leaf, basis)
            received[key] = received.get(key, 0) | p
    per_purpose: dict[str, _RopaEntry] = {}

    def entry_of(purpose: str) -> _RopaEntry:
        found = per_purpose.get(purpose)
        if found is None:
            found = per_purpose[purpose] = _RopaEntry()
        return found

    by_purposes: dict[tuple[int, str, Basis], set[str]] = {}
    for (organization, leaf, basis), p in received.items():
        by_purposes.setdefault((p, organization, basis), set()).add(leaf)
    for (p, organization, basis), leaves in by_purposes.items():
        text = basis[0] + (f" ({basis[1]})" if basis[1] else "")
        for purpose in space.members(PURPOSES, p):
            entry = entry_of(purpose)
            entry.leaves.update(leaves)
            org_entry = entry.orgs.setdefault(organization, (set(), set()))
            org_entry[0].update(leaves)
            org_entry[1].add(text)
    for (p, basis), (sp_masks, rule_ids, obligations) in globally.items():
        subprocesses = space.members(SUBPROCESSES, sp_masks[0])
        for purpose in space.members(PURPOSES, p):
            entry = entry_of(purpose)
            entry.bases.setdefault(basis, set()).update(rule_ids)
            entry.sp.update(subprocesses)
            entry.obligations.update(obligations)
    leaf_sets = _leaf_sets(policy)
    written = {c for r in policy.rules if r.effect == "permit" for c in r.data}
    controller = policy.service.controller if policy.service is not None else None
    order = {s: i for i, s in enumerate(policy.subprocesses)}
    tree = policy.purpose_tree
    activities = []
    forbids = [r for r in sorted(policy.rules, key=lambda r: r.id) if r.effect == "forbid"]
    for purpose in sorted(per_purpose):
        entry = per_purpose[purpose]
        leaves_set, orgs, bases = entry.leaves, entry.orgs, entry.bases
        sp, obligations = entry.sp, entry.obligations
        recipients = tuple(
            RopaRecipient(org, tuple(written_cover(org_leaves, policy, leaf_sets, written)),
                          tuple(sorted(c for c in org_leaves if c in index.special)),
                          tuple(sorted(org_bases)))
            for org, (org_leaves, org_bases) in sorted(orgs.items()) if org != controller)
        internal = orgs.get(controller) if controller is not None else None
        restrictions = tuple(
            r.id for r in forbids
            if r.purposes is None or any(q in tree and purpose in tree.overlapping(q)
                                         for q in r.purposes))
        described = policy.purposes.get(purpose)
        personal = {c for c in leaves_set if policy.is_personal(c)}
        activities.append(RopaActivity(
            purpose, described.description if described else None,
            tuple(written_cover(personal, policy, leaf_sets, written)),
            tuple(sorted(c for c in leaves_set if c in index.special)),
            tuple(sorted(((b, law, art9, tuple(sorted(rules)))
                          for (b, law, art9), rules in bases.items()),
                         key=lambda x: (x[0], x[1] or "", x[2] or ""))),
            recipients, tuple(sorted(sp, key=order.__getitem__)), tuple(sorted(obligations)),
            restrictions,
            tuple(written_cover(leaves_set - personal, policy, leaf_sets, written)),
            tuple(written_cover(internal[0], policy, leaf_sets, written)) if internal else ()))
    unused = tuple(sorted(p for p in policy.purposes if p not in per_purpose))
    return Ropa(policy, tuple(activities), unused, _subjects(policy),
                tuple(r.id for r in forbids))


def _uses(space: Space, rules: Sequence[CompiledRule], special: bool
          ) -> dict[tuple[int, tuple[str, str | None, str | None]],
                    tuple[int, set[str], set[str]]]:
    """Where one leaf may be received (for some sender) and on which basis, as purposes
    masks: (purposes, basis) -> (sub-processes, rules, obligations). The rule stage of SPEC
    §5 over all purposes at once, by bit operations: per sub-process and block of senders,
    forbids take their purposes, non-consent permits the rest in order of id, consent-based
    permits what remains."""
    masked = [space.rule(r) for r in rules]
    full_s, full_p, full_sp = space.full
    uses: dict[tuple[int, tuple[str, str | None, str | None]], tuple[int, set[str], set[str]]]
    uses = {}
    consent_basis = ("explicit consent" if special else "consent", None, None)

    def use(purposes: int, basis: tuple[str, str | None, str | None], sp_mask: int,
            rule: str, obligations: Iterable[str]) -> None:
        found = uses.get((purposes, basis))
        if found is None:
            uses[(purposes, basis)] = (sp_mask, {rule}, set(obligations))
        else:
            found[1].add(rule)
            found[2].update(obligations)
            if found[0] | sp_mask != found[0]:
                uses[(purposes, basis)] = (found[0] | sp_mask, found[1], found[2])

    for sp_mask, at_sp in _refine(full_sp, masked, SUBPROCESSES, ()):
        if all(m.forbid for m in at_sp):
            continue
        blocks = _refine(full_s, at_sp, SENDERS, ()) \
            if any(m.s is not None for m in at_sp) else [(full_s, at_sp)]
        for _, block_rules in blocks:
            remaining = full_p
            for m in block_rules:
                if m.forbid:
                    remaining &= 0 if m.p is None else ~m.p
            for m in block_rules:  # sorted by id: the smallest non-consent permit is the basis
                if not remaining:
                    break
                if m.forbid or not m.free:
                    continue
                taken = remaining if m.p is None else remaining & m.p
                if taken:
                    remaining &= ~taken
                    rule = m.rule.rule
                    assert rule.basis is not None
                    use(taken, (rule.basis, rule.law, rule.art9), sp_mask, rule.id,
                        rule.obligations)
            done = 0
            for m in block_rules:  # what is left is lawful with consent
                if not remaining:
                    break
                if m.forbid or m.free:
                    continue
                covered = remaining if m.p is None else remaining & m.p
                if covered:
                    # the smallest consent-based permit names the obligations
                    use(covered, consent_basis, sp_mask, m.id,
                        m.rule.rule.obligations if covered & ~done else ())
                    done |= covered
    return uses


@dataclass
class _RopaEntry:
    leaves: set[str] = field(default_factory=set)
    orgs: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)
    bases: dict[tuple[str, str | None, str | None], set[str]] = field(default_factory=dict)
    sp: set[str] = field(default_factory=set)
    obligations: set[str] = field(default_factory=set)


def written_cover(leaves: Iterable[str], policy: Policy,
                  leaf_sets: dict[str, frozenset[str]] | None = None,
                  written: Iterable[str] = ()) -> list[str]:
    """The categories of `leaves` as the policy's rules write them: the fewest categories
    whose leaves make up exactly `leaves`, where a parent no rule names is spelt out as its
    leaves (`social.interests`, not `social`, when a rule names only the former)."""
    named = set(written)
    tree = policy.category_tree
    result: list[str] = []
    for c in leaf_cover(leaves, policy, leaf_sets):
        if tree.is_leaf(c) or c in named:
            result.append(c)
        else:
            result += sorted(tree.leaves(c))
    return result


def admits_minors(policy: Policy, majority_age: int) -> bool:
    """Whether the service may have citizens younger than `majority_age`: always, unless
    `service.citizens` says otherwise."""
    service = policy.service
    if service is None or service.citizens is None:
        return True
    return service.citizens.admits_under(majority_age)


def _subjects(policy: Policy) -> tuple[str, ...]:
    service = policy.service
    name = (service.name or service.id) if service is not None else "the service"
    lines = [f"Citizens who take part in {name} (the data subjects), and the people who "
             "consent for them."]
    ages = service.citizens if service is not None else None
    if ages is not None and (ages.min_age is not None or ages.max_age is not None):
        if ages.max_age is None:
            lines.append(f"The service is for citizens aged {ages.min_age} or older.")
        elif ages.min_age is None:
            lines.append(f"The service is for citizens aged {ages.max_age} or younger.")
        else:
            lines.append(f"The service is for citizens aged {ages.min_age} to "
                         f"{ages.max_age}.")
    for option in grantor_options(policy):
        if option.who == "citizen":
            where = f" ({option.jurisdiction})" if option.jurisdiction else ""
            if option.from_age and admits_minors(policy, option.from_age):
                lines.append(f"Citizens consent for themselves from age {option.from_age}"
                             f"{where}.")
            else:
                lines.append(f"Citizens consent for themselves{where}.")
        elif option.who == "parent" and (option.until_age is None
                                         or not admits_minors(policy, option.until_age)):
            continue
        elif option.who == "parent":
            where = f" ({option.jurisdiction})" if option.jurisdiction else ""
            lines.append(f"Minors (under {option.until_age}{where}) may take part; holders of "
                         "parental responsibility consent for them.")
        else:
            lines.append("Adults under guardianship may take part; a guardian consents "
                         "within the scope of the guardianship.")
    return tuple(lines)
