"""Stored text is never interpreted by a terminal (issue 12, item 8): `by`, evidence and
other free text are printed with control characters escaped and rich markup shown as
written, by `consent history`, `consent show`, `audit show` and the rest."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import unicodedata
from itertools import count
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from flowguard._cli import cli
from flowguard._terminal import cell, safe, safe_json, safe_lines
from flowguard.audit.trail import open_audit_log

from .conftest import EXAMPLES

AALBORG = EXAMPLES / "aalborg-aktiv"
UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
NASTY = ("anne\x1b[31m[bold red]evil[/bold red]\x1b]8;;https://evil.example\x07link"
         "\x1b]8;;\x07\r\n#99 2026-01-01T00:00:00Z consent.withdrawn k-0042-cafe by forged"
         "\u202e\u2028:warning:\x9b2J\x7f")

# text as an attacker would write it: markup, escapes and line breaks among plain text
hostile = st.lists(st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Cs",)),
    st.sampled_from(["\x1b", "\x1b[31m", "\x1b]8;;x\x07", "\x07", "\r", "\n", "\x9b",
                     "\u202e", "\u2028", "[", "]", "[/]", "[bold]", "[link=x]", ":smile:",
                     "\\", "\\x1b"])), max_size=30).map("".join)

def _unsafe(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in UNSAFE_CATEGORIES]


@given(hostile)
def test_safe_text_has_no_control_or_format_character(text: str) -> None:
    shown = safe(text)
    assert _unsafe(shown) == []
    assert "\n" not in shown and "\r" not in shown and "\x1b" not in shown
    assert _unescape(shown) == text  # nothing lost, and no escape forged


def _unescape(shown: str) -> str:
    return re.sub(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})",
                  lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), shown)


@given(hostile)
def test_a_table_cell_shows_markup_as_written(text: str) -> None:
    console = Console(file=io.StringIO(), width=10_000, color_system=None, emoji=False)
    console.print(cell(text), end="")
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert output.rstrip(" \n") == safe(text).rstrip(" ")
    assert _unsafe(output.replace("\n", "")) == []


@given(hostile)
def test_yaml_shown_with_safe_lines_cannot_forge_a_key(text: str) -> None:
    """`consent show` and `subject show` print YAML through `safe_lines`: the text's
    own line breaks are escaped by YAML, what YAML leaves (format characters) by us."""
    shown = safe_lines(yaml.safe_dump({"a": f"{text}\nb: forged", "b": text},
                                      allow_unicode=True, width=10_000))
    assert _unsafe(shown.replace("\n", "")) == []
    assert sum(line.startswith("b:") for line in shown.splitlines()) == 1


@given(st.dictionaries(hostile, st.one_of(hostile, st.lists(hostile, max_size=3)),
                       max_size=4))
def test_json_output_is_the_same_json_and_inert(value: dict[str, object]) -> None:
    shown = safe_json(json.dumps(value, indent=2, ensure_ascii=False))
    assert json.loads(shown) == value
    assert _unsafe(shown.replace("\n", "")) == []


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _assert_inert(output: str) -> None:
    assert "\x1b" not in output and "\r" not in output and "\x07" not in output
    assert "\u202e" not in output and "\u2028" not in output and "\x9b" not in output
    assert not any(line.startswith("#99") for line in output.splitlines())  # no forged line
    assert "evil" in output  # shown, as written


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/registry.db"
    assert run("registry", "import", str(AALBORG / "consents.yaml"), "-r", url,
               "-p", str(AALBORG)).exit_code == 0
    return url


def _store_as_written(url: str, record: str, text: str) -> None:
    """Put `text` into a record's stored events as text written before input was checked
    (the registry refuses such text now; older registries may still hold it)."""
    database = sqlite3.connect(url.removeprefix("sqlite:///"))
    database.execute("DROP TRIGGER registry_events_no_update")
    database.execute("UPDATE registry_events SET actor = ?, evidence = ? WHERE record = ?",
                     (text, json.dumps({"method": "signed-form", "reference": text}), record))
    database.commit()
    database.close()


def test_consent_history_and_show_print_stored_text_inert(url: str) -> None:
    refused = run("consent", "grant", "-r", url, "-p", str(AALBORG), "--id", "k-evil",
                  "--subject", "citizen-0609", "--recipient", "cafe-solsikke", "--data",
                  "identity.name", "--purpose", "job-matching", "--by", "anne",
                  "--evidence", "signed-form", "--reference", NASTY)
    assert refused.exit_code == 2 and "printable text on one line" in refused.output
    granted = run("consent", "grant", "-r", url, "-p", str(AALBORG), "--id", "k-evil",
                  "--subject", "citizen-0609", "--recipient", "cafe-solsikke", "--data",
                  "identity.name", "--purpose", "job-matching", "--by", "anne",
                  "--evidence", "signed-form", "--reference", "paper")
    assert granted.exit_code == 0, granted.output
    withdrawn = run("consent", "withdraw", "k-evil", "-r", url, "--by", "anne")
    assert withdrawn.exit_code == 0
    _store_as_written(url, "k-evil", NASTY)
    history = run("consent", "history", "k-evil", "-r", url)
    _assert_inert(history.output)
    assert "[bold red]evil[/bold red]" in history.output  # markup shown, not applied
    assert ":warning:" in history.output  # no emoji code replaced
    assert history.output.count("\n") == 2  # one line per event
    shown = run("consent", "show", "k-evil", "-r", url, "-p", str(AALBORG))
    assert "\x1b" not in shown.output and "\r" not in shown.output
    as_json = run("consent", "history", "k-evil", "-r", url, "--json")
    assert "\x1b" not in as_json.output and "\x9b" not in as_json.output
    assert json.loads(as_json.output)[0]["by"] == NASTY  # the same data, escaped as JSON


def test_audit_show_prints_stored_text_inert(tmp_path: Path) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    log = open_audit_log(audit)
    try:  # an entry as a writer from before the input checks could have left it
        log.append([{"v": 1, "kind": "registry", "time": "2026-01-01T00:00:00.000000Z",
                     "event": "consent.withdrawn", "seq": 99, "record": "k-0042-cafe",
                     "subject": "hmac-sha256:" + "0" * 64, "by": NASTY}])
    finally:
        log.close()
    shown = CliRunner().invoke(cli, ["audit", "show", "--audit", audit],
                               catch_exceptions=False, env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    _assert_inert(shown.output)
    assert "[bold red]evil[/bold red]" in shown.output


_ids = count()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(by=hostile.filter(lambda s: s.strip() and "\x00" not in s))
def test_any_by_is_shown_on_one_line(url: str, by: str) -> None:
    consent_id = f"k-h{next(_ids)}"
    granted = run("consent", "grant", "-r", url, "-p", str(AALBORG), "--id", consent_id,
                  "--subject", "citizen-0609", "--recipient", "cafe-solsikke", "--data",
                  "identity.name", "--purpose", "job-matching", "--by", by)
    if not (by.isprintable() and len(by) <= 200):  # refused at input (issue 13)
        assert granted.exit_code == 2 and "--by" not in granted.output.splitlines()[0:0]
        return
    assert granted.exit_code == 0, granted.output
    history = run("consent", "history", consent_id, "-r", url)
    lines = history.output.splitlines()
    assert len(lines) == 1, history.output
    assert _unsafe(history.output.rstrip("\n")) == []
    assert lines[0].endswith(f"by {safe(by)}")
