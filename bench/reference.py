"""Plain-Python reference evaluator (dicts and sets): the benchmark's same-process baseline.

It reads the same files as flowguard (``policy.yaml``, ``registry.json``) and decides
permit/deny per flow by SPEC §5, for the shapes that ``bench/workload.py`` produces
(single-file policy; selectors over actor/organization/kind/sector/role; dotted categories
and purposes; consent and non-consent permits; forbids; adult and parental guardianships
with optional scope). It computes the decision only, no reasons.

Semantics, per leaf ``c`` of the flow's categories (the flow is permitted iff every leaf is):

* unknown sender, recipient, category, purpose or sub-process -> deny;
* a forbid applies when sender and recipient selectors match, one of its purposes (if any)
  overlaps the flow's (ancestor, self or descendant), its sub-processes (if any) include the
  flow's, and one of its categories overlaps ``c`` -> deny;
* a permit applies when its selectors match, a category is ancestor-or-self of ``c``, a
  purpose is ancestor-or-self of the flow's purpose, and its sub-processes (if any) include
  the flow's; an applicable non-consent permit permits ``c``;
* an applicable consent permit permits ``c`` iff some consent ``k`` of the subject has
  ``given_at <= t < expires_at`` and ``t < withdrawn_at`` (if set), covers the recipient, ``c``,
  the purpose (ancestor-or-self) and the sub-process (if listed), is explicit when ``c`` is
  special, and its grantor had authority at ``given_at`` and still has it at ``t``: the subject
  when at least ``consent_age`` years old, or a guardian whose guardianship of the subject
  covers ``c`` and is valid at both times (``parental`` only while the subject is under
  ``majority_age``). A subject with no birth date counts as an adult.

All times are compared as POSIX seconds (floats); a date means 00:00 UTC. Everything that
does not depend on the flow is precomputed into indexes at build time:

* ``(recipient, leaf) -> forbids (senders, overlapping purposes, sub-processes)``;
* ``(recipient, leaf) -> permits (senders, purposes under, sub-processes, is-consent)``;
* ``subject -> consents``, each with its recipient actors, leaves, purposes, sub-processes,
  validity interval, and the intervals in which its grantor has authority.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import yaml

INF = math.inf
SELECTOR_KEYS = ("actor", "organization", "kind", "sector", "role")

# (senders or None for any, flow purposes it applies to, sub-processes or None for any,
#  is_consent -- always False for forbids)
RuleEntry = tuple[frozenset[str] | None, frozenset[str], frozenset[str] | None, bool]
# (authority end (exclusive), scope leaves or None for all)
Authority = tuple[float, frozenset[str] | None]


@dataclass(slots=True)
class RefConsent:
    id: str
    start: float  # given_at
    end: float  # min(expires_at, withdrawn_at), exclusive; INF if neither
    recipients: frozenset[str]  # actor ids
    leaves: frozenset[str]
    purposes: frozenset[str]  # the consent's purposes and all their descendants
    subprocesses: frozenset[str] | None
    explicit: bool
    authority: tuple[Authority, ...]  # empty = grantor had no authority at given_at


@dataclass(slots=True)
class RefEngine:
    actors: frozenset[str] = frozenset()
    leaves_of: dict[str, frozenset[str]] = field(default_factory=dict)  # category -> leaves
    special: frozenset[str] = frozenset()  # special leaves
    purposes: frozenset[str] = frozenset()
    subprocesses: frozenset[str] = frozenset()
    forbids: dict[tuple[str, str], list[RuleEntry]] = field(default_factory=dict)
    permits: dict[tuple[str, str], list[RuleEntry]] = field(default_factory=dict)
    consents: dict[str, list[RefConsent]] = field(default_factory=dict)


def _ts(value: Any) -> float:
    """RFC 3339 time (with zone) or a date -> POSIX seconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("time without a zone")
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    s = str(value)
    if len(s) == 10:
        return datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp()
    t = datetime.fromisoformat(s)
    if t.tzinfo is None:
        raise ValueError(f"time without a zone: {s!r}")
    return t.timestamp()


