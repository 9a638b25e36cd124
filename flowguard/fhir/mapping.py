"""The FHIR map: how FHIR references and codes become flowguard ids, and back.

See the README section "FHIR Consent" for the file format."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, StrictBool, ValidationError, field_validator, model_validator

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
        chosen: dict[tuple[str, str], int] = {}
        for index, key in enumerate(self.export, 1):
            sections = [s for s in SECTIONS if key in self._table(s)]
            if not sections:
                raise ValueError(f"`export` entry #{index} is not a key of `subjects`, "
                                 "`persons`, `recipients`, `data` or `purposes`")
            for section in sections:
                value = _value_key(self._table(section)[key])
                if (section, value) in chosen:
                    raise ValueError(f"`export` entries #{chosen[section, value]} and "
                                     f"#{index} choose two {section} keys for one id")
                chosen[section, value] = index
        return self

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
        raise RegistryError([Diagnostic(
            f"the FHIR map has {len(keys)} `{section}` keys for {what}: list the one to "
            "export under `export`", "<fhir map>", code="ambiguous-export")])


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
    mapping = out.validate(doc, (), FhirMapping, doc.data, "FHIR map")
    if mapping is None or out.has_errors:
        raise RegistryError(out.diagnostics)
    return mapping


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
