"""Self-contained HTML pages: the design report (summary, swimlane diagram, flow table,
consent plan, design checks) and the record of processing. One file each, no external
asset, no script; a Content-Security-Policy forbids loading anything."""

from __future__ import annotations

import json
import re
from html import escape

from flowguard.analysis import Ropa
from flowguard.design import CHECKS, OUTCOME_TEXT, OUTCOMES, DesignReport, FlowResult
from flowguard.i18n import translations
from flowguard.model import Policy
from flowguard.reports._common import (
    LABEL,
    LINE,
    SYMBOL,
    category_text,
    flow_lines,
    grantors_line,
    organization_name,
    plan_items,
    purpose_text,
    service_title,
)
from flowguard.reports.forms import consent_forms, forms_html_fragment, report_language
from flowguard.reports.svg import legend_sample, swimlane_svg

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d0d7de; --bg: #ffffff; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; color: var(--fg); background: var(--bg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans",
  sans-serif; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p.meta, .muted { color: var(--muted); font-size: 13px; }
code { font: 13px/1.4 "DejaVu Sans Mono", "Liberation Mono", monospace;
  background: #f6f8fa; padding: 0 3px; border-radius: 3px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left;
  vertical-align: top; }
th { background: #f6f8fa; }
tr:target { outline: 3px solid #0969da; }
.summary { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0; padding: 0;
  list-style: none; }
.summary li { border: 1px solid var(--line); border-radius: 6px; padding: 4px 10px; }
.verdict { font-weight: 600; }
.verdict.fails { color: #cf222e; }
.verdict.passes { color: #1a7f37; }
.diagram { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px;
  padding: 8px; }
.legend { list-style: none; padding: 0; margin: 12px 0; display: grid;
  grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 6px 18px; }
.legend li { display: flex; align-items: center; gap: 10px; font-size: 14px; }
.hatch-sample { display: inline-block; width: 86px; height: 22px; border: 1px solid var(--line);
  background: repeating-linear-gradient(45deg, #f3f7fd 0 4px, #d6e4f7 4px 7px); }
.outcome { white-space: nowrap; font-weight: 600; }
.outcome-lawful .outcome { color: #1a7f37; }
.outcome-needs-consent .outcome { color: #9a6700; }
.outcome-with-citizen .outcome { color: #0969da; }
.outcome-no-rule .outcome { color: #8250df; }
.outcome-forbidden .outcome { color: #cf222e; }
.outcome-invalid .outcome { color: #57606a; }
td ul { margin: 0; padding-left: 18px; }
.consent-form { border: 1px solid var(--line); border-radius: 6px; padding: 4px 18px 12px;
  margin: 14px 0; break-inside: avoid; }
.consent-form .checklist { list-style: none; padding-left: 0; }
.consent-form .checklist li::before { content: "☐ "; }
.consent-form h3, .consent-form h4 { margin: 14px 0 4px; }
.consent-form h4 { font-size: 15px; }
.consent-form p { max-width: 70ch; }
.sign { margin-top: 10px; }
details.staff { margin: -6px 0 18px; font-size: 13px; color: var(--muted); }
.findings li { margin: 6px 0; }
svg.swimlane text { font-family: system-ui, "DejaVu Sans", "Liberation Sans", sans-serif; }
svg .column-title { font-size: 13px; font-weight: 700; fill: #1f2328; }
svg .column-sub { font-size: 11px; fill: #59636e; }
svg .column-mark { font-size: 11px; fill: #0b4aa2; }
svg .band-title { font-size: 12px; font-weight: 700; fill: #1f2328; }
svg .lane-title { font-size: 12.5px; font-weight: 600; fill: #1f2328; }
svg .lane-sub { font-size: 10.5px; fill: #59636e; }
svg .flow-symbol { font-size: 11px; font-weight: 700; text-anchor: middle; }
svg .flow-id { font-size: 10px; fill: #1f2328; }
svg g.flow:hover .flow-line { stroke-width: 4; }
@media print { body { padding: 0; } .diagram { overflow: visible; border: 0; }
  details.staff { display: none; } .consent-form { break-before: page; border: 0; } }
"""


def h(value: object) -> str:
    return escape(str(value), quote=True)


def rich(text: str) -> str:
    """Escaped text whose `backticked` ids become code."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", h(text))


def _page(title: str, body: list[str], lang: str = "en") -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        f'<html lang="{h(lang)}">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="flowguard">',
        f"<title>{h(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
    ]) + "\n"


def _code(value: str) -> str:
    return f"<code>{h(value)}</code>"


def design_html(report: DesignReport, language: str | None = None) -> str:
    """The design report; its consent forms in `language` (default: the policy's)."""
    policy = report.policy
    header = report.design.design
    name = header.name or header.service or "flow design"
    title = f"Flow design: {name}"
    body = [f"<header><h1>{h(title)}</h1>"]
    meta = f"Service {h(service_title(policy))} · policy {_code(policy.digest)}"
    if report.file:
        meta += f" · design file {_code(report.file)}"
    body.append(f'<p class="meta">{meta}</p>')
    if header.description:
        body.append(f"<p>{h(header.description)}</p>")
    body.append('<ul class="summary">')
    body.append(f"<li>{len(report.flows)} flows</li>")
    for o in OUTCOMES:
        body.append(f'<li class="outcome-{o}"><span class="outcome">{SYMBOL[o]} '
                    f"{report.counts.get(o, 0)} {h(LABEL[o])}</span></li>")
    body.append(f"<li>{len(report.plan)} consents to collect</li>")
    body.append(f"<li>⚠ {len(report.findings)} design findings</li>")
    body.append("</ul>")
    if report.failed:
        body.append('<p class="verdict fails">✕ The design fails: some flows are forbidden, '
                    "have no rule or are invalid.</p>")
    else:
        body.append('<p class="verdict passes">✓ Every flow is lawful, or lawful with the '
                    "consents of the plan below.</p>")
    body.append("</header>")
    body.append('<main>')
    body += _diagram(report)
    body += _flow_table(report)
    body += _findings(report)
    body += _consent_plan(report, language)
    body.append("</main>")
    body.append(f'<footer><p class="meta">Generated by flowguard from policy '
                f"{_code(policy.digest)}. Classified for any citizen: the same rules decide "
                "every check, and the consent registry decides the flows that need "
                "consent.</p></footer>")
    return _page(title, body)


def _diagram(report: DesignReport) -> list[str]:
    body = ['<section id="diagram"><h2>Service map</h2>',
            '<p class="muted">Lanes: the citizen, then each organisation and its actors. '
            "Columns: the sub-processes in order. Each arrow runs from the sender (dot) to the "
            "recipient (arrowhead); select it to jump to the flow.</p>",
            '<div class="diagram">', swimlane_svg(report), "</div>",
            '<ul class="legend" aria-label="Legend">']
    for o in OUTCOMES:
        body.append(f'<li class="legend-item outcome-{o}">{legend_sample(o)}'
                    f'<span><span class="outcome">{SYMBOL[o]} {h(LABEL[o])}</span>: '
                    f"{h(OUTCOME_TEXT[o])} ({h(LINE[o])})</span></li>")
    body.append('<li class="legend-item"><span class="hatch-sample" aria-hidden="true"></span>'
                "<span>☺ hatched column: a co-produced sub-process, done with the citizen"
                "</span></li>")
    body += ["</ul>", "</section>"]
    return body


def _categories_cell(r: FlowResult, policy: Policy) -> str:
    items = []
    for outcome, categories, text in flow_lines(r, policy):
        items.append(f'<li class="outcome-{h(outcome)}"><span class="outcome">'
                     f"{SYMBOL[outcome]}</span> {', '.join(_code(c) for c in categories)}: "
                     f"{rich(text)}</li>")
    obligations = r.obligations
    if obligations:
        items.append("<li>Obligations: " + h("; ".join(obligations)) + "</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _flow_table(report: DesignReport) -> list[str]:
    body = ['<section id="flows"><h2>Flows</h2>', "<table>",
            "<thead><tr><th>flow</th><th>step</th><th>from → to</th><th>data</th>"
            "<th>purpose</th><th>outcome</th><th>per category</th></tr></thead>", "<tbody>"]
    for r in report.flows:
        f = r.flow
        line = f" · line {r.position[0]}" if r.position[0] else ""
        description = f'<div class="muted">{h(f.description)}</div>' if f.description else ""
        body.append(
            f'<tr id="flow-{h(f.id)}" class="outcome-{r.outcome}" data-outcome="{r.outcome}">'
            f"<td>{_code(f.id)}<div class=\"muted\">{h(line.strip(' ·'))}</div></td>"
            f"<td>{_code(f.subprocess)}</td>"
            f"<td>{_code(f.sender)} → {_code(f.recipient)}{description}</td>"
            f"<td>{', '.join(_code(d) for d in f.data)}</td>"
            f"<td>{_code(f.purpose)}</td>"
            f'<td><span class="outcome">{SYMBOL[r.outcome]} {h(LABEL[r.outcome])}</span></td>'
            f"<td>{_categories_cell(r, report.policy)}</td></tr>")
    body += ["</tbody>", "</table>"]
    if report.plan:
        body.append(f'<p class="muted">{h(grantors_line(report))}</p>')
    body.append("</section>")
    return body


def _findings(report: DesignReport) -> list[str]:
    body = ['<section id="findings"><h2>Design checks</h2>']
    if not report.findings:
        body.append("<p>No findings.</p>")
    else:
        body.append('<ul class="findings">')
        for x in report.findings:
            line = f" (line {x.position[0]})" if x.position[0] else ""
            link = f' <a href="#flow-{h(x.flow)}">flow {h(x.flow)}</a>' if x.flow else ""
            body.append(f'<li class="finding" data-check="{h(x.check)}">⚠ '
                        f"<strong>{h(x.check)}</strong>{h(line)}: {rich(x.message)}{link}</li>")
        body.append("</ul>")
    body.append('<p class="muted">Checks run: '
                + "; ".join(f"{_code(k)}: {h(v)}" for k, v in CHECKS.items()) + ".</p>")
    body.append("</section>")
    return body


def _consent_plan(report: DesignReport, language: str | None) -> list[str]:
    body = ['<section id="consent-plan"><h2>Consent plan</h2>',
            "<p>The consents to ask each citizen (or their parent or guardian) for, so that the "
            "whole design works: one per recipient organisation and purpose. Each form is "
            "written for the citizen; the registry record below it is for staff.</p>"]
    items = {item["id"]: item for item in plan_items(report)}
    forms = consent_forms(report, language)
    if not forms:
        body.append("<p>The design needs no consent.</p>")
    for form in forms:
        item = items[form.key]
        body.append(forms_html_fragment([form]))
        body.append('<details class="staff"><summary>For staff: the registry record of this '
                    f"consent (plan item {_code(item['id'])}, flows "
                    f"{', '.join(_code(f) for f in item['flows'])})</summary><pre>"
                    + h(json.dumps(item["record"], indent=2, ensure_ascii=False))
                    + "</pre></details>")
    body.append("</section>")
    return body


def consent_forms_html(report: DesignReport, language: str | None = None) -> str:
    """The consent forms of a design alone, one page to print and hand to citizens."""
    forms = consent_forms(report, language)
    lang = report_language(report.policy, language)
    _ = translations(lang).gettext
    title = _("Consent forms: %(service)s") % {"service": service_title(report.policy)}
    body = [f"<header><h1>{h(title)}</h1></header>", "<main>",
            forms_html_fragment(forms, heading_level=2), "</main>"]
    return _page(title, body, lang=lang)


def ropa_html(record: Ropa) -> str:
    policy = record.policy
    service = policy.service
    ctrl = service.controller if service else None
    title = f"Record of processing activities: {service_title(policy)}"
    body = [f"<header><h1>{h(title)}</h1>",
            f'<p class="meta">GDPR Art. 30(1), generated by flowguard from policy '
            f"{_code(policy.digest)}. Sections the policy cannot know are marked "
            "<em>to complete</em>.</p></header>", "<main>"]
    body.append('<section id="controller"><h2>Controller</h2>')
    if ctrl:
        body.append(f"<p>{h(organization_name(policy, ctrl))} ({_code(ctrl)}); contact "
                    "details and data protection officer: <em>to complete</em>.</p>")
    else:
        body.append("<p><em>To complete</em>: the policy names no controller.</p>")
    partners = [o for o in sorted(policy.organizations) if o != ctrl]
    if partners:
        body.append("<table><thead><tr><th>partner organisation</th><th>kind</th>"
                    "<th>sector</th></tr></thead><tbody>")
        for o in partners:
            org = policy.organizations[o]
            body.append(f"<tr><td>{h(organization_name(policy, o))} ({_code(o)})</td>"
                        f"<td>{h(org.kind)}</td><td>{h(org.sector)}</td></tr>")
        body.append("</tbody></table>")
    body.append("</section>")
    body.append('<section id="subjects"><h2>Categories of data subjects</h2><ul>'
                + "".join(f"<li>{h(s)}</li>" for s in record.subjects) + "</ul></section>")
    body.append('<section id="activities"><h2>Processing activities (per purpose)</h2>')
    for act in record.activities:
        body.append(f'<article id="purpose-{h(act.purpose)}"><h3>{_code(act.purpose)}: '
                    f"{h(purpose_text(policy, act.purpose))}</h3><ul>")
        bases = []
        for basis, law, art9, rules in act.bases:
            text = h(basis) + (f", {h(law)}" if law else "") \
                + (f", Art. 9(2) {h(art9)}" if art9 else "")
            bases.append(f"{text} (rules {', '.join(_code(r) for r in rules)})")
        body.append("<li>Legal bases: " + "; ".join(bases) + "</li>")
        body.append("<li>Categories of personal data: "
                    + (", ".join(_code(c) for c in act.categories) or "none") + "</li>")
        if act.other_data:
            body.append("<li>Other data, not personal data (aggregates): "
                        + ", ".join(_code(c) for c in act.other_data) + "</li>")
        if act.within_controller and ctrl:
            body.append(f"<li>Used inside {h(organization_name(policy, ctrl))} (processing by "
                        "the controller, not a disclosure): "
                        + ", ".join(_code(c) for c in act.within_controller) + "</li>")
        if act.special:
            body.append("<li>Special categories (Art. 9): "
                        + ", ".join(_code(c) for c in act.special) + "</li>")
        body.append("<li>Sub-processes: " + ", ".join(_code(s) for s in act.subprocesses)
                    + "</li>")
        if act.obligations:
            body.append("<li>Conditions on recipients (incl. erasure): "
                        + h("; ".join(act.obligations)) + "</li>")
        if act.restrictions:
            body.append("<li>Restrictions (forbid rules that can apply): "
                        + ", ".join(_code(r) for r in act.restrictions) + "</li>")
        if not act.recipients:
            body.append("<li>Recipients: none outside the controller</li></ul></article>")
            continue
        body.append("</ul><table><thead><tr><th>recipient</th><th>categories</th>"
                    "<th>basis</th></tr></thead><tbody>")
        for r in act.recipients:
            body.append(f"<tr><td>{h(organization_name(policy, r.organization))} "
                        f"({_code(r.organization)})</td>"
                        f"<td>{', '.join(_code(c) for c in r.categories)}</td>"
                        f"<td>{h('; '.join(r.bases))}</td></tr>")
        body.append("</tbody></table></article>")
    if record.unused_purposes:
        body.append("<p>Purposes declared without any permitted disclosure: "
                    + ", ".join(_code(p) for p in record.unused_purposes) + ".</p>")
    body.append("</section>")
    body.append('<section id="restrictions"><h2>Restrictions</h2><ul>')
    for rule_id in record.restrictions:
        rule = next(r for r in policy.rules if r.id == rule_id)
        description = " ".join((rule.description or "").split()) or "forbids"
        body.append(f"<li>{_code(rule.id)}: {h(description)} (data: "
                    + ", ".join(_code(d) for d in rule.data) + ")</li>")
    body.append("</ul></section>")
    body.append('<section id="to-complete"><h2>Transfers, erasure, security</h2>'
                "<p><em>To complete</em>: the policy describes no transfer outside the "
                "EU/EEA. Time limits for erasure: <em>to complete</em>; the conditions "
                "rules set for recipients are listed per activity above. Security measures: "
                f"<em>to complete</em>; disclosures are to be checked against this policy "
                f"({_code(policy.digest)}) before data is shared.</p></section>")
    body.append('<section id="categories"><h2>Data categories</h2><table><thead><tr>'
                "<th>category</th><th>description</th><th>special</th><th>personal data</th>"
                "</tr></thead><tbody>")
    for c in sorted(policy.data_categories):
        body.append(f"<tr><td>{_code(c)}</td><td>{h(category_text(policy, c))}</td>"
                    f"<td>{'yes' if policy.is_special(c) else ''}</td>"
                    f"<td>{'yes' if policy.is_personal(c) else 'no (aggregate)'}</td></tr>")
    body.append("</tbody></table></section></main>")
    return _page(title, body)
