#!/usr/bin/env python3
"""Deterministic workload generator for the flowguard engine benchmark.

Writes a flowguard workload into a folder:

* ``policy.yaml``   -- a policy in the SPEC §3 format (one YAML document);
* ``registry.json`` -- a consent registry in the SPEC §4 format, as JSON
  (``{"subjects": {...}, "guardianships": [...], "consents": [...]}``);
* ``flows.json``    -- the flows to check (``{"flows": [{..., "at": "...Z"}]}``).

and returns the flows (``at`` as an aware UTC ``datetime``).

The shape follows the peer benchmark in ``shared/bench-peers`` (20 organisations of 8 kinds,
5 roles each = 100 actors; 10 category groups x 10 leaves with ``health`` special; 8 purposes
plus two child purposes; 4 sub-processes), translated into flowguard's richer vocabulary:
selectors, purpose hierarchy, non-consent bases, guardianships (adult and parental), minors,
explicit consent for special categories, withdrawal and expiry.

    python bench/workload.py --out /tmp/fg-wl                       # defaults
    python bench/workload.py --out /tmp/fg-wl --rules 100 --subjects 1000 \
        --consents 5000 --flows 10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict

import yaml

KINDS: dict[str, str] = {  # organisation kind -> sector
    "municipality": "public",
    "care-home": "public",
    "health-trust": "public",
    "school": "public",
    "community-centre": "public",
    "ngo": "voluntary",
    "employer": "private",
    "private-provider": "private",
}
ROLES = ["case-worker", "clinician", "job-consultant", "manager", "coordinator"]
GROUPS: dict[str, list[str]] = {
    "health": ["diagnosis", "medication", "allergies", "mental-health", "disability",
               "test-results", "vaccinations", "gp-record", "hospital-stays", "pregnancy"],
    "contact": ["phone", "email", "address", "postcode", "next-of-kin",
                "emergency-contact", "preferred-language", "social-media", "fax", "po-box"],
    "identity": ["national-id", "name", "date-of-birth", "gender", "nationality",
                 "passport", "photo", "signature", "biometrics", "ethnicity"],
    "finance": ["income", "benefits", "debts", "bank-account", "tax-records",
                "pension", "credit-score", "assets", "expenses", "insurance"],
    "education": ["school", "grades", "special-needs", "attendance", "qualifications",
                  "exclusions", "transcripts", "training", "apprenticeship", "literacy"],
    "work": ["employer", "job-title", "salary", "history", "absences",
             "capacity", "preferences", "references", "union", "permit"],
    "housing": ["tenure", "landlord", "rent", "arrears", "overcrowding",
                "homelessness", "adaptations", "household", "council-tax", "eviction"],
    "social": ["care-plan", "safeguarding-flag", "carer", "family-support", "case-notes",
               "domestic-abuse", "looked-after", "substance-use", "probation", "sanctions"],
    "location": ["home-gps", "work-gps", "travel", "check-ins", "device-location",
                 "region", "route-history", "geofence", "ip-location", "cell-tower"],
    "legal": ["convictions", "court-orders", "immigration-status", "power-of-attorney",
              "custody", "restraining-orders", "litigation", "fines", "licences", "guardianship"],
}
SPECIAL_GROUP = "health"
PURPOSES = ["care", "job-matching", "eligibility", "service-design", "research",
            "statistics", "safeguarding", "quality-assurance"]
CHILD_PURPOSES = {"care": ["care.rehabilitation"],
                  "job-matching": ["job-matching.employer-contact"]}
SUBPROCESSES = ["co-commissioning", "co-design", "co-delivery", "co-evaluation"]
LAWS = ["Serviceloven § 12", "Serviceloven § 85", "Beskæftigelsesloven § 5",
        "Retssikkerhedsloven § 11 c"]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = 86_400
YEAR = 365 * DAY


class FlowSpec(TypedDict):
    """One flow, in the keyword form of ``flowguard.Flow``."""

    sender: str
    recipient: str
    subject: str
    data: list[str]
    purpose: str
    subprocess: str
    at: datetime


class Workload(TypedDict):
    policy: dict[str, Any]
    registry: dict[str, Any]
    flows: list[FlowSpec]
    params: dict[str, Any]


def rfc3339(t: datetime) -> str:
    """An aware datetime as RFC 3339 with ``Z`` (whole seconds)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str) -> datetime:
    """RFC 3339 time or a date (00:00 UTC that day) -> aware datetime."""
    if len(s) == 10:
        return datetime.fromisoformat(s).replace(tzinfo=UTC)
    t = datetime.fromisoformat(s)
    if t.tzinfo is None:
        raise ValueError(f"time without a zone: {s!r}")
    return t


