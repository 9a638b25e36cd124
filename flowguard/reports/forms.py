"""Consent forms for citizens, in English, Danish or Finnish (issue 16).

A form says, in plain language, who asks, who gets what, why and when, who may say yes, and
whom to tell to take the consent back: no command line, rule or id a citizen cannot use.
The minors paragraph appears only where the service admits minors (`service.citizens`). The
product strings come from the gettext catalogues of `flowguard.i18n`; the policy's own texts
(names, descriptions, obligations) are shown as written. The HTML is rendered by the Jinja2
template `templates/consent_forms.html` with autoescaping on, so no policy text is read as
markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape

from flowguard.analysis import admits_minors
from flowguard.design import DesignReport
from flowguard.i18n import DEFAULT_LANGUAGE, checked_language, translations
from flowguard.model import Policy
from flowguard.reports._common import (
    actor_name,
    category_text,
    organization_name,
    purpose_text,
    subprocess_text,
)


def report_language(policy: Policy, language: str | None) -> str:
    """The language asked for, else the policy's `service.language`, else English."""
    if language is not None:
        return checked_language(language)
    service = policy.service
    if service is not None and service.language is not None:
        return service.language
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class FormItem:
    text: str
    special: bool


@dataclass(frozen=True)
class FormStep:
    when: str
    senders: str
    items: tuple[FormItem, ...]


@dataclass(frozen=True)
class ConsentForm:
    """One consent of the plan, as a citizen reads it (every text already in its language)."""

    key: str  # the plan item's id, for anchors and staff; never shown in the form's text
    language: str
    title: str
    intro: str
    why: str
    what_heading: str
    steps: tuple[FormStep, ...]
    explicit: str | None
    promises_heading: str | None
    promises: tuple[str, ...]
    who_heading: str
    who: tuple[str, ...]
    choice_heading: str
    choice: str
    withdraw_heading: str
    withdraw: tuple[str, ...]
    signature: tuple[str, ...]
    signed_for: str
    labels: dict[str, str]


def _join(parts: list[str], word: str) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + f" {word} " + parts[-1]


def consent_forms(report: DesignReport, language: str | None = None) -> list[ConsentForm]:
    """The consent forms of a design's consent plan, in `language` (default: the policy's)."""
    policy = report.policy
    lang = report_language(policy, language)
    _ = translations(lang).gettext
    service = policy.service
    controller = service.controller if service is not None else None
    asker = organization_name(policy, controller) if controller else None
    forms = []
    for item in report.plan:
        org = organization_name(policy, item.organization)
        steps = []
        for subprocess, leaves, flows in item.steps:
            senders = sorted({report.flow_result(f).flow.sender for f in flows})
            steps.append(FormStep(
                _("When: %(step)s") % {"step": subprocess_text(policy, subprocess)},
                _("From: %(senders)s") % {"senders": _join(
                    [actor_name(policy, s) for s in senders], _("and"))},
                tuple(FormItem(category_text(policy, c), c in item.special) for c in leaves)))
        who = []
        for option in report.grantors:
            if option.who == "citizen":
                if option.from_age and admits_minors(policy, option.from_age):
                    who.append(_("You can say yes yourself if you are %(age)s or older.")
                               % {"age": option.from_age})
                else:
                    who.append(_("You can say yes yourself."))
            elif option.who == "parent" and option.until_age is not None \
                    and admits_minors(policy, option.until_age):
                who.append(_("If you are under %(age)s, a parent or another person with "
                             "custody says yes for you.") % {"age": option.until_age})
            elif option.who == "guardian":
                who.append(_("If you have a guardian whose powers cover health matters, your "
                             "guardian can say yes for you.") if item.special else
                           _("If you have a guardian whose powers cover this information, "
                             "your guardian can say yes for you."))
        who = list(dict.fromkeys(who))
        takers = [asker] if asker else []
        recorder = policy.organizations.get(item.organization)
        if item.organization != controller and (not takers or (
                recorder is not None and recorder.records_consents)):
            takers.append(org)
        withdraw = [_("You can take back your consent at any time. It is free, and you do "
                      "not have to say why."),
                    _("Tell %(who)s.") % {"who": _join(takers, _("or"))}]
        if service is not None and service.contact:
            withdraw.append(_("How to reach them: %(contact)s.")
                            % {"contact": service.contact.rstrip(". ")})
        withdraw.append(_("From then on, %(organization)s gets no more information about you "
                          "for this. What was shared before was shared lawfully.")
                        % {"organization": org})
        minors = any(o.who == "parent" and o.until_age is not None
                     and admits_minors(policy, o.until_age) for o in report.grantors)
        forms.append(ConsentForm(
            key=item.id,
            language=lang,
            title=_("Consent to share information with %(organization)s")
            % {"organization": org},
            intro=(_("%(asker)s asks if %(organization)s may get some information about you. "
                     "Read what they get, why and when. Then you decide.")
                   % {"asker": asker, "organization": org} if asker and asker != org else
                   _("We ask if %(organization)s may get some information about you. Read "
                     "what they get, why and when. Then you decide.") % {"organization": org}),
            why=purpose_text(policy, item.purpose),
            what_heading=_("What %(organization)s gets") % {"organization": org},
            steps=tuple(steps),
            explicit=_("Some of this is about your health or is other sensitive information. "
                       "Tick each item you agree to.") if item.explicit else None,
            promises_heading=_("What %(organization)s must do") % {"organization": org}
            if item.obligations else None,
            promises=item.obligations,
            who_heading=_("Who can say yes"),
            who=tuple(who),
            choice_heading=_("You decide"),
            choice=_("You can say no. Then only what is on this form is not shared."),
            withdraw_heading=_("If you change your mind"),
            withdraw=tuple(withdraw),
            signature=(_("Date"), _("Your name"), _("Signature")),
            signed_for=_("If someone signs for you, also write their name and whether they are "
                         "your parent or your guardian.") if minors else
            _("If someone signs for you, also write their name and that they are your "
              "guardian."),
            labels={"why": _("Why"), "form": _("Consent form")},
        ))
    return forms


def form_paragraphs(form: ConsentForm) -> list[str]:
    """A form as plain paragraphs (terminal and Markdown): its title first."""
    lines = [form.title, form.intro, f"{form.labels['why']}: {form.why}", form.what_heading + ":"]
    for step in form.steps:
        lines.append(f"{step.when}. {step.senders}.")
        lines += [f"[ ] {item.text}" for item in step.items]
    if form.explicit:
        lines.append(form.explicit)
    if form.promises_heading:
        lines.append(form.promises_heading + ": " + "; ".join(form.promises) + ".")
    lines.append(form.who_heading + ": " + " ".join(form.who))
    lines.append(f"{form.choice_heading}: {form.choice}")
    lines.append(form.withdraw_heading + ": " + " ".join(form.withdraw))
    lines.append(" / ".join(form.signature) + ": ______________________")
    lines.append(form.signed_for)
    return lines


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=PackageLoader("flowguard", "templates"),
                       autoescape=select_autoescape(default=True, default_for_string=True),
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def forms_html_fragment(forms: list[ConsentForm], heading_level: int = 3) -> str:
    """The forms as `section.consent-form` elements (Jinja2, autoescaped)."""
    return _environment().get_template("consent_forms.html").render(
        forms=forms, level=heading_level)
