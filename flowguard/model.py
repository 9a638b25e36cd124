"""The typed model: policy, consent registry, flows and decisions (SPEC §§ 2-6).

Models are immutable pydantic v2 models and carry no behaviour beyond validating
their own fields; loading (with source positions) lives in `policy` and `registry`,
evaluation in `engine`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from operator import itemgetter
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, TypeVar, cast

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationInfo,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from flowguard._hierarchy import Hierarchy
from flowguard.text import free_text, record_id

# --------------------------------------------------------------------------- scalars

ID_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.:@+\-/]*"
MAX_ID_LENGTH = 200
Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=f"^{ID_PATTERN}$"),
]
Text = Annotated[str, StringConstraints(max_length=4000)]
STORED: dict[str, bool] = {"stored": True}
"""Validation context for records read back from a store: the input checks below apply to
what is written, so a record stored before they existed stays readable (nothing stored is
lost); terminals show such text through `flowguard._terminal`."""


def _on_input(check: Callable[[str], str]) -> Callable[[str, ValidationInfo], str]:
    def checked(value: str, info: ValidationInfo) -> str:
        if isinstance(info.context, dict) and info.context.get("stored"):
            return value
        return check(value)
    return checked


RecordId = Annotated[Id, AfterValidator(_on_input(record_id))]
"""A consent's or guardianship's id: an `Id` without `/`, so that it fits in every URL path."""
FreeText = Annotated[str, AfterValidator(_on_input(free_text))]
"""Short free text kept in the registry and the audit log (recorders, evidence): printable
characters only, at most 200."""


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _one_or_many_of(item: Any) -> BeforeValidator:
    """Accept one value or a non-empty list of them; the JSON Schema says so too."""
    return BeforeValidator(_one_or_many,
                           json_schema_input_type=item | Annotated[list[item], Field(min_length=1)])


IdList = Annotated[tuple[Id, ...], _one_or_many_of(Id), Field(min_length=1)]


def _date_as_midnight_utc(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return value
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return value


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _not_a_number(value: Any) -> Any:
    """A time is an RFC 3339 string (or a YAML timestamp), never a number that pydantic
    would take as a Unix time."""
    if isinstance(value, int | float | Decimal):
        raise ValueError("write the time as an RFC 3339 string, e.g. "
                         "\"2026-01-10T09:00:00Z\", not a number")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_as_utc)]
"""An RFC 3339 time with a zone, kept in UTC. pydantic-core checks the zone; the conversion
to the standard library's UTC matters because `timestamp()` and `isoformat()` are several
times slower on pydantic's own zone type, and both run while deciding."""

Bound = Annotated[Instant, BeforeValidator(_date_as_midnight_utc)]
TimeString = Annotated[Instant, BeforeValidator(_not_a_number)]
"""An `Instant` that refuses numbers (the HTTP service's registry writes)."""
"""A validity bound: a time with a zone, or a date meaning 00:00 UTC that day."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """An instance from values the engine already knows are valid (see `construct`)."""
        return construct(cls, values)


_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__
_FIELDS_SET: dict[type[BaseModel], set[str]] = {}


def construct(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build a model instance without validation, from values known to be valid.

    Unlike `model_construct`, no defaults are filled in, so every field must be given; this
    is on the path of every decision and costs a fraction of `model_construct`.
    """
    instance = object.__new__(cls)
    _set(instance, "__dict__", values)
    # every field is set; models are frozen and `model_copy` copies this set before changing
    # it, so one set per class serves all its instances
    fields_set = _FIELDS_SET.get(cls)
    if fields_set is None:
        fields_set = _FIELDS_SET[cls] = set(cls.model_fields)
    _set(instance, "__pydantic_fields_set__", fields_set)
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


# --------------------------------------------------------------------------- policy

Sector = Literal["public", "private", "voluntary"]
Effect = Literal["permit", "forbid"]
LegalBasis = Literal["consent", "contract", "legal-obligation", "vital-interests", "public-task"]
Art9Condition = Literal[
    "social-protection", "vital-interests", "public-interest", "health-care", "public-health",
    "research",
]
SELECTOR_KEYS = ("actor", "organization", "kind", "sector", "role")
BASES_NEEDING_LAW = ("legal-obligation", "public-task")


class Selector(Model):
    """Which actors: keys are ANDed, the values of one key ORed; empty matches everyone."""

    actor: IdList | None = None
    organization: IdList | None = None
    kind: IdList | None = None
    sector: Annotated[tuple[Sector, ...], _one_or_many_of(Sector),
                      Field(min_length=1)] | None = None
    role: IdList | None = None

    # Consents are compiled, and registries share their equal parts, by hashing their
    # recipients: these do what pydantic's own do for a frozen model, a few times faster.
    def __eq__(self, other: object) -> bool:
        if type(other) is Selector:
            return self.__dict__ == other.__dict__
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(_selector_values(self.__dict__))


