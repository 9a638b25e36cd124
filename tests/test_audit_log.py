"""The audit log store and the engine's audit trail (issue 4, SPEC §9), on SQLite and
PostgreSQL (`audit_url`): canonical entries, what the engine and the registry record,
checkpoints, fail-closed decisions, crash safety under SIGKILL, several writers on one
PostgreSQL log, no raw subject id anywhere in the store, and immutable tables.

Every log is checked against the Merkle and checkpoint primitives directly (`check_log`):
the tree is recomputed from the stored entries with a `CompactRange` and compared with the
stored frontier, the stored subtree hashes and every signed checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowguard
from flowguard import Engine, Flow
from flowguard.audit.checkpoint import Checkpoint, open_checkpoint
from flowguard.audit.entries import (
    PSEUDONYM_PREFIX,
    Pseudonymizer,
    canonical_entry,
    generate_pseudonym_key,
    write_secret,
)
from flowguard.audit.log import AuditLog
from flowguard.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from flowguard.audit.note import Verifier, generate_key
from flowguard.audit.trail import AuditTrail, open_audit, open_audit_log
from flowguard.audit.verify import verify_log
from flowguard.canonical import sha256_digest
from flowguard.model import ReasonCode
from flowguard.registry import InMemoryRegistry, load_registry
from flowguard.store import init_database, open_store
from flowguard.testing import load_suite

from .conftest import EXAMPLES, ROOT, SMALL_POLICY, SMALL_REGISTRY, postgres_schema

ORIGIN = "audit.flowguard.test/log"
AALBORG = EXAMPLES / "aalborg-aktiv"
AUDIT_TABLES = ("audit_entries", "audit_nodes", "audit_checkpoints", "audit_policies")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind the audit log runs on."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        with postgres_schema() as url:
            yield url


def registry_url_for(audit_url: str, tmp_path: Path) -> str:
    """Where the registry goes: its own SQLite file (so the audit file holds the audit log
    only), or the same PostgreSQL schema (its tables are not audit tables)."""
    return f"sqlite:///{tmp_path / 'registry.db'}" if audit_url.startswith("sqlite") \
        else audit_url


@dataclass(frozen=True)
class Keys:
    log_key: Path
    pseudonym_key: Path
    vkey: str
    pseudonym: bytes

    def hmac_of(self, subject_id: str) -> str:
        digest = hmac.new(self.pseudonym, subject_id.encode(), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    skey, vkey = generate_key(ORIGIN)
    write_secret(key_dir / "log.key", skey + "\n")
    generate_pseudonym_key(key_dir / "pseudonym.key")
    pseudonym = bytes.fromhex((key_dir / "pseudonym.key").read_text().strip())
    return Keys(key_dir / "log.key", key_dir / "pseudonym.key", vkey, pseudonym)


def trail_for(url: str, keys: Keys, **options: Any) -> AuditTrail:
    return open_audit(url, pseudonym_key=keys.pseudonym_key, log_key=keys.log_key, **options)


# --------------------------------------------------------------------------- checking a log


def recompute(log: AuditLog, sizes: set[int]) -> tuple[CompactRange, dict[int, bytes]]:
    """The tree of the stored entries, and its root at each of `sizes`; asserts that the
    indices run 0, 1, 2... with no gap and no repeat."""
    tree = CompactRange()
    roots = {0: EMPTY_ROOT} if 0 in sizes else {}
    for index, data in log.entries(batch=997):
        assert index == tree.size, f"entry {tree.size} is missing (next stored: {index})"
        tree.append(leaf_hash(data))
        if tree.size in sizes:
            roots[tree.size] = tree.root()
    return tree, roots


def check_log(log: AuditLog, vkey: str) -> CompactRange:
    """Everything a verifier checks, from the primitives: gap-free indices, the head's size
    and frontier, the stored subtree hashes, every checkpoint's signature and root, and the
    consistency of consecutive checkpoints (with the log's own proofs)."""
    checkpoints = log.checkpoints()
    tree, roots = recompute(log, {size for size, _ in checkpoints})
    row = log.db.read_one("SELECT size, frontier FROM audit_head WHERE id = 1")
    assert row is not None
    size, frontier = int(row[0]), str(row[1])
    assert size == tree.size == log.size
    assert CompactRange(size, [bytes.fromhex(h) for h in frontier.split(",") if h]) == tree
    count = log.db.read_one("SELECT count(*) FROM audit_entries")
    assert count is not None and int(count[0]) == size
    nodes = log.db.read_one("SELECT count(*) FROM audit_nodes")
    assert nodes is not None
    assert int(nodes[0]) == sum(size >> level for level in range(max(1, size.bit_length())))
    assert log.root() == tree.root()
    verifier = Verifier(vkey)
    previous: Checkpoint | None = None
    for cp_size, note in checkpoints:
        checkpoint = open_checkpoint(note, [verifier], origin=ORIGIN)
        assert checkpoint.size == cp_size
        assert checkpoint.root_hash == roots[cp_size], f"checkpoint {cp_size}: wrong root"
        assert log.root(cp_size) == roots[cp_size]
        if previous is not None:
            verify_consistency(previous.size, checkpoint.size, previous.root_hash,
                               checkpoint.root_hash,
                               log.consistency_proof(previous.size, checkpoint.size))
        previous = checkpoint
    if size:
        rng = random.Random(size)
        for index in {0, size - 1, *rng.sample(range(size), min(size, 5))}:
            verify_inclusion(leaf_hash(log.entry(index)), index, size,
                             log.inclusion_proof(index, size), tree.root())
    for index, data in log.entries():  # RFC 8785 bytes (so no float, no non-JCS value)
        assert rfc8785.dumps(json.loads(data)) == data, f"entry {index} is not JCS"
    # and the auditor's own check agrees, also that the log extends its first checkpoint
    report = verify_log(log, [verifier], since=checkpoints[0][1] if checkpoints else None)
    assert (report.size, report.root) == (size, tree.root())
    assert report.checkpoints == len(checkpoints)
    assert report.latest_checkpoint == (checkpoints[-1][0] if checkpoints else None)
    return tree


def entries_of(log: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(data) for _, data in log.entries()]


# --------------------------------------------------------------------------- 1. canonical JSON

_SPECIAL = "\x00\x01\x08\t\n\x0c\r\x1f\x7f\x80\x9f\"\\/'<>&\u00e6\u00f8\u00e5\u2028\u2029" \
    "\ud7ff\ue000\ufeff\uffff\U00010000\U0001f600\U0010ffff"
TEXT = st.text(max_size=12) | st.text(st.sampled_from(_SPECIAL), max_size=12)
ASCII_KEY = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=8)
SAFE_INT = st.integers(-(2**53 - 1), 2**53 - 1)
JSON = st.recursive(
    st.none() | st.booleans() | SAFE_INT | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(ASCII_KEY, inner, max_size=5),
    max_leaves=40)
