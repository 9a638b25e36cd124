"""Decision semantics of SPEC §5 and the decision shape of §6, on a small hand-made policy."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import flowguard
from flowguard import Decision, Engine, Flow, InMemoryRegistry, ReasonCode
from flowguard.engine import birthday_timestamp
from flowguard.model import Consent, Selector

from .conftest import SMALL_POLICY, SMALL_REGISTRY

BASE: dict[str, Any] = {
    "sender": "consultant", "recipient": "cafe-manager", "subject": "adult-1",
    "data": ["identity.name"], "purpose": "job-matching", "subprocess": "co-delivery",
    "at": "2026-03-01T10:00:00Z",
}


@pytest.fixture
def engine(write: Callable[[str, str], Path]) -> Engine:
    policy = flowguard.load_policy(write("p/policy.yaml", SMALL_POLICY))
    registry = flowguard.load_registry(write("p/consents.yaml", SMALL_REGISTRY), policy)
    return Engine(policy, registry)


def decide(engine: Engine, **changes: Any) -> Decision:
    return engine.check(Flow.model_validate({**BASE, **changes}))


def codes(decision: Decision) -> dict[str, ReasonCode]:
    return {c.category: c.reasons[0].code for c in decision.categories}


def test_permit_names_smallest_rule_and_smallest_valid_consent(engine: Engine) -> None:
    d = decide(engine)
    assert d.decision == "permit" and d.reason is ReasonCode.PERMITTED
    basis = d.categories[0].basis
    assert basis is not None
    assert (basis.rule, basis.basis, basis.consent) == ("a-to-employer-too", "consent", "k-1")
    assert d.obligations == ("do not pass on",)


def test_expired_consent_falls_back_to_another_valid_one(engine: Engine) -> None:
    d = decide(engine, at="2027-01-01T00:00:00Z")  # k-1 expired on 2026-12-31 (a date)
    assert d.permit
    assert d.categories[0].basis is not None and d.categories[0].basis.consent == "k-2"


def test_group_expands_to_leaves_and_obligations_are_merged(engine: Engine) -> None:
    d = decide(engine, data=["work"])
    assert [c.category for c in d.categories] == ["work.capacity", "work.preferences"]
    assert d.permit and d.permitted == ("work.capacity", "work.preferences")
    assert d.obligations == ("delete after the placement ends", "do not pass on")


def test_subprocess_limit_of_a_rule(engine: Engine) -> None:
    assert decide(engine, subprocess="co-design").permit  # a-to-employer-too has no limit
    d = decide(engine, data=["work.preferences"], subprocess="co-design")
    assert d.reason is ReasonCode.NO_PERMIT_RULE
    assert d.categories[0].remedy is not None
    assert d.categories[0].remedy.action == "change-policy"


def test_purpose_hierarchy_child_is_covered_parent_is_not(engine: Engine) -> None:
    assert decide(engine, purpose="job-matching.employer-contact").permit
    assert decide(engine, purpose="evaluation").reason is ReasonCode.NO_PERMIT_RULE


def test_non_consent_basis_needs_no_consent_and_cites_the_law(engine: Engine) -> None:
    d = decide(engine, recipient="case-worker", data=["health"], subject="nobody")
    assert d.permit
    for category in d.categories:
        assert category.basis is not None
        assert category.basis.basis == "public-task"
        assert category.basis.law == "Serviceloven § 12"
        assert category.basis.art9 == "social-protection"


def test_forbid_overrides_a_permit(engine: Engine) -> None:
    d = decide(engine, recipient="volunteer", data=["health.diagnosis", "identity.name"])
    assert codes(d) == {"health.diagnosis": ReasonCode.FORBIDDEN,
                        "identity.name": ReasonCode.CONSENT_MISSING}
    assert d.reason is ReasonCode.FORBIDDEN  # FORBIDDEN outranks CONSENT_MISSING
    forbidden = d.categories[0]
    assert forbidden.reasons[0].rule == "no-health-to-voluntary"
    assert forbidden.remedy is not None and forbidden.remedy.action == "none"


def test_partial_permit_lists_what_would_pass_alone(engine: Engine) -> None:
    d = decide(engine, data=["health", "identity.name"])
    assert d.decision == "deny" and d.reason is ReasonCode.NO_PERMIT_RULE
    assert d.permitted == ("health.medication", "identity.name")
    assert d.obligations == ()


def test_adult_guardian_within_scope_until_the_guardianship_ends(engine: Engine) -> None:
    assert decide(engine, data=["health.medication"]).permit
    d = decide(engine, data=["health.medication"], at="2026-06-01T00:00:00Z")
    assert d.reason is ReasonCode.GRANTOR_AUTHORITY_ENDED
    assert d.categories[0].reasons[0].consent == "k-health"


def test_parental_consent_ends_on_the_18th_birthday(engine: Engine) -> None:
    assert decide(engine, subject="minor-1", at="2028-06-14T23:59:59Z").permit
    d = decide(engine, subject="minor-1", at="2028-06-15T00:00:00Z")
    assert d.reason is ReasonCode.GRANTOR_AUTHORITY_ENDED
    remedy = d.categories[0].remedy
    assert remedy is not None and remedy.consent is not None
    assert [g.role for g in remedy.consent.grantors] == ["subject"]  # now an adult


def test_minor_consents_herself_from_consent_age(engine: Engine) -> None:
    assert decide(engine, subject="minor-1", data=["work.preferences"]).permit


def test_remedy_for_a_minor_names_the_parent_and_explicitness(engine: Engine) -> None:
    d = decide(engine, subject="minor-1", data=["health.medication"], at="2024-01-01T00:00:00Z")
    assert d.reason is ReasonCode.CONSENT_MISSING
    remedy = d.categories[0].remedy
    assert remedy is not None and remedy.consent is not None
    needed = remedy.consent
    assert needed.explicit is True
    assert needed.recipient == Selector(organization=("cafe",))
    assert needed.purpose == "job-matching" and needed.subprocess == "co-delivery"
    guardians = [g for g in needed.grantors if g.role == "guardian"]
    assert [(g.person, g.kind) for g in guardians] == [("parent-1", "parental")]
    subject = [g for g in needed.grantors if g.role == "subject"]
    assert subject[0].from_age == 15  # 13 years old then: the subject may consent from 15
    assert "explicit consent" in remedy.message


def test_29_february_birthday_counts_from_1_march() -> None:
    born = date(2008, 2, 29)
    assert birthday_timestamp(born, 15) == datetime(2023, 3, 1, tzinfo=UTC).timestamp()
    assert birthday_timestamp(born, 16) == datetime(2024, 2, 29, tzinfo=UTC).timestamp()


def test_own_consent_given_the_day_before_consent_age_does_not_count(engine: Engine) -> None:
    assert decide(engine, subject="leap-1").permit  # given on 2023-03-01, the 15th birthday
    late = InMemoryRegistry(
        subjects={"leap-1": flowguard.Subject(birth_date=date(2008, 2, 29))},
        consents=[Consent(id="k", subject="leap-1", given_by="leap-1",
                          given_at=datetime(2023, 2, 28, 23, 59, tzinfo=UTC),
                          recipients=(Selector(organization=("cafe",)),),
                          data=("identity.name",), purposes=("job-matching",))])
    d = Engine(engine.policy, late).check(Flow.model_validate({**BASE, "subject": "leap-1"}))
    assert d.reason is ReasonCode.GRANTOR_NOT_AUTHORIZED


def test_subject_without_birth_date_is_an_adult(engine: Engine) -> None:
    registry = InMemoryRegistry(
        subjects={"nobirth-1": flowguard.Subject()},
        consents=[Consent(id="k", subject="nobirth-1", given_by="nobirth-1",
                          given_at=datetime(2026, 1, 1, tzinfo=UTC),
                          recipients=(Selector(organization=("cafe",)),),
                          data=("identity.name",), purposes=("job-matching",))])
    assert Engine(engine.policy, registry).check(
        Flow.model_validate({**BASE, "subject": "nobirth-1"})).permit


def test_unknown_subject_simply_has_no_consent_and_is_never_echoed(engine: Engine) -> None:
    d = decide(engine, subject="citizen-SECRET-99")
    assert d.reason is ReasonCode.CONSENT_MISSING
    text = json.dumps([c.model_dump(mode="json") for c in d.categories])
    assert "SECRET" not in text


@pytest.mark.parametrize("field,value", [
    ("sender", "consultnt"), ("recipient", "cafe-manger"), ("purpose", "job-matchin"),
    ("subprocess", "co-delivry"), ("data", ["identity.nam"]),
])
def test_unknown_entities_deny_with_a_suggestion(engine: Engine, field: str, value: Any) -> None:
    d = decide(engine, **{field: value})
    assert d.decision == "deny" and d.reason is ReasonCode.UNKNOWN_ENTITY
    assert "did you mean" in d.categories[0].reasons[0].message


def test_unknown_category_beside_known_ones(engine: Engine) -> None:
    d = decide(engine, data=["identity.name", "nonsense"])
    assert codes(d) == {"identity.name": ReasonCode.PERMITTED,
                        "nonsense": ReasonCode.UNKNOWN_ENTITY}
    assert d.reason is ReasonCode.UNKNOWN_ENTITY and d.permitted == ("identity.name",)


def test_times_with_offsets_are_compared_as_instants(engine: Engine) -> None:
    # 2028-06-15T01:30+02:00 is 2028-06-14T23:30Z: still a minor
    assert decide(engine, subject="minor-1", at="2028-06-15T01:30:00+02:00").permit


def test_withdrawal_is_honoured_from_its_instant(engine: Engine) -> None:
    policy = engine.policy
    k = Consent(id="k", subject="s", given_by="s", given_at=datetime(2026, 1, 1, tzinfo=UTC),
                recipients=(Selector(organization=("cafe",)),), data=("identity.name",),
                purposes=("job-matching",), withdrawn_at=datetime(2026, 3, 1, 10, tzinfo=UTC))
    e = Engine(policy, InMemoryRegistry(subjects={"s": flowguard.Subject()}, consents=[k]))
    flow = {**BASE, "subject": "s"}
    assert e.check(Flow.model_validate({**flow, "at": "2026-03-01T09:59:59Z"})).permit
    d = e.check(Flow.model_validate(flow))
    assert d.reason is ReasonCode.CONSENT_WITHDRAWN
    remedy = d.categories[0].remedy
    assert remedy is not None and remedy.action == "obtain-consent"


def test_not_yet_valid_and_not_explicit(engine: Engine) -> None:
    assert decide(engine, at="2025-12-31T23:59:59Z").reason is ReasonCode.CONSENT_NOT_YET_VALID
    policy = engine.policy
    k = Consent(id="k", subject="s", given_by="s", given_at=datetime(2026, 1, 1, tzinfo=UTC),
                recipients=(Selector(kind=("employer",)),), data=("health",),
                purposes=("job-matching",))
    e = Engine(policy, InMemoryRegistry(subjects={"s": flowguard.Subject()}, consents=[k]))
    d = e.check(Flow.model_validate({**BASE, "subject": "s", "data": ["health.medication"]}))
    assert d.reason is ReasonCode.CONSENT_NOT_EXPLICIT


def test_reason_precedence_between_consents(engine: Engine) -> None:
    common: dict[str, Any] = {
        "subject": "s", "given_by": "s", "recipients": (Selector(organization=("cafe",)),),
        "data": ("identity.name",), "purposes": ("job-matching",)}
    consents = [
        Consent(id="a", given_at=datetime(2027, 1, 1, tzinfo=UTC), **common),  # not yet valid
        Consent(id="b", given_at=datetime(2025, 1, 1, tzinfo=UTC),
                expires_at=datetime(2026, 1, 1, tzinfo=UTC), **common),  # expired
    ]
    e = Engine(engine.policy, InMemoryRegistry(subjects={"s": flowguard.Subject()},
                                               consents=consents))
    d = e.check(Flow.model_validate({**BASE, "subject": "s"}))
    assert d.reason is ReasonCode.CONSENT_EXPIRED
    assert [(r.code, r.consent) for r in d.categories[0].reasons] == [
        (ReasonCode.CONSENT_EXPIRED, "b"), (ReasonCode.CONSENT_NOT_YET_VALID, "a")]


def test_flow_without_time_is_decided_now(engine: Engine) -> None:
    flow = Flow.model_validate({k: v for k, v in BASE.items() if k != "at"})
    before = datetime.now(UTC)
    d = engine.check(flow)
    assert d.flow.at is not None and before <= d.flow.at <= datetime.now(UTC)
    assert d.evaluated_at == d.flow.at


def test_decision_json_has_the_spec_shape(engine: Engine) -> None:
    d = decide(engine, data=["health", "identity.name"])
    payload = json.loads(d.model_dump_json())
    assert {"decision", "flow", "categories", "permitted", "policy_digest", "decision_id",
            "evaluated_at", "obligations", "reason"} <= set(payload)
    assert payload["flow"]["at"] == "2026-03-01T10:00:00Z"
    assert payload["policy_digest"].startswith("sha256:")
    for category in payload["categories"]:
        assert {"category", "decision", "reasons", "basis", "remedy"} <= set(category)
        assert {"code", "rule", "consent", "message"} <= set(category["reasons"][0])
    assert Decision.model_validate(payload) == d


def test_decision_ids_are_unique(engine: Engine) -> None:
    ids = {d.decision_id for d in engine.check_many([Flow.model_validate(BASE)] * 500)}
    assert len(ids) == 500


def test_check_many_equals_check(engine: Engine) -> None:
    flows = [Flow.model_validate({**BASE, **change}) for change in (
        {}, {"data": ["work"]}, {"recipient": "volunteer"}, {"subject": "minor-1"},
        {"purpose": "evaluation"}, {"sender": "nobody"})]
    many = engine.check_many(flows)
    one = [engine.check(f) for f in flows]
    strip = {"decision_id", "evaluated_at"}
    assert [d.model_dump(exclude=strip) for d in many] == [d.model_dump(exclude=strip)
                                                           for d in one]


def test_internal_error_denies(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "_judge", boom)
    d = decide(engine)
    assert d.decision == "deny" and d.reason is ReasonCode.EVALUATION_ERROR
    assert d.permitted == ()


class MutableRegistry(InMemoryRegistry):
    """A registry whose records change, as a database-backed one would."""

    def __init__(self, consents: list[Consent]) -> None:
        super().__init__(subjects={"s": flowguard.Subject()}, consents=consents)
        self._revision = 0

    @property
    def revision(self) -> int:
        return self._revision

    def replace(self, consents: list[Consent]) -> None:
        self.__init__(consents)  # type: ignore[misc]
        self._revision = 1


def test_engine_sees_registry_changes_through_the_revision(engine: Engine) -> None:
    k = Consent(id="k", subject="s", given_by="s", given_at=datetime(2026, 1, 1, tzinfo=UTC),
                recipients=(Selector(organization=("cafe",)),), data=("identity.name",),
                purposes=("job-matching",))
    registry = MutableRegistry([k])
    e = Engine(engine.policy, registry)
    flow = Flow.model_validate({**BASE, "subject": "s"})
    assert e.check(flow).permit
    registry.replace([k.model_copy(update={"withdrawn_at": datetime(2026, 2, 1, tzinfo=UTC)})])
    assert e.check(flow).reason is ReasonCode.CONSENT_WITHDRAWN


def test_digest_does_not_depend_on_file_layout(write: Callable[[str, str], Path]) -> None:
    one = flowguard.load_policy(write("one/policy.yaml", SMALL_POLICY))
    head, rules = SMALL_POLICY.split("rules:\n")
    blocks = ["  - id:" + b for b in rules.split("  - id:") if b.strip()]
    write("two/a-vocabulary.yaml", head)
    write("two/b-rules.yaml", "rules:\n" + "".join(reversed(blocks)))
    two = flowguard.load_policy(write("two/consents.yaml", SMALL_REGISTRY).parent)
    assert [r.id for r in two.rules] != [r.id for r in one.rules]
    assert one.digest == two.digest
    changed = flowguard.load_policy(write("three.yaml", SMALL_POLICY.replace("§ 12", "§ 13")))
    assert changed.digest != one.digest


def test_policy_copy_recomputes_its_hierarchies_and_digest(engine: Engine) -> None:
    policy = engine.policy
    assert policy.digest.startswith("sha256:")
    copied = policy.model_copy(update={"data_categories": {"x.y": flowguard.model.DataCategory()}})
    assert copied.category_tree.leaves("x") == ("x.y",)
    assert copied.digest != policy.digest


def test_an_in_memory_registry_shares_equal_parts_without_changing_a_record() -> None:
    """InMemoryRegistry keeps one object for equal recipient, category and purpose lists
    and one set of field names; the records read back equal, and copying one with a change
    leaves the others as they were."""
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def consent(i: int) -> Consent:
        return Consent(id=f"k{i}", subject="s", given_by="s", given_at=at,
                       recipients=(Selector(organization=("org",)),), data=("health",),
                       purposes=("care",))

    originals = [consent(i) for i in range(3)]
    registry = InMemoryRegistry(subjects={"s": flowguard.Subject()},
                                consents=[consent(i) for i in range(3)])
    kept = list(registry.consents_of("s"))
    assert kept == originals
    assert kept[0].recipients is kept[1].recipients and kept[0].data is kept[2].data
    assert kept[0].model_fields_set is kept[1].model_fields_set
    changed = kept[0].model_copy(update={"explicit": True})
    assert changed.explicit and changed.model_fields_set >= {"explicit"}
    assert kept[1].model_fields_set == originals[1].model_fields_set
    assert [k.model_dump() for k in kept] == [k.model_dump() for k in originals]


def test_a_check_looks_only_at_its_recipients_rules_and_its_subjects_consents(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexes, not scans: adding rules for other recipients and consents of other subjects
    changes nothing a check reads (the rules it filters, the consents it scans)."""
    from flowguard.engine import _RuleSet

    def reads(target: Engine) -> tuple[list[int], list[int]]:
        rules: list[int] = []
        consents: list[int] = []
        stage, facts = _RuleSet.stage, target._subject_facts

        def counting_stage(self: _RuleSet, *args: Any) -> Any:
            rules.append(len(self.permits) + len(self.forbids))
            return stage(self, *args)

        def counting_facts(subject_id: str, *rest: Any) -> Any:
            found = facts(subject_id, *rest)
            consents.append(len(found.consents))
            return found

        monkeypatch.setattr(_RuleSet, "stage", counting_stage)
        monkeypatch.setattr(target, "_subject_facts", counting_facts)
        target._facts.clear()
        for at in ("2026-03-01T10:00:00Z", "2027-01-01T00:00:00Z"):
            target.check({**BASE, "data": "identity.name", "at": at})
        monkeypatch.undo()
        return rules, consents

    policy = engine.policy
    other = next(a for a in policy.actors if a != BASE["recipient"])
    noise = tuple(
        flowguard.model.Rule(id=f"zz-noise-{i}", effect="permit", basis="consent",
                             recipient=Selector(actor=(other,)), data=("identity.name",))
        for i in range(500))
    bigger_policy = policy.model_copy(update={"rules": (*policy.rules, *noise)})
    registry = engine.registry
    assert isinstance(registry, InMemoryRegistry)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    more = [Consent(id=f"zz-{i}", subject="adult-2", given_by="adult-2", given_at=at,
                    recipients=(Selector(),), data=("identity",), purposes=("job-matching",))
            for i in range(500)]
    bigger_registry = InMemoryRegistry(
        subjects=registry.subjects, guardianships=registry.all_guardianships(),
        consents=[*registry.all_consents(), *more])
    small = reads(Engine(policy, registry))
    big = reads(Engine(bigger_policy, bigger_registry))
    assert small == big and small[0] and small[1]
    # the negative control: rules for the same recipient are read
    same = tuple(r.model_copy(update={"recipient": Selector(actor=(BASE["recipient"],))})
                 for r in noise)
    crowded = policy.model_copy(update={"rules": (*policy.rules, *same)})
    assert reads(Engine(crowded, registry))[0] != small[0]


