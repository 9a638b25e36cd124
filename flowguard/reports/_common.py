"""What every renderer shares: outcome labels, symbols and styles, readable names."""

from __future__ import annotations

import json
from typing import Any

from flowguard.design import OUTCOMES, CategoryResult, DesignReport, FlowResult, GrantorOption
from flowguard.model import Policy

TOOL_NAME = "flowguard"
TOOL_URI = "https://github.com/flowguard/flowguard"

LABEL: dict[str, str] = {
    "lawful": "lawful",
    "needs-consent": "needs consent",
    "with-citizen": "with the citizen",
    "no-rule": "no rule",
    "forbidden": "forbidden",
    "invalid": "invalid",
}
# a symbol and a dash pattern per outcome, so that no outcome is told by colour alone
SYMBOL: dict[str, str] = {
    "lawful": "✓",
    "needs-consent": "✎",
    "with-citizen": "☺",
    "no-rule": "∅",
    "forbidden": "✕",
    "invalid": "!",
}
DASH: dict[str, str] = {
    "lawful": "",
    "needs-consent": "9 5",
    "with-citizen": "2 3",
    "no-rule": "12 4 2 4",
    "forbidden": "4 3",
    "invalid": "1 5",
}
LINE: dict[str, str] = {
    "lawful": "solid line",
    "needs-consent": "dashed line",
    "with-citizen": "dotted line",
    "no-rule": "dash-dot line",
    "forbidden": "short-dashed thick line",
    "invalid": "sparse dotted line",
}
COLOUR: dict[str, str] = {
    "lawful": "#1a7f37",
    "needs-consent": "#9a6700",
    "with-citizen": "#0969da",
    "no-rule": "#8250df",
    "forbidden": "#cf222e",
    "invalid": "#57606a",
}
RICH_STYLE: dict[str, str] = {
    "lawful": "green",
    "needs-consent": "yellow",
    "with-citizen": "blue",
    "no-rule": "magenta",
    "forbidden": "bold red",
    "invalid": "red",
}
assert set(LABEL) == set(SYMBOL) == set(DASH) == set(COLOUR) == set(OUTCOMES)


def dumps(value: Any, *, one_per_line: str | None = None) -> str:
    """Deterministic JSON text: insertion-ordered keys (built in a fixed order), UTF-8,
    indented; with `one_per_line`, that top-level list has one compact item per line (a
    long list is written many times faster, and diffs well)."""
    if one_per_line is None or not isinstance(value, dict) or one_per_line not in value:
        return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    items = value[one_per_line]
    marker = "\u0000items\u0000"
    text = json.dumps({**value, one_per_line: marker}, indent=2, ensure_ascii=False)
    lines = ",\n".join("    " + json.dumps(item, ensure_ascii=False) for item in items)
    listed = f"[\n{lines}\n  ]" if items else "[]"
    return text.replace(json.dumps(marker), listed, 1) + "\n"


def organization_name(policy: Policy, organization: str) -> str:
    org = policy.organizations.get(organization)
    return org.name if org is not None and org.name else organization


def actor_name(policy: Policy, actor: str) -> str:
    found = policy.actors.get(actor)
    return found.name if found is not None and found.name else actor


def category_text(policy: Policy, category: str) -> str:
    """A category in plain words: its description, else its id."""
    found = policy.data_categories.get(category)
    return found.description if found is not None and found.description else category


def purpose_text(policy: Policy, purpose: str) -> str:
    found = policy.purposes.get(purpose)
    return found.description if found is not None and found.description else purpose


def subprocess_text(policy: Policy, subprocess: str) -> str:
    found = policy.subprocesses.get(subprocess)
    if found is None:
        return subprocess
    return found.name or found.description or subprocess


def service_title(policy: Policy) -> str:
    service = policy.service
    if service is None:
        return "the service"
    return service.name or service.id


def controller(policy: Policy) -> str | None:
    service = policy.service
    return service.controller if service is not None else None


def grantor_sentences(options: tuple[GrantorOption, ...], special: tuple[str, ...]) -> list[str]:
    """Who may give a consent of the plan, addressed to the citizen."""
    lines = []
    citizens = [o for o in options if o.who == "citizen"]
    parents = [o for o in options if o.who == "parent"]
    for o in citizens:
        where = f" (in {o.jurisdiction})" if o.jurisdiction else ""
        if not o.from_age:
            lines.append(f"You can give this consent yourself, at any age{where}.")
        else:
            lines.append(f"You can give this consent yourself if you are {o.from_age} or "
                         f"older{where}.")
    for o in parents:
        where = f" (in {o.jurisdiction})" if o.jurisdiction else ""
        lines.append(f"Until you are {o.until_age}{where}, a parent or other holder of "
                     "parental responsibility can give it for you.")
    what = "these kinds of information"
    if special:
        what = "the information concerned (for health information: a guardianship that " \
               "covers health matters)"
    lines.append(f"If a court has appointed a guardian for you whose powers cover {what}, "
                 "your guardian can give it for you, for the parts the guardianship covers.")
    return lines


def withdraw_sentence(policy: Policy, organization: str, consent_id: str) -> str:
    """How a citizen takes a consent back: whom to tell (never a command line)."""
    ctrl = controller(policy)
    who = f"{organization_name(policy, ctrl)}" if ctrl else "the organisation that asked you"
    org = policy.organizations.get(organization)
    also = f" or {organization_name(policy, organization)}" \
        if ctrl != organization and (not ctrl or (org is not None and org.records_consents)) \
        else ""
    service = policy.service
    contact = f" ({service.contact})" if service is not None and service.contact else ""
    return (f"You can withdraw this consent at any time, free of charge and without giving a "
            f"reason, by telling {who}{contact}{also}. From then on the information is no "
            "longer shared for this purpose; sharing that already happened stays lawful (GDPR "
            "Art. 7(3)).")