ENTRY = st.dictionaries(ASCII_KEY, JSON, max_size=8)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ENTRY)
def test_canonical_entry_is_rfc8785(entry: dict[str, Any]) -> None:
    assert canonical_entry(entry) == rfc8785.dumps(entry)


def test_canonical_entry_escapes_and_orders_like_rfc8785() -> None:
    entry = {"b": "\x00\x1f\x7f\u2028 \"\\/ æ 😀", "a": [True, None, -(2**53 - 1)],
             "A": {"z": 1, "": 0}, "\x1f": "x"}
    expected = ('{"\\u001f":"x","A":{"":0,"z":1},"a":[true,null,-9007199254740991],'
                '"b":"\\u0000\\u001f\x7f\u2028 \\"\\\\/ æ 😀"}').encode()
    assert canonical_entry(entry) == rfc8785.dumps(entry) == expected


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT, st.characters(categories=["Cs"]), st.sampled_from(["value", "key", "deep"]))
def test_canonical_entry_refuses_lone_surrogates(prefix: str, suffix: str, surrogate: str,
                                                 where: str) -> None:
    """A lone surrogate cannot be UTF-8: the entry is refused, never written differently."""
    text = prefix + surrogate + suffix
    entry: dict[str, Any] = {"value": {"k": text}, "key": {text: 1},
                             "deep": {"a": [1, {"b": [text]}]}}[where]
    with pytest.raises(ValueError):  # UnicodeEncodeError is one too
        canonical_entry(entry)
    with pytest.raises((rfc8785.CanonicalizationError, UnicodeEncodeError)):
        rfc8785.dumps(entry)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_canonical_entry_refuses_nan_and_infinity(value: float) -> None:
    with pytest.raises(ValueError):
        canonical_entry({"x": value})


