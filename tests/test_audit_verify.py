"""`flowguard.audit.verify`: an auditor who trusts only the entries, the signatures and the
verifier keys detects every kind of tampering with a real log, and names the first bad
entry or checkpoint. The attacker here has direct database access (and drops the
append-only triggers first); in the rewrite and fork cases also the log's signing key."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowguard.audit.verify as verify_module
from flowguard.audit.checkpoint import Checkpoint, sign_checkpoint
from flowguard.audit.entries import Pseudonymizer, canonical_entry
from flowguard.audit.log import AuditLog, init_audit
from flowguard.audit.merkle import CompactRange, leaf_hash
from flowguard.audit.note import Signer, Verifier, generate_key
from flowguard.audit.trail import AuditTrail
from flowguard.audit.verify import (
    AuditVerifyError,
    VerifyReport,
    _EntryChecker,
    entry_problem,
    verify_entries,
    verify_log,
)
from flowguard.engine import Engine
from flowguard.model import Policy
from flowguard.policy import load_policy
from flowguard.registry import load_registry
from flowguard.store._db import Database, connect
from flowguard.store.events import RegistryChange

from .conftest import SMALL_POLICY, SMALL_REGISTRY, postgres_schema

ORIGIN = "audit.flowguard.test/verify"
EVERY = 5  # a checkpoint every 5 entries
SUBJECTS = ("adult-1", "minor-1", "leap-1", "nobirth-1", "stranger-9")
TRIGGERS = [f"{table}_no_{op}" for table in ("audit_entries", "audit_nodes",
                                             "audit_checkpoints", "audit_policies")
            for op in ("update", "delete")]
SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# --------------------------------------------------------------------------- building logs


def _flows(count: int, salt: int = 0) -> list[dict[str, Any]]:
    flows = []
    for i in range(count):
        flows.append({
            "sender": "consultant", "recipient": ("cafe-manager", "volunteer")[i % 2],
            "subject": SUBJECTS[(i + salt) % len(SUBJECTS)],
            "data": [("identity.name", "work.preferences", "health.medication")[i % 3]],
            "purpose": "job-matching", "subprocess": "co-delivery",
            "at": f"2026-03-{1 + (i + salt) % 28:02d}T10:00:00Z"})
    return flows


def fill(db: Database, policy: Policy, signer: Signer, pseudonym: Pseudonymizer, *,
         decisions: int, salt: int = 0, registry_changes: int = 2,
         checkpoint_every: int = EVERY, batch: int = 3) -> AuditLog:
    """A real log: a policy activation, decisions of the engine (in small groups) against
    the small registry, and registry changes; checkpoints every `checkpoint_every` entries
    and at the end."""
    log = AuditLog(db, signer=signer, checkpoint_every=checkpoint_every,
                   checkpoint_seconds=1e9)
    trail = AuditTrail(log, pseudonym)
    registry = load_registry(policy_folder(policy) / "registry.yaml", policy)
    engine = Engine(policy, registry, audit=trail)
    flows = _flows(decisions, salt)
    for start in range(0, len(flows), batch):
        engine.check_many(flows[start:start + batch])
    trail.record_registry_changes([
        RegistryChange(seq=i + 1, kind="consent.granted", record=f"k-{i}",
                       subject=SUBJECTS[i % len(SUBJECTS)], by="anne",
                       recorded_at=datetime(2026, 1, 1, tzinfo=UTC))
        for i in range(registry_changes)])
    log.checkpoint()
    return log


_FOLDERS: dict[str, Path] = {}


def policy_folder(policy: Policy) -> Path:
    return _FOLDERS[policy.digest]


@dataclass(frozen=True)
class Base:
    """A closed SQLite log file to copy, with what an auditor knows of it."""

    path: Path
    vkey: str
    skey: str
    size: int
    checkpoints: tuple[int, ...]
    policy: Policy
    pseudonym: Pseudonymizer


@pytest.fixture(scope="module")
def policy_files(tmp_path_factory: pytest.TempPathFactory) -> Policy:
    folder = tmp_path_factory.mktemp("policy")
    (folder / "policy.yaml").write_text(SMALL_POLICY, encoding="utf-8")
    (folder / "registry.yaml").write_text(SMALL_REGISTRY, encoding="utf-8")
    policy = load_policy(folder / "policy.yaml")
    _FOLDERS[policy.digest] = folder
    return policy


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, policy_files: Policy) -> Base:
    path = tmp_path_factory.mktemp("base") / "audit.db"
    skey, vkey = generate_key(ORIGIN)
    db = connect(f"sqlite:///{path}")
    init_audit(db)
    pseudonym = Pseudonymizer(secrets.token_bytes(32))
    log = fill(db, policy_files, Signer(skey), pseudonym, decisions=37)
    size = log.size
    checkpoints = tuple(s for s, _ in log.checkpoints())
    log.close()
    assert size == 40 and len(checkpoints) >= 8
    return Base(path, vkey, skey, size, checkpoints, policy_files, pseudonym)


@pytest.fixture
def copy(base: Base, tmp_path: Path) -> Callable[[], Path]:
    counter = iter(range(10**6))

    def make() -> Path:
        target = tmp_path / f"copy-{next(counter)}.db"
        shutil.copyfile(base.path, target)
        return target

    return make


def open_log(path: Path) -> AuditLog:
    return AuditLog(connect(f"sqlite:///{path}"))


def verify(path: Path, vkeys: list[str], **options: Any) -> VerifyReport:
    log = open_log(path)
    try:
        return verify_log(log, [Verifier(v) for v in vkeys], **options)
    finally:
        log.close()


def failure(path: Path, vkeys: list[str], **options: Any) -> AuditVerifyError:
    with pytest.raises(AuditVerifyError) as caught:
        verify(path, vkeys, **options)
    return caught.value


@contextmanager
def attacker(path: Path) -> Iterator[sqlite3.Connection]:
    """Direct write access to the log's database, append-only triggers dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.execute("BEGIN")
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


