"""JSON documents of every report: the design, a diff, a reach query, the record of
processing. Keys come in a fixed order and every list is sorted, so equal inputs give
byte-identical text."""

from __future__ import annotations

from typing import Any

from flowguard.analysis import PolicyDiff, ReachAnswer, Ropa, Vocabulary, status_text
from flowguard.design import CHECKS, OUTCOMES, CategoryResult, DesignReport, LeafStatus
from flowguard.model import Policy
from flowguard.reports._common import dumps, plan_items

DESIGN_FORMAT = "flowguard.design/1"
DIFF_FORMAT = "flowguard.diff/1"
REACH_FORMAT = "flowguard.reach/1"
ROPA_FORMAT = "flowguard.ropa/1"


def _status(status: LeafStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {"outcome": status.outcome, "rules": list(status.rules),
            "basis": status.basis, "law": status.law, "art9": status.art9,
            "explicit": status.explicit if status.outcome == "needs-consent" else None,
            "obligations": list(status.obligations)}


def _grantors(report: DesignReport, category: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for g in report.grantors:
        if g.who == "citizen":
            out.append({"who": "citizen", "from_age": g.from_age,
                        "jurisdiction": g.jurisdiction})
        elif g.who == "parent":
            out.append({"who": "parent", "kind": "parental", "until_age": g.until_age,
                        "jurisdiction": g.jurisdiction})
        else:
            out.append({"who": "guardian", "kind": "adult", "scope_covers": [category]})
    return out


def _category(c: CategoryResult, report: DesignReport) -> dict[str, Any]:
    status = c.status
    out: dict[str, Any] = {"category": c.category, "requested": c.requested,
                           "outcome": c.outcome, "message": c.message}
    out["rules"] = list(status.rules) if status is not None else []
    out["basis"] = status.basis if status is not None and c.outcome == "lawful" else None
    out["law"] = status.law if status is not None and c.outcome == "lawful" else None
    out["art9"] = status.art9 if status is not None and c.outcome == "lawful" else None
    out["obligations"] = list(status.obligations) if status is not None \
        and c.outcome in ("lawful", "needs-consent") else []
    if c.consent is not None:
        k = c.consent
        out["consent"] = {"recipients": [{"organization": k.organization}],
                          "data": [k.category], "purposes": [k.purpose],
                          "subprocesses": [k.subprocess], "explicit": k.explicit,
                          "rules": list(k.rules), "grantors": _grantors(report, k.category)}
    else:
        out["consent"] = None
    return out


def design_document(report: DesignReport) -> dict[str, Any]:
    policy = report.policy
    header = report.design.design
    flows = []
    for r in report.flows:
        f = r.flow
        line, column = r.position
        flows.append({
            "id": f.id, "subprocess": f.subprocess, "from": f.sender, "to": f.recipient,
            "data": list(f.data), "purpose": f.purpose, "description": f.description,
            "outcome": r.outcome,
            "categories": [_category(c, report) for c in r.categories],
            "obligations": list(r.obligations),
            "problems": [{"field": k, "message": m} for k, m in r.problems],
            "line": line, "column": column,
        })
    findings = [{"check": x.check, "severity": x.severity, "message": x.message,
                 "flow": x.flow, "related": list(x.related), "line": x.position[0],
                 "column": x.position[1]} for x in report.findings]
    return {
        "format": DESIGN_FORMAT,
        "design": {"file": report.file, "service": header.service, "name": header.name,
                   "citizen_side": list(report.citizen_side)},
        "policy": {"service": policy.service.id if policy.service else None,
                   "digest": policy.digest},
        "summary": {"flows": len(report.flows),
                    **{o: report.counts.get(o, 0) for o in OUTCOMES},
                    "consents": len(report.plan), "findings": len(report.findings),
                    "passed": not report.failed},
        "flows": flows,
        "consent_plan": plan_items(report),
        "findings": findings,
        "checks": dict(CHECKS),
    }


def design_json(report: DesignReport) -> str:
    return dumps(design_document(report))


def _actors(vocabulary: Vocabulary, actors: frozenset[str]) -> Any:
    if actors == vocabulary.all_actors:
        return "any"
    return [{k: v} for k, v in vocabulary.actor_groups(actors)]


def _ordered(values: frozenset[str], order: list[str]) -> list[str]:
    rank = {v: i for i, v in enumerate(order)}
    return sorted(values, key=lambda v: (rank.get(v, len(rank)), v))


def diff_document(diff: PolicyDiff) -> dict[str, Any]:
    vocabulary = Vocabulary(diff.old, diff.new)
    purposes_all = diff.old.purpose_tree.ids | diff.new.purpose_tree.ids
    subprocess_order = list(dict.fromkeys([*diff.new.subprocesses, *diff.old.subprocesses]))
    changes = []
    for c in diff.changes:
        changes.append({
            "kind": c.kind, "text": c.text,
            "recipients": list(c.recipients), "categories": list(c.categories),
            "leaves": list(c.leaves),
            "senders": _actors(vocabulary, c.senders),
            "purposes": "any" if c.purposes == purposes_all else sorted(c.purposes),
            "subprocesses": "any" if c.subprocesses == frozenset(subprocess_order)
            else _ordered(c.subprocesses, subprocess_order),
            "before": _status(c.old), "after": _status(c.new), "tuples": c.tuples,
        })
    return {
        "format": DIFF_FORMAT,
        "old": {"label": diff.old_label, "digest": diff.old.digest},
        "new": {"label": diff.new_label, "digest": diff.new.digest},
        "summary": {"statements": len(diff.changes),
                    **{f"{k}_statements": sum(c.kind == k for c in diff.changes)
                       for k in ("widen", "narrow", "basis", "deny-reason")},
                    "tuples": dict(diff.counts), "widened": diff.widened,
                    "narrowed": diff.narrowed},
        "changes": changes,
        "vocabulary": [{"section": v.section, "added": list(v.added),
                        "removed": list(v.removed), "changed": list(v.changed)}
                       for v in diff.vocabulary],
    }


def diff_json(diff: PolicyDiff) -> str:
    return dumps(diff_document(diff), one_per_line="changes")


def reach_document(answer: ReachAnswer) -> dict[str, Any]:
    policy = answer.policy
    vocabulary = Vocabulary(policy)
    order = list(policy.subprocesses)
    rows = []
    for r in answer.rows:
        rows.append({
            "recipient": r.recipient,
            "organization": policy.actors[r.recipient].organization,
            "categories": list(r.categories), "leaves": list(r.leaves),
            "senders": _actors(vocabulary, r.senders),
            "purposes": "any" if r.purposes == policy.purpose_tree.ids
            else sorted(r.purposes),
            "subprocesses": "any" if r.subprocesses == frozenset(order)
            else _ordered(r.subprocesses, order),
            "how": status_text(r.status), "status": _status(r.status),
        })
    return {"format": REACH_FORMAT, "query": answer.query, "subject": answer.subject,
            "filters": dict(answer.filters), "policy": {"digest": policy.digest},
            "recipients": list(answer.recipients), "rows": rows}


def reach_json(answer: ReachAnswer) -> str:
    return dumps(reach_document(answer))


def ropa_document(record: Ropa) -> dict[str, Any]:
    policy = record.policy
    service = policy.service
    ctrl = service.controller if service else None
    activities = []
    for a in record.activities:
        activities.append({
            "purpose": a.purpose, "description": a.description,
            "legal_bases": [{"basis": b, "law": law, "art9": art9, "rules": list(rules)}
                            for b, law, art9, rules in a.bases],
            "data_categories": list(a.categories), "special_categories": list(a.special),
            "other_data": list(a.other_data), "within_controller": list(a.within_controller),
            "recipients": [{"organization": r.organization,
                            "name": _org_field(policy, r.organization, "name"),
                            "kind": _org_field(policy, r.organization, "kind"),
                            "sector": _org_field(policy, r.organization, "sector"),
                            "categories": list(r.categories), "special": list(r.special),
                            "bases": list(r.bases)} for r in a.recipients],
            "subprocesses": list(a.subprocesses), "obligations": list(a.obligations),
            "restrictions": list(a.restrictions),
        })
    return {
        "format": ROPA_FORMAT,
        "service": {"id": service.id if service else None,
                    "name": service.name if service else None},
        "controller": {"organization": ctrl,
                       "name": _org_field(policy, ctrl, "name") if ctrl else None},
        "data_subjects": list(record.subjects),
        "activities": activities,
        "purposes_without_disclosures": list(record.unused_purposes),
        "restrictions": [_rule_summary(policy, r) for r in record.restrictions],
        "policy": {"digest": policy.digest},
    }


def _org_field(policy: Policy, organization: str, name: str) -> Any:
    org = policy.organizations.get(organization)
    return getattr(org, name) if org is not None else None


def _rule_summary(policy: Policy, rule_id: str) -> dict[str, Any]:
    rule = next(r for r in policy.rules if r.id == rule_id)
    return {"rule": rule.id, "description": (rule.description or "").strip() or None,
            "data": list(rule.data)}


def ropa_json(record: Ropa) -> str:
    return dumps(ropa_document(record))