@pytest.mark.parametrize("value", [1.0, 0.5, 1e16, 2**53, -(2**53), [1, {"y": 2.5}]])
def test_canonical_entry_refuses_numbers_outside_the_entry_domain(value: float) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_entry({"x": value})


# --------------------------------------------------------------------------- 2. the engine


def small_flow(**changes: Any) -> Flow:
    base = {"sender": "consultant", "recipient": "cafe-manager", "subject": "adult-1",
            "data": ["identity.name"], "purpose": "job-matching", "subprocess": "co-delivery",
            "at": "2026-03-01T00:00:00Z"}
    return Flow.model_validate({**base, **changes})


SMALL_FLOWS = [
    small_flow(),
    small_flow(subject="minor-1"),
    small_flow(recipient="volunteer", data=["health.diagnosis"]),
    small_flow(recipient="case-worker", data=["health"]),
    small_flow(subject="unknown-7", data=["work.preferences"]),
    small_flow(data=["identity.name", "health.medication"]),
    small_flow(subprocess="co-design"),
]

DECISION_FIELDS = {"v", "kind", "time", "decision_id", "outcome", "reason", "sender",
                   "recipient", "organization", "subject", "data", "purpose", "subprocess",
                   "at", "categories", "rules", "consents", "policy_digest",
                   "registry_revision"}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def assert_decision_entry(entry: dict[str, Any], decision: Any, keys: Keys,
                          policy: flowguard.Policy, revision: int | None) -> None:
    flow = decision.flow
    assert set(entry) == DECISION_FIELDS
    assert entry["v"] == 1 and entry["kind"] == "decision"
    assert entry["time"] == _iso(decision.evaluated_at)
    assert entry["decision_id"] == decision.decision_id
    assert entry["outcome"] == decision.decision
    assert entry["reason"] == decision.reason.value
    assert (entry["sender"], entry["recipient"]) == (flow.sender, flow.recipient)
    actor = policy.actors.get(flow.recipient)
    assert entry["organization"] == (actor.organization if actor else "")
    assert entry["subject"] == keys.hmac_of(flow.subject)
    assert entry["data"] == list(flow.data)
    assert (entry["purpose"], entry["subprocess"]) == (flow.purpose, flow.subprocess)
    assert entry["at"] == (_iso(flow.at) if flow.at else None)
    assert entry["policy_digest"] == policy.digest == decision.policy_digest
    assert entry["registry_revision"] == revision
    rules, consents = set(), set()
    assert [c["category"] for c in entry["categories"]] == \
        [c.category for c in decision.categories]
    for logged, category in zip(entry["categories"], decision.categories, strict=True):
        assert logged["decision"] == category.decision
        assert logged.get("reason") == \
            (category.reasons[0].code.value if category.reasons else None)
        if category.basis is not None:
            assert logged["rule"] == category.basis.rule
            assert logged["basis"] == category.basis.basis
            assert logged.get("consent") == category.basis.consent
        else:
            assert "rule" not in logged and "basis" not in logged
        rules |= {r.rule for r in category.reasons if r.rule}
        consents |= {r.consent for r in category.reasons if r.consent}
    assert entry["rules"] == sorted(rules)
    assert entry["consents"] == sorted(consents)


