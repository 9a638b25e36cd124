"""flowguard adapter for the peer benchmark in `shared/bench-peers` (flowbench/1).

    python ../shared/bench-peers/run.py --adapter bench/peers/adapter_flowguard.py \\
        --data /tmp/flowbench/default --engines flowguard,reference,casbin-fast,rego-input

`build` turns the neutral workload (`workload.load(folder)`) into a `flowguard.Policy` and an
`InMemoryRegistry` in memory, through the public model classes (no YAML or JSON round trip),
and returns a `flowguard.Engine`. `decide` turns each request into a flow row (a `Flow`'s
fields in order, validated by the engine as a `Flow` would be) and calls `Engine.check`;
`decide_batch` calls `Engine.check_many`. The mapping is in README.md.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import flowguard
from flowguard.model import (
    Actor,
    Consent,
    DataCategory,
    Guardianship,
    Jurisdiction,
    Organization,
    Policy,
    Purpose,
    Rule,
    Sector,
    Selector,
    Subject,
    Subprocess,
)

NAME = "flowguard"

SECTOR: dict[str, Sector] = {
    "municipality": "public",
    "health_trust": "public",
    "school": "public",
    "university": "public",
    "private_employer": "private",
    "private_provider": "private",
    "insurer": "private",
    "ngo": "voluntary",
}
"""Sector of each flowbench org type. No rule here selects by sector; it is required data."""

JURISDICTION = "flowbench"
"""Every subject's jurisdiction. flowguard counts a subject's own consent only from the
jurisdiction's consent age, and subjects have no birth date, so they are all adults."""

GUARDIANSHIP_FROM = datetime(1900, 1, 1, tzinfo=UTC)
"""A flowbench guardian holds authority at all times: an adult guardianship, unscoped,
valid from long before any consent and without end."""

Workload = Mapping[str, Any]
Request = Mapping[str, Any]


def version() -> str:
    import pydantic

    return f"flowguard {flowguard.__version__} (pydantic {pydantic.VERSION})"


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _data_categories(model: Mapping[str, Any]) -> dict[str, DataCategory]:
    """Groups and their leaves. flowguard's category tree is dotted (`health` is the parent of
    `health.diagnosis`), so every flowbench leaf must be named `<group>.<something>`."""
    categories: dict[str, DataCategory] = {}
    plain = DataCategory()  # no special categories: flowbench has no explicit-consent rule
    for group in model["categories"]:
        gid: str = group["id"]
        if "." in gid:
            raise ValueError(f"category group {gid!r}: flowguard would read it as a child")
        categories[gid] = plain
        for leaf in group["leaves"]:
            if not leaf.startswith(gid + ".") or "." in leaf[len(gid) + 1:]:
                raise ValueError(f"leaf {leaf!r} is not named `{gid}.<leaf>`: flowguard's "
                                 "dotted hierarchy would not make it a child of its group")
            categories[leaf] = plain
    return categories


def _flat(ids: Sequence[str], what: str) -> None:
    """Purposes and sub-processes are flat in flowbench; a dot would make a purpose hierarchy."""
    for i in ids:
        if "." in i:
            raise ValueError(f"{what} {i!r} contains a dot: flowguard would nest it")


