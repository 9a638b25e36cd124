"""Provisions: what a Consent permits, per FHIR version, as exact flowguard scopes.

R5: `decision` is the base; every top-level provision is an exception to it (the opposite
decision) and every nested provision an exception to its parent. R4: the opt-in/opt-out
`policyRule` is the base and `provision.type` is read as written; the root provision has
no type in R4 (HL7's examples give it one anyway), and then it only frames the nested
provisions. flowguard consents are positive scopes, so only what is permitted becomes
consents, and only when it can be written exactly; everything else is refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import ValidationError

from flowguard._loading import PolicyVocabulary
from flowguard._source import Document
from flowguard.fhir._common import (
    ACT_CODE,
    CONSENT_ACTION,
    FLOWGUARD_CATEGORY,
    FLOWGUARD_PURPOSE,
    FLOWGUARD_SELECTOR,
    ID,
    PARTICIPATION,
    Path_,
)
from flowguard.fhir._json import JsonReader
from flowguard.fhir._scope import (
    Box,
    Inexact,
    Node,
    TooComplex,
    ancestor_or_self,
    covers,
    disjoint,
    hier_intersect,
    intersect,
    normalize,
    selectors_intersect,
    strict_ancestor,
    unique,
)
from flowguard.fhir.mapping import FhirMapping
from flowguard.model import SELECTOR_KEYS, Policy, Selector

RECIPIENT_ROLES = frozenset({f"{PARTICIPATION}|PRCP", f"{PARTICIPATION}|IRCP"})
KNOWN_ACTIONS = frozenset(f"{CONSENT_ACTION}|{c}"
                          for c in ("access", "collect", "correct", "disclose", "use"))
DISCLOSE = f"{CONSENT_ACTION}|disclose"
NARROWER_ACTIONS = frozenset(f"{CONSENT_ACTION}|{c}" for c in ("access", "collect"))
DENY_ACTIONS = NARROWER_ACTIONS | {DISCLOSE, f"{CONSENT_ACTION}|use"}
POLICY_RULES = {f"{ACT_CODE}|OPTIN": True, f"{ACT_CODE}|OPTINR": True,
                f"{ACT_CODE}|OPTOUT": False, f"{ACT_CODE}|OPTOUTE": False}
PROVISION_KEYS = {
    "R4": frozenset({"id", "extension", "modifierExtension", "type", "period", "actor",
                     "action", "securityLabel", "purpose", "class", "code", "dataPeriod",
                     "data", "provision"}),
    "R5": frozenset({"id", "extension", "modifierExtension", "period", "actor", "action",
                     "securityLabel", "purpose", "documentType", "resourceType", "code",
                     "dataPeriod", "data", "expression", "provision"}),
}
DATA_ELEMENTS = ("class", "resourceType", "documentType", "code", "securityLabel", "data")
REFUSED = ("refused rather than imported wider")
# Limits on one resource (never imported wider: above them the resource is refused)
MAX_REGIONS = 1_000         # separate regions while working out what the provisions permit
MAX_WORK = 400_000          # region operations (intersections, subtractions)


def selector_text(selector: Selector) -> str:
    return " and ".join(f"{key} {'/'.join(values)}" for key in SELECTOR_KEYS
                        if (values := getattr(selector, key)) is not None) or "anyone"


def describe(box: Box) -> str:
    """A region in plain words (flowguard ids only, never a FHIR reference)."""
    parts: list[str] = []
    if box.recipients is not None:
        parts.append("recipients " + (" or ".join(selector_text(s) for s in box.recipients)
                                      or "that the map does not know"))
    if box.data is not None:
        parts.append("data " + (", ".join(box.data) or "that the map does not know"))
    if box.purposes is not None:
        parts.append("purposes " + (", ".join(box.purposes) or "that the map does not know"))
    if box.start is not None or box.end is not None:
        start = box.start.isoformat() if box.start else "any time"
        parts.append(f"from {start} until {box.end.isoformat() if box.end else 'no end'}")
    return "; ".join(parts) or "everything"


class ProvisionReader(JsonReader):
    def __init__(self, mapping: FhirMapping, policy: Policy | None, source: str,
                 doc: Document | None, root: str = "Consent") -> None:
        super().__init__(source, doc, root)
        self.map = mapping
        self.policy = policy
        self.vocab = PolicyVocabulary.of(policy) if policy is not None else None
        self.version: Literal["R4", "R5"] = "R5"
        self.dropped: list[tuple[Path_, str]] = []   # why a permit ended up granting nothing
        self.work = 0

    def drop(self, path: Path_, why: str) -> None:
        if (path, why) not in self.dropped:
            self.dropped.append((path, why))

    def _spend(self, amount: int) -> None:
        self.work += amount
        if self.work > MAX_WORK:
            raise TooComplex(self.work)

    def _normal(self, boxes: list[Box]) -> list[Box]:
        return normalize(boxes, MAX_REGIONS, self._spend)

    # ----------------------------------------------------------------- policy checks

    def _category(self, category: str, path: Path_) -> bool:
        if self.policy is not None and category not in self.policy.category_tree:
            self.error(path, f"maps to unknown data category `{category}`",
                       "unknown-reference")
            return False
        return True

    def _purpose(self, purpose: str, path: Path_) -> bool:
        if self.policy is not None and purpose not in self.policy.purpose_tree:
            self.error(path, f"maps to unknown purpose `{purpose}`", "unknown-reference")
            return False
        return True

    def _selector_ok(self, selector: Selector, path: Path_) -> bool:
        if self.vocab is None:
            return True
        ok = True
        for key in SELECTOR_KEYS:
            values = getattr(selector, key)
            if values is None or key == "sector":
                continue
            known, what = self.vocab.selector_domain(key)
            for v in values:
                if v not in known:
                    self.error(path, f"maps to a selector with unknown {what} `{v}`",
                               "unknown-reference")
                    ok = False
        return ok

    # ----------------------------------------------------------------- the base decision

    def scopes(self, res: dict[str, Any]) -> list[Box]:
        """The regions the resource permits (errors recorded for what cannot be exact)."""
        try:
            return self._normal(self._r5_scopes(res) if self.version == "R5"
                                else self._r4_scopes(res))
        except TooComplex:
            self.error(("provision",), "its provisions are too intricate to work out exactly "
                       f"within flowguard's limits (at most {MAX_REGIONS:,} separate regions "
                       f"and {MAX_WORK:,} steps per resource); {REFUSED}. Split the resource "
                       "into several Consent resources, or merge provisions that overlap",
                       "too-complex")
            return []

    def _r5_scopes(self, res: dict[str, Any]) -> list[Box]:
        decision = res.get("decision")
        if decision is None:
            self.error(("decision",), "missing: cannot tell whether the consent permits or "
                       "denies", "no-decision")
            return []
        if decision not in ("permit", "deny"):
            self.error(("decision",), "must be `permit` or `deny`", "invalid")
            return []
        permit = decision == "permit"
        cond = Box()
        if "grantee" in res:
            refs = self.array_at(res["grantee"], ("grantee",))
            cond = replace(cond, recipients=self._recipients(
                [(r, ("grantee", i)) for i, r in enumerate(refs)], permit=True))
        if "period" in res:
            cond = self._period(res["period"], ("period",), cond, True)
        root = Node((), permit, cond)
        for i, prov in enumerate(self.array_at(res.get("provision", []), ("provision",))):
            node = self._provision(prov, ("provision", i), not permit)
            if node is not None:
                root.children.append(node)
        if not permit:
            return self._exceptions_to_deny(root, ("decision",), "the base decision is deny")
        if root.cond.recipients is None:
            self._permits_everyone(root, ("decision",), "the base decision (`permit`)")
            return []
        return self._permitted(root, Box())

    def _r4_scopes(self, res: dict[str, Any]) -> list[Box]:
        base = self._r4_base(res)
        said = {True: "the opt-in `policyRule`", False: "the opt-out `policyRule`",
                None: "the resource"}[base]
        if "provision" not in res:
            if base:
                self._permits_everyone(Node(("policyRule",), True, Box()), ("policyRule",),
                                       said)
            else:
                self.error(("provision",), f"{said} permits nothing and there is no provision"
                           ": the resource records a refusal, not a consent to share",
                           "base-deny")
            return []
        obj = self.object_at(res["provision"], ("provision",))
        if obj is None:
            return []
        rtype = obj.get("type")
        if rtype is not None and rtype not in ("permit", "deny"):
            self.error(("provision", "type"), "must be `permit` or `deny`", "invalid")
            return []
        root = self._provision(obj, ("provision",), rtype != "deny", root=rtype is None)
        if root is None:
            return []
        if rtype == "permit":
            return self._permitted(root, Box())
        if rtype == "deny":
            if base:
                self._permits_everyone(root, ("provision", "type"), said)
                return []
            return self._exceptions_to_deny(root, ("provision", "type"),
                                            "the root provision is a deny")
        if not any(c.permit for c in root.children):
            if base:
                self.error(("provision",), "the root provision has no `type` (R4 gives the "
                           "root rule none) and no nested provision permits anything; under "
                           f"{said} its conditions ({describe(root.cond)}) could be what is "
                           "permitted or what is withheld, and HL7's own examples use this "
                           f"form for both, so it is {REFUSED}. Write a nested provision "
                           "with `type: permit`", "untyped-root")
            else:
                self.error(("provision",), f"{said} permits nothing and no nested provision "
                           "makes an exception: the resource records a refusal, not a "
                           "consent to share", "base-deny")
            return []
        return self._permitted(root, Box())

    def _r4_base(self, res: dict[str, Any]) -> bool | None:
        if "policyRule" in res:
            for key in self.codings(res["policyRule"], ("policyRule",), True):
                if key in POLICY_RULES:
                    return POLICY_RULES[key]
        return None

    def _exceptions_to_deny(self, root: Node, path: Path_, said: str) -> list[Box]:
        permits = [c for c in root.children if c.permit]
        if not permits:
            self.error(path, f"{said} and no provision makes an exception that permits "
                       "anything: the resource records a refusal, not a consent to share",
                       "base-deny")
            return []
        return self._union(permits, root.cond)

    def _permits_everyone(self, root: Node, path: Path_, said: str) -> None:
        denies = [c for c in root.children if not c.permit and not c.inert] or (
            [root] if not root.permit else [])
        if denies:
            self.error(denies[0].path, f"{said} shares with every recipient, and this "
                       f"provision only withholds {describe(denies[0].cond)}. A flowguard "
                       "consent lists whom it permits, so 'everyone except these' cannot be "
                       f"written exactly: {REFUSED}", "permit-except")
        else:
            self.error(path, f"{said} shares with every recipient, all data and every "
                       "purpose, and nothing narrows it; a flowguard consent lists whom it "
                       f"permits: {REFUSED}", "permits-everyone")

    # ----------------------------------------------------------------- provisions

    def _provision(self, value: Any, path: Path_, permit: bool,
                   root: bool = False) -> Node | None:
        obj = self.object_at(value, path)
        if obj is None:
            return None
        self._provision_elements(obj, path)
        node = Node(path, permit, Box())
        if "period" in obj:
            node.cond = self._period(obj["period"], (*path, "period"), node.cond, permit)
        if "actor" in obj:
            node.cond = replace(node.cond, recipients=self._actors(obj["actor"], path, permit))
        if "action" in obj:
            node.inert = self._actions(obj["action"], path, permit)
        node.cond = replace(node.cond, data=self._data(obj, path, permit))
        if "purpose" in obj:
            node.cond = replace(node.cond, purposes=self._purposes(obj["purpose"], path, permit))
        for i, child in enumerate(self.array_at(obj.get("provision", []), (*path, "provision"))):
            cpath: Path_ = (*path, "provision", i)
            child_permit = self._child_decision(child, cpath, permit, root)
            if child_permit is None:
                continue
            sub = self._provision(child, cpath, child_permit)
            if sub is not None:
                node.children.append(sub)
        return node

    def _provision_elements(self, obj: dict[str, Any], path: Path_) -> None:
        keys = PROVISION_KEYS[self.version]
        for key in obj:
            if key.startswith("_") and key[1:] in keys:
                self.warn((*path, key), "extension of a primitive element; not imported",
                          "extension")
            elif key not in keys:
                self.error((*path, key), f"`{key}` is not an element of an {self.version} "
                           "provision", "unknown-element")
            elif key == "modifierExtension":
                self.error((*path, key), "changes the meaning of the provision in a way "
                           "flowguard cannot read", "unsupported")
            elif key in ("dataPeriod", "expression"):
                self.error((*path, key), "restricts the data in a way flowguard cannot "
                           "represent", "unsupported")
            elif key == "extension":
                self.warn((*path, key), "extension not understood; not imported", "extension")

    def _child_decision(self, child: Any, path: Path_, permit: bool,
                        root: bool) -> bool | None:
        if self.version == "R5":
            return not permit
        co = self.object_at(child, path)
        ctype = co.get("type") if co is not None else None
        if ctype not in ("permit", "deny"):
            self.error((*path, "type"), "a nested R4 provision needs `type` permit or deny",
                       "missing")
            return None
        if ctype == "permit" and permit and not root:
            self.warn(path, "a permit nested in a permit is read as narrowing its parent",
                      "narrowed")
        if ctype == "deny" and not permit:
            self.error(path, "a deny nested in a deny cannot be represented", "unsupported")
            return None
        return bool(ctype == "permit")

    def _period(self, value: Any, path: Path_, box: Box, permit: bool) -> Box:
        """A period; a bare date never widens what is permitted: a permit counts from the
        end of its start day and ends at the start of its end day, a deny the other way."""
        obj = self.object_at(value, path)
        if obj is None:
            return box
        start = end = None
        if "start" in obj:
            start = self.moment(obj["start"], (*path, "start"), "lower" if permit else "upper")
        if "end" in obj:
            end = self.moment(obj["end"], (*path, "end"), "upper" if permit else "lower")
        return intersect(box, Box(start=start, end=end))

    def _actors(self, value: Any, path: Path_, permit: bool) -> tuple[Selector, ...]:
        refs: list[tuple[Any, Path_]] = []
        for i, actor in enumerate(self.array_at(value, (*path, "actor"))):
            apath: Path_ = (*path, "actor", i)
            ao = self.object_at(actor, apath)
            if ao is None:
                continue
            if "role" in ao:
                roles = self.codings(ao["role"], (*apath, "role"), True)
                if not set(roles) & RECIPIENT_ROLES:
                    self.error((*apath, "role"), "only recipients (PRCP, IRCP) can be "
                               "represented; a provision about custodians, authors or other "
                               "roles restricts the data in a way flowguard cannot",
                               "unsupported-actor-role")
                    continue
            if "reference" not in ao:
                self.error(apath, "an actor needs a reference", "missing")
                continue
            refs.append((ao["reference"], (*apath, "reference")))
        return self._recipients(refs, permit)

    def _recipients(self, refs: list[tuple[Any, Path_]], permit: bool) -> tuple[Selector, ...]:
        out: list[Selector] = []
        for ref, rpath in refs:
            keys = self.reference_keys(ref, rpath)
            selector = next((self.map.recipients[k] for k in keys if k in self.map.recipients),
                            None)
            if selector is None:
                selector = self._decode_selector(keys, rpath)
            if selector is None:
                if permit:
                    self.warn(rpath, "the recipient is not in the mapping (`recipients`); left "
                              "out of the consent")
                else:
                    self.error(rpath, "a denied recipient is not in the mapping "
                               "(`recipients`); the deny cannot be represented", "unmapped-deny")
                continue
            if self._selector_ok(selector, rpath):
                out.append(selector)
        return unique(out)

    def _decode_selector(self, keys: list[str], path: Path_) -> Selector | None:
        for key in keys:
            system, _, value = key.partition("|")
            if system != FLOWGUARD_SELECTOR:
                continue
            try:
                return decode_selector(value)
            except (ValueError, ValidationError):
                self.error(path, "the `urn:flowguard:selector` identifier is malformed",
                           "invalid")
        return None

    def _actions(self, value: Any, path: Path_, permit: bool) -> bool:
        """Whether the provision is inert for flowguard. A flowguard consent permits data
        to be disclosed to its recipients: a permit counts only with `disclose`, and one
        that allows only `access` or `collect` is narrower than that and refused. A deny
        blocks receiving data through access, collect, disclose and use."""
        relevant = False
        narrower: list[Path_] = []
        for i, concept in enumerate(self.array_at(value, (*path, "action"))):
            apath: Path_ = (*path, "action", i)
            keys = set(self.codings(concept, apath, True))
            if (DISCLOSE in keys) if permit else bool(keys & DENY_ACTIONS):
                relevant = True
            elif permit and keys & NARROWER_ACTIONS:
                narrower.append(apath)
            elif not permit and not keys & KNOWN_ACTIONS:
                self.error(apath, "an unknown action in a deny may block disclosure; the deny "
                           "cannot be represented", "unsupported")
            elif permit:
                self.warn(apath, "this action is not represented: a flowguard consent "
                          "permits disclosing data only", "action")
        if permit and not relevant and narrower:
            self.error((*path, "action"), "this permit allows only `access` or `collect`, not "
                       "`disclose`: the recipients may look at or gather the data, but it may "
                       "not be disclosed to them. A flowguard consent permits disclosure, "
                       f"which is broader, so the resource is {REFUSED}. If the person agreed "
                       "to disclosure, add the action `disclose`", "action-not-disclose")
            return True
        if not relevant:
            self.warn((*path, "action"), "names no action that " + (
                "discloses data (`disclose`): the provision grants nothing here" if permit
                else "blocks receiving data: the deny changes nothing here"), "action")
        return not relevant

    def _data(self, obj: dict[str, Any], path: Path_, permit: bool) -> tuple[str, ...] | None:
        result: tuple[str, ...] | None = None
        for element in DATA_ELEMENTS:
            if element not in obj or element not in PROVISION_KEYS[self.version]:
                continue
            found: list[str] = []
            for i, entry in enumerate(self.array_at(obj[element], (*path, element))):
                epath: Path_ = (*path, element, i)
                mapped = self._data_entry(element, entry, epath)
                if mapped is None:
                    if permit:
                        self.warn(epath, "not in the mapping (`data`); left out of the consent")
                    else:
                        self.error(epath, "denied data not in the mapping (`data`); the deny "
                                   "cannot be represented", "unmapped-deny")
                elif mapped and self._category(mapped, epath):
                    found.append(mapped)
            result = hier_intersect(result, unique(found))
        return result

    def _data_entry(self, element: str, entry: Any, path: Path_) -> str | None:
        """The category of one entry ("" after an error), None when unmapped."""
        if element == "data":
            eo = self.object_at(entry, path)
            if eo is None:
                return ""
            if eo.get("meaning") == "authoredby":
                self.error((*path, "meaning"), "data by its author cannot be represented",
                           "unsupported")
                return ""
            keys = self.reference_keys(eo.get("reference"), (*path, "reference"))
        else:
            keys = self.codings(entry, path, element == "code")
            if not keys:
                return ""
        return self._code_lookup(keys, self.map.data, FLOWGUARD_CATEGORY, path)

    def _code_lookup(self, keys: list[str], table: dict[str, str], own: str,
                     path: Path_) -> str | None:
        hits = unique([table[k] for k in keys if k in table])
        if not hits:
            hits = unique([k.partition("|")[2] for k in keys if k.partition("|")[0] == own])
            for hit in hits:
                try:
                    ID.validate_python(hit)
                except ValidationError:
                    self.error(path, f"the `{own}` code is not a valid flowguard id")
                    return ""
        if len(hits) > 1:
            self.error(path, "its codings map to different flowguard ids", "ambiguous")
            return ""
        return hits[0] if hits else None

    def _purposes(self, value: Any, path: Path_, permit: bool) -> tuple[str, ...]:
        found: list[str] = []
        for i, coding in enumerate(self.array_at(value, (*path, "purpose"))):
            ppath: Path_ = (*path, "purpose", i)
            keys = self.codings(coding, ppath, False)
            if not keys:
                continue
            mapped = self._code_lookup(keys, self.map.purposes, FLOWGUARD_PURPOSE, ppath)
            if mapped is None:
                if permit:
                    self.warn(ppath, f"purpose `{keys[0][:120]}` is not in the mapping "
                              "(`purposes`); left out of the consent")
                else:
                    self.error(ppath, f"denied purpose `{keys[0][:120]}` is not in the mapping "
                               "(`purposes`); the deny cannot be represented", "unmapped-deny")
            elif mapped and self._purpose(mapped, ppath):
                found.append(mapped)
        return unique(found)

    # ----------------------------------------------------------------- evaluation

    def _complete(self, box: Box, path: Path_) -> Box:
        """A permitted region as a consent scope: defaults for unnamed data and purposes."""
        if box.recipients is None:
            self.error(path, "the permit names no recipient (no actor or grantee); flowguard "
                       "consents name their recipients", "no-recipient")
            return replace(box, recipients=())
        if box.data is None:
            if self.map.default_data is None:
                self.error(path, "the permit names no data, and the map has no "
                           "`default_data`", "no-data")
                box = replace(box, data=())
            else:
                box = replace(box, data=tuple(c for c in self.map.default_data
                                              if self._category(c, path)))
        if box.purposes is None:
            if self.map.default_purposes is None:
                self.error(path, "the permit names no purpose, and the map has no "
                           "`default_purposes`", "no-purpose")
                box = replace(box, purposes=())
            else:
                box = replace(box, purposes=tuple(p for p in self.map.default_purposes
                                                  if self._purpose(p, path)))
        return box

    def _permitted(self, node: Node, ctx: Box) -> list[Box]:
        """What a permit node grants within `ctx`: its region (or what its permitted
        children grant, which narrow it), minus its deny children, plus what their own
        exceptions permit again."""
        region = intersect(ctx, node.cond)
        if node.inert:
            self.drop(node.path, "this provision permits no disclosure of data (see its "
                      "`action`)")
            return []
        if region.empty():
            self.drop(node.path, "this provision grants nothing: "
                      + self._why_empty(node.cond, region))
            return []
        same = [c for c in node.children if c.permit]
        out = self._union(same, region) if same else [self._complete(region, node.path)]
        denies = [(d, intersect(region, d.cond)) for d in node.children
                  if not d.permit and not d.inert]
        denies = [(d, cut) for d, cut in denies if not cut.empty()]
        granted = bool(out)
        for d, cut in denies:
            out = self._subtract_all(out, cut, d.path)
        if granted and not out:
            self.drop(node.path, "its exceptions (" + ", ".join(
                self.render(d.path) for d, _ in denies) + ") withhold everything this provision "
                "permits")
        again = [(d, cut, self._union([g for g in d.children if g.permit], cut))
                 for d, cut in denies]
        for i, (_, _, mine) in enumerate(again):
            if not mine:          # (a deny with no permit inside still vetoes the others)
                continue
            for j, (d2, cut2, theirs) in enumerate(again):
                if j != i:
                    mine = self._agree(mine, cut2, theirs, d2.path)
            out += mine
        return self._normal(out)

    def _why_empty(self, cond: Box, region: Box) -> str:
        """Why a provision's region is empty, in plain words."""
        own = {"recipients": "none of its recipients (`actor`) is in the map (`recipients`)",
               "data": "none of its data codes is in the map (`data`)",
               "purposes": "none of its purposes is in the map (`purposes`)"}
        for dim, text in own.items():
            if getattr(cond, dim) == ():
                return text
        if cond.start is not None and cond.end is not None and cond.start >= cond.end:
            return "its `period` ends before it starts"
        for dim in ("recipients", "data", "purposes"):
            if getattr(region, dim) == ():
                return (f"its {dim} and those of what it is an exception to (the enclosing "
                        "provision, or the resource's `grantee`) have nothing in common")
        return ("its `period` does not overlap the period of what it is an exception to "
                "(the enclosing provision, or the resource's `period`)")

    def _union(self, permits: list[Node], ctx: Box) -> list[Box]:
        """What sibling permits grant together. FHIR gives siblings no precedence, so where
        several apply, each of them must permit (the reading that is never wider)."""
        grants = [(p, intersect(ctx, p.cond), self._permitted(p, ctx)) for p in permits
                  if not p.inert]
        for p in permits:
            if p.inert:
                self.drop(p.path, "this provision permits no disclosure of data (see its `action`)")
        out: list[Box] = []
        for i, (me, _, mine) in enumerate(grants):
            vetoed: list[Path_] = []
            for j, (other, region, theirs) in enumerate(grants):
                if j == i or theirs == [region]:       # grants all of its region: no veto
                    continue
                before = mine
                mine = self._agree(mine, region, theirs, other.path)
                if before and not mine:
                    vetoed.append(other.path)
            if vetoed:
                self.drop(me.path, "this provision grants nothing: where it applies, its sibling "
                          "provision(s) " + ", ".join(
                    self.render(v) for v in vetoed) + " do not permit the same (FHIR gives "
                    "siblings no precedence, so flowguard permits only what all that apply "
                    "permit)")
            out += mine
        return self._normal(out)

    def _agree(self, boxes: list[Box], region: Box, granted: list[Box],
               path: Path_) -> list[Box]:
        """`boxes` where, inside `region`, `granted` grants them too."""
        if not boxes:
            return boxes
        out: list[Box] = []
        for a in boxes:
            if intersect(a, region).empty():
                out.append(a)
                continue
            self._spend(1 + len(granted))
            out += self._subtract_all([a], region, path)
            out += [x for b in granted if not (x := intersect(a, b)).empty()]
        return self._normal(out)

    def _subtract_all(self, boxes: list[Box], cut: Box, path: Path_) -> list[Box]:
        out: list[Box] = []
        self._spend(len(boxes))
        for box in boxes:
            try:
                out += self._subtract(box, cut)
            except Inexact as exc:
                self.error(path, f"this deny cannot be represented exactly: {exc}",
                           "inexact-deny")
        return self._normal(out)

    def _subtract(self, a: Box, b: Box) -> list[Box]:
        """`a` minus `b`, exactly; `a` is complete (no unrestricted dimension but time)."""
        if intersect(a, b).empty():
            return [a]
        pieces: list[Box] = []
        cur = a
        if b.start is not None and (cur.start is None or cur.start < b.start):
            pieces.append(replace(cur, end=b.start if cur.end is None else min(cur.end, b.start)))
            cur = replace(cur, start=b.start)
        if b.end is not None and (cur.end is None or cur.end > b.end):
            pieces.append(replace(cur, start=b.end if cur.start is None
                                  else max(cur.start, b.end)))
            cur = replace(cur, end=b.end)
        recipients, data, purposes = cur.recipients, cur.data, cur.purposes
        assert recipients is not None and data is not None and purposes is not None
        if b.recipients is not None:
            pieces.append(replace(cur, recipients=self._recipients_minus(recipients,
                                                                         b.recipients)))
            cur = replace(cur, recipients=selectors_intersect(recipients, b.recipients))
        if b.data is not None:
            pieces.append(replace(cur, data=self._categories_minus(data, b.data)))
            cur = replace(cur, data=hier_intersect(data, b.data))
        if b.purposes is not None:
            pieces.append(replace(cur, purposes=self._purposes_minus(purposes, b.purposes)))
        return [p for p in pieces if not p.empty()]

    def _categories_minus(self, xs: tuple[str, ...], ys: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for x in xs:
            if any(ancestor_or_self(y, x) for y in ys):
                continue
            if not any(strict_ancestor(x, y) for y in ys):
                out.append(x)
                continue
            if self.policy is None or x not in self.policy.category_tree:
                raise Inexact(f"removing a sub-category from `{x}` needs the policy's "
                              "category hierarchy (pass the policy)")
            out += self._cover(x, ys)
        return unique(out)

    def _cover(self, node: str, ys: tuple[str, ...]) -> list[str]:
        """The largest subtrees below `node` that no denied category overlaps."""
        assert self.policy is not None
        if any(ancestor_or_self(y, node) for y in ys):
            return []
        if not any(strict_ancestor(node, y) for y in ys):
            return [node]
        return [m for child in self.policy.category_tree.children(node)
                for m in self._cover(child, ys)]

    def _purposes_minus(self, xs: tuple[str, ...], ys: tuple[str, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for x in xs:
            if any(ancestor_or_self(y, x) for y in ys):
                continue
            if any(strict_ancestor(x, y) for y in ys):
                raise Inexact(f"a purpose below `{x}` cannot be taken out of it: a flowguard "
                              "consent for a purpose covers all its sub-purposes")
            out.append(x)
        return tuple(out)

    def _recipients_minus(self, xs: tuple[Selector, ...],
                          ys: tuple[Selector, ...]) -> tuple[Selector, ...]:
        out: list[Selector] = []
        for x in xs:
            if any(covers(y, x) for y in ys):
                continue
            if all(disjoint(x, y) for y in ys):
                out.append(x)
                continue
            if self.policy is None:
                raise Inexact("taking a recipient out of a wider recipient selector needs "
                              "the policy's actors (pass the policy)")
            mine = self._actors_matching(x)
            denied = set().union(*(self._actors_matching(y) for y in ys))
            rest = [a for a in mine if a not in denied]
            if rest == mine:
                out.append(x)
            elif rest:
                out.append(Selector(actor=tuple(rest)))
        return unique(out)

    def _actors_matching(self, selector: Selector) -> list[str]:
        assert self.policy is not None
        found: list[str] = []
        for actor_id, actor in sorted(self.policy.actors.items()):
            org = self.policy.organizations.get(actor.organization)
            facts = {"actor": actor_id, "organization": actor.organization, "role": actor.role,
                     "kind": org.kind if org else None, "sector": org.sector if org else None}
            if all(getattr(selector, k) is None or facts[k] in getattr(selector, k)
                   for k in SELECTOR_KEYS):
                found.append(actor_id)
        return found


def encode_selector(selector: Selector) -> str:
    parts = [f"{key}={','.join(values)}" for key in SELECTOR_KEYS
             if (values := getattr(selector, key)) is not None]
    return "&".join(parts) or "*"


def decode_selector(text: str) -> Selector:
    if text == "*":
        return Selector()
    values: dict[str, list[str]] = {}
    for part in text.split("&"):
        key, sep, rest = part.partition("=")
        if not sep or key not in SELECTOR_KEYS or key in values or not rest:
            raise ValueError("malformed selector")
        values[key] = rest.split(",")
    return Selector.model_validate(values)