def test_engine_and_registry_record_policy_decisions_and_changes(
        audit_url: str, tmp_path: Path, keys: Keys, write: Any) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    registry_url = registry_url_for(audit_url, tmp_path)
    init_database(registry_url)
    trail = trail_for(audit_url, keys, checkpoint_every=5)
    store = open_store(registry_url, policy, audit=trail)
    log = trail.log
    try:
        # policy activation, with the policy text kept under its digest
        engine = Engine(policy, store, audit=trail)
        assert log.size == 1
        activation = json.loads(log.entry(0))
        assert activation["kind"] == "policy" and activation["policy_digest"] == policy.digest
        assert activation["service"] == "small"
        text = log.policy_text(policy.digest)
        assert text is not None and sha256_digest(text) == policy.digest
        assert flowguard.load_policy(write("replayed.json", text.decode())).digest \
            == policy.digest

        # registry changes, after their commit
        file_registry = load_registry(write("consents.yaml", SMALL_REGISTRY), policy)
        summary = store.import_records(file_registry, by="import-job")
        changes = summary.subjects + summary.guardianships + summary.consents
        assert changes == 12 and log.size == 1 + changes
        registry = entries_of(log)[1:]
        assert [e["seq"] for e in registry] == list(range(1, 13))
        assert {e["kind"] for e in registry} == {"registry"}
        assert Counter(e["event"] for e in registry) == {
            "subject.recorded": 4, "guardianship.added": 2, "consent.granted": 6}
        assert {e["record"] for e in registry if e["event"] == "consent.granted"} == \
            {k.id for k in file_registry.all_consents()}
        assert {e["subject"] for e in registry} == \
            {keys.hmac_of(s) for s in file_registry.subjects}
        assert {e["by"] for e in registry} == {"import-job"}

        # one entry per decision: check, then check_many in one append
        first = engine.check(SMALL_FLOWS[0])
        assert first.decision == "permit"
        assert_decision_entry(json.loads(log.entry(13)), first, keys, policy, store.revision)
        size = log.size
        decisions = engine.check_many(SMALL_FLOWS)
        assert log.size == size + len(SMALL_FLOWS)
        assert {d.decision for d in decisions} == {"permit", "deny"}
        for offset, decision in enumerate(decisions):
            assert_decision_entry(json.loads(log.entry(size + offset)), decision, keys, policy,
                                  store.revision)
        forbidden = json.loads(log.entry(size + 2))
        assert forbidden["outcome"] == "deny" and "no-health-to-voluntary" in forbidden["rules"]

        # a withdrawal is recorded, and later decisions name the new registry revision
        store.withdraw("k-2", by="case-worker")
        withdrawal = json.loads(log.entry(log.size - 1))
        assert {k: withdrawal[k] for k in ("kind", "event", "record", "seq", "by")} == {
            "kind": "registry", "event": "consent.withdrawn", "record": "k-2", "seq": 13,
            "by": "case-worker"}
        assert withdrawal["subject"] == keys.hmac_of("adult-1")
        after = engine.check(SMALL_FLOWS[0])
        assert_decision_entry(json.loads(log.entry(log.size - 1)), after, keys, policy, 13)

        # checkpoints: automatic (every 5 entries), and on demand
        # the first append signs the first tree head; then the appends that reach a new
        # multiple of 5: the import (1 -> 13) and check_many (14 -> 21)
        assert [s for s, _ in log.checkpoints()] == [1, 13, 21]
        assert log.size == 23
        note = trail.checkpoint()
        assert open_checkpoint(note, [Verifier(keys.vkey)]).size == log.size
        assert trail.checkpoint() == note == log.latest_checkpoint()
        check_log(log, keys.vkey)
    finally:
        store.close()
        trail.close()


def test_checkpoints_every_n_entries_every_t_seconds_and_on_demand(audit_url: str,
                                                                  keys: Keys) -> None:
    log = open_audit_log(audit_url, log_key=keys.log_key, checkpoint_every=5,
                         checkpoint_seconds=3600)
    try:
        results = [log.append([{"n": n}]) for n in range(23)]
        assert [r.size for r in results if r.checkpoint] == [1, 5, 10, 15, 20]
        assert [r.first for r in results] == list(range(23))
        batch = log.append([{"n": n} for n in range(23, 30)])  # crosses 25 and 30
        assert (batch.first, batch.size) == (23, 30) and batch.checkpoint is not None
        assert [s for s, _ in log.checkpoints()] == [1, 5, 10, 15, 20, 30]
        assert log.checkpoint() == batch.checkpoint  # one checkpoint per size
        assert log.append([{"n": 30}, {"n": 31}]).checkpoint is None
        on_demand = log.checkpoint()
        assert open_checkpoint(on_demand, [Verifier(keys.vkey)]).size == 32
        assert log.checkpoint() == on_demand
        assert log.append([]).size == 32
        check_log(log, keys.vkey)
    finally:
        log.close()
    timed = open_audit_log(audit_url, log_key=keys.log_key, checkpoint_every=10**6,
                           checkpoint_seconds=1.5)
    try:
        assert timed.append([{"n": 32}]).checkpoint is None  # 32 was signed just now
        time.sleep(1.6)
        assert timed.append([{"n": 33}]).checkpoint is not None
        assert timed.append([{"n": 34}]).checkpoint is None
        assert [s for s, _ in timed.checkpoints()][-2:] == [32, 34]
        check_log(timed, keys.vkey)
    finally:
        timed.close()