def _birthday_ts(birth: date, years: int) -> float:
    """POSIX seconds of the day a person born on ``birth`` turns ``years`` (00:00 UTC)."""
    y = birth.year + years
    try:
        d = date(y, birth.month, birth.day)
    except ValueError:  # 29 February in a non-leap year: whole years reached on 1 March
        d = date(y, 3, 1)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def _as_list(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def _ancestors_or_self(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _load_policy_doc(path: str) -> dict[str, Any]:
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith((".yaml", ".yml")))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    doc: dict[str, Any] = {}
    for fp in files:
        with open(fp, encoding="utf-8") as fh:
            for part in yaml.load_all(fh, Loader=loader):
                for k, v in (part or {}).items():
                    if isinstance(v, dict) and isinstance(doc.get(k), dict):
                        doc[k].update(v)
                    elif isinstance(v, list) and isinstance(doc.get(k), list):
                        doc[k].extend(v)
                    else:
                        doc[k] = v
    return doc


def build(policy_path: str, registry_path: str) -> RefEngine:
    """Parse the policy and registry files and precompute the indexes."""
    pol = _load_policy_doc(policy_path)
    with open(registry_path, encoding="utf-8") as fh:
        if registry_path.endswith(".json"):
            reg = json.load(fh)
        else:
            reg = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return build_from_docs(pol, reg)


def build_from_docs(pol: dict[str, Any], reg: dict[str, Any]) -> RefEngine:
    e = RefEngine()
    orgs: dict[str, dict[str, Any]] = pol.get("organizations") or {}
    # actor -> attribute -> value
    attrs: dict[str, dict[str, str]] = {}
    for aid, a in (pol.get("actors") or {}).items():
        o = orgs.get(a["organization"], {})
        attrs[aid] = {"actor": aid, "organization": a["organization"], "role": a.get("role", ""),
                      "kind": o.get("kind", ""), "sector": o.get("sector", "")}
    all_actors = frozenset(attrs)
    e.actors = all_actors

    matched: dict[str, frozenset[str]] = {}  # selector (as text) -> actors

    def match(sel: dict[str, Any] | None) -> frozenset[str] | None:
        """Actors a selector matches; None = every actor (selector omitted)."""
        if sel is None:
            return None
        key = repr(sel)  # generated selectors repeat with the same key order
        out = matched.get(key)
        if out is None:
            want = {k: set(_as_list(v)) for k, v in sel.items() if k in SELECTOR_KEYS}
            out = frozenset(aid for aid, at in attrs.items()
                            if all(at[k] in vals for k, vals in want.items()))
            matched[key] = out
        return out

    # categories: parents are declared implicitly by children
    cats: set[str] = set()
    special_roots: set[str] = set()
    for cid, attrs_c in (pol.get("data_categories") or {}).items():
        cats.update(_ancestors_or_self(cid))
        if (attrs_c or {}).get("special"):
            special_roots.add(cid)
    has_child = {c.rsplit(".", 1)[0] for c in cats if "." in c}
    leaf_set = {c for c in cats if c not in has_child}
    leaves_of: dict[str, set[str]] = {c: set() for c in cats}
    for leaf in leaf_set:
        for anc in _ancestors_or_self(leaf):
            leaves_of[anc].add(leaf)
    e.leaves_of = {c: frozenset(ls) for c, ls in leaves_of.items()}
    e.special = frozenset(
        leaf for leaf in leaf_set if any(a in special_roots for a in _ancestors_or_self(leaf)))

    purposes: set[str] = set()
    for pid in pol.get("purposes") or {}:
        purposes.update(_ancestors_or_self(pid))
    e.purposes = frozenset(purposes)
    # purpose -> itself and all its descendants
    desc: dict[str, set[str]] = {p: set() for p in purposes}
    for p in purposes:
        for anc in _ancestors_or_self(p):
            desc[anc].add(p)
    e.subprocesses = frozenset(pol.get("subprocesses") or {})

    def cat_leaves(names: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for c in names:
            out |= leaves_of[c]
        return out

    for r in pol.get("rules") or []:
        senders = match(r.get("sender"))
        recipients = match(r.get("recipient"))
        leaves = cat_leaves(r["data"])
        sps = frozenset(r["subprocesses"]) if r.get("subprocesses") else None
        fps: set[str] = set()
        if not r.get("purposes"):
            fps = set(purposes)
        elif r["effect"] == "forbid":
            for p in r["purposes"]:  # overlap: ancestors, self, descendants
                fps.update(_ancestors_or_self(p))
                fps |= desc[p]
        else:
            for p in r["purposes"]:  # the flow's purpose must be a descendant-or-self
                fps |= desc[p]
        is_consent = r["effect"] == "permit" and r.get("basis", "consent") == "consent"
        entry: RuleEntry = (senders, frozenset(fps), sps, is_consent)
        index = e.forbids if r["effect"] == "forbid" else e.permits
        for a in sorted(all_actors if recipients is None else recipients):
            for leaf in leaves:
                index.setdefault((a, leaf), []).append(entry)

    # ------------------------------------------------------------------ registry
    juris: dict[str, dict[str, Any]] = pol.get("jurisdictions") or {}
    default_j = pol.get("default_jurisdiction")
    # subject -> (consent-age reached at, majority reached at)
    ages: dict[str, tuple[float, float]] = {}
    for sid, s in (reg.get("subjects") or {}).items():
        bd = s.get("birth_date")
        j = juris.get(s.get("jurisdiction") or default_j or "", {})
        majority = int(j.get("majority_age", 18))
        consent_age = int(j.get("consent_age", majority))
        if bd is None:
            ages[sid] = (-INF, -INF)
        else:
            b = bd if isinstance(bd, date) else date.fromisoformat(str(bd))
            ages[sid] = (_birthday_ts(b, consent_age), _birthday_ts(b, majority))

    # (subject, guardian) -> [(from, until (exclusive), scope leaves)]
    guards: dict[tuple[str, str], list[tuple[float, float, frozenset[str] | None]]] = {}
    for g in reg.get("guardianships") or []:
        lo = _ts(g["valid_from"])
        hi = _ts(g["valid_until"]) if g.get("valid_until") is not None else INF
        if g["kind"] == "parental":
            maj = ages.get(g["subject"], (-INF, -INF))[1]
            hi = min(hi, maj)
        scope = frozenset(cat_leaves(g["scope"])) if g.get("scope") is not None else None
        guards.setdefault((g["subject"], g["guardian"]), []).append((lo, hi, scope))

    for k in reg.get("consents") or []:
        sid = k["subject"]
        start = _ts(k["given_at"])
        end = INF
        for key in ("expires_at", "withdrawn_at"):
            if k.get(key) is not None:
                end = min(end, _ts(k[key]))
        rec: set[str] = set()
        for sel in k["recipients"]:
            m = match(sel)
            rec |= all_actors if m is None else m
        kp: set[str] = set()
        for p in k["purposes"]:
            kp |= desc[p]
        authority: list[Authority] = []
        if k["given_by"] == sid:
            consent_from = ages.get(sid, (-INF, -INF))[0]
            if start >= consent_from:  # then also at every t >= given_at
                authority.append((INF, None))
        else:
            for lo, hi, scope in guards.get((sid, k["given_by"]), ()):
                if lo <= start < hi:  # valid when given; must still be valid at t
                    authority.append((hi, scope))
        sps_k = k.get("subprocesses")
        e.consents.setdefault(sid, []).append(RefConsent(
            id=k["id"], start=start, end=end, recipients=frozenset(rec),
            leaves=frozenset(cat_leaves(k["data"])), purposes=frozenset(kp),
            subprocesses=frozenset(sps_k) if sps_k is not None else None,
            explicit=bool(k.get("explicit", False)), authority=tuple(authority)))
    return e


def decide(e: RefEngine, flow: dict[str, Any]) -> bool:
    """True = permit. ``flow`` has the keys of ``flowguard.Flow``; ``at`` an aware datetime."""
    sender: str = flow["sender"]
    rec: str = flow["recipient"]
    purpose: str = flow["purpose"]
    sp: str = flow["subprocess"]
    if (sender not in e.actors or rec not in e.actors or purpose not in e.purposes
            or sp not in e.subprocesses):
        return False
    data: Sequence[str] = flow["data"]
    leaves: frozenset[str] | set[str] | None
    if len(data) == 1:
        leaves = e.leaves_of.get(data[0])
        if leaves is None:
            return False
    else:
        leaves = set()
        for c in data:
            ls = e.leaves_of.get(c)
            if ls is None:
                return False
            leaves |= ls
    if not leaves:
        return False
    t: float | None = None
    for leaf in leaves:
        key = (rec, leaf)
        for ss, ps, sps, _ in e.forbids.get(key, ()):
            if purpose in ps and (sps is None or sp in sps) and (ss is None or sender in ss):
                return False
        needs_consent = False
        lawful = False
        for ss, ps, sps, is_consent in e.permits.get(key, ()):
            if purpose in ps and (sps is None or sp in sps) and (ss is None or sender in ss):
                if not is_consent:
                    lawful = True
                    break
                needs_consent = True
        if lawful:
            continue
        if not needs_consent:
            return False
        if t is None:
            t = flow["at"].timestamp()
        special = leaf in e.special
        for k in e.consents.get(flow["subject"], ()):
            if (k.start <= t < k.end and rec in k.recipients and leaf in k.leaves
                    and purpose in k.purposes
                    and (k.subprocesses is None or sp in k.subprocesses)
                    and (k.explicit or not special)
                    and any(t < hi and (scope is None or leaf in scope)
                            for hi, scope in k.authority)):
                break
        else:
            return False
    return True


def decide_many(e: RefEngine, flows: Sequence[dict[str, Any]]) -> list[bool]:
    return [decide(e, f) for f in flows]
