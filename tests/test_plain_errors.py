"""Errors for people who don't read Python (issue 16, item 5): no PyYAML or pydantic
wording, the place at the key, the tab named as a tab, one error per typo, every date of a
file at once with the format to write."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowguard
from flowguard import PolicyError, RegistryError
from flowguard.errors import Diagnostic

from .conftest import SMALL_POLICY, SMALL_REGISTRY

Write = Callable[[str, str], Path]

JARGON = re.compile(r"Input should|Value should|after validation|valid tuple|indicator|"
                    r"while parsing|while scanning|cannot start any token|_parsing|"
                    r"invalid character in year", re.IGNORECASE)


def _policy_errors(write: Write, text: str) -> list[Diagnostic]:
    with pytest.raises(PolicyError) as info:
        flowguard.load_policy(write("policy.yaml", text))
    for d in info.value.diagnostics:
        assert not JARGON.search(d.render()), d.render()
    return info.value.diagnostics


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_tab_is_named_as_a_tab_at_its_place(write: Write) -> None:
    text = SMALL_POLICY.replace("service: {id: small, controller: kommune}",
                                "service:\n\tid: small\n\tcontroller: kommune")
    [d] = _policy_errors(write, text)
    assert (d.line, d.column) == (3, 1)
    assert "a tab character at line 3, column 1: indent with spaces" in d.message


def test_a_list_item_out_of_line_says_what_to_write(write: Write) -> None:
    text = SMALL_POLICY.replace("    effect: permit\n    sender: {organization: kommune}",
                                "    effect: permit\n   sender: {organization: kommune}", 1)
    [d] = _policy_errors(write, text)
    line = _line_of(text, "   sender: {organization: kommune}")
    assert (d.line, d.column) == (line, 4)
    assert "not indented like" in d.message and d.hint


def test_a_key_indented_too_far_is_pointed_at(write: Write) -> None:
    text = SMALL_POLICY.replace("  cafe:    {kind: employer", "   cafe:    {kind: employer")
    [d] = _policy_errors(write, text)
    assert (d.line, d.column) == (_line_of(text, "   cafe:"), 4)
    assert "not indented like the keys above it" in d.message
    assert d.hint == "write the keys of one mapping in the same column, each as `key: value`"


def test_an_unknown_key_is_pointed_at_not_its_value(write: Write) -> None:
    text = SMALL_POLICY.replace("service: {id: small, controller: kommune}",
                                "service:\n  id: small\n  controller: kommune\n"
                                "  contakt: \"call us\"")
    [d] = _policy_errors(write, text)
    assert (d.line, d.column) == (_line_of(text, "contakt"), 3)
    assert d.hint == "did you mean `contact`?"


def test_a_misspelled_section_is_one_error_not_a_cascade(write: Write) -> None:
    text = SMALL_POLICY.replace("organizations:", "organisations:")
    [d] = _policy_errors(write, text)
    assert d.message == "unknown top-level key `organisations`"
    assert d.hint == "did you mean `organizations`?"
    assert (d.line, d.column) == (_line_of(text, "organisations:"), 1)
    # errors inside the misspelled section are still placed in it
    text = text.replace("kommune: {kind: municipality", "kommune: {kynd: municipality")
    errors = _policy_errors(write, text)
    inner = [d for d in errors if "kynd" in d.message]
    assert len(inner) == 1 and inner[0].line == _line_of(text, "kynd")


def test_a_misspelled_key_in_a_rule_is_one_error(write: Write) -> None:
    text = SMALL_POLICY.replace("    sender: {organization: kommune}\n",
                                "    sendr: {organization: kommune}\n", 1)
    errors = _policy_errors(write, text)
    assert [d.message for d in errors] == ["rule `b-to-employer`: unknown key `sendr`"]
    assert errors[0].hint == "did you mean `sender`?"


def test_pydantic_wording_is_translated(write: Write) -> None:
    text = (SMALL_POLICY.replace("data: [identity.name, work]", "data: []", 1)
            .replace("majority_age: 18", "majority_age: eighteen"))
    errors = _policy_errors(write, text)
    messages = " | ".join(d.message for d in errors)
    assert "data: must not be empty" in messages
    assert "majority_age: expected a whole number" in messages


def test_every_bad_date_of_a_registry_at_once_with_the_format(write: Write) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    text = (SMALL_REGISTRY.replace("1990-02-28", "28.02.1990")
            .replace("valid_from: 2020-01-01", "valid_from: 2020-1-1")
            .replace("given_at: 2026-02-01T00:00:00Z", "given_at: 01-02-2026"))
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(write("consents.yaml", text), policy)
    errors = info.value.diagnostics
    assert len(errors) == 3, [d.render() for d in errors]
    for d, needle in zip(errors, ["28.02.1990", "2020-1-1", "01-02-2026"], strict=True):
        assert d.line == _line_of(text, needle)
        assert "write a date as 2026-03-01 or a time as 2026-03-01T09:00:00Z" in d.message
        assert not JARGON.search(d.render())


def test_a_misspelled_registry_section_is_one_error(write: Write) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    text = SMALL_REGISTRY.replace("subjects:", "subjekts:")
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(write("consents.yaml", text), policy)
    assert [d.message for d in info.value.diagnostics] == ["unknown top-level key `subjekts`"]


def test_json_errors_in_plain_words(write: Write) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    text = '{"subjects": {"adult-1": {"birth_date": "1990-02-28"},}}\n'
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(write("consents.json", text), policy)
    [d] = info.value.diagnostics
    assert d.message == ("malformed JSON: a key is not in double quotes, or a comma is left "
                         "after the last entry")
    assert (d.line, d.column) == (1, text.index("}}") + 1)
    assert d.hint and "no comma" in d.hint
    assert "Expecting" not in d.render()


def test_impossible_dates_are_all_reported_with_the_format(write: Write) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    text = (SMALL_REGISTRY.replace("1990-02-28", "1990-02-30")
            .replace("given_at: 2026-02-01T00:00:00Z", "given_at: 2026-02-01T25:00:00Z")
            + "  - {id: k-x, subject: adult-1, given_by: adult-1, given_at: 2026-01-01,\n"
              "     recipients: [{organization: cafe}], data: [identity.name],\n"
              "     purposes: [job-matching], evidence: {method: form, reference: 2026-13-45}}\n")
    with pytest.raises(RegistryError) as info:
        flowguard.load_registry(write("consents.yaml", text), policy)
    rendered = [d.render() for d in info.value.diagnostics]
    dates = [r for r in rendered if "write a date as 2026-03-01" in r]
    assert len(dates) == 2, rendered
    assert not any("2026-13-45" in r or "bad scalar" in r for r in rendered), rendered


@pytest.mark.parametrize("bad", ["volun|teer", "volun teer", "-volunteer"])
def test_a_bad_id_is_an_error_at_its_key_not_an_internal_error(write: Write, bad: str) -> None:
    text = SMALL_POLICY.replace("  volunteer:   {organization", f"  {bad}:   {{organization")
    errors = _policy_errors(write, text)
    [d] = [d for d in errors if "is not a valid id" in d.message]
    assert (d.line, d.column) == (_line_of(text, bad), 3)
    assert d.hint and "letters, digits" in d.hint


_PARSER_WORDS = re.compile(r"while scanning|while parsing|could not find|did not find|"
                           r"found character|Input should|Value should|Expecting")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(SMALL_POLICY)),
                          st.sampled_from([" ", "\t", ":", "- ", "[", "{", "'", '"', "\n ",
                                           "@", "`", "&a ", "*a", "!x ", "%", "|", ">", "\\",
                                           "-", "|x"])),
                min_size=1, max_size=2))
def test_a_mistyped_policy_gets_plain_errors_never_a_crash(
        write: Write, edits: list[tuple[int, str]]) -> None:
    text = SMALL_POLICY
    for at, insert in edits:
        at = min(at, len(text))
        text = text[:at] + insert + text[at:]
    path = write("policy.yaml", text)
    try:
        flowguard.load_policy(path)
    except PolicyError as exc:
        for d in exc.diagnostics:
            assert d.line is None or d.line >= 1
            assert not _PARSER_WORDS.search(d.render()), d.render()