def _sabotage_next_index(log: AuditLog) -> None:
    """A stray row where the next entry goes: every later append fails inside its
    transaction (as a full disk or a lost connection would make it fail)."""
    with log.db.write() as cursor:
        cursor.execute("INSERT INTO audit_entries (idx, entry) VALUES (?, ?)",
                       (log.size, b"stray"))


def _assert_denied_for_audit(decisions: list[Any]) -> None:
    for d in decisions:
        assert d.decision == "deny" and d.reason == ReasonCode.EVALUATION_ERROR
        assert d.permitted == ()
        assert {c.decision for c in d.categories} == {"deny"}
        assert all("audit" in r.message for c in d.categories for r in c.reasons)


@pytest.mark.parametrize("failure", ["append fails", "database closed"])
def test_a_decision_that_cannot_be_recorded_is_denied(audit_url: str, keys: Keys, write: Any,
                                                      failure: str) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    registry = load_registry(write("consents.yaml", SMALL_REGISTRY), policy)
    trail = trail_for(audit_url, keys)
    engine = Engine(policy, registry, audit=trail)
    log = trail.log
    try:
        permitted = engine.check(SMALL_FLOWS[0])
        assert permitted.decision == "permit"
        assert any(d.decision == "permit" for d in engine.check_many(SMALL_FLOWS))
        size = log.size
        if failure == "append fails":
            _sabotage_next_index(log)
        else:
            log.db.close()
        _assert_denied_for_audit([engine.check(SMALL_FLOWS[0])])
        _assert_denied_for_audit(engine.check_many(SMALL_FLOWS))
        if failure == "append fails":
            assert log.size == size  # the failed appends left no trace
            count = log.db.read_one("SELECT count(*) FROM audit_entries")
            assert count is not None and int(count[0]) == size + 1  # just the stray row
    finally:
        trail.close()


