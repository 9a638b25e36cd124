"""Ids a policy does not know, in the audit log (issue 13, item 6).

A flow may name a sender, recipient, purpose, sub-process or data category that the policy
lacks: a typo, or a citizen id sent where an actor id belongs. The decision is a denial
(UNKNOWN_ENTITY), and its audit entry must neither keep the raw text (it may identify
someone) nor let a client grow the append-only log with invented ids. So an unknown id is
logged as `unknown:hmac-sha256:<hex>`, keyed with the pseudonym key (the same keyed hash a
subject id gets: whoever holds the key can still find a citizen's id sent by mistake), and
the HTTP service refuses a request naming more than `MAX_UNKNOWN_IDS` distinct unknown ids
before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flowguard.model import Flow, Policy

UNKNOWN_PREFIX = "unknown:"
MAX_UNKNOWN_IDS = 8
"""The most distinct unknown ids one HTTP request may name (a few typos, not a flood)."""


def unknown_ids(policy: Policy, flows: Iterable[Flow]) -> set[str]:
    """The distinct ids in `flows` that `policy` does not declare (subjects excepted: the
    registry, not the policy, knows citizens)."""
    actors = policy.actors
    purposes = policy.purpose_tree
    categories = policy.category_tree
    subprocesses = policy.subprocesses
    found: set[str] = set()
    for flow in flows:
        if flow.sender not in actors:
            found.add(flow.sender)
        if flow.recipient not in actors:
            found.add(flow.recipient)
        if flow.purpose not in purposes:
            found.add(flow.purpose)
        if flow.subprocess not in subprocesses:
            found.add(flow.subprocess)
        found.update(c for c in flow.data if c not in categories)
    return found


def hide_unknown(entry: dict[str, Any], policy: Policy,
                 pseudonym: Callable[[str], str]) -> dict[str, Any]:
    """A decision entry with every id `policy` does not know replaced by its keyed hash
    (the entry itself when every id is known)."""
    actors = policy.actors
    purposes = policy.purpose_tree
    categories = policy.category_tree

    def hide(value: str, known: Any) -> str:
        return value if value in known else UNKNOWN_PREFIX + pseudonym(value)

    sender, recipient = entry["sender"], entry["recipient"]
    purpose, subprocess = entry["purpose"], entry["subprocess"]
    data = entry["data"]
    if (sender in actors and recipient in actors and purpose in purposes
            and subprocess in policy.subprocesses and all(c in categories for c in data)):
        return entry
    hidden = dict(entry)
    hidden["sender"] = hide(sender, actors)
    hidden["recipient"] = hide(recipient, actors)
    hidden["purpose"] = hide(purpose, purposes)
    hidden["subprocess"] = hide(subprocess, policy.subprocesses)
    hidden["data"] = [hide(c, categories) for c in data]
    # in the engine's order (by category), as a replay of the hidden flow decides them
    hidden["categories"] = sorted(
        ({**item, "category": hide(item["category"], categories)}
         for item in entry["categories"]), key=lambda item: str(item["category"]))
    return hidden


def hide_id(value: str, known: Any, pseudonym: Callable[[str], str]) -> str:
    """`value` if it is in `known`, else its keyed hash (for refusals that name an id)."""
    return value if value in known else UNKNOWN_PREFIX + pseudonym(value)
