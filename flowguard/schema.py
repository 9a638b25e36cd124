"""JSON Schemas of flowguard's file formats, for editors (YAML language server) and clients."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flowguard.model import Consent, Decision, Flow, Guardianship, Model, Policy, Subject
from flowguard.testing import SuiteFile


class RegistryFile(Model):
    """A consent registry file (SPEC §4)."""

    subjects: dict[str, Subject] = Field(default_factory=dict)
    guardianships: list[Guardianship] = Field(default_factory=list)
    consents: list[Consent] = Field(default_factory=list)


SCHEMAS: dict[str, type[BaseModel]] = {
    "policy": Policy,
    "registry": RegistryFile,
    "tests": SuiteFile,
    "flow": Flow,
    "decision": Decision,
}


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one format: policy, registry, tests, flow, decision."""
    schema = SCHEMAS[kind].model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"flowguard {kind}"
    return schema