def build_policy(wl: Workload) -> Policy:
    model, policies = wl["model"], wl["policies"]
    _flat(model["purposes"], "purpose")
    _flat(model["subprocesses"], "sub-process")
    organizations = {o["id"]: Organization(kind=o["type"], sector=SECTOR[o["type"]])
                     for o in model["orgs"]}
    actors = {a["id"]: Actor(organization=a["org"], role=a["role"]) for a in model["actors"]}
    rules: list[Rule] = []
    for p in policies["permits"]:
        rules.append(Rule(
            id=p["id"], effect="permit",
            recipient=Selector(organization=(p["org"],), role=(p["role"],)),
            data=(p["category"],), purposes=(p["purpose"],), subprocesses=(p["subprocess"],),
            basis="consent"))
    for f in policies["forbids"]:
        recipient = None
        if f["recipient_org_type"] is not None:
            recipient = Selector(kind=(f["recipient_org_type"],))
        if f["recipient_org"] is not None:
            if recipient is not None:  # flowbench sets at most one of the two
                raise ValueError(f"forbid {f['id']}: both recipient_org and recipient_org_type")
            recipient = Selector(organization=(f["recipient_org"],))
        sender = None
        if f["sender_org_type"] is not None:
            sender = Selector(kind=(f["sender_org_type"],))
        rules.append(Rule(
            id=f["id"], effect="forbid", sender=sender, recipient=recipient,
            data=(f["category"],),
            purposes=None if f["purpose"] is None else (f["purpose"],),
            subprocesses=None if f["subprocess"] is None else (f["subprocess"],)))
    return Policy(
        jurisdictions={JURISDICTION: Jurisdiction(majority_age=18)},
        default_jurisdiction=JURISDICTION,
        organizations=organizations,
        actors=actors,
        data_categories=_data_categories(model),
        purposes={p: Purpose() for p in model["purposes"]},
        subprocesses={s: Subprocess() for s in model["subprocesses"]},
        rules=tuple(rules))


def build_registry(wl: Workload) -> flowguard.InMemoryRegistry:
    con = wl["consents"]
    adult = Subject()  # no birth date: an adult of the default jurisdiction
    subjects = {c["id"]: adult for c in con["citizens"]}
    guardianships = [
        Guardianship(id="G-" + c["id"], kind="adult", guardian=c["guardian"], subject=c["id"],
                     valid_from=GUARDIANSHIP_FROM)
        for c in con["citizens"] if c["guardian"] is not None]
    recipients: dict[str, tuple[Selector]] = {}  # one selector per organization, shared

    def consent(k: Mapping[str, Any]) -> Consent:
        org = k["recipient_org"]
        to = recipients.get(org)
        if to is None:
            to = recipients[org] = (Selector(organization=(org,)),)
        given_at = _utc(k["valid_from"])
        return Consent(
            id=k["id"], subject=k["citizen"], given_by=k["grantor"], given_at=given_at,
            expires_at=_utc(k["valid_until"]),
            # withdrawn when given: a withdrawn flowbench consent never counts
            withdrawn_at=given_at if k["status"] == "withdrawn" else None,
            recipients=to, data=(k["category"],), purposes=(k["purpose"],))

    return flowguard.InMemoryRegistry(subjects=subjects, guardianships=guardianships,
                                      consents=(consent(k) for k in con["consents"]))


def build(wl: Workload) -> flowguard.Engine:
    """The engine, as a long-running service would hold it: every citizen's consents
    compiled up front (`preload`), built with the cyclic garbage collector paused (the
    records form no cycles), then frozen out of its reach (`gc.freeze`), so that later
    collections do not walk hundreds of thousands of records that live as long as the
    process. Decisions are freed by reference counting."""
    gc.disable()
    try:
        engine = flowguard.Engine(build_policy(wl), build_registry(wl), preload=True)
    finally:
        gc.enable()
    gc.freeze()
    return engine


def _flow(r: Request) -> tuple[str, str, str, str, str, str, int]:
    """The request as a flow row: its fields in `flowguard.engine.FLOW_ROW_FIELDS` order,
    `at` in epoch seconds. The engine validates it as it would a `Flow`."""
    return (r["sender"], r["recipient"], r["citizen"], r["category"], r["purpose"],
            r["subprocess"], r["time"])


def decide(engine: flowguard.Engine, request: Request) -> bool:
    return engine.check(_flow(request)).decision == "permit"


def decide_batch(engine: flowguard.Engine, requests: Sequence[Request]) -> list[bool]:
    return [d.decision == "permit" for d in engine.check_many([_flow(r) for r in requests])]