_selector_values = itemgetter(*SELECTOR_KEYS)


Language = Literal["en", "da", "fi"]


class CitizenAges(Model):
    """The ages of the citizens a service admits (either bound may be omitted)."""

    min_age: Annotated[int, Field(strict=True, ge=0, le=150)] | None = None
    max_age: Annotated[int, Field(strict=True, ge=0, le=150)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> CitizenAges:
        if self.min_age is not None and self.max_age is not None \
                and self.min_age > self.max_age:
            raise ValueError("`min_age` must not be greater than `max_age`")
        return self

    def admits_under(self, age: int) -> bool:
        """Whether some citizen of the service may be younger than `age`."""
        return self.min_age is None or self.min_age < age


class Service(Model):
    id: Id
    name: Text | None = None
    controller: Id | None = None
    description: Text | None = None
    language: Language | None = None
    """The default language of reports and forms (English when omitted)."""
    contact: Text | None = None
    """How citizens reach the controller (office, phone, address): consent forms say it."""
    citizens: CitizenAges | None = None
    """The ages of the service's citizens; forms and the ROPA mention minors only if the
    range admits them."""


class Jurisdiction(Model):
    majority_age: Annotated[int, Field(strict=True, ge=0, le=150)]
    consent_age: Annotated[int, Field(strict=True, ge=0, le=150)] | None = None
    name: Text | None = None

    @property
    def effective_consent_age(self) -> int:
        return self.majority_age if self.consent_age is None else self.consent_age


class Organization(Model):
    kind: Id
    sector: Sector
    # may record and read consents and guardianships over HTTP (SPEC §3, §10); None when
    # absent, so that policies without it keep their digest
    records_consents: Annotated[bool, Field(strict=True)] | None = None
    name: Text | None = None
    description: Text | None = None


class Actor(Model):
    organization: Id
    role: Id
    name: Text | None = None
    description: Text | None = None


class DataCategory(Model):
    special: Annotated[bool, Field(strict=True)] = False
    description: Text | None = None
    personal: Annotated[bool, Field(strict=True)] | None = None
    """`false` marks a category that is not personal data (aggregates): still governed by
    rules, but not listed as personal data (omitted: personal)."""


class Purpose(Model):
    description: Text | None = None


class Subprocess(Model):
    co_produced: Annotated[bool, Field(strict=True)] = False
    order: Annotated[int, Field(strict=True)] | None = None
    name: Text | None = None
    description: Text | None = None


class Rule(Model):
    id: Id
    effect: Effect
    description: Text | None = None
    sender: Selector | None = None
    recipient: Selector | None = None
    data: IdList
    purposes: IdList | None = None
    subprocesses: IdList | None = None
    basis: LegalBasis | None = None
    law: Text | None = None
    art9: Art9Condition | None = None
    obligations: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _basis_fits_effect(self) -> Rule:
        if self.effect == "permit":
            if self.basis is None:
                raise ValueError("a permit rule must name its legal `basis`")
            if self.basis in BASES_NEEDING_LAW and not self.law:
                raise ValueError(
                    f"basis `{self.basis}` must cite the `law` that gives it (GDPR Art. 6(3))"
                )
        else:
            extras = [k for k in ("basis", "law", "art9") if getattr(self, k) is not None]
            if self.obligations:
                extras.append("obligations")
            if extras:
                raise ValueError(f"a forbid rule takes no {', '.join(extras)}")
        return self


class Policy(Model):
    """A validated policy whose every reference resolves (build it with `load_policy`)."""

    version: Literal[1] = 1
    service: Service | None = None
    jurisdictions: dict[Id, Jurisdiction] = {}
    default_jurisdiction: Id | None = None
    organizations: dict[Id, Organization] = {}
    actors: dict[Id, Actor] = {}
    data_categories: dict[Id, DataCategory] = {}
    purposes: dict[Id, Purpose] = {}
    subprocesses: dict[Id, Subprocess] = {}
    rules: tuple[Rule, ...] = ()

    _categories: Hierarchy = PrivateAttr()
    _purposes: Hierarchy = PrivateAttr()
    _digest: str = PrivateAttr(default="")

    def model_post_init(self, context: Any, /) -> None:
        self._categories = Hierarchy(self.data_categories)
        self._purposes = Hierarchy(self.purposes)

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> Policy:
        """A copy whose derived hierarchies and digest follow the updated fields."""
        copied = super().model_copy(update=update, deep=deep)
        copied.model_post_init(None)
        copied._digest = ""
        return copied

    @property
    def category_tree(self) -> Hierarchy:
        return self._categories

    @property
    def purpose_tree(self) -> Hierarchy:
        return self._purposes

    def is_personal(self, category: str) -> bool:
        """A category is personal data unless it or an ancestor says `personal: false`."""
        return not any(
            (c := self.data_categories.get(a)) is not None and c.personal is False
            for a in self._categories.ancestors_or_self(category)
        )

    def is_special(self, category: str) -> bool:
        """A category is special when it or an ancestor is marked `special: true`."""
        return any(
            (c := self.data_categories.get(a)) is not None and c.special
            for a in self._categories.ancestors_or_self(category)
        )

    @property
    def digest(self) -> str:
        if not self._digest:
            from flowguard.canonical import policy_digest

            self._digest = policy_digest(self)
        return self._digest


# --------------------------------------------------------------------------- registry

class Subject(Model):
    birth_date: date | None = None
    jurisdiction: Id | None = None


GuardianshipKind = Literal["parental", "adult"]


class Guardianship(Model):
    id: RecordId
    guardian: Id
    subject: Id
    kind: GuardianshipKind
    scope: IdList | None = None
    valid_from: Bound
    valid_until: Bound | None = None
    evidence: Evidence | None = None


class Evidence(Model):
    method: FreeText
    reference: FreeText | None = None
    note: Text | None = None


class Consent(Model):
    id: RecordId
    subject: Id
    given_by: Id
    given_at: Instant
    recipients: Annotated[tuple[Selector, ...], Field(min_length=1)]
    data: IdList
    purposes: IdList
    subprocesses: IdList | None = None
    explicit: Annotated[bool, Field(strict=True)] = False
    expires_at: Bound | None = None
    withdrawn_at: Bound | None = None
    evidence: Evidence | None = None


Guardianship.model_rebuild()


# --------------------------------------------------------------------------- flows


MAX_CATEGORIES_PER_FLOW = 1000


class Flow(Model):
    """A proposed transfer of data about one subject from one actor to another."""

    sender: Id
    recipient: Id
    subject: Id
    data: Annotated[tuple[Id, ...], _one_or_many_of(Id),
                    Field(min_length=1, max_length=MAX_CATEGORIES_PER_FLOW)]
    purpose: Id
    subprocess: Id
    at: Instant | None = None


# --------------------------------------------------------------------------- decisions


class ReasonCode(StrEnum):
    """Why a category was permitted or denied; deny codes in order of precedence."""

    PERMITTED = "PERMITTED"
    UNKNOWN_ENTITY = "UNKNOWN_ENTITY"
    FORBIDDEN = "FORBIDDEN"
    NO_PERMIT_RULE = "NO_PERMIT_RULE"
    CONSENT_WITHDRAWN = "CONSENT_WITHDRAWN"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    CONSENT_NOT_YET_VALID = "CONSENT_NOT_YET_VALID"
    CONSENT_NOT_EXPLICIT = "CONSENT_NOT_EXPLICIT"
    GRANTOR_NOT_AUTHORIZED = "GRANTOR_NOT_AUTHORIZED"
    GRANTOR_AUTHORITY_ENDED = "GRANTOR_AUTHORITY_ENDED"
    CONSENT_MISSING = "CONSENT_MISSING"
    EVALUATION_ERROR = "EVALUATION_ERROR"


DENY_PRECEDENCE: tuple[ReasonCode, ...] = (
    ReasonCode.EVALUATION_ERROR,
    ReasonCode.UNKNOWN_ENTITY,
    ReasonCode.FORBIDDEN,
    ReasonCode.NO_PERMIT_RULE,
    ReasonCode.CONSENT_WITHDRAWN,
    ReasonCode.CONSENT_EXPIRED,
    ReasonCode.CONSENT_NOT_YET_VALID,
    ReasonCode.CONSENT_NOT_EXPLICIT,
    ReasonCode.GRANTOR_NOT_AUTHORIZED,
    ReasonCode.GRANTOR_AUTHORITY_ENDED,
    ReasonCode.CONSENT_MISSING,
)
PRECEDENCE_RANK: dict[ReasonCode, int] = {code: i for i, code in enumerate(DENY_PRECEDENCE)}

Outcome = Literal["permit", "deny"]


class Reason(Model):
    code: ReasonCode
    message: str
    rule: str | None = None
    consent: str | None = None


class Basis(Model):
    """The legal basis a permitted category relied on."""

    rule: str
    basis: LegalBasis
    consent: str | None = None
    law: str | None = None
    art9: Art9Condition | None = None


class Grantor(Model):
    """Who may give a needed consent."""

    role: Literal["subject", "guardian"]
    person: str | None = None
    guardianship: str | None = None
    kind: GuardianshipKind | None = None
    from_age: int | None = None


class ConsentNeeded(Model):
    grantors: tuple[Grantor, ...]
    recipient: Selector
    categories: tuple[str, ...]
    purpose: str
    subprocess: str
    explicit: bool
    rules: tuple[str, ...]


RemedyAction = Literal["obtain-consent", "change-policy", "fix-request", "none"]


class Remedy(Model):
    """What would make a denied category lawful."""

    action: RemedyAction
    message: str
    consent: ConsentNeeded | None = None


class CategoryDecision(Model):
    category: str
    decision: Outcome
    reasons: tuple[Reason, ...]
    basis: Basis | None = None
    remedy: Remedy | None = None
    obligations: tuple[str, ...] = ()


class Decision(Model):
    """The answer to one flow: permit only when every leaf category is permitted.

    The engine may leave the costly parts of a decision (the flow it echoes, and a denied
    category's reasons and remedy) to be built on first use, from the inputs it decided on,
    so a caller that reads only `decision` does not pay for them. Every way of reading a
    decision (attributes, `model_dump`, serialization inside another model, equality, copies,
    pickling) builds them first: a decision is never seen incomplete.
    """

    __slots__ = ("_pending",)
    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Outcome
    reason: ReasonCode
    flow: Flow
    categories: tuple[CategoryDecision, ...]
    permitted: tuple[str, ...]
    obligations: tuple[str, ...] = ()
    policy_digest: str
    decision_id: str
    evaluated_at: datetime
    registry_revision: int | None = None
    """The registry revision whose records the decision used: the subject's records at that
    revision are exactly what it was decided on (None: an evaluation error, no records used)."""

    @property
    def permit(self) -> bool:
        return self.decision == "permit"

    @model_serializer(mode="wrap")
    def _serialize_complete(self, handler: SerializerFunctionWrapHandler) -> Any:
        complete(self)
        return handler(self)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # the serializer above only completes the decision: it is serialized as validated
        schema = dict(core_schema)
        schema.pop("serialization", None)
        return handler(cast(CoreSchema, schema))

    def model_dump(self, **options: Any) -> dict[str, Any]:
        complete(self)  # so that a failure raises its own error, not pydantic's wrapper
        return super().model_dump(**options)

    def model_dump_json(self, **options: Any) -> str:
        complete(self)
        return super().model_dump_json(**options)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Decision):
            complete(self)
            complete(other)
        return super().__eq__(other)

    def __hash__(self) -> int:
        complete(self)
        return hash(_decision_values(self.__dict__))

    def __repr_args__(self) -> Any:
        complete(self)
        return super().__repr_args__()

    def __iter__(self) -> Any:
        complete(self)
        return super().__iter__()

    def __getstate__(self) -> dict[Any, Any]:
        complete(self)
        return super().__getstate__()

    def __copy__(self) -> Self:
        complete(self)
        return super().__copy__()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        complete(self)
        return super().__deepcopy__(memo)

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> Self:
        complete(self)
        return super().model_copy(update=update, deep=deep)

    if not TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any:
            # A pending decision lacks its fields and pydantic's slots. Another thread may
            # have completed it since this lookup failed: look again either way.
            complete(self)
            try:
                return object.__getattribute__(self, name)
            except AttributeError:
                return super().__getattr__(name)


