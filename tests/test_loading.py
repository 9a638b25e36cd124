"""Policy and registry loading: diagnostics name file, line and column, suggest the closest
id, and report every problem of a file at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import flowguard
from flowguard import PolicyError, RegistryError

from .conftest import SMALL_POLICY, SMALL_REGISTRY

Write = Callable[[str, str], Path]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_misspelt_reference_names_place_and_closest_id(write: Write) -> None:
    text = SMALL_POLICY.replace("recipient: {role: case-worker}",
                                "recipient: {role: case-workr}")
    path = write("policy.yaml", text)
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(path)
    (d,) = info.value.diagnostics
    assert d.file == str(path)
    assert d.line == _line_of(text, "case-workr")
    assert d.column == text.splitlines()[d.line - 1].index("case-workr") + 1
    assert d.message == "unknown role `case-workr`"
    assert d.hint == "did you mean `case-worker`?"
    assert f"{path}:{d.line}:{d.column}: error: unknown role" in str(info.value)


def test_every_error_of_a_file_is_reported_at_once(write: Write) -> None:
    text = (SMALL_POLICY
            .replace("cafe-manager: {organization: cafe,", "cafe-manager: {organisation: cafe,")
            .replace("purposes: [job-matching]\n    subprocesses: [co-delivery]",
                     "purposes: [job-matchng]\n    subprocesses: [co-delivery]")
            .replace('    law: "Serviceloven § 12"\n', "")
            .replace("majority_age: 18", "majority_age: eighteen"))
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(write("policy.yaml", text))
    messages = [d.message for d in info.value.diagnostics]
    # the misspelled `organisation` is one error (with "did you mean"), not also a missing
    # `organization` (issue 16: no cascades from one typo)
    assert len(messages) == 4, messages
    assert any("unknown key `organisation`" in m for m in messages)
    assert not any("missing required key" in m for m in messages)
    assert any("unknown purpose `job-matchng`" in m for m in messages)
    assert any("must cite the `law`" in m for m in messages)
    assert any("majority_age" in m for m in messages)
    hints = {d.hint for d in info.value.diagnostics}
    assert "did you mean `organization`?" in hints and "did you mean `job-matching`?" in hints


def test_special_data_on_a_non_consent_basis_needs_art9(write: Write) -> None:
    text = SMALL_POLICY.replace("    art9: social-protection\n", "")
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(write("policy.yaml", text))
    (d,) = info.value.diagnostics
    assert d.code == "art9-missing" and "health" in d.message
    assert d.line == _line_of(text, "basis: public-task")


def test_forbid_takes_no_basis_and_permit_needs_one(write: Write) -> None:
    text = SMALL_POLICY.replace("    effect: forbid\n", "    effect: forbid\n    basis: consent\n")
    text = text.replace("    basis: consent\n    obligations: [do not pass on]\n",
                        "    obligations: [do not pass on]\n")
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(write("policy.yaml", text))
    messages = sorted(d.message for d in info.value.diagnostics)
    assert any("forbid rule takes no basis" in m for m in messages), messages
    assert any("must name its legal `basis`" in m for m in messages), messages


def test_duplicate_ids_across_files_name_both(write: Write) -> None:
    write("p/a.yaml", SMALL_POLICY)
    write("p/b.yaml", "organizations:\n  cafe: {kind: employer, sector: private}\n")
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(write("p/c.yaml", "purposes: {other: {}}\n").parent)
    (d,) = info.value.diagnostics
    assert d.file is not None and d.file.endswith("b.yaml")
    assert "declared twice" in d.message and "a.yaml" in d.message


def test_directory_skips_registries_and_test_files(write: Write) -> None:
    write("p/policy.yaml", SMALL_POLICY)
    write("p/consents.yaml", SMALL_REGISTRY)
    write("p/tests.yaml", "policy: .\ncases: []\n")
    policy = flowguard.load_policy(write("p/design.yaml", "design: {service: x}\nflows: []\n")
                                   .parent)
    assert len(policy.rules) == 6


def test_policy_model_keeps_declared_entities(write: Write) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    assert policy.is_special("health.medication") and not policy.is_special("work.capacity")
    assert policy.category_tree.leaves("work") == ("work.capacity", "work.preferences")
    assert list(policy.subprocesses) == ["co-design", "co-delivery"]


def test_registry_errors_are_positioned_and_checked_against_the_policy(write: Write) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    text = (SMALL_REGISTRY
            .replace("data: [health.medication]", "data: [health.medicaton]")
            .replace("expires_at: 2026-12-31}",
                     "expires_at: 2026-12-31, subprocesses: [co-deliver]}"))
    path = write("consents.yaml", text)
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(path, policy)
    found = {(d.message, d.line, d.hint) for d in info.value.diagnostics}
    assert ("unknown data category `health.medicaton`", _line_of(text, "health.medicaton"),
            "did you mean `health.medication`?") in found
    assert ("unknown sub-process `co-deliver`", _line_of(text, "co-deliver]"),
            "did you mean `co-delivery`?") in found


def test_registry_needs_zoned_times(write: Write) -> None:
    text = SMALL_REGISTRY.replace("given_at: 2026-02-01T00:00:00Z", "given_at: 2026-02-01T00:00:00")
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(write("consents.yaml", text))
    (d,) = info.value.diagnostics
    assert "no zone" in d.message and d.line == _line_of(text, "2026-02-01T00:00:00,")


def test_json_registry_errors_have_lines_too(write: Write) -> None:
    text = ('{"subjects": {"s": {}},\n "consents": [\n  {"id": "k", "subject": "s",\n'
            '   "given_by": "s", "given_at": "2026-01-01T00:00:00Z", "recipients": [{}],\n'
            '   "data": ["x"], "purposes": ["p"], "explicit": "maybe"}]}\n')
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(write("consents.json", text))
    (d,) = info.value.diagnostics
    assert "explicit" in d.message and d.line == 5
