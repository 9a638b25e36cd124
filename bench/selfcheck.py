#!/usr/bin/env python3
"""Sanity check of ``bench/reference.py`` against a second, literal reading of SPEC §5.

The literal evaluator scans every rule and every consent per leaf, compares aware datetimes,
and computes ages in whole years from the birth date, with no precomputed index; it shares no
code with ``reference.py`` beyond the YAML/JSON parsing. Both must agree on every flow.

    python bench/selfcheck.py --rules 100 --subjects 1000 --consents 5000 --flows 10000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reference
import workload


def _t(v: Any) -> datetime:
    s = str(v)
    if len(s) == 10:
        return datetime.fromisoformat(s).replace(tzinfo=UTC)
    return datetime.fromisoformat(s)


def _age(birth: date, at: datetime) -> int:
    d = at.astimezone(UTC).date()
    return d.year - birth.year - ((d.month, d.day) < (birth.month, birth.day))


class Literal:
    def __init__(self, pol: dict[str, Any], reg: dict[str, Any]) -> None:
        self.pol = pol
        self.orgs = pol["organizations"]
        self.actors = pol["actors"]
        cats: set[str] = set()
        for c in pol["data_categories"]:
            parts = c.split(".")
            cats.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        self.cats = cats
        self.leaves = {c for c in cats if not any(d.startswith(c + ".") for d in cats)}
        self.special_roots = {c for c, a in pol["data_categories"].items() if a.get("special")}
        purposes: set[str] = set()
        for p in pol["purposes"]:
            parts = p.split(".")
            purposes.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        self.purposes = purposes
        self.sps = set(pol["subprocesses"])
        self.subjects = reg["subjects"]
        self.guardianships = reg["guardianships"]
        self.consents_of: dict[str, list[dict[str, Any]]] = {}
        for k in reg["consents"]:
            self.consents_of.setdefault(k["subject"], []).append(k)

    @staticmethod
    def anc(x: str, y: str) -> bool:
        """x is ancestor-or-self of y."""
        return y == x or y.startswith(x + ".")

    def sel(self, s: dict[str, Any] | None, actor: str) -> bool:
        if s is None:
            return True
        a = self.actors[actor]
        o = self.orgs[a["organization"]]
        vals = {"actor": actor, "organization": a["organization"], "role": a["role"],
                "kind": o["kind"], "sector": o["sector"]}
        return all(vals[k] in (v if isinstance(v, list) else [v]) for k, v in s.items())

    def ages(self, subject: str) -> tuple[date | None, int, int]:
        s = self.subjects.get(subject)
        if s is None or s.get("birth_date") is None:
            return None, 18, 18
        j = self.pol["jurisdictions"][s.get("jurisdiction") or self.pol["default_jurisdiction"]]
        return (date.fromisoformat(s["birth_date"]), j["majority_age"],
                j.get("consent_age", j["majority_age"]))

    def authority(self, k: dict[str, Any], leaf: str, when: datetime) -> bool:
        subject = k["subject"]
        birth, majority, consent_age = self.ages(subject)
        if k["given_by"] == subject:
            return birth is None or _age(birth, when) >= consent_age
        for g in self.guardianships:
            if g["subject"] != subject or g["guardian"] != k["given_by"]:
                continue
            if g.get("scope") is not None and not any(self.anc(c, leaf) for c in g["scope"]):
                continue
            if not _t(g["valid_from"]) <= when:
                continue
            if g.get("valid_until") is not None and not when < _t(g["valid_until"]):
                continue
            # a subject with no birth date counts as an adult: no parental authority
            if g["kind"] == "parental" and (birth is None or _age(birth, when) >= majority):
                continue
            return True
        return False

    def leaf_ok(self, f: dict[str, Any], leaf: str) -> bool:
        permits = []
        for r in self.pol["rules"]:
            if not (self.sel(r.get("sender"), f["sender"])
                    and self.sel(r.get("recipient"), f["recipient"])):
                continue
            if r.get("subprocesses") and f["subprocess"] not in r["subprocesses"]:
                continue
            if r["effect"] == "forbid":
                if r.get("purposes") and not any(
                        self.anc(p, f["purpose"]) or self.anc(f["purpose"], p)
                        for p in r["purposes"]):
                    continue
                if any(self.anc(c, leaf) or self.anc(leaf, c) for c in r["data"]):
                    return False
            else:
                if r.get("purposes") and not any(self.anc(p, f["purpose"])
                                                 for p in r["purposes"]):
                    continue
                if any(self.anc(c, leaf) for c in r["data"]):
                    permits.append(r)
        if not permits:
            return False
        if any(r.get("basis", "consent") != "consent" for r in permits):
            return True
        t: datetime = f["at"]
        special = any(self.anc(s, leaf) for s in self.special_roots)
        for k in self.consents_of.get(f["subject"], []):
            if not _t(k["given_at"]) <= t:
                continue
            if k.get("expires_at") and not t < _t(k["expires_at"]):
                continue
            if k.get("withdrawn_at") and not t < _t(k["withdrawn_at"]):
                continue
            if not any(self.sel(s, f["recipient"]) for s in k["recipients"]):
                continue
            if not any(self.anc(c, leaf) for c in k["data"]):
                continue
            if not any(self.anc(p, f["purpose"]) for p in k["purposes"]):
                continue
            if k.get("subprocesses") and f["subprocess"] not in k["subprocesses"]:
                continue
            if special and not k.get("explicit", False):
                continue
            if self.authority(k, leaf, _t(k["given_at"])) and self.authority(k, leaf, t):
                return True
        return False

    def decide(self, f: dict[str, Any]) -> bool:
        if (f["sender"] not in self.actors or f["recipient"] not in self.actors
                or f["purpose"] not in self.purposes or f["subprocess"] not in self.sps
                or any(c not in self.cats for c in f["data"])):
            return False
        leaves = {leaf for c in f["data"] for leaf in self.leaves if self.anc(c, leaf)}
        return all(self.leaf_ok(f, leaf) for leaf in sorted(leaves))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    workload.add_size_args(ap)
    ap.set_defaults(rules=100, subjects=1000, consents=5000, flows=10000)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fg-selfcheck-") as d:
        flows = workload.generate_to(d, seed=a.seed, rules=a.rules, subjects=a.subjects,
                                     consents=a.consents, flows=a.flows)
        ref = reference.build(os.path.join(d, "policy.yaml"), os.path.join(d, "registry.json"))
        pol = reference._load_policy_doc(os.path.join(d, "policy.yaml"))
        with open(os.path.join(d, "registry.json"), encoding="utf-8") as fh:
            reg = json.load(fh)
    lit = Literal(pol, reg)
    t = time.perf_counter()
    got = [reference.decide(ref, dict(f)) for f in flows]
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    want = [lit.decide(dict(f)) for f in flows]
    t_lit = time.perf_counter() - t
    bad = [i for i, (x, y) in enumerate(zip(got, want, strict=True)) if x != y]
    c = Counter(got)
    n = len(flows)
    print(f"{n} flows: permit {c[True] / n:.1%}, deny {c[False] / n:.1%};"
          f" reference {t_ref:.2f}s, literal {t_lit:.2f}s; mismatches: {len(bad)}")
    for i in bad[:10]:
        print(f"  flow {i}: reference={got[i]} literal={want[i]} {flows[i]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