def stored_entries(conn: sqlite3.Connection) -> list[bytes]:
    return [bytes(row[0]) for row in conn.execute("SELECT entry FROM audit_entries ORDER BY idx")]


def rewrite(conn: sqlite3.Connection, entries: list[bytes]) -> None:
    """Replace the log by `entries`, with a matching tree and head, as the writer would
    have stored them (checkpoints are left alone)."""
    conn.execute("DELETE FROM audit_entries")
    conn.execute("DELETE FROM audit_nodes")
    tree = CompactRange()
    for index, data in enumerate(entries):
        conn.execute("INSERT INTO audit_entries VALUES (?, ?)", (index, data))
        conn.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)",
                         tree.append(leaf_hash(data)))
    conn.execute("UPDATE audit_head SET size = ?, frontier = ? WHERE id = 1",
                 (tree.size, ",".join(h.hex() for h in tree.hashes)))


def checkpoint_after(base: Base, index: int) -> int:
    """The size of the first checkpoint covering entry `index`."""
    return min(size for size in base.checkpoints if size > index)


BATCH_BITS = st.sampled_from([1, 2, 3, 14])


# --------------------------------------------------------------------------- an honest log


def test_an_untampered_log_verifies_whatever_the_batch_size(base: Base, copy: Any) -> None:
    path = copy()
    log = open_log(path)
    entries = [data for _, data in log.entries()]
    tree = CompactRange()
    for data in entries:
        tree.append(leaf_hash(data))
    log.close()
    seen: list[tuple[int, int]] = []
    for bits in (1, 2, 3, 5, 14):
        report = verify(path, [base.vkey], batch_bits=bits,
                        progress=lambda done, total: seen.append((done, total)))
        assert report.size == base.size == len(entries)
        assert report.root == tree.root()
        assert report.checkpoints == len(base.checkpoints)
        assert report.latest_checkpoint == base.checkpoints[-1] == base.size
        assert report.unsigned == 0
        assert report.origin == ORIGIN
        verifier = Verifier(base.vkey)
        assert report.keys == (f"{verifier.name}+{verifier.key_id:08x}",)
        assert report.consistency_proofs == len(base.checkpoints) - 1
        assert report.policies == 1
    assert seen[-1] == (base.size, base.size)
    last_run = seen[-3:]  # batches of 2**14: one call
    assert last_run[-1] == (base.size, base.size)


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'empty.db'}")
    init_audit(db)
    skey, vkey = generate_key(ORIGIN)
    log = AuditLog(db, signer=Signer(skey))
    log.checkpoint()  # a signed empty tree
    report = verify_log(log, [Verifier(vkey)])
    assert (report.size, report.checkpoints, report.latest_checkpoint) == (0, 1, 0)
    log.close()


