"""Shared machinery of the policy and registry loaders: per-entry validation that collects
every problem with its source position, and reference checks with "did you mean" hints."""

from __future__ import annotations

import difflib
import gc
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from flowguard._plain import plain_pydantic
from flowguard._source import Document
from flowguard.errors import Diagnostic
from flowguard.model import ID_PATTERN, MAX_ID_LENGTH, SELECTOR_KEYS, Policy, Selector

M = TypeVar("M", bound=BaseModel)
_ID = re.compile(ID_PATTERN)


def closest(name: object, candidates: Iterable[str]) -> str | None:
    if not isinstance(name, str):
        return None
    matches = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: object, candidates: Iterable[str]) -> str | None:
    match = closest(name, candidates)
    return f"did you mean `{match}`?" if match else None


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Collector:
    """Accumulates diagnostics so that every problem of a file is reported at once."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def add(self, doc: Document, path: Sequence[str | int], message: str, *,
            hint: str | None = None, code: str = "invalid", severity: str = "error",
            at_key: bool = False) -> None:
        self.diagnostics.append(
            doc.diagnostic(path, message, hint=hint, code=code, severity=severity,
                           at_key=at_key)
        )

    def validate(self, doc: Document, path: tuple[str | int, ...], model: type[M],
                 data: Any, what: str) -> M | None:
        """Validate one entry; on failure record each pydantic error at its position."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            for error in _without_cascade(model, errors):
                self._pydantic_error(doc, path, model, error, what)
            return None

    def validate_many(self, doc: Document, path: tuple[str | int, ...], model: type[M],
                      items: Sequence[tuple[str | int, Any]],
                      what: Callable[[int, str | int, Any], str]) -> list[M | None]:
        """Validate entries `(key, data)` found under `path`: all at once when they are all
        valid (the common case, and much faster), else one by one to place each error."""
        try:
            return list(_list_adapter(model).validate_python([data for _, data in items]))
        except ValidationError:
            pass
        return [self.validate(doc, (*path, key), model, data, what(i, key, data))
                for i, (key, data) in enumerate(items)]

    def _pydantic_error(self, doc: Document, path: tuple[str | int, ...], model: type[BaseModel],
                        error: Any, what: str) -> None:
        loc = _clean_loc(error["loc"])
        kind = error["type"]
        field = field_text(loc)
        hint = None
        at_key = False
        if kind == "extra_forbidden":
            key = loc[-1] if loc else "?"
            known = _field_names(model, loc[:-1])
            hint = did_you_mean(key, known) or (
                f"known keys: {', '.join(sorted(known))}" if known else None
            )
            message = f"{what}: unknown key `{key}`"
            code = "unknown-key"
            at_key = True
        elif kind == "missing":
            parent = field_text(loc[:-1])
            message = (f"{what}: {parent + ': ' if parent else ''}missing required key "
                       f"`{loc[-1] if loc else field}`")
            code = "missing"
        else:
            message = f"{what}: {field + ': ' if field else ''}{plain_pydantic(error)}"
            code = "type" if "type" in kind or kind.endswith("_parsing") or \
                kind == "timezone_aware" else "invalid"
        self.add(doc, path + loc, message, hint=hint, code=code, at_key=at_key)

    def expect_mapping(self, doc: Document, path: tuple[str | int, ...], value: Any,
                       what: str) -> dict[Any, Any] | None:
        if isinstance(value, dict):
            return value
        self.add(doc, path, f"{what} must be a mapping of id to entry, not {_kind(value)}",
                 code="type")
        return None

    def expect_list(self, doc: Document, path: tuple[str | int, ...], value: Any,
                    what: str) -> list[Any] | None:
        if isinstance(value, list):
            return value
        self.add(doc, path, f"{what} must be a list, not {_kind(value)}", code="type")
        return None

    def expect_id(self, doc: Document, path: tuple[str | int, ...], key: Any,
                  what: str) -> bool:
        if isinstance(key, str) and key:
            if len(key) <= MAX_ID_LENGTH and _ID.fullmatch(key):
                return True
            # a bad id would otherwise fail only when the policy is built: an internal error
            self.add(doc, path, f"{what} id {_describe(key)} is not a valid id", code="type",
                     at_key=True,
                     hint="write letters, digits and `_ . : @ + - /`, starting with a letter, "
                          f"digit or `_`, at most {MAX_ID_LENGTH} characters")
            return False
        self.add(doc, path, f"{what} id must be a string, not {_describe(key)}", code="type")
        return False

    def reference(self, doc: Document, path: tuple[str | int, ...], value: str,
                  known: Collection[str], what: str) -> bool:
        if value in known:
            return True
        self.add(doc, path, f"unknown {what} `{value}`", hint=did_you_mean(value, known),
                 code="unknown-reference")
        return False


