"""Reading FHIR JSON defensively: shapes, codings, references and times, with every
problem reported at its JSON path (and line, when read from a file)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from flowguard._source import Document
from flowguard.errors import Diagnostic
from flowguard.fhir._common import ID, Path_, render

DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2})?$")
DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")


class JsonReader:
    """Collects errors and warnings about one resource."""

    def __init__(self, source: str, doc: Document | None, root: str = "Consent") -> None:
        self.source = source
        self.doc = doc
        self.root = root          # how messages name the resource (`render`)
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    # ----------------------------------------------------------------- reporting

    def _diag(self, path: Path_, message: str, code: str,
              severity: Literal["error", "warning"]) -> Diagnostic:
        text = f"{self.render(path)}: {message}"
        line = column = None
        if self.doc is not None:
            line, column = self.doc.position(path)
        return Diagnostic(text, self.source, line, column, severity=severity, code=code)

    def render(self, path: Path_) -> str:
        return render(path, self.root)

    def error(self, path: Path_, message: str, code: str = "invalid") -> None:
        self.errors.append(self._diag(path, message, code, "error"))

    def warn(self, path: Path_, message: str, code: str = "unmapped") -> None:
        diag = self._diag(path, message, code, "warning")
        if diag not in self.warnings:
            self.warnings.append(diag)

    # ----------------------------------------------------------------- JSON shapes

    def object_at(self, value: Any, path: Path_) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.error(path, "must be a JSON object", "type")
        return None

    def array_at(self, value: Any, path: Path_) -> list[Any]:
        if isinstance(value, list):
            return value
        self.error(path, "must be a JSON array", "type")
        return []

    def string_at(self, value: Any, path: Path_) -> str | None:
        if isinstance(value, str) and value:
            return value
        self.error(path, "must be a non-empty string", "type")
        return None

    def codings(self, value: Any, path: Path_, concept: bool) -> list[str]:
        """The `system|code` keys of a Coding (or of a CodeableConcept's codings)."""
        obj = self.object_at(value, path)
        if obj is None:
            return []
        if concept:
            keys: list[str] = []
            for i, coding in enumerate(self.array_at(obj.get("coding", []),
                                                     (*path, "coding"))):
                keys += self.codings(coding, (*path, "coding", i), False)
            return keys
        system, code = obj.get("system", ""), obj.get("code")
        if not isinstance(system, str) or not isinstance(code, str) or not code:
            self.error(path, "a Coding needs a string `code` (and a string `system`)", "type")
            return []
        return [f"{system}|{code}"]

    def reference_keys(self, value: Any, path: Path_) -> list[str]:
        obj = self.object_at(value, path)
        if obj is None:
            return []
        keys: list[str] = []
        ref = obj.get("reference")
        if ref is not None and self.string_at(ref, (*path, "reference")) is not None:
            keys.append(ref)
        ident = obj.get("identifier")
        if ident is not None:
            io = self.object_at(ident, (*path, "identifier"))
            if io is not None:
                system, val = io.get("system"), io.get("value")
                if isinstance(system, str) and isinstance(val, str) and system and val:
                    keys.append(f"{system}|{val}")
        return keys

    def flowguard_id(self, keys: list[str], system: str, path: Path_) -> str | None:
        for key in keys:
            sys_, _, value = key.partition("|")
            if sys_ == system:
                try:
                    return ID.validate_python(value)
                except ValidationError:
                    self.error(path, f"the `{system}` identifier is not a valid flowguard id",
                               "invalid")
        return None

    def moment(self, value: Any, path: Path_, bound: Literal["lower", "upper"],
               instant: bool = False) -> datetime | None:
        """A FHIR date/dateTime/instant as a UTC time; a date alone never widens: as a
        lower bound it counts from the end of that day, as an upper bound from its start."""
        if not isinstance(value, str):
            self.error(path, "must be a date or time string", "type")
            return None
        if (m := DATE.match(value)) and not instant:
            try:
                day = date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError:
                self.error(path, "is not a valid date", "invalid")
                return None
            if bound == "lower":
                day += timedelta(days=1)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        if PARTIAL_DATE.match(value) and not instant:
            self.error(path, "a year or month alone is too imprecise for a consent's "
                       "validity", "imprecise-time")
            return None
        m = DATETIME.match(value)
        if m is None:
            self.error(path, "is not a FHIR " + ("instant" if instant else "dateTime"),
                       "invalid")
            return None
        if m[3] is None:
            self.error(path, "time has no zone: write it as RFC 3339 with Z or an offset",
                       "no-zone")
            return None
        fraction = (m[2] or "")[:7]
        zone = "+00:00" if m[3] == "Z" else m[3]
        try:
            moment = datetime.fromisoformat(m[1] + fraction + zone)
        except ValueError:
            self.error(path, "is not a valid time", "invalid")
            return None
        return moment.astimezone(UTC)
