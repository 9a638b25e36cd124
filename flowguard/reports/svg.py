"""The swimlane diagram of a design, as SVG: organisations and their actors as lanes (the
citizen's lane first), sub-processes as columns in `order` (co-produced ones hatched and
labelled), one arrow per flow from the sender's lane to the recipient's lane, drawn with
the colour, dash pattern and symbol of its outcome."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from flowguard.design import CITIZEN, DesignReport, FlowResult
from flowguard.reports._common import (
    COLOUR,
    DASH,
    LABEL,
    SYMBOL,
    actor_name,
    controller,
    organization_name,
    subprocess_text,
)

LABEL_W = 250
HEADER_H = 66
ORG_H = 24
LANE_H = 44
SLOT = 36
COLUMN_MIN = 196
PAD = 12
_SECTOR_ORDER = {"public": 0, "voluntary": 1, "private": 2}
UNKNOWN_GROUP = "(not in the policy)"


def a(value: object) -> str:
    """An attribute value."""
    return escape(str(value), quote=True)


def t(value: object) -> str:
    """Text content."""
    return escape(str(value), quote=False)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class Lane:
    key: str  # actor id, or CITIZEN
    group: str  # organization id, CITIZEN or UNKNOWN_GROUP
    top: float

    @property
    def middle(self) -> float:
        return self.top + LANE_H / 2


@dataclass(frozen=True)
class Column:
    key: str
    left: float
    width: float
    co_produced: bool
    known: bool
    flows: tuple[FlowResult, ...]


def _is_citizen(report: DesignReport, endpoint: str) -> bool:
    return endpoint == CITIZEN and CITIZEN not in report.policy.actors


def layout(report: DesignReport) -> tuple[list[tuple[str, float, float]], list[Lane],
                                          list[Column], float, float]:
    """(group bands (group, top, height), lanes, columns, width, height)."""
    policy = report.policy
    used: list[str] = []
    for r in report.flows:
        for endpoint in (r.flow.sender, r.flow.recipient):
            if endpoint not in used and not _is_citizen(report, endpoint):
                used.append(endpoint)
    ctrl = controller(policy)
    groups: dict[str, list[str]] = {}
    for actor in sorted(used):
        found = policy.actors.get(actor)
        groups.setdefault(found.organization if found else UNKNOWN_GROUP, []).append(actor)

    def group_order(org: str) -> tuple[int, int, str]:
        if org == UNKNOWN_GROUP:
            return (2, 0, org)
        sector = policy.organizations[org].sector
        return (0 if org == ctrl else 1, _SECTOR_ORDER.get(sector, 3), org)

    bands: list[tuple[str, float, float]] = []
    lanes: list[Lane] = []
    y = float(HEADER_H)
    bands.append((CITIZEN, y, ORG_H + LANE_H))
    lanes.append(Lane(CITIZEN, CITIZEN, y + ORG_H))
    y += ORG_H + LANE_H
    for org in sorted(groups, key=group_order):
        members = groups[org]
        bands.append((org, y, ORG_H + LANE_H * len(members)))
        for i, actor in enumerate(members):
            lanes.append(Lane(actor, org, y + ORG_H + i * LANE_H))
        y += ORG_H + LANE_H * len(members)
    columns: list[Column] = []
    x = float(LABEL_W)
    steps = list(policy.subprocesses)
    steps += sorted({r.flow.subprocess for r in report.flows} - set(steps))
    for step in steps:
        flows = tuple(r for r in report.flows if r.flow.subprocess == step)
        width = max(COLUMN_MIN, 2 * PAD + 20 + SLOT * len(flows))
        sub = policy.subprocesses.get(step)
        columns.append(Column(step, x, width, bool(sub and sub.co_produced), sub is not None,
                              flows))
        x += width
    return bands, lanes, columns, x + PAD, y + PAD


def swimlane_svg(report: DesignReport) -> str:
    policy = report.policy
    bands, lanes, columns, width, height = layout(report)
    lane_of = {lane.key: lane for lane in lanes}
    out: list[str] = []
    add = out.append
    add(f'<svg xmlns="http://www.w3.org/2000/svg" class="swimlane" role="group" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        'aria-labelledby="swimlane-title swimlane-desc">')
    add('<title id="swimlane-title">Service map of the design: who sends what to whom, '
        'step by step</title>')
    add(f'<desc id="swimlane-desc">{len(report.flows)} flows in {len(columns)} sub-processes; '
        'lanes are organisations and their actors, the citizen first; each arrow runs from '
        'the sender (dot) to the recipient (arrowhead) and shows its outcome by colour, '
        'line pattern and symbol.</desc>')
    add("<defs>")
    add('<pattern id="co-produced-hatch" patternUnits="userSpaceOnUse" width="10" height="10" '
        'patternTransform="rotate(45)"><rect width="10" height="10" fill="#f3f7fd"/>'
        '<line x1="0" y1="0" x2="0" y2="10" stroke="#d6e4f7" stroke-width="4"/></pattern>')
    for outcome, colour in COLOUR.items():
        add(f'<marker id="head-{outcome}" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerUnits="userSpaceOnUse" markerWidth="11" markerHeight="11" '
            'orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')
    add("</defs>")
    add(f'<rect class="background" x="0" y="0" width="{width:.0f}" height="{height:.0f}" '
        'fill="#ffffff"/>')
    # columns
    for col in columns:
        fill = "url(#co-produced-hatch)" if col.co_produced else "#ffffff"
        classes = "column co-produced" if col.co_produced else "column"
        add(f'<g class="{classes}" data-subprocess="{a(col.key)}" '
            f'data-co-produced="{str(col.co_produced).lower()}">')
        add(f'<rect x="{col.left:.0f}" y="{HEADER_H}" width="{col.width:.0f}" '
            f'height="{height - HEADER_H - PAD:.0f}" fill="{fill}" stroke="#d0d7de"/>')
        add(f'<rect x="{col.left:.0f}" y="4" width="{col.width:.0f}" height="{HEADER_H - 8}" '
            f'fill="{"#dbe9fb" if col.co_produced else "#eef1f4"}" stroke="#d0d7de"/>')
        chars = int((col.width - 14) / 6.2)
        title = col.key if not col.known else clip(subprocess_text(policy, col.key), chars)
        add(f'<text x="{col.left + 8:.0f}" y="24" class="column-title">'
            f"{t(clip(col.key, chars - 2))}</text>")
        if title != col.key:
            add(f'<text x="{col.left + 8:.0f}" y="40" class="column-sub">{t(title)}</text>')
        if not col.known:
            mark = "⚠ not in the policy"
        elif col.co_produced:
            mark = "☺ co-produced with the citizen"
        else:
            mark = "without the citizen"
        add(f'<text x="{col.left + 8:.0f}" y="56" class="column-mark">{t(mark)}</text>')
        add("</g>")
    # lanes and bands
    for group, top, band_height in bands:
        if group == CITIZEN:
            title = "Citizen (or a parent or guardian for them)"
        elif group == UNKNOWN_GROUP:
            title = "Not in the policy"
        else:
            org = policy.organizations[group]
            title = f"{organization_name(policy, group)} · {org.kind}, {org.sector}"
        add(f'<g class="band" data-group="{a(group)}">')
        add(f'<rect x="0" y="{top:.0f}" width="{width - PAD:.0f}" height="{ORG_H}" '
            f'fill="{"#e7f0fb" if group == CITIZEN else "#f6f8fa"}" stroke="#d0d7de"/>')
        add(f'<text x="8" y="{top + 16:.0f}" class="band-title">'
            f"{t(clip(title, int((width - PAD - 16) / 7.5)))}</text>")
        add(f'<rect x="0" y="{top:.0f}" width="{width - PAD:.0f}" height="{band_height:.0f}" '
            'fill="none" stroke="#8c959f"/>')
        add("</g>")
    for lane in lanes:
        add(f'<g class="lane" data-lane="{a(lane.key)}">')
        add(f'<line x1="0" y1="{lane.top + LANE_H:.0f}" x2="{width - PAD:.0f}" '
            f'y2="{lane.top + LANE_H:.0f}" stroke="#eaeef2"/>')
        if lane.key == CITIZEN:
            name, sub = "☺ citizen", "the person the data is about"
        else:
            name = lane.key
            sub = actor_name(policy, lane.key) if lane.key in policy.actors else "unknown actor"
        if lane.key in report.citizen_side:
            sub = "speaks for the citizen · " + sub
        add(f'<text x="10" y="{lane.top + 19:.0f}" class="lane-title">{t(clip(name, 34))}'
            "</text>")
        add(f'<text x="10" y="{lane.top + 34:.0f}" class="lane-sub">{t(clip(sub, 44))}</text>')
        add("</g>")
    # arrows
    for col in columns:
        used = SLOT * len(col.flows)
        start = col.left + max(PAD + 14, (col.width - used) / 2 + SLOT / 2 - 6)
        for i, r in enumerate(col.flows):
            x = start + i * SLOT
            out += _arrow(r, x, lane_of)
    add("</svg>")
    return "\n".join(out)


def _arrow(r: FlowResult, x: float, lane_of: dict[str, Lane]) -> list[str]:
    flow = r.flow
    outcome = r.outcome
    y1 = lane_of[flow.sender].middle
    y2 = lane_of[flow.recipient].middle
    colour = COLOUR[outcome]
    dash = f' stroke-dasharray="{DASH[outcome]}"' if DASH[outcome] else ""
    thick = 3 if outcome == "forbidden" else 2
    if y1 == y2:
        path = f"M{x:.1f},{y1:.1f} c0,-20 16,-20 16,-4"
        mid_x, mid_y = x + 8, y1 - 20
        label_x = x + 20
    else:
        end = y2 - 5 if y2 > y1 else y2 + 5
        path = f"M{x:.1f},{y1:.1f} L{x:.1f},{end:.1f}"
        mid_x, mid_y = x, (y1 + y2) / 2
        label_x = x + 11
    title = (f"{flow.id}: {flow.sender} → {flow.recipient}, {', '.join(flow.data)} for "
             f"{flow.purpose} at {flow.subprocess}: {LABEL[outcome]}")
    return [
        f'<g class="flow outcome-{outcome}" id="arrow-{a(flow.id)}" data-flow="{a(flow.id)}" '
        f'data-outcome="{outcome}">',
        f"<title>{t(title)}</title>",
        f'<a href="#flow-{a(flow.id)}">',
        f'<path class="flow-line" d="{path}" fill="none" stroke="{colour}" '
        f'stroke-width="{thick}"{dash} marker-end="url(#head-{outcome})"/>',
        f'<circle cx="{x:.1f}" cy="{y1:.1f}" r="3.5" fill="{colour}"/>',
        f'<circle cx="{mid_x:.1f}" cy="{mid_y:.1f}" r="8.5" fill="#ffffff" stroke="{colour}" '
        'stroke-width="1.5"/>',
        f'<text x="{mid_x:.1f}" y="{mid_y + 4:.1f}" class="flow-symbol" fill="{colour}">'
        f"{SYMBOL[outcome]}</text>",
        f'<text x="{label_x:.1f}" y="{mid_y + 18:.1f}" class="flow-id">'
        f"{t(clip(flow.id, 8))}</text>",
        "</a>",
        "</g>",
    ]


def legend_sample(outcome: str) -> str:
    """A small SVG showing an outcome's line, arrowhead and symbol, for the legend."""
    colour = COLOUR[outcome]
    dash = f' stroke-dasharray="{DASH[outcome]}"' if DASH[outcome] else ""
    thick = 3 if outcome == "forbidden" else 2
    return (f'<svg class="legend-sample" width="86" height="22" viewBox="0 0 86 22" '
            f'aria-hidden="true"><circle cx="5" cy="11" r="3.5" fill="{colour}"/>'
            f'<path d="M5,11 L78,11" stroke="{colour}" stroke-width="{thick}"{dash} '
            f'fill="none" marker-end="url(#legend-head-{outcome})"/>'
            f'<defs><marker id="legend-head-{outcome}" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerUnits="userSpaceOnUse" markerWidth="11" markerHeight="11" '
            'orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker></defs>'
            f'<circle cx="42" cy="11" r="8.5" fill="#ffffff" stroke="{colour}" '
            f'stroke-width="1.5"/><text x="42" y="15" class="flow-symbol" fill="{colour}">'
            f"{SYMBOL[outcome]}</text></svg>")