Completion = tuple[Any, ...]
"""A function followed by its arguments; it returns the fields a decision was created
without."""

_get_pending = Decision._pending.__get__  # type: ignore[attr-defined]
_set_pending = Decision._pending.__set__  # type: ignore[attr-defined]
_set_dict = BaseModel.__dict__["__dict__"].__set__
_ALL_DECISION_FIELDS = set(Decision.model_fields)


def pending_decision(values: dict[str, Any], completion: Completion) -> Decision:
    """A decision holding `values` (its own dict) now, and the rest of its fields (and
    pydantic's own state) once `completion` has run, which happens before anything else
    reads it. `completion` must be deterministic: it may run in any thread, at any later
    time. (`vars()` and `__dict__`, which bypass every hook, show only what is built.)"""
    instance = _new(Decision)
    _set_dict(instance, values)
    _set_pending(instance, completion)
    return instance


def complete(decision: Decision) -> bool:
    """Build the fields of a pending decision; False if there was nothing to build."""
    try:
        completion = _get_pending(decision, Decision)
    except AttributeError:  # never pending
        return False
    if completion is None:
        return False
    decision.__dict__.update(completion[0](*completion[1:]))
    _set(decision, "__pydantic_fields_set__", _ALL_DECISION_FIELDS)
    _set(decision, "__pydantic_extra__", None)
    _set(decision, "__pydantic_private__", None)
    _set_pending(decision, None)
    return True


_decision_values = itemgetter(*Decision.model_fields)
_new = object.__new__