def test_a_check_inside_a_batch_still_reads_the_registry(engine: Engine) -> None:
    """A batch reads the registry's revision once, for its own flows only: a check made
    while a batch is under way (here by the batch's own generator, after a withdrawal) reads
    it again and sees the withdrawal."""
    k = Consent(id="k", subject="s", given_by="s", given_at=datetime(2026, 1, 1, tzinfo=UTC),
                recipients=(Selector(organization=("cafe",)),), data=("identity.name",),
                purposes=("job-matching",))
    registry = MutableRegistry([k])
    e = Engine(engine.policy, registry)
    flow = {**BASE, "subject": "s", "data": "identity.name"}
    inside: list[Decision] = []

    def flows() -> Any:
        yield flow
        registry.replace([k.model_copy(update={"withdrawn_at": datetime(2026, 2, 1,
                                                                        tzinfo=UTC)})])
        inside.append(e.check(flow))
        yield flow

    batch = e.check_many(flows())
    assert batch[0].permit
    assert inside[0].reason is ReasonCode.CONSENT_WITHDRAWN


class _CaseBlind(str):
    """A string subclass whose equality ignores case: validation makes it a plain string."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.lower() == other.lower()

    def __hash__(self) -> int:
        return hash(self.lower())


def test_a_string_subclass_is_judged_as_the_plain_string_validation_makes_it(
        engine: Engine) -> None:
    mapping = {**BASE, "recipient": _CaseBlind(BASE["recipient"].upper())}
    expected = engine.check(Flow.model_validate(mapping))
    assert expected.reason is ReasonCode.UNKNOWN_ENTITY
    for value in (mapping, tuple(mapping[f] for f in Flow.model_fields)):
        got = engine.check(value)
        assert got.reason is ReasonCode.UNKNOWN_ENTITY and type(got.flow.recipient) is str


def test_pending_decisions_share_nothing_and_hash_by_value(engine: Engine) -> None:
    flow = {**BASE, "data": "identity.name"}
    first, second = engine.check(flow), engine.check(flow)
    vars(first)["decision"] = "deny"  # nobody should, but it must stay with that object
    object.__setattr__(first, "note", "x")
    third = engine.check(flow)
    assert second.permit and third.permit and not hasattr(third, "note")
    assert third.categories[0].decision == "permit"
    denied = engine.check({**flow, "subject": "nobody"})
    values = {hash(d) for d in (second, third, denied)}
    assert len(values) == 3  # distinct decisions (ids differ), distinct hashes


def test_reading_one_pending_decision_from_many_threads(engine: Engine) -> None:
    import threading

    failures: list[BaseException] = []
    for _ in range(200):
        d = engine.check({**BASE, "data": "identity.name", "at": "2020-01-01T00:00:00Z"})
        start = threading.Barrier(4)

        def read(decision: Decision = d, go: threading.Barrier = start) -> None:
            go.wait()
            try:
                assert decision.flow.subject == BASE["subject"]
                assert decision.categories[0].remedy is not None
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures[:3]


def test_the_echoed_time_is_the_instant_decided_at(engine: Engine) -> None:
    """A flow without `at` is decided at the engine's clock; the decision echoes that very
    instant (whole microseconds), so re-checking the echoed flow gives the same answer."""
    for _ in range(50):
        d = engine.check({k: v for k, v in BASE.items() if k != "at"} | {"data": "identity.name"})
        assert d.flow.at == d.evaluated_at and d.flow.at is not None
        again = engine.check(d.flow)
        assert again.decision == d.decision and again.reason == d.reason
