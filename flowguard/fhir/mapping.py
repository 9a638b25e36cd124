"""The FHIR map: how FHIR references and codes become flowguard ids, and back.

See the README section "FHIR Consent" for the file format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from flowguard._loading import Collector, did_you_mean
from flowguard._source import Document
from flowguard.errors import Diagnostic, RegistryError
from flowguard.fhir._common import (
    ID,
    Path_,
    is_identifier_key,
    is_reference_key,
    normal_code_key,
    one_document,
)
from flowguard.model import Id, IdList, Model, Selector

SECTIONS = ("subjects", "persons", "recipients", "data", "purposes")
PRIVATE_SECTIONS = ("subjects", "persons", "recipients")


@dataclass(frozen=True)
class _Origin:
    """Where a map was read from: its file, and the line of each `(section, key)`."""

    file: str
    lines: dict[tuple[str, str], int]


class FhirMapping(Model):
    """How FHIR references and codes map to flowguard ids (README: "FHIR Consent")."""

    subjects: dict[str, Id] = Field(default_factory=dict)
    persons: dict[str, Id] = Field(default_factory=dict)
    recipients: dict[str, Selector] = Field(default_factory=dict)
    data: dict[str, Id] = Field(default_factory=dict)
    purposes: dict[str, Id] = Field(default_factory=dict)
    subprocesses: IdList | None = None
    explicit: StrictBool = False
    explicit_bases: tuple[str, ...] = ()
    export: tuple[str, ...] = ()
    default_data: IdList | None = None
    default_purposes: IdList | None = None
    default_grantor: Literal["subject"] | None = None
    _origin: _Origin | None = PrivateAttr(default=None)

    @field_validator("subjects", "persons", "recipients", mode="after")
    @classmethod
    def _party_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        # keys may be citizen identifiers: say what is wrong, never which key
        for key in value:
            if not (is_identifier_key(key) or is_reference_key(key)):
                raise ValueError("every key must be a reference `Type/id` or an identifier "
                                 "`system|value`")
        return value

    @field_validator("data", mode="before")
    @classmethod
    def _data_keys(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        normal: dict[Any, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("every key must be a string")
            norm = normal_code_key(key)
            if not (is_identifier_key(norm) or is_reference_key(norm)):
                raise ValueError(f"key `{key}` is not `system|code`, `class:Type` or a "
                                 "reference `Type/id`")
            if norm in normal:
                raise ValueError(f"key `{key}` is given twice")
            normal[norm] = item
        return normal

    @field_validator("purposes", "explicit_bases", mode="after")
    @classmethod
    def _codes(cls, value: Any) -> Any:
        for key in value:
            if not is_identifier_key(key):
                raise ValueError(f"`{key}` is not `system|code`")
        return value

    @field_validator("export", mode="before")
    @classmethod
    def _export_keys(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(normal_code_key(k) if isinstance(k, str) else k for k in value)
        return value

    @model_validator(mode="after")
    def _export_choices(self) -> FhirMapping:
        """Every `export` entry is a key of a section, at most one per id and section."""
        for _, problem in self.export_problems():
            raise ValueError(problem)
        return self

    def export_problems(self) -> list[tuple[int, str]]:
        """(index, message) of each `export` entry that is no key of a section, or that
        chooses a second key for one id of a section."""
        problems: list[tuple[int, str]] = []
        chosen: dict[tuple[str, str], int] = {}
        for index, key in enumerate(self.export):
            sections = [s for s in SECTIONS if key in self._table(s)]
            if not sections:
                problems.append((index, f"`export` entry #{index + 1} is not a key of "
                                 "`subjects`, `persons`, `recipients`, `data` or `purposes`"))
            for section in sections:
                value = _value_key(self._table(section)[key])
                if (section, value) in chosen:
                    problems.append((index, f"`export` entries #{chosen[section, value] + 1} "
                                     f"and #{index + 1} choose two {section} keys for one id"))
                else:
                    chosen[section, value] = index
        return problems

    def _table(self, section: str) -> Mapping[str, Any]:
        table: Mapping[str, Any] = getattr(self, section)
        return table

    def export_key(self, section: str, value: Any) -> str | None:
        """The key to write for `value` of `section`: the only key mapping to it, or the
        one `export` names; None when no key maps to it. Raises `RegistryError` when
        several do and `export` names none."""
        keys = sorted(k for k, v in self._table(section).items() if v == value)
        if len(keys) <= 1:
            return keys[0] if keys else None
        chosen = [k for k in keys if k in self.export]
        if len(chosen) == 1:
            return chosen[0]
        what = {"subjects": "this consent's subject", "persons": "this consent's grantor",
                "recipients": f"the recipient selector `{_value_key(value)}`",
                "data": f"data category `{value}`", "purposes": f"purpose `{value}`"}[section]
        file, lines = "<fhir map>", []
        if self._origin is not None:
            file = self._origin.file
            lines = sorted(n for k in keys if (n := self._origin.lines.get((section, k))))
        where = f" (they are on lines {', '.join(map(str, lines))})" if len(lines) > 1 else ""
        raise RegistryError([Diagnostic(
            f"the FHIR map has {len(keys)} `{section}` keys for {what}: list the one to "
            f"export under `export`{where}", file, lines[0] if lines else None,
            code="ambiguous-export")])


def _value_key(value: Any) -> str:
    if isinstance(value, Selector):
        return "&".join(f"{k}={','.join(v)}" for k, v in
                        sorted(value.model_dump(exclude_none=True).items()))
    return str(value)


_MAP_KEYS = tuple(FhirMapping.model_fields)


def load_fhir_mapping(path: str | Path) -> FhirMapping:
    """Load a FHIR map (one YAML document). Raises `RegistryError` naming file and line."""
    out = Collector()
    file = Path(path)
    doc = one_document(file, "a FHIR map is exactly one YAML document")
    if not isinstance(doc.data, dict):
        raise RegistryError([doc.diagnostic((), "a FHIR map must be a mapping", code="type")])
    for key in doc.data:
        if key not in _MAP_KEYS:
            out.add(doc, (key,), f"unknown top-level key `{key}`",
                    hint=did_you_mean(key, _MAP_KEYS), code="unknown-key")
    for section in PRIVATE_SECTIONS:
        if section in doc.data:
            _check_party_section(out, doc, section, doc.data[section])
    if out.has_errors:
        raise RegistryError(out.diagnostics)
    _check_keys(out, doc, doc.data)
    if out.has_errors:
        raise RegistryError(out.diagnostics)
    mapping = out.validate(doc, (), FhirMapping, {**doc.data, "export": []}, "FHIR map")
    if mapping is None or out.has_errors:
        raise RegistryError(out.diagnostics)
    export = doc.data.get("export", [])
    if not isinstance(export, list) or not all(isinstance(k, str) for k in export):
        out.validate(doc, (), FhirMapping, doc.data, "FHIR map")   # places the type error
        raise RegistryError(out.diagnostics)
    mapping = mapping.model_copy(update={"export": tuple(normal_code_key(k) for k in export)})
    for index, problem in mapping.export_problems():
        out.add(doc, ("export", index), f"FHIR map: {problem}", code="invalid")
    if out.has_errors:
        raise RegistryError(out.diagnostics)
    lines: dict[tuple[str, str], int] = {}
    for section in SECTIONS:
        for key in doc.data.get(section) or ():
            line = doc.position((section, key))[0]
            if isinstance(key, str) and line is not None:
                norm = normal_code_key(key) if section == "data" else key
                lines[section, norm] = line
    mapping._origin = _Origin(str(file), lines)
    return mapping


def _check_keys(out: Collector, doc: Document, data: dict[Any, Any]) -> None:
    """The keys of `data`, `purposes` and the entries of `explicit_bases`, each reported at
    its own line (the model's validators would report them at their section's)."""
    for section in ("data", "purposes"):
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        seen: set[str] = set()
        for key in table:
            if not isinstance(key, str):
                continue
            norm = normal_code_key(key) if section == "data" else key
            ok = is_identifier_key(norm) or (section == "data" and is_reference_key(norm))
            if not ok:
                wanted = ("`system|code`, `class:Type` or a reference `Type/id`"
                          if section == "data" else "`system|code`")
                out.add(doc, (section, key), f"FHIR map: {section}: key `{key[:120]}` is not "
                        f"{wanted}", code="invalid")
            elif norm in seen:
                out.add(doc, (section, key), f"FHIR map: {section}: key `{key[:120]}` is given "
                        "twice", code="invalid")
            seen.add(norm)
    bases = data.get("explicit_bases")
    for index, key in enumerate(bases if isinstance(bases, list) else ()):
        if isinstance(key, str) and not is_identifier_key(key):
            out.add(doc, ("explicit_bases", index), f"FHIR map: explicit_bases: `{key[:120]}` "
                    "is not `system|code`", code="invalid")


def _check_party_section(out: Collector, doc: Document, section: str, value: Any) -> None:
    """Check `subjects`/`persons`/`recipients` entry by entry, naming entries by position
    only: their keys are references or identifiers of people."""
    entries = out.expect_mapping(doc, (section,), value, section)
    if entries is None:
        return
    for index, (key, item) in enumerate(entries.items()):
        what = f"{section} entry #{index + 1}"
        path: Path_ = (section, key) if isinstance(key, str) else (section,)
        if not isinstance(key, str) or not (is_identifier_key(key) or is_reference_key(key)):
            out.add(doc, path, f"{what}: the key must be a reference `Type/id` or an "
                    "identifier `system|value`", code="invalid")
            continue
        if section == "recipients":
            out.validate(doc, path, Selector, item, what)
            continue
        try:
            ID.validate_python(item)
        except ValidationError:
            out.add(doc, path, f"{what}: the value must be a flowguard id", code="type")