# --------------------------------------------------------------------------- tampering


@SETTINGS
@given(st.data())
def test_flipping_any_byte_of_any_entry_names_it(base: Base, copy: Any,
                                                  data: st.DataObject) -> None:
    index = data.draw(st.integers(0, base.size - 1), "index")
    path = copy()
    with attacker(path) as conn:
        entry = bytearray(stored_entries(conn)[index])
        position = data.draw(st.integers(0, len(entry) - 1), "position")
        entry[position] ^= data.draw(st.integers(1, 255), "xor")
        conn.execute("UPDATE audit_entries SET entry = ? WHERE idx = ?", (bytes(entry), index))
    error = failure(path, [base.vkey], batch_bits=data.draw(BATCH_BITS, "bits"))
    assert (error.problem, error.index) == ("altered", index)
    assert f"entry {index} " in str(error)


@SETTINGS
@given(st.data())
def test_deleting_an_entry_names_it(base: Base, copy: Any, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, base.size - 1), "index")
    path = copy()
    with attacker(path) as conn:
        conn.execute("DELETE FROM audit_entries WHERE idx = ?", (index,))
    error = failure(path, [base.vkey], batch_bits=data.draw(BATCH_BITS, "bits"))
    assert (error.problem, error.index) == ("missing", index)
    assert f"entry {index} is missing" in str(error)


def _forged(entries: list[bytes]) -> bytes:
    entry = json.loads(entries[1])
    entry["decision_id"] = "forged-1"
    return canonical_entry(entry)


@SETTINGS
@given(st.data())
def test_inserting_an_entry_names_where(base: Base, copy: Any, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, base.size), "index")
    path = copy()
    with attacker(path) as conn:
        forged = _forged(stored_entries(conn))
        conn.execute("UPDATE audit_entries SET idx = idx + 1000000 WHERE idx >= ?", (index,))
        conn.execute("UPDATE audit_entries SET idx = idx - 999999 WHERE idx >= 1000000")
        conn.execute("INSERT INTO audit_entries VALUES (?, ?)", (index, forged))
    error = failure(path, [base.vkey], batch_bits=data.draw(BATCH_BITS, "bits"))
    if index < base.size:
        assert (error.problem, error.index) == ("altered", index)
    else:  # appended after the head: not part of the tree
        assert (error.problem, error.index) == ("extra", base.size)


@SETTINGS
@given(st.data())
def test_reordering_two_entries_names_the_first(base: Base, copy: Any,
                                                 data: st.DataObject) -> None:
    first = data.draw(st.integers(0, base.size - 2), "first")
    second = data.draw(st.integers(first + 1, base.size - 1), "second")
    path = copy()
    with attacker(path) as conn:
        entries = stored_entries(conn)
        conn.execute("UPDATE audit_entries SET entry = ? WHERE idx = ?", (entries[second], first))
        conn.execute("UPDATE audit_entries SET entry = ? WHERE idx = ?", (entries[first], second))
    error = failure(path, [base.vkey], batch_bits=data.draw(BATCH_BITS, "bits"))
    assert (error.problem, error.index) == ("altered", first)


@SETTINGS
@given(st.data())
def test_truncating_the_tail_is_detected_by_a_later_checkpoint(base: Base, copy: Any,
                                                               data: st.DataObject) -> None:
    keep = data.draw(st.integers(0, base.checkpoints[-1] - 1), "keep")
    path = copy()
    with attacker(path) as conn:  # entries, nodes and head, consistently
        rewrite(conn, stored_entries(conn)[:keep])
    error = failure(path, [base.vkey], batch_bits=data.draw(BATCH_BITS, "bits"))
    assert error.problem == "truncated"
    assert error.checkpoint == min(size for size in base.checkpoints if size > keep)


def test_truncating_entries_only_names_the_first_missing_one(base: Base, copy: Any) -> None:
    path = copy()
    with attacker(path) as conn:
        conn.execute("DELETE FROM audit_entries WHERE idx >= 17")
    error = failure(path, [base.vkey], batch_bits=2)
    assert (error.problem, error.index) == ("missing", 17)