def plan_items(report: DesignReport) -> list[dict[str, Any]]:
    """The consent plan as plain data, shared by the JSON, Markdown and HTML reports."""
    policy = report.policy
    items = []
    for item in report.plan:
        org = policy.organizations.get(item.organization)
        steps = []
        for subprocess, leaves, flows in item.steps:
            senders = sorted({report.flow_result(f).flow.sender for f in flows})
            steps.append({
                "subprocess": subprocess,
                "step": subprocess_text(policy, subprocess),
                "categories": list(leaves),
                "what": [category_text(policy, c) for c in leaves],
                "from": senders,
                "flows": list(flows),
            })
        items.append({
            "id": item.id,
            "organization": item.organization,
            "organization_name": organization_name(policy, item.organization),
            "organization_kind": org.kind if org is not None else None,
            "sector": org.sector if org is not None else None,
            "purpose": item.purpose,
            "why": purpose_text(policy, item.purpose),
            "categories": list(item.categories),
            "special": list(item.special),
            "subprocesses": list(item.subprocesses),
            "explicit": item.explicit,
            "steps": steps,
            "flows": list(item.flows),
            "rules": list(item.rules),
            "obligations": list(item.obligations),
            "who_may_give": grantor_sentences(report.grantors, item.special),
            "withdraw": withdraw_sentence(policy, item.organization, item.id),
            "record": item.record(),
        })
    return items


def consent_form_text(item: dict[str, Any], policy: Policy) -> list[str]:
    """One consent of the plan as the paragraphs of a plain-language form."""
    org = item["organization_name"]
    kind = item["organization_kind"]
    sector = item["sector"]
    lines = [f"Consent {item['id']}: sharing information with {org}"
             + (f" ({kind}, {sector} sector)" if kind else "")]
    lines.append(f"Why: {item['why']} (purpose `{item['purpose']}`).")
    for step in item["steps"]:
        senders = ", ".join(actor_name(policy, s) for s in step["from"])
        lines.append(f"At step “{step['step']}” (`{step['subprocess']}`), {senders} will tell "
                     f"{org}: " + "; ".join(step["what"]) + ".")
    if item["explicit"]:
        lines.append("This includes health or other sensitive information (GDPR Art. 9): "
                     "your consent must be explicit, so tick each item and sign: "
                     + "; ".join(category_text(policy, c) for c in item["special"]) + ".")
    if item["obligations"]:
        lines.append(f"{org} must: " + "; ".join(item["obligations"]) + ".")
    lines += item["who_may_give"]
    lines.append("Saying no is your right; only the sharing listed here depends on it.")
    lines.append(item["withdraw"])
    return lines


def flow_lines(r: FlowResult, policy: Policy) -> list[tuple[str, tuple[str, ...], str]]:
    """A flow's categories grouped by what is said about them: (outcome, categories, text),
    for readers (the JSON report keeps one message per category)."""
    groups: dict[tuple[object, ...], list[CategoryResult]] = {}
    for c in r.categories:
        status = c.status
        if c.outcome in ("forbidden", "lawful", "needs-consent") and status is not None:
            key: tuple[object, ...] = (c.outcome, status.rules, status.basis, status.law,
                                       status.art9, status.explicit)
        else:
            key = (c.outcome, c.message.replace(f"`{c.category}`", "them"))
        groups.setdefault(key, []).append(c)
    lines: list[tuple[str, tuple[str, ...], str]] = []
    flow = r.flow
    for key, members in groups.items():
        first = members[0]
        status = first.status
        rules = ", ".join(f"`{x}`" for x in status.rules) if status else ""
        if first.outcome == "lawful" and status is not None:
            law = f", {status.law}" if status.law else ""
            art9 = f", Art. 9(2) {status.art9}" if status.art9 else ""
            text = f"lawful by rule {rules}: {status.basis}{law}{art9}"
        elif first.outcome == "needs-consent" and status is not None:
            organization = policy.actors[flow.recipient].organization
            text = (f"needs {'explicit ' if status.explicit else ''}consent for "
                    f"`{organization}` (rule {rules})")
        elif first.outcome == "forbidden" and status is not None:
            text = first.message
        elif first.outcome == "no-rule":
            text = (f"no permit rule lets `{flow.recipient}` receive this for "
                    f"`{flow.purpose}` at `{flow.subprocess}`")
        else:
            text = str(key[1]) if len(members) > 1 else first.message
        lines.append((first.outcome, tuple(c.category for c in members), text))
    return lines


def grantors_line(report: DesignReport) -> str:
    """Who may give the consents a design needs, in one line."""
    parts = []
    for g in report.grantors:
        where = f" in {g.jurisdiction}" if g.jurisdiction else ""
        if g.who == "citizen":
            parts.append(f"the citizen (from age {g.from_age}{where})")
        elif g.who == "parent":
            parts.append(f"a holder of parental responsibility (until the citizen is "
                         f"{g.until_age}{where})")
        else:
            parts.append("a guardian whose guardianship covers the data")
    return "Consent may be given by " + ", ".join(parts[:-1]) + " or " + parts[-1] + "."
