"""The citizen's access report is accurate (issue 16 item 4): oldest first by when the flow
took place, the basis beside the data it covers, the Art. 9 condition only for special
categories, and the truth about which entries the signed checkpoint covers."""

from __future__ import annotations

import re

from flowguard.audit.report import access_report, render_access_html, render_access_text

from .test_audit_cli import AALBORG, Setup, run, setup  # noqa: F401  (the fixture)


def _report(setup: Setup, subject: str):  # type: ignore[no-untyped-def]  # noqa: F811
    log = setup.log()
    try:
        return access_report(log, setup.pseudonym(subject))
    finally:
        log.close()


def test_entries_are_listed_oldest_first_by_the_time_of_the_flow(setup: Setup) -> None:  # noqa: F811
    report = _report(setup, "citizen-0042")
    times = [item.at for item in report.disclosures]
    assert len(times) >= 3 and times == sorted(times)
    # the flow of 2 March was logged last, after flows of June: its place is by date
    assert max(i.index for i in report.disclosures) != report.disclosures[-1].index
    text = render_access_text(report)
    days = [m for m in re.findall(r"On (\d+ \w+ 2026)", text.split("REQUESTS")[0])]
    assert days.index("1 March 2026") < days.index("2 March 2026") < days.index("1 June 2026")


def test_art9_is_named_only_for_special_categories(setup: Setup) -> None:  # noqa: F811
    report = _report(setup, "citizen-0107")
    lines = {line.category: line.basis for item in report.disclosures
             for line in item.categories if line.basis}
    assert "Art. 9(2)(b)" in lines["health.mental"]
    assert "Art. 9" not in lines["work.capacity"]  # same rule, not a special category


def test_the_basis_stands_beside_the_data_it_covers(setup: Setup) -> None:  # noqa: F811
    report = _report(setup, "citizen-0107")
    text = render_access_text(report)
    # one line per basis, naming every category it covers
    assert re.search(r"- .*health\.mental.*: on the basis of .*Art\. 9\(2\)\(b\)", text)
    page = render_access_html(report)
    for item in report.disclosures:
        bases = {line.basis for line in item.categories}
        assert all(page.count(f"on the basis of {b}") >= 1 for b in bases if b and "&" not in b
                   and "<" not in b)
    assert '<ul class="what">' in page


def test_the_report_says_which_entries_the_signed_checkpoint_covers(setup: Setup) -> None:  # noqa: F811
    assert "Any entry above can be proven" not in render_access_text(
        _report(setup, "citizen-0042"))
    signed = run("audit", "checkpoint", "--audit", setup.audit, "--sign", "--log-key",
                 str(setup.log_key))
    assert signed.exit_code == 0, signed.output
    # appended without the log key: no checkpoint is signed for it
    later = run("check", "-p", str(AALBORG), "-r", setup.registry, "--audit", setup.audit,
                "--pseudonym-key", str(setup.pseudonym_key),
                "--sender", "job-consultant", "--recipient", "cafe-manager", "--subject",
                "citizen-0042", "--data", "identity.name", "--purpose",
                "job-matching.employer-contact", "--subprocess", "co-delivery",
                "--at", "2026-01-20T09:00:00Z")
    assert later.exit_code == 0, later.output
    report = _report(setup, "citizen-0042")
    text = render_access_text(report)
    assert report.checkpoint_size is not None
    unsigned = report.log_size - report.checkpoint_size  # the policy activation and the check
    assert unsigned == 2
    assert f"covers the first {report.checkpoint_size} entries" in text
    assert "2 entries after it" in text and "are not signed for yet" in text
    items = list(report.disclosures) + list(report.refusals)
    marked = [i.index for i in items if f"log entry {i.index}, not yet signed for" in text]
    assert marked == [report.log_size - 1]  # the later check, and only it
    assert report.disclosures[0].at.startswith("2026-01-20")  # oldest first, logged last