@SETTINGS
@given(st.data())
def test_a_checkpoint_replaced_by_another_keys_is_named(base: Base, copy: Any,
                                                          data: st.DataObject) -> None:
    size = data.draw(st.sampled_from([s for s in base.checkpoints if s > 0]), "size")
    forged_root = data.draw(st.booleans(), "forged root")
    name = data.draw(st.sampled_from([ORIGIN, "someone.else/log"]), "key name")
    path = copy()
    with attacker(path) as conn:
        note = conn.execute("SELECT note FROM audit_checkpoints WHERE size = ?",
                            (size,)).fetchone()[0]
        real = Checkpoint.parse(note[:note.rfind("\n\n") + 1])
        root = hashlib.sha256(b"forged").digest() if forged_root else real.root_hash
        other, _ = generate_key(name)
        forged = sign_checkpoint(Checkpoint(name, size, root), [Signer(other)])
        conn.execute("UPDATE audit_checkpoints SET note = ? WHERE size = ?", (forged, size))
    error = failure(path, [base.vkey], batch_bits=data.draw(BATCH_BITS, "bits"))
    assert (error.problem, error.checkpoint) == ("signature", size)
    assert f"checkpoint at size {size}" in str(error)


def test_a_checkpoint_with_a_wrong_root_by_the_right_key_is_named(base: Base,
                                                                   copy: Any) -> None:
    """What a signer bug (or a stolen key used carelessly) would leave."""
    size = base.checkpoints[3]
    path = copy()
    with attacker(path) as conn:
        forged = sign_checkpoint(Checkpoint(ORIGIN, size, hashlib.sha256(b"x").digest()),
                                 [Signer(base.skey)])
        conn.execute("UPDATE audit_checkpoints SET note = ? WHERE size = ?", (forged, size))
    error = failure(path, [base.vkey])
    assert (error.problem, error.checkpoint) == ("root", size)


@SETTINGS
@given(st.data())
def test_rewriting_an_entry_and_its_whole_tree_is_caught_by_the_signed_root(
        base: Base, copy: Any, data: st.DataObject) -> None:
    """The attacker recomputes every node and the head, but cannot sign."""
    index = data.draw(st.integers(0, base.size - 1), "index")
    path = copy()
    with attacker(path) as conn:
        entries = stored_entries(conn)
        entry = json.loads(entries[index])
        entry["time"] = "2020-01-01T00:00:00.000000Z"
        entries[index] = canonical_entry(entry)
        rewrite(conn, entries)
    error = failure(path, [base.vkey], batch_bits=data.draw(BATCH_BITS, "bits"))
    assert (error.problem, error.checkpoint) == ("root", checkpoint_after(base, index))
    assert error.index is not None and error.index <= index


@SETTINGS
@given(st.data())
def test_an_altered_tree_node_is_named(base: Base, copy: Any, data: st.DataObject) -> None:
    path = copy()
    with attacker(path) as conn:
        nodes = conn.execute("SELECT level, idx FROM audit_nodes ORDER BY level, idx").fetchall()
        level, index = data.draw(st.sampled_from(nodes), "node")
        conn.execute("UPDATE audit_nodes SET hash = ? WHERE level = ? AND idx = ?",
                     (hashlib.sha256(b"forged").digest(), level, index))
    error = failure(path, [base.vkey], batch_bits=data.draw(BATCH_BITS, "bits"))
    if level == 0:
        assert (error.problem, error.index) == ("altered", index)
    else:
        assert (error.problem, error.index) == ("node", index << level)
        assert f"level {level}, index {index}" in str(error)


def test_nodes_beyond_the_tree_and_a_wrong_frontier_are_reported(base: Base,
                                                                  copy: Any) -> None:
    path = copy()
    with attacker(path) as conn:
        conn.execute("INSERT INTO audit_nodes VALUES (0, ?, ?)", (base.size, b"x" * 32))
    assert failure(path, [base.vkey]).problem == "node"
    path = copy()
    with attacker(path) as conn:
        conn.execute("UPDATE audit_head SET frontier = ? WHERE id = 1", ("00" * 32,))
    assert failure(path, [base.vkey]).problem == "head"


def test_a_tampered_policy_text_is_reported(base: Base, copy: Any) -> None:
    path = copy()
    with attacker(path) as conn:
        conn.execute("UPDATE audit_policies SET canonical = CAST(replace(CAST(canonical AS "
                     "TEXT), 'consent', 'public-task') AS BLOB)")
    error = failure(path, [base.vkey])
    assert error.problem == "policy"