def generate(
    seed: int = 1,
    rules: int = 1000,
    subjects: int = 10_000,
    consents: int = 50_000,
    flows: int = 100_000,
    orgs: int = 20,
    forbid_frac: float = 0.05,
    lawful_frac: float = 0.02,
    guardian_frac: float = 0.15,
    minor_frac: float = 0.05,
) -> Workload:
    """Generate a workload in memory. Same arguments -> same workload."""
    rng = random.Random(seed)

    def at(sec: int) -> datetime:
        return T0 + timedelta(seconds=sec)

    # ------------------------------------------------------------------ vocabulary
    kinds = list(KINDS)
    rng.shuffle(kinds)
    org_ids = [f"org{i:03d}" for i in range(orgs)]
    org_kind = {o: kinds[i % len(kinds)] for i, o in enumerate(org_ids)}
    org_sector = {o: KINDS[k] for o, k in org_kind.items()}
    actors = {f"{o}.{r}": (o, r) for o in org_ids for r in ROLES}
    actor_ids = list(actors)
    actors_of_org = {o: [f"{o}.{r}" for r in ROLES] for o in org_ids}
    public_actors = [a for a in actor_ids if org_sector[actors[a][0]] == "public"]

    groups = list(GROUPS)
    leaves_of = {g: [f"{g}.{x}" for x in GROUPS[g]] for g in groups}
    group_of = {leaf: g for g, ls in leaves_of.items() for leaf in ls}
    leaf_ids = list(group_of)
    purposes = PURPOSES + [c for p in PURPOSES for c in CHILD_PURPOSES.get(p, [])]
    children_of = {p: CHILD_PURPOSES.get(p, []) for p in purposes}
    parent_of = {c: p for p, cs in CHILD_PURPOSES.items() for c in cs}

    def leaves(cat: str) -> list[str]:
        return leaves_of.get(cat, [cat])

    def rand_category(p_group: float = 0.3) -> str:
        g = rng.choice(groups)
        return g if rng.random() < p_group else rng.choice(leaves_of[g])

    # ------------------------------------------------------------------ rules
    n_forbid = max(1, round(rules * forbid_frac))
    n_lawful = max(1, round(rules * lawful_frac)) if rules >= 20 else 0
    n_consent = max(1, rules - n_forbid - n_lawful)
    rule_list: list[dict[str, Any]] = []
    # consent-based permits: unique (actor, category, purpose, sub-process)
    permits: list[dict[str, Any]] = []  # generator-side view: org, role, cat, purpose, sp, sender
    seen: set[tuple[str, ...]] = set()
    while len(permits) < n_consent:
        a = rng.choice(actor_ids)
        key = (a, rand_category(), rng.choice(purposes), rng.choice(SUBPROCESSES))
        if key in seen:
            continue
        seen.add(key)
        org, role = actors[a]
        sender: dict[str, Any] | None = None
        u = rng.random()
        if u < 0.10:
            sender = {"sector": "public"}
        elif u < 0.15:
            sender = {"kind": sorted(rng.sample(kinds, 3))}
        p: dict[str, Any] = {"id": f"permit-{len(permits):05d}", "org": org, "role": role,
                             "actor": a,
             "cat": key[1], "purpose": key[2], "sp": key[3], "sender": sender}
        permits.append(p)
        r: dict[str, Any] = {"id": p["id"], "effect": "permit"}
        if sender is not None:
            r["sender"] = sender
        r.update({"recipient": {"organization": org, "role": role}, "data": [key[1]],
                  "purposes": [key[2]], "subprocesses": [key[3]], "basis": "consent"})
        rule_list.append(r)

    # non-consent permits (public-task / legal-obligation), to public-sector actors
    lawful: list[dict[str, Any]] = []
    for i in range(n_lawful):
        a = rng.choice(public_actors) if public_actors else rng.choice(actor_ids)
        org, role = actors[a]
        cat = rand_category(0.3) if rng.random() < 0.6 else rng.choice(
            [SPECIAL_GROUP, *leaves_of[SPECIAL_GROUP]])
        purpose = rng.choice(purposes)
        r = {"id": f"lawful-{i:04d}", "effect": "permit",
             "recipient": {"organization": org, "role": role}, "data": [cat],
             "purposes": [purpose]}
        sp = rng.choice(SUBPROCESSES) if rng.random() < 0.7 else None
        if sp is not None:
            r["subprocesses"] = [sp]
        r["basis"] = "public-task" if rng.random() < 0.7 else "legal-obligation"
        r["law"] = rng.choice(LAWS)
        if cat == SPECIAL_GROUP or group_of.get(cat) == SPECIAL_GROUP:
            r["art9"] = "social-protection"
        rule_list.append(r)
        lawful.append({"actor": a, "cat": cat, "purpose": purpose, "sp": sp})

    # forbids: one fixed, half carved out of a permit, the rest broad bans
    forbid_keys: set[str] = set()

    def add_forbid(body: dict[str, Any]) -> None:
        k = json.dumps(body, sort_keys=True)
        if k in forbid_keys:
            return
        forbid_keys.add(k)
        rule_list.append({"id": f"forbid-{len(forbid_keys) - 1:04d}", "effect": "forbid", **body})

    add_forbid({"recipient": {"sector": "private"}, "data": [SPECIAL_GROUP]})
    attempts = 0
    while len(forbid_keys) < n_forbid and attempts < 100 * n_forbid:
        attempts += 1
        u = rng.random()
        if u < 0.5:
            p = rng.choice(permits)
            cat = p["cat"]
            if cat in leaves_of and rng.random() < 0.6:
                cat = rng.choice(leaves_of[cat])
            v = rng.random()
            if v < 0.4:
                add_forbid({"recipient": {"organization": p["org"]}, "data": [cat],
                            "purposes": [p["purpose"]]})
            elif v < 0.7:
                add_forbid({"recipient": {"kind": org_kind[p["org"]]}, "data": [cat],
                            "subprocesses": [p["sp"]]})
            else:
                add_forbid({"sender": {"kind": rng.choice(kinds)},
                            "recipient": {"organization": p["org"], "role": p["role"]},
                            "data": [cat]})
        elif u < 0.75:
            add_forbid({"recipient": {"kind": rng.choice(kinds)}, "data": [rand_category(0.2)],
                        "purposes": [rng.choice(purposes)]})
        else:
            add_forbid({"sender": {"kind": rng.choice(kinds)},
                        "recipient": {"kind": rng.choice(kinds)},
                        "data": [rand_category(0.1)]})

    data_categories: dict[str, dict[str, Any]] = {SPECIAL_GROUP: {"special": True}}
    for leaf in leaf_ids:
        data_categories[leaf] = {}
    policy: dict[str, Any] = {
        "version": 1,
        "service": {"id": "bench-service", "name": "flowguard engine benchmark",
                    "controller": org_ids[0]},
        "jurisdictions": {"DK": {"majority_age": 18, "consent_age": 18}},
        "default_jurisdiction": "DK",
        "organizations": {o: {"kind": org_kind[o], "sector": org_sector[o]} for o in org_ids},
        "actors": {a: {"organization": o, "role": r} for a, (o, r) in actors.items()},
        "data_categories": data_categories,
        "purposes": {p: {} for p in purposes},
        "subprocesses": {sp: {"co_produced": sp != "co-commissioning", "order": i + 1}
                         for i, sp in enumerate(SUBPROCESSES)},
        "rules": rule_list,
    }

    # ------------------------------------------------------------------ subjects
    subject_ids = [f"c{i:07d}" for i in range(subjects)]
    subj: dict[str, dict[str, str]] = {}
    guardianships: list[dict[str, Any]] = []
    guardian_of: dict[str, str] = {}  # subject -> guardian person (adult or parental)
    birth: dict[str, date] = {}
    all_guardians: list[str] = []
    bounds_of: dict[str, list[int]] = {}  # subject -> authority boundaries (s after T0)
    for i, s in enumerate(subject_ids):
        u = rng.random()
        if u < minor_frac:
            # minors: some turn 18 during the benchmark's time window (2024-2028)
            b = date(2006, 1, 1) + timedelta(days=rng.randrange(10 * 365))
        else:
            b = date(1950, 1, 1) + timedelta(days=rng.randrange(53 * 365))
        if b.month == 2 and b.day == 29:  # keep ages free of leap-day conventions
            b = b.replace(day=28)
        birth[s] = b
        subj[s] = {"birth_date": b.isoformat(), "jurisdiction": "DK"}
        if u < minor_frac:
            g = f"p{i:07d}"
            guardianships.append({"id": f"gs-{len(guardianships):06d}", "guardian": g,
                                  "subject": s, "kind": "parental",
                                  "valid_from": b.isoformat()})
            guardian_of[s] = g
            all_guardians.append(g)
            b18 = datetime(b.year + 18, b.month, b.day, tzinfo=UTC)
            bounds_of[s] = [int((b18 - T0).total_seconds())]  # majority = consent age
        elif rng.random() < guardian_frac:
            g = f"g{i:07d}"
            gs: dict[str, Any] = {"id": f"gs-{len(guardianships):06d}", "guardian": g,
                                  "subject": s, "kind": "adult", "valid_from": "2000-01-01"}
            if rng.random() < 0.1:  # a guardianship that ends inside the window
                until = rng.randrange(3 * YEAR)
                gs["valid_until"] = rfc3339(at(until))
                bounds_of[s] = [until]
            guardianships.append(gs)
            guardian_of[s] = g
            all_guardians.append(g)

    # ------------------------------------------------------------------ consents
    permits_by_org: dict[str, list[dict[str, Any]]] = {}
    for p in permits:
        permits_by_org.setdefault(p["org"], []).append(p)
    consent_list: list[dict[str, Any]] = []
    sps: list[str] | None
    for n in range(consents):
        s = rng.choice(subject_ids)
        if rng.random() < 0.75:
            p = rng.choice(permits)
            org, cat, purpose = p["org"], p["cat"], p["purpose"]
            if cat in leaves_of:
                if rng.random() < 0.5:
                    cat = rng.choice(leaves_of[cat])
            elif rng.random() < 0.3:
                cat = group_of[cat]
            v = rng.random()
            if purpose in parent_of and v < 0.3:
                purpose = parent_of[purpose]
            elif children_of[purpose] and v < 0.15:
                purpose = rng.choice(children_of[purpose])
            sps = [p["sp"]] if rng.random() < 0.3 else None
        else:
            org, cat, purpose = rng.choice(org_ids), rand_category(), rng.choice(purposes)
            sps = sorted(rng.sample(SUBPROCESSES, 2)) if rng.random() < 0.3 else None
        orgs_k = [org]
        if rng.random() < 0.1:
            extra_org = rng.choice(org_ids)
            if extra_org != org:
                orgs_k.append(extra_org)
        data = [cat]
        if rng.random() < 0.2:
            extra = rand_category(0.1)
            if extra not in data:
                data.append(extra)
        special = any(c == SPECIAL_GROUP or group_of.get(c) == SPECIAL_GROUP for c in data)
        explicit = rng.random() < 0.85 if special else rng.random() < 0.1
        guard = guardian_of.get(s)
        u = rng.random()
        if u < 0.05:  # a grantor with no authority
            grantor = rng.choice(all_guardians) if all_guardians and rng.random() < 0.5 \
                else f"x{rng.randrange(10**7):07d}"
            if grantor == guard:
                grantor = f"x{rng.randrange(10**7):07d}"
        elif guard is not None and u < 0.85:
            grantor = guard
        else:
            grantor = s
        given = rng.randrange(3 * YEAR)
        k: dict[str, Any] = {"id": f"k{n:08d}", "subject": s, "given_by": grantor,
                             "given_at": rfc3339(at(given)),
                             "recipients": [{"organization": o} for o in orgs_k],
                             "data": data, "purposes": [purpose]}
        if sps is not None:
            k["subprocesses"] = sps
        k["explicit"] = explicit
        duration = 30 * DAY + rng.randrange(2 * YEAR)
        if rng.random() < 0.8:
            k["expires_at"] = rfc3339(at(given + duration))
        if rng.random() < 0.15:
            k["withdrawn_at"] = rfc3339(at(given + DAY + rng.randrange(duration)))
        if rng.random() < 0.5:
            k["evidence"] = {"method": "signed-form", "reference": f"SBSYS-{2024 + n % 3}-{n}"}
        consent_list.append(k)

    registry = {"subjects": subj, "guardianships": guardianships, "consents": consent_list}

    # ------------------------------------------------------------------ flows
    def other(lst: list[str], x: str) -> str:
        if len(lst) < 2:
            return x
        y = x
        while y == x:
            y = rng.choice(lst)
        return y

    def sender_for(recipient: str, selector: dict[str, Any] | None) -> str:
        rorg = actors[recipient][0]
        for _ in range(50):
            a = rng.choice(actor_ids)
            o = actors[a][0]
            if o == rorg:
                continue
            if selector is None:
                return a
            if "sector" in selector and org_sector[o] != selector["sector"]:
                continue
            if "kind" in selector and org_kind[o] not in selector["kind"]:
                continue
            return a
        return rng.choice(actor_ids)

    def narrow(purpose: str) -> str:
        return rng.choice(children_of[purpose]) if children_of[purpose] and \
            rng.random() < 0.3 else purpose

    def random_flow() -> FlowSpec:
        rec = rng.choice(actor_ids)
        s = rng.choice(subject_ids) if rng.random() > 0.01 else f"c9{rng.randrange(10**6):06d}"
        cat = rng.choice(leaf_ids) if rng.random() > 0.02 else rng.choice(groups)
        return {"sender": sender_for(rec, None), "recipient": rec, "subject": s,
                "data": [cat], "purpose": rng.choice(purposes),
                "subprocess": rng.choice(SUBPROCESSES), "at": at(rng.randrange(4 * YEAR))}

    def lawful_flow() -> FlowSpec:
        law = rng.choice(lawful)
        sp = law["sp"] or rng.choice(SUBPROCESSES)
        return {"sender": sender_for(law["actor"], None), "recipient": law["actor"],
                "subject": rng.choice(subject_ids), "data": [rng.choice(leaves(law["cat"]))],
                "purpose": narrow(law["purpose"]), "subprocess": sp,
                "at": at(rng.randrange(4 * YEAR))}

    def targeted_flow() -> FlowSpec:
        if lawful and rng.random() < 0.04:
            return lawful_flow()
        for _ in range(20):
            k = rng.choice(consent_list)
            kleaves = {leaf for c in k["data"] for leaf in leaves(c)}
            kp = k["purposes"][0]
            ksps = k.get("subprocesses")
            cands = []
            for sel in k["recipients"]:
                for p in permits_by_org.get(sel["organization"], ()):
                    if ksps is not None and p["sp"] not in ksps:
                        continue
                    if not kleaves.intersection(leaves(p["cat"])):
                        continue
                    rp = p["purpose"]
                    if rp == kp or parent_of.get(rp) == kp or parent_of.get(kp) == rp:
                        cands.append(p)
            if not cands:
                continue
            p = rng.choice(cands)
            rp = p["purpose"]
            purpose = kp if parent_of.get(kp) == rp else rp  # the narrower of the two
            cat_choices = sorted(kleaves.intersection(leaves(p["cat"])))
            cat = rng.choice(cat_choices)
            if len(cat_choices) == 10 and rng.random() < 0.1:
                cat = group_of[cat]  # a whole group, expanded to its leaves
            given = int((parse_time(k["given_at"]) - T0).total_seconds())
            end = int((parse_time(k["expires_at"]) - T0).total_seconds()) \
                if "expires_at" in k else given + 2 * YEAR
            v = rng.random()
            if v < 0.04:  # exactly on a boundary: intervals are half-open
                edges = [given, end, *bounds_of.get(k["subject"], ())]
                if "withdrawn_at" in k:
                    edges.append(int((parse_time(k["withdrawn_at"]) - T0).total_seconds()))
                t = max(0, rng.choice(edges))
            elif v < 0.88:
                t = given + rng.randrange(max(1, end - given))
            elif rng.random() < 0.5:
                t = end + rng.randrange(YEAR)
            else:
                t = max(0, given - 1 - rng.randrange(YEAR))
            return {"sender": sender_for(p["actor"], p["sender"]), "recipient": p["actor"],
                    "subject": k["subject"], "data": [cat], "purpose": narrow(purpose),
                    "subprocess": p["sp"], "at": at(t)}
        return random_flow()

    def near_miss_flow() -> FlowSpec:
        f = targeted_flow()
        m = rng.randrange(6)
        if m == 0:
            f["purpose"] = other(purposes, f["purpose"])
        elif m == 1:
            f["subprocess"] = other(SUBPROCESSES, f["subprocess"])
        elif m == 2:
            f["recipient"] = other(actors_of_org[actors[f["recipient"]][0]], f["recipient"])
        elif m == 3:
            f["subject"] = rng.choice(subject_ids)
        elif m == 4:
            c = f["data"][0]
            g = c if c in leaves_of else group_of[c]
            f["data"] = [other(leaves_of[g], rng.choice(leaves_of[g]))]
        else:
            f["at"] = f["at"] + timedelta(seconds=rng.choice([-1, 1]) * rng.randrange(2 * YEAR))
            if f["at"] < T0:
                f["at"] = T0
        return f

    flow_list: list[FlowSpec] = []
    for _ in range(flows):
        u = rng.random()
        if u < 0.60:
            flow_list.append(targeted_flow())
        elif u < 0.80:
            flow_list.append(near_miss_flow())
        else:
            flow_list.append(random_flow())

    params = {"seed": seed, "rules": len(rule_list), "consent_rules": n_consent,
              "lawful_rules": n_lawful, "forbid_rules": len(forbid_keys), "subjects": subjects,
              "guardianships": len(guardianships), "consents": consents, "flows": flows,
              "orgs": orgs, "actors": len(actor_ids), "categories": len(leaf_ids),
              "purposes": len(purposes)}
    return {"policy": policy, "registry": registry, "flows": flow_list, "params": params}


