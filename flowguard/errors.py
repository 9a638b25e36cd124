"""Typed errors. Every error that reaches a user names the place it comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in an input file, with its source position (1-based)."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    severity: Severity = "error"
    code: str = "invalid"
    hint: str | None = None

    def render(self) -> str:
        place = self.file or "<input>"
        if self.line is not None:
            place += f":{self.line}"
            if self.column is not None:
                place += f":{self.column}"
        text = f"{place}: {self.severity}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file or "", self.line or 0, self.column or 0, self.message)


class FlowguardError(Exception):
    """Base class of every error flowguard raises on purpose."""


class InputError(FlowguardError):
    """Bad input: one or more diagnostics, all reported at once."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=Diagnostic.sort_key)
        super().__init__("\n".join(d.render() for d in self.diagnostics))


class PolicyError(InputError):
    """The policy could not be loaded."""


class RegistryError(InputError):
    """The consent registry could not be loaded."""


class FlowError(InputError):
    """A flow to check is malformed."""


class TestSuiteError(InputError):
    """A table-driven test file is malformed."""

    __test__ = False  # not a pytest test class


class StoreError(InputError):
    """A storage URL cannot be opened, or its schema is missing, older or newer."""


class ExplanationError(FlowguardError):
    """A decision's explanation (its categories' reasons, basis and remedy, built when first
    read) could not be built. The outcome stands; with an audit trail the flow was denied,
    since a decision that cannot be recorded is not acted on."""