def test_verifying_a_log_that_is_being_appended_to(base: Base, copy: Any) -> None:
    """No false alarm from appends committed while the verifier reads (another writer)."""
    import threading
    import time

    path = copy()
    stop = threading.Event()
    errors: list[BaseException] = []

    def append() -> None:
        writer = AuditLog(connect(f"sqlite:///{path}"), signer=Signer(base.skey),
                          checkpoint_every=3, checkpoint_seconds=1e9)
        try:
            entry = {"kind": "policy", "policy_digest": "sha256:" + "0" * 64, "v": 1}
            # Bounded: the verifier only needs appends landing while it reads, not as many as
            # one core can write (unbounded, this test grew the log to ~130,000 entries).
            for _ in range(300):
                if stop.is_set():
                    break
                writer.append([entry, entry])
                time.sleep(0.002)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            writer.close()

    thread = threading.Thread(target=append)
    thread.start()
    try:
        sizes = [verify(path, [base.vkey], batch_bits=2).size for _ in range(15)]
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert sizes == sorted(sizes) and sizes[-1] > base.size
    assert verify(path, [base.vkey]).size >= sizes[-1]


# --------------------------------------------------------------------------- entry form


def _append_raw(path: Path, entries: list[bytes], skey: str) -> AuditLog:
    log = AuditLog(connect(f"sqlite:///{path}"), signer=Signer(skey), checkpoint_every=10**6,
                   checkpoint_seconds=1e9)
    log.append_encoded(entries)
    return log


def test_a_raw_subject_or_a_non_canonical_entry_is_named(base: Base, copy: Any) -> None:
    cases = [
        (canonical_entry({"kind": "decision", "subject": "adult-1", "v": 1}), "subject"),
        (canonical_entry({"kind": "registry", "v": 1}), "subject"),
        (b'{"kind":"policy", "v":1}', "format"),
        (b'{"v":1,"kind":"policy"}', "format"),
        (b'{"kind":"policy","v":1.5}', "format"),
        (b'["kind"]', "format"),
        (b"\xff", "format"),
    ]
    for entry, problem in cases:
        path = copy()
        log = _append_raw(path, [entry], base.skey)
        log.close()
        error = failure(path, [base.vkey])
        assert (error.problem, error.index) == (problem, base.size), entry
        assert "adult-1" not in str(error)