def test_engines_starting_together_store_the_policy_once(audit_url: str, keys: Keys,
                                                         write: Any) -> None:
    """Several servers activating the same policy at once (each its own connection)."""
    writers = 4
    logs = [open_audit_log(audit_url, log_key=keys.log_key) for _ in range(writers)]
    errors: list[BaseException] = []
    try:
        for trial in range(12):
            text = SMALL_POLICY.replace("id: small", f"id: small-{trial}")
            policy = flowguard.load_policy(write(f"p{trial}/policy.yaml", text))
            barrier = threading.Barrier(writers)

            def activate(log: AuditLog, policy: flowguard.Policy = policy,
                         barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    AuditTrail(log, Pseudonymizer(keys.pseudonym)).record_policy(policy)
                except BaseException as exc:  # collected for the assert below
                    errors.append(exc)

            threads = [threading.Thread(target=activate, args=(log,)) for log in logs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert logs[0].policy_text(policy.digest) is not None
        assert errors == []
        assert logs[0].size == 12 * writers
        check_log(logs[0], keys.vkey)
    finally:
        for log in logs:
            log.close()


# --------------------------------------------------------------------------- 3. crash safety

WRITER = r'''
import os, random, sys
from flowguard.audit.entries import canonical_entry
from flowguard.audit.trail import open_audit_log

url, key, writer, count, seed, every, on_demand = sys.argv[1:8]
writer, count, seed, on_demand = int(writer), int(count), int(seed), int(on_demand)
rng = random.Random(seed)
log = open_audit_log(url, log_key=key, checkpoint_every=int(every), checkpoint_seconds=3600)
os.write(1, b"ready\n")
if os.environ.get("WAIT_FOR_GO"):
    sys.stdin.readline()
n = appends = 0
while count == 0 or n < count:
    size = rng.randint(1, 4) if count == 0 else min(rng.randint(1, 4), count - n)
    batch = [canonical_entry({"kind": "test", "writer": writer, "n": n + i})
             for i in range(size)]
    result = log.append_encoded(batch)
    # acknowledged: the append returned (committed); one write() per line
    os.write(1, f"ack {result.first} {result.size} {n}\n".encode())
    n += size
    appends += 1
    if on_demand and appends % on_demand == 0:
        log.checkpoint()
log.close()
'''


@dataclass(frozen=True)
class Ack:
    first: int
    size: int
    n: int  # the writer's counter of the batch's first entry


def _spawn(script: Path, url: str, keys: Keys, writer: int, *, count: int = 0, seed: int = 0,
           every: int = 7, on_demand: int = 0, wait: bool = False) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if wait:
        env["WAIT_FOR_GO"] = "1"
    return subprocess.Popen(
        [sys.executable, str(script), url, str(keys.log_key), str(writer), str(count),
         str(seed), str(every), str(on_demand)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _acks(lines: list[bytes]) -> list[Ack]:
    """The acknowledged appends; a last line cut short by the kill is not an ack."""
    out = []
    for line in lines:
        if line.startswith(b"ack ") and line.endswith(b"\n"):
            first, size, n = map(int, line.split()[1:])
            out.append(Ack(first, size, n))
    return out


def assert_acknowledged(log: AuditLog, writer: int, acks: list[Ack]) -> None:
    for ack in acks:
        for offset in range(ack.size - ack.first):
            stored = json.loads(log.entry(ack.first + offset))
            assert stored == {"kind": "test", "writer": writer, "n": ack.n + offset}, \
                f"acknowledged entry {ack.first + offset} is not what writer {writer} wrote"


def test_a_killed_writer_loses_no_acknowledged_entry(tmp_path: Path, keys: Keys) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    db_file = tmp_path / "audit.db"
    url = f"sqlite:///{db_file}"
    open_audit_log(url).close()  # the schema; the children append
    rng = random.Random(os.environ.get("FLOWGUARD_CRASH_SEED", "4"))
    for round_ in range(8):
        process = _spawn(script, url, keys, round_, seed=rng.randrange(2**32),
                         on_demand=rng.choice([0, 13]))
        assert process.stdout is not None and process.stderr is not None
        lines: list[bytes] = []
        try:
            assert process.stdout.readline() == b"ready\n", process.stderr.read()
            wanted = rng.randint(1, 400)
            while len(lines) < wanted:
                line = process.stdout.readline()
                assert line, f"the writer died: {process.stderr.read().decode()}"
                lines.append(line)
            time.sleep(rng.uniform(0, 0.02))
        finally:
            process.send_signal(signal.SIGKILL)
        lines.extend(process.stdout.readlines())  # what it acknowledged before it died
        assert process.wait(timeout=30) == -signal.SIGKILL
        process.stdout.close()
        process.stderr.close()
        acks = _acks(lines)
        assert len(acks) >= wanted

        log = open_audit_log(url, log_key=keys.log_key, checkpoint_every=7)
        try:
            before = check_log(log, keys.vkey)
            assert log.size >= acks[-1].size
            assert_acknowledged(log, round_, acks)
            # appends go on from the recovered frontier
            result = log.append([{"kind": "test", "after": round_, "n": n} for n in range(9)])
            assert (result.first, result.size) == (before.size, before.size + 9)
            log.checkpoint()
            after = check_log(log, keys.vkey)
            before.extend(leaf_hash(data) for _, data in log.entries(before.size))
            assert after == before
        finally:
            log.close()


# --------------------------------------------------------------------------- 4. several writers


def test_four_writers_on_postgresql_build_one_tree(tmp_path: Path, keys: Keys) -> None:
    """Mandatory in CI: `postgres_schema` fails rather than skips under CI=true."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    per_writer, writers, every = 250, 4, 100
    with postgres_schema() as url:
        processes = [_spawn(script, url, keys, w, count=per_writer, seed=w, every=every,
                            on_demand=40 if w == 0 else 0, wait=True)
                     for w in range(writers)]
        try:
            for p in processes:  # all create-or-migrate the schema at once, then wait
                assert p.stdout is not None and p.stderr is not None
                assert p.stdout.readline() == b"ready\n", p.stderr.read().decode()
            for p in processes:
                assert p.stdin is not None
                p.stdin.write(b"go\n")
                p.stdin.flush()
            outputs = [p.communicate(timeout=300) for p in processes]  # closes stdin
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, (_, err) in zip(processes, outputs, strict=True):
            assert p.returncode == 0, err.decode()
        acks = [_acks(out.splitlines(keepends=True)) for out, _ in outputs]

        log = open_audit_log(url, log_key=keys.log_key)
        try:
            total = writers * per_writer
            assert log.size == total
            tree = check_log(log, keys.vkey)  # indices 0..n-1, roots, checkpoints, proofs
            assert tree.size == total
            stored = Counter((e["writer"], e["n"]) for e in entries_of(log))
            assert stored == Counter((w, n) for w in range(writers) for n in range(per_writer))
            for writer, writer_acks in enumerate(acks):
                assert sum(a.size - a.first for a in writer_acks) == per_writer
                assert_acknowledged(log, writer, writer_acks)
            batches = sorted((a.first, a.size) for w in acks for a in w)
            assert all(a[1] == b[0] for a, b in itertools.pairwise(batches))
            sizes = [s for s, _ in log.checkpoints()]
            for multiple in range(every, total + 1, every):
                assert any(multiple <= s < multiple + 4 for s in sizes), (multiple, sizes)
            assert len(sizes) > total // every
        finally:
            log.close()


# --------------------------------------------------------------------------- 5. no raw subject


def _people(registry: InMemoryRegistry) -> set[str]:
    """Every person the registry names: subjects, guardians, those who gave consent."""
    people = set(registry.subjects)
    people |= {g.guardian for g in registry.all_guardianships()}
    people |= {k.given_by for k in registry.all_consents()}
    return people


def _audit_values(log: AuditLog) -> Iterator[tuple[str, str, Any]]:
    """Every value of every column of every audit table (PostgreSQL)."""
    tables = [str(r[0]) for r in log.db.read(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = "
        "current_schema() AND table_name LIKE ? ORDER BY table_name", ("audit%",))]
    assert set(AUDIT_TABLES) | {"audit_head"} <= set(tables)
    for table in tables:
        columns = [str(r[0]) for r in log.db.read(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = ?", (table,))]
        for column in columns:
            for (value, text) in log.db.read(f"SELECT {column}, {column}::text FROM {table}"):
                yield table, column, value
                yield table, column, text


def test_no_raw_subject_id_anywhere_in_the_audit_store(audit_url: str, tmp_path: Path,
                                                      keys: Keys) -> None:
    policy = flowguard.load_policy(AALBORG)
    file_registry = load_registry(AALBORG / "consents.yaml", policy)
    people = _people(file_registry) | {"citizen-9999"}
    assert {"citizen-0042", "citizen-0107", "person-anne"} <= people
    flows = [case.flow for case in load_suite(AALBORG / "tests.yaml").cases]
    flows.append(flows[0].model_copy(update={"subject": "citizen-9999"}))  # not registered
    assert {f.subject for f in flows} >= {"citizen-0042", "citizen-0233", "citizen-9999"}

    registry_url = registry_url_for(audit_url, tmp_path)
    init_database(registry_url)
    trail = trail_for(audit_url, keys, checkpoint_every=10)
    store = open_store(registry_url, policy, audit=trail)
    log = trail.log
    try:
        store.import_records(file_registry, by="import-job")
        engine = Engine(policy, store, audit=trail)
        start = log.size
        singles = [engine.check(f) for f in flows]
        batch = engine.check_many(flows)
        assert {d.decision for d in singles} == {"permit", "deny"}
        store.withdraw("k-0042-cafe", by="case-worker")
        store.add_subject("citizen-0700", {"birth_date": "2000-01-01"}, by="case-worker")
        people.add("citizen-0700")
        engine.check_many(flows)
        trail.checkpoint()

        # the pseudonym is HMAC-SHA256(pseudonym key, subject id), decision by decision
        logged = entries_of(log)
        decisions = [e for e in logged[start:] if e["kind"] == "decision"]
        assert [e["subject"] for e in decisions[:2 * len(flows)]] == \
            [keys.hmac_of(d.flow.subject) for d in singles + batch]
        assert [e["decision_id"] for e in decisions[:2 * len(flows)]] == \
            [d.decision_id for d in singles + batch]
        changes = [e for e in logged if e["kind"] == "registry"]
        assert {e["subject"] for e in changes} == \
            {keys.hmac_of(s) for s in [*file_registry.subjects, "citizen-0700"]}
        assert all(e["subject"].startswith(PSEUDONYM_PREFIX) for e in decisions + changes)
        check_log(log, keys.vkey)

        if log.db.dialect == "sqlite":
            _assert_no_people_in_files(Path(log.url[len("sqlite:///"):]), people)
        else:
            seen = 0
            for table, column, value in _audit_values(log):
                if value is None or isinstance(value, int):
                    continue
                blob = bytes(value) if isinstance(value, bytes | memoryview) \
                    else str(value).encode()
                seen += len(blob)
                for person in people:
                    assert person.encode() not in blob, f"{person} in {table}.{column}"
            assert seen > 10_000  # the search did read the log
    finally:
        store.close()
        trail.close()
    if audit_url.startswith("sqlite"):  # after close: everything is in the main file
        _assert_no_people_in_files(Path(audit_url[len("sqlite:///"):]), people)


def _assert_no_people_in_files(db_file: Path, people: set[str]) -> None:
    files = [p for p in (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm"))
             if p.exists()]
    data = b"".join(p.read_bytes() for p in files)
    assert len(data) > 10_000
    assert b"hmac-sha256:" in data  # the search reads the log
    for person in people:
        for form in (person.encode(), person.encode("utf-16-le"), person.encode().hex().encode()):
            assert form not in data, f"{person} is in {[p.name for p in files]}"


# --------------------------------------------------------------------------- 6. immutability


def _snapshot(log: AuditLog) -> dict[str, list[tuple[Any, ...]]]:
    return {table: sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                          for row in log.db.read(f"SELECT * FROM {table}"))
            for table in (*AUDIT_TABLES, "audit_head")}


_CHANGES = {  # table: (an UPDATE's assignment, a key condition, a REPLACE/UPSERT row)
    "audit_entries": ("entry = ?", "idx = 0", "(idx, entry) VALUES (0, ?)", "(idx)",
                      "entry = EXCLUDED.entry"),
    "audit_nodes": ("hash = ?", "level = 0 AND idx = 0", "(level, idx, hash) VALUES (0, 0, ?)",
                    "(level, idx)", "hash = EXCLUDED.hash"),
    "audit_checkpoints": ("note = 'forged'", "size = 1",
                          "(size, note, created_at) VALUES (1, 'forged', 0)", "(size)",
                          "note = EXCLUDED.note"),
    "audit_policies": ("canonical = ?", "1 = 1", None, "(digest)",
                       "canonical = EXCLUDED.canonical"),
}


def test_the_audit_tables_refuse_update_delete_replace_and_truncate(
        audit_url: str, keys: Keys, write: Any) -> None:
    policy = flowguard.load_policy(write("policy.yaml", SMALL_POLICY))
    trail = trail_for(audit_url, keys, checkpoint_every=2)
    log = trail.log
    try:
        trail.record_policy(policy)
        log.append([{"n": n} for n in range(5)])
        trail.checkpoint()
        before = _snapshot(log)
        assert all(before[t] for t in AUDIT_TABLES)
        digest = policy.digest
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for table, (assign, key, replace, conflict, upsert) in _CHANGES.items():
            params = (b"forged",) if "?" in assign else ()
            statements += [(f"UPDATE {table} SET {assign}", params),
                           (f"UPDATE {table} SET {assign} WHERE {key}", params),
                           (f"DELETE FROM {table} WHERE {key}", ()),
                           (f"DELETE FROM {table}", ())]
            row = replace or "(digest, canonical) VALUES (?, ?)"
            row_params: tuple[Any, ...] = (digest, b"forged") if replace is None \
                else ((b"forged",) if "?" in row else ())
            statements.append((f"INSERT INTO {table} {row} ON CONFLICT {conflict} "
                               f"DO UPDATE SET {upsert}", row_params))
            if log.db.dialect == "sqlite":  # REPLACE deletes the old row, then inserts
                statements += [(f"INSERT OR REPLACE INTO {table} {row}", row_params),
                               (f"REPLACE INTO {table} {row}", row_params)]
            else:
                statements += [(f"TRUNCATE {table}", ()), (f"TRUNCATE {table} CASCADE", ())]
        for sql, params in statements:
            _assert_refused(log.url, sql, params)
        assert _snapshot(log) == before
        check_log(log, keys.vkey)
    finally:
        trail.close()


def _assert_refused(url: str, sql: str, params: tuple[Any, ...]) -> None:
    """Run `sql` as an operator would, on a connection of its own."""
    if url.startswith("sqlite"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
            try:
                conn.execute(sql, params)
            finally:
                conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn, \
            pytest.raises(psycopg.Error, match="append-only"):
        conn.execute(sql.replace("?", "%s"), params)