def field_text(loc: Sequence[str | int]) -> str:
    """A place in a file for people: 1-based, an entry of a list by its noun
    (`cases.2.flow.at` is `case 3: flow.at`, `data.0` is `data.1`)."""
    groups: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(loc):
        part = loc[index]
        following = loc[index + 1] if index + 1 < len(loc) else None
        if isinstance(part, str) and part.endswith("s") and isinstance(following, int):
            if current:
                groups.append(".".join(current))
                current = []
            groups.append(f"{part[:-1]} {following + 1}")
            index += 2
            continue
        current.append(str(part + 1) if isinstance(part, int) else part)
        index += 1
    if current:
        groups.append(".".join(current))
    return ": ".join(groups)


def _clean_loc(loc: Sequence[Any]) -> tuple[str | int, ...]:
    return tuple(part for part in loc if not (isinstance(part, str) and "[" in part))


def _without_cascade(model: type[BaseModel], errors: list[Any]) -> list[Any]:
    """One misspelled key is one error: drop "missing `sender`" when the same mapping has
    an unknown key `sendr` that reads as it (the unknown key's error says "did you mean")."""
    meant: set[tuple[str | int, ...]] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = _clean_loc(error["loc"])
            if loc:
                match = closest(loc[-1], _field_names(model, loc[:-1]))
                if match is not None:
                    meant.add((*loc[:-1], match))
    return [e for e in errors
            if not (e["type"] == "missing" and _clean_loc(e["loc"]) in meant)]


@cache
def _list_adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that form no cycles
    (a loaded registry, a batch of decisions): collecting meanwhile finds nothing, and its
    cost grows with the heap. Reference counting still frees everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"the {type(value).__name__} {_describe(value)}"


def _field_names(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = _inner_model(fields[part].annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def check_selector(collector: Collector, doc: Document, path: tuple[str | int, ...],
                   selector: Selector, policy_parts: PolicyVocabulary) -> None:
    """Every value of a selector must name something the policy declares."""
    for key in SELECTOR_KEYS:
        values = getattr(selector, key)
        if values is None or key == "sector":
            continue
        known, what = policy_parts.selector_domain(key)
        raw_is_list = isinstance(values, tuple) and len(values) > 1
        for i, value in enumerate(values):
            where = (*path, key, i) if raw_is_list else (*path, key)
            collector.reference(doc, where, value, known, what)


class PolicyVocabulary:
    """The ids a policy declares, for reference checks (also before the Policy is built)."""

    def __init__(self, *, organizations: dict[str, Any], actors: dict[str, Any],
                 categories: Collection[str], purposes: Collection[str],
                 subprocesses: Collection[str], jurisdictions: Collection[str]) -> None:
        self.organizations = organizations
        self.actors = actors
        self.kinds = {getattr(o, "kind", None) for o in organizations.values()} - {None}
        self.roles = {getattr(a, "role", None) for a in actors.values()} - {None}
        self.categories = categories
        self.purposes = purposes
        self.subprocesses = subprocesses
        self.jurisdictions = jurisdictions

    @classmethod
    def of(cls, policy: Policy) -> PolicyVocabulary:
        return cls(organizations=dict(policy.organizations), actors=dict(policy.actors),
                   categories=policy.category_tree.ids, purposes=policy.purpose_tree.ids,
                   subprocesses=set(policy.subprocesses),
                   jurisdictions=set(policy.jurisdictions))

    def selector_domain(self, key: str) -> tuple[Collection[str], str]:
        if key == "actor":
            return self.actors, "actor"
        if key == "organization":
            return self.organizations, "organization"
        if key == "kind":
            return self.kinds, "organization kind"  # type: ignore[return-value]
        return self.roles, "role"  # type: ignore[return-value]