def flows_to_json(flows: list[FlowSpec]) -> list[dict[str, Any]]:
    return [{**f, "at": rfc3339(f["at"])} for f in flows]


def write(wl: Workload, out: str) -> None:
    """Write policy.yaml, registry.json, flows.json and params.json into ``out``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "policy.yaml"), "w", encoding="utf-8") as fh:
        yaml.dump(wl["policy"], fh, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
                  sort_keys=False, allow_unicode=True, width=120)
    with open(os.path.join(out, "registry.json"), "w", encoding="utf-8") as fh:
        json.dump(wl["registry"], fh, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(out, "flows.json"), "w", encoding="utf-8") as fh:
        json.dump({"flows": flows_to_json(wl["flows"])}, fh, ensure_ascii=False,
                  separators=(",", ":"))
    with open(os.path.join(out, "params.json"), "w", encoding="utf-8") as fh:
        json.dump(wl["params"], fh, indent=1)


def load_flows(folder: str) -> list[FlowSpec]:
    """Read ``flows.json`` back, with ``at`` as aware datetimes."""
    with open(os.path.join(folder, "flows.json"), encoding="utf-8") as fh:
        raw = json.load(fh)["flows"]
    out: list[FlowSpec] = []
    for f in raw:
        out.append({"sender": f["sender"], "recipient": f["recipient"], "subject": f["subject"],
                    "data": list(f["data"]), "purpose": f["purpose"],
                    "subprocess": f["subprocess"], "at": parse_time(f["at"])})
    return out


def generate_to(out: str, **kwargs: Any) -> list[FlowSpec]:
    """Generate and write a workload; return its flows."""
    wl = generate(**kwargs)
    write(wl, out)
    return wl["flows"]


def add_size_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rules", type=int, default=1000, help="rules in the policy (all kinds)")
    ap.add_argument("--subjects", type=int, default=10_000)
    ap.add_argument("--consents", type=int, default=50_000)
    ap.add_argument("--flows", type=int, default=100_000)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/flowguard-bench/default")
    add_size_args(ap)
    a = ap.parse_args(argv)
    t = time.perf_counter()
    wl = generate(seed=a.seed, rules=a.rules, subjects=a.subjects, consents=a.consents,
                  flows=a.flows)
    write(wl, a.out)
    pr = wl["params"]
    print(f"wrote {a.out}: {pr['rules']} rules ({pr['forbid_rules']} forbid, "
          f"{pr['lawful_rules']} non-consent), {pr['subjects']} subjects, "
          f"{pr['guardianships']} guardianships, {pr['consents']} consents, "
          f"{pr['flows']} flows in {time.perf_counter() - t:.1f}s")


if __name__ == "__main__":
    main()