_SPECIAL = "\x00\x1f\x7f\"\\/\u2028\u00e6\U0001f600\ud7ff\uffff"
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6) | st.text(st.sampled_from(_SPECIAL), max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUE, st.booleans(), st.data())
def test_the_fast_entry_check_agrees_with_the_standard_library(
        value: Any, pseudonymised: bool, data: st.DataObject) -> None:
    entry = {"kind": "decision", "v": value}
    if pseudonymised:
        entry["subject"] = "hmac-sha256:" + "ab" * 32
    encoded = json.dumps(entry, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode("utf-8", "surrogatepass")
    if data.draw(st.booleans(), "mutate") and encoded:
        mutated = bytearray(encoded)
        mutated[data.draw(st.integers(0, len(mutated) - 1), "at")] = data.draw(
            st.sampled_from(b' ,:"{}[]0123456789.eE-+\\abtrunfl'), "byte")
        encoded = bytes(mutated)
    slow = entry_problem(encoded)
    assert (_EntryChecker().first_bad([encoded]) is None) == (slow is None), encoded
    # and within a batch of good entries, at the same offset
    good = canonical_entry({"kind": "policy", "v": 1})
    batch = [good, good, encoded, good]
    found = _EntryChecker().first_bad(batch)
    assert (found is None) == (slow is None)
    if found is not None:
        assert found[0] == 2


def test_the_entry_check_without_orjson(base: Base, copy: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_module, "_orjson", None)
    assert verify(copy(), [base.vkey]).size == base.size
    path = copy()
    _append_raw(path, [canonical_entry({"kind": "decision", "subject": "x", "v": 1})],
                base.skey).close()
    assert failure(path, [base.vkey]).problem == "subject"


# --------------------------------------------------------------------------- keys


def test_key_rotation_needs_every_key(tmp_path: Path, policy_files: Policy) -> None:
    path = tmp_path / "rotated.db"
    db = connect(f"sqlite:///{path}")
    init_audit(db)
    old_skey, old_vkey = generate_key(ORIGIN)
    new_skey, new_vkey = generate_key(ORIGIN)  # same origin, a new key
    pseudonym = Pseudonymizer(secrets.token_bytes(32))
    fill(db, policy_files, Signer(old_skey), pseudonym, decisions=12, registry_changes=0)
    rotated_at = max(s for s, _ in AuditLog(db).checkpoints())
    fill(db, policy_files, Signer(new_skey), pseudonym, decisions=12, salt=3,
         registry_changes=0)
    log = AuditLog(db)
    sizes = [s for s, _ in log.checkpoints()]
    first_new = min(s for s in sizes if s > rotated_at)
    report = verify_log(log, [Verifier(old_vkey), Verifier(new_vkey)], batch_bits=2)
    assert report.size == log.size and report.checkpoints == len(sizes)
    assert len(report.keys) == 2
    with pytest.raises(AuditVerifyError) as only_old:
        verify_log(log, [Verifier(old_vkey)])
    assert (only_old.value.problem, only_old.value.checkpoint) == ("signature", first_new)
    with pytest.raises(AuditVerifyError) as only_new:
        verify_log(log, [Verifier(new_vkey)])
    assert (only_new.value.problem, only_new.value.checkpoint) == ("signature", sizes[0])
    _, stranger = generate_key("someone.else/log")
    with pytest.raises(AuditVerifyError):
        verify_log(log, [Verifier(stranger)])
    log.close()


# --------------------------------------------------------------------------- since


def _kept(base: Base, size: int) -> str:
    log = open_log(base.path)
    note = dict(log.checkpoints())[size]
    log.close()
    return note


def test_the_log_extends_a_kept_checkpoint(base: Base, copy: Any) -> None:
    for size in (base.checkpoints[0], base.checkpoints[4], base.checkpoints[-1]):
        report = verify(copy(), [base.vkey], since=_kept(base, size), batch_bits=2)
        assert report.since == size


@SETTINGS
@given(st.data())
def test_since_detects_a_truncation_that_removed_the_checkpoints_too(
        base: Base, copy: Any, data: st.DataObject) -> None:
    kept_size = data.draw(st.sampled_from(base.checkpoints[1:]), "kept")
    keep = data.draw(st.integers(0, kept_size - 1), "keep")
    path = copy()
    with attacker(path) as conn:
        rewrite(conn, stored_entries(conn)[:keep])
        conn.execute("DELETE FROM audit_checkpoints WHERE size > ?", (keep,))
    assert verify(path, [base.vkey]).size == keep  # nothing else shows it
    error = failure(path, [base.vkey], since=_kept(base, kept_size))
    assert (error.problem, error.checkpoint) == ("truncated", kept_size)


def test_since_detects_a_fork_signed_with_the_log_key(base: Base, tmp_path: Path) -> None:
    """The operator holds the key: it rebuilds a different log of the same size and signs
    it. The new log verifies on its own; only the auditor's kept checkpoint tells."""
    kept_size = base.checkpoints[2]
    kept = _kept(base, kept_size)
    path = tmp_path / "fork.db"
    db = connect(f"sqlite:///{path}")
    init_audit(db)
    fork = fill(db, base.policy, Signer(base.skey), base.pseudonym, decisions=37, salt=1)
    assert fork.size == base.size
    assert verify_log(fork, [Verifier(base.vkey)]).size == base.size
    with pytest.raises(AuditVerifyError) as caught:
        verify_log(fork, [Verifier(base.vkey)], since=kept)
    assert (caught.value.problem, caught.value.checkpoint) == ("since", kept_size)
    fork.close()


def test_a_kept_checkpoint_that_does_not_verify_is_refused(base: Base, copy: Any) -> None:
    other, _ = generate_key(ORIGIN)
    forged = sign_checkpoint(Checkpoint(ORIGIN, 5, b"\0" * 32), [Signer(other)])
    assert failure(copy(), [base.vkey], since=forged).problem == "since"
    elsewhere_skey, elsewhere_vkey = generate_key("someone.else/log")
    elsewhere = sign_checkpoint(Checkpoint("someone.else/log", 5, b"\0" * 32),
                                [Signer(elsewhere_skey)])
    error = failure(copy(), [base.vkey, elsewhere_vkey], since=elsewhere)
    assert error.problem == "since"
    assert failure(copy(), [base.vkey], since="not a note").problem == "since"


# --------------------------------------------------------------------------- an export


def test_an_exported_copy_verifies_offline(base: Base) -> None:
    log = open_log(base.path)
    entries = [data for _, data in log.entries()]
    notes = [note for _, note in log.checkpoints()]
    log.close()
    verifiers = [Verifier(base.vkey)]
    report = verify_entries(entries, notes, verifiers, since=notes[2], batch_bits=2)
    assert (report.size, report.checkpoints, report.since) == (base.size, len(notes),
                                                               base.checkpoints[2])
    altered = list(entries)
    altered[11] = altered[11].replace(b'"v":1', b'"v":2')
    with pytest.raises(AuditVerifyError) as caught:
        verify_entries(altered, notes, verifiers, batch_bits=2)
    assert caught.value.checkpoint == checkpoint_after(base, 11)
    with pytest.raises(AuditVerifyError) as short:
        verify_entries(entries[:7], notes, verifiers)
    assert short.value.problem == "truncated"


# --------------------------------------------------------------------------- PostgreSQL


def test_the_same_checks_on_postgresql(base: Base) -> None:
    import psycopg

    with postgres_schema() as url:
        db = connect(url)
        init_audit(db)
        log = fill(db, base.policy, Signer(base.skey), base.pseudonym, decisions=21)
        verifiers = [Verifier(base.vkey)]
        size = log.size
        sizes = [s for s, _ in log.checkpoints()]
        kept = log.checkpoints()[1][1]
        latest = log.latest_checkpoint()
        assert latest is not None and size > 12
        report = verify_log(log, verifiers, since=kept, batch_bits=2)
        assert (report.size, report.checkpoints, report.since) == (size, len(sizes), sizes[1])
        with psycopg.connect(url, autocommit=True) as conn:
            for table in ("audit_entries", "audit_nodes", "audit_checkpoints"):
                conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            entry = bytes(conn.execute("SELECT entry FROM audit_entries WHERE idx = 9")
                          .fetchone()[0])
            conn.execute("UPDATE audit_entries SET entry = %s WHERE idx = 9",
                         (entry.replace(b'"v":1', b'"v":2'),))
        with pytest.raises(AuditVerifyError) as altered:
            verify_log(log, verifiers, batch_bits=2)
        assert (altered.value.problem, altered.value.index) == ("altered", 9)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE audit_entries SET entry = %s WHERE idx = 9", (entry,))
            conn.execute("DELETE FROM audit_entries WHERE idx >= 12")
            conn.execute("DELETE FROM audit_nodes WHERE idx >= 0 AND (idx + 1) * "
                         "power(2, level) > 12")
            conn.execute("DELETE FROM audit_checkpoints WHERE size > 12")
            tree = CompactRange()
            for (data,) in conn.execute("SELECT entry FROM audit_entries ORDER BY idx"):
                tree.append(leaf_hash(bytes(data)))
            conn.execute("UPDATE audit_head SET size = 12, frontier = %s",
                         (",".join(h.hex() for h in tree.hashes),))
        assert verify_log(log, verifiers).size == 12  # nothing else shows it
        with pytest.raises(AuditVerifyError) as truncated:
            verify_log(log, verifiers, since=latest)
        assert (truncated.value.problem, truncated.value.checkpoint) == ("truncated", size)
        log.close()


def test_without_the_entry_check_tampering_is_still_named(base: Base, copy: Any) -> None:
    """`check_entries=False` (`--no-check-entries`) skips only the form of the entries."""
    path = copy()
    log = _append_raw(path, [canonical_entry({"kind": "decision", "subject": "adult-1",
                                              "v": 1})], base.skey)
    log.close()
    assert verify(path, [base.vkey], check_entries=False).size == base.size + 1
    assert failure(path, [base.vkey]).problem == "subject"
    with attacker(path) as conn:
        entry = bytearray(stored_entries(conn)[3])
        entry[5] ^= 1
        conn.execute("UPDATE audit_entries SET entry = ? WHERE idx = 3", (bytes(entry),))
    error = failure(path, [base.vkey], check_entries=False)
    assert (error.problem, error.index) == ("altered", 3)
