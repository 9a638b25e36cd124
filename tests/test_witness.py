"""Witness cosigning (issue 18): C2SP tlog-cosignature bytes, the tlog-witness
`add-checkpoint` protocol (status codes, `text/x.tlog.size`), fork and rollback refusals on
SQLite and PostgreSQL state, atomic check-and-persist under concurrent submissions, a
witness that restarts, and the log collecting cosignatures that `audit verify --quorum`
requires (the municipality, a care home and an NGO on loopback)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from flowguard._cli import cli
from flowguard.audit.checkpoint import Checkpoint, sign_checkpoint
from flowguard.audit.cosignature import (
    CosignatureVerifier,
    Cosigner,
    cosignature_message,
    generate_cosigner_key,
    verify_cosignatures,
)
from flowguard.audit.entries import write_secret
from flowguard.audit.log import AuditLog
from flowguard.audit.merkle import CompactRange, MemoryNodeStore, consistency_proof, leaf_hash
from flowguard.audit.note import (
    BadSignatureError,
    KeyFormatError,
    Signer,
    Verifier,
    generate_key,
    parse_note,
)
from flowguard.audit.trail import open_audit_log
from flowguard.witness.app import create_witness_app
from flowguard.witness.service import Witness
from flowguard.witness.state import WitnessState

ORIGIN = "audit.aalborg.test/flowguard"
DATA = Path(__file__).parent / "data" / "cosignature"


# --------------------------------------------------------------------------- helpers


class Tree:
    """An in-memory log: entries, signed checkpoints and consistency proofs."""

    def __init__(self, signer: Signer, entries: list[bytes]) -> None:
        self.signer = signer
        self.nodes = MemoryNodeStore()
        self.range = CompactRange()
        self.roots: dict[int, bytes] = {0: self.range.root()}
        for data in entries:
            self.add(data)

    def add(self, data: bytes) -> None:
        self.nodes.store(self.range.append(leaf_hash(data)))
        self.roots[self.range.size] = self.range.root()

    def note(self, size: int | None = None) -> str:
        size = self.range.size if size is None else size
        return sign_checkpoint(Checkpoint(self.signer.name, size, self.roots[size]),
                               [self.signer])

    def body(self, old: int, size: int | None = None, proof: list[bytes] | None = None) -> bytes:
        size = self.range.size if size is None else size
        if proof is None:
            proof = consistency_proof(old, size, self.nodes) if 0 < old < size else []
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
        return f"old {old}\n{lines}\n{self.note(size)}".encode()


def entries(n: int, tag: str = "honest") -> list[bytes]:
    return [f'{{"i":{i},"t":"{tag}"}}'.encode() for i in range(n)]


@pytest.fixture(scope="module")
def log_key() -> tuple[Signer, str]:
    skey, vkey = generate_key(ORIGIN)
    return Signer(skey), vkey


@pytest.fixture
def state_url(store_url: str) -> str:
    """Witness state on SQLite and on PostgreSQL (conftest's empty databases)."""
    return store_url


def make_witness(url: str, log_vkey: str, name: str = "witness.carehome.test/w1"
                 ) -> tuple[Witness, Cosigner]:
    skey, _ = generate_cosigner_key(name)
    cosigner = Cosigner(skey)
    return Witness(cosigner, {ORIGIN: [Verifier(log_vkey)]}, WitnessState.open(url)), cosigner


# --------------------------------------------------------------------------- cosignature bytes


def test_key_id_matches_a_published_cosignature_vkey() -> None:
    """transparency-dev/formats note/note_cosigv1_test.go: a native type-0x04 verifier key."""
    vkey = (DATA / "vkey.txt").read_text().strip()
    verifier = CosignatureVerifier(vkey)
    assert verifier.vkey == vkey
    name, hex_id, key64 = vkey.split("+")
    raw = base64.b64decode(key64)
    assert raw[0] == 0x04
    expected = hashlib.sha256(name.encode() + b"\n" + b"\x04" + raw[1:]).digest()[:4]
    assert int(hex_id, 16) == int.from_bytes(expected, "big") == verifier.key_id


def test_timestamp_layout_matches_a_published_cosignature() -> None:
    """The same file's TestCosignatureTimestamp: key hash, then a big-endian u64 time."""
    blob = base64.b64decode((DATA / "timestamp-signature.txt").read_text().strip())
    assert len(blob) == 4 + 8 + 64
    assert int.from_bytes(blob[4:12], "big") == 1727964367


def test_signed_message_is_the_spec_example() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cosignature_message(text, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")


def test_cosignature_round_trip_and_tamper(log_key: tuple[Signer, str]) -> None:
    signer, _ = log_key
    tree = Tree(signer, entries(5))
    skey, vkey = generate_cosigner_key("witness.ngo.test/w")
    cosigner = Cosigner(skey)
    note = tree.note()
    line = cosigner.cosign(parse_note(note).text, 1_700_000_000).line
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == cosigner.key_id.to_bytes(4, "big")
    assert raw[4:12] == (1_700_000_000).to_bytes(8, "big")
    found = verify_cosignatures(note + line, [CosignatureVerifier(vkey)])
    assert found[vkey].timestamp == 1_700_000_000
    # another root for the same size: the cosignature does not carry over
    forged = Tree(signer, entries(5, "forged")).note()
    with pytest.raises(BadSignatureError):
        verify_cosignatures(forged + line, [CosignatureVerifier(vkey)])
    # a log key (type 0x01) is not a cosignature key, and the other way round
    with pytest.raises(KeyFormatError):
        CosignatureVerifier(signer.vkey)
    with pytest.raises(KeyFormatError):
        Verifier(vkey)
    # unknown cosigners are ignored
    assert verify_cosignatures(note + line, []) == {}


# --------------------------------------------------------------------------- the protocol


def test_add_checkpoint_protocol(state_url: str, log_key: tuple[Signer, str]) -> None:
    signer, vkey = log_key
    witness, cosigner = make_witness(state_url, vkey)
    client = TestClient(create_witness_app(witness))
    tree = Tree(signer, entries(10))

    def post(body: bytes) -> tuple[int, str, str]:
        r = client.post("/add-checkpoint", content=body)
        return r.status_code, r.headers.get("content-type", ""), r.text

    status, _, text = post(tree.body(0, 6))
    assert status == 200
    assert verify_cosignatures(tree.note(6) + text, [cosigner.verifier()])
    # a stale old size: 409 with exactly text/x.tlog.size and the witness's size
    assert post(tree.body(0, 10)) == (409, "text/x.tlog.size", "6\n")
    assert post(tree.body(3, 10))[:3] == (409, "text/x.tlog.size", "6\n")
    # the same checkpoint again is cosigned again
    assert post(tree.body(6, 6))[0] == 200
    # a bad proof: 422, nothing cosigned, the state unchanged
    wrong = [hashlib.sha256(b"x").digest()] * len(consistency_proof(6, 10, tree.nodes))
    assert post(tree.body(6, 10, wrong))[0] == 422
    assert witness.state.latest(ORIGIN).size == 6  # type: ignore[union-attr]
    status, _, text = post(tree.body(6, 10))
    assert status == 200 and witness.state.latest(ORIGIN).size == 10  # type: ignore[union-attr]
    # unknown origin 404; a signature by a key not the log's 403
    other_skey, _ = generate_key("audit.elsewhere.test/log")
    other = Tree(Signer(other_skey), entries(3))
    assert post(other.body(0))[0] == 404
    impostor_skey, _ = generate_key(ORIGIN)  # same name, another key
    impostor = Tree(Signer(impostor_skey), entries(12))
    assert post(impostor.body(10))[0] == 403
    # malformed bodies: 400
    good = tree.body(10).decode()
    for bad in ["", "old 10\n", "old 010\n\n" + tree.note(), "new 10\n\n" + tree.note(),
                "old 10\n\n" + tree.note().replace("\n\n", "\n"), "old 10\nnot-base64\n\n"
                + tree.note(), "old 0\n" + base64.b64encode(b"a" * 32).decode() + "\n\n"
                + tree.note(), "old 10\n" + "AAAA\n" * 64 + "\n" + tree.note()]:
        assert post(bad.encode())[0] == 400, bad
    assert post(b"\xff\xfe")[0] == 400
    assert post(b"x" * 70_000)[0] == 400
    assert post(good.encode())[0] == 200
    assert client.get("/add-checkpoint").status_code == 405
    witness.state.close()


def test_fork_and_rollback_never_cosigned(state_url: str, log_key: tuple[Signer, str]) -> None:
    signer, vkey = log_key
    witness, _ = make_witness(state_url, vkey)
    honest = Tree(signer, entries(8))
    assert witness.add_checkpoint(honest.body(0)).status == 200
    # rewritten: same key, other entries, larger — its own proof from 8 does not verify
    rewritten = Tree(signer, entries(12, "rewritten"))
    assert witness.add_checkpoint(rewritten.body(8)).status == 422
    # forked at the same size: another root for a size already cosigned
    forked = Tree(signer, entries(8, "forked"))
    outcome = witness.add_checkpoint(forked.body(8))
    assert (outcome.status, outcome.body, outcome.content_type) == (409, "8\n",
                                                                    "text/x.tlog.size")
    # truncated: a smaller tree is never cosigned
    assert witness.add_checkpoint(honest.body(8, 5)).status == 400
    assert witness.add_checkpoint(honest.body(5, 5)).status == 409
    assert witness.add_checkpoint(honest.body(0, 5)).status == 409
    head = witness.state.latest(ORIGIN)
    assert head is not None and (head.size, head.root) == (8, honest.roots[8])
    # a restarted witness keeps its state
    witness.state.close()
    restarted, _ = make_witness(state_url, vkey)
    assert restarted.add_checkpoint(honest.body(0)).body == "8\n"
    honest.add(b"more")
    assert restarted.add_checkpoint(honest.body(8)).status == 200
    restarted.state.close()


@pytest.mark.parametrize("separate_connections", [False, True])
def test_concurrent_submissions_exactly_one_wins(state_url: str, log_key: tuple[Signer, str],
                                                 separate_connections: bool) -> None:
    signer, vkey = log_key
    first, _ = make_witness(state_url, vkey)
    witnesses = [first]
    if separate_connections:  # as several witness processes on one database
        witnesses += [Witness(first.cosigner, first.logs, WitnessState.open(state_url))
                      for _ in range(3)]
    tree = Tree(signer, entries(4))
    assert first.add_checkpoint(tree.body(0)).status == 200
    for n in range(5, 21):
        tree.add(f"{n}".encode())
    bodies = [tree.body(4, size) for size in range(5, 21)]
    for _round in range(2):
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda ib: witnesses[ib[0] % len(witnesses)]
                                     .add_checkpoint(ib[1]), enumerate(bodies)))
        winners = [o for o in outcomes if o.status == 200]
        assert len(winners) == 1 if _round == 0 else not winners
        assert all(o.status == 409 for o in outcomes if o.status != 200)
    head = first.state.latest(ORIGIN)
    assert head is not None and head.root == tree.roots[head.size]
    for w in witnesses:
        w.state.close()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30), st.booleans()),
                max_size=25))
def test_the_witness_only_moves_forward(tmp_path_factory: pytest.TempPathFactory,
                                        steps: list[tuple[int, int, bool]]) -> None:
    """Whatever is submitted (honest or forked trees, any old size), the witness's head
    only grows, always along the honest tree once it has cosigned it, and every 200 is a
    cosignature of the head it then holds."""
    skey, vkey = generate_key(ORIGIN)
    signer = Signer(skey)
    url = f"sqlite:///{tmp_path_factory.mktemp('w') / 'w.db'}"
    witness, cosigner = make_witness(url, vkey)
    honest, forked = Tree(signer, entries(31)), Tree(signer, entries(31, "forked"))
    held = 0
    for old, size, fork in steps:
        tree = forked if fork else honest
        proof = consistency_proof(old, size, tree.nodes) if 0 < old < size else []
        outcome = witness.add_checkpoint(tree.body(old, size, proof))
        head = witness.state.latest(ORIGIN)
        if outcome.status == 200:
            assert head is not None and head.size == size >= held
            assert verify_cosignatures(tree.note(size) + outcome.body, [cosigner.verifier()])
        assert (head.size if head else 0) >= held
        if head is not None and held:
            assert head.root in (honest.roots[head.size], forked.roots[head.size])
        held = head.size if head else 0
    witness.state.close()


# --------------------------------------------------------------------------- end to end


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    url: str
    vkey: str
    server: object
    thread: threading.Thread


@pytest.fixture
def witnesses(tmp_path: Path, log_key: tuple[Signer, str]) -> Iterator[list[Running]]:
    """A care home's and an NGO's witness, each a real server on loopback."""
    import uvicorn

    _, log_vkey = log_key
    running = []
    for name in ("witness.carehome.test/w1", "witness.ngo.test/w1"):
        skey, vkey = generate_cosigner_key(name)
        state = WitnessState.open(f"sqlite:///{tmp_path / (name.split('.')[1] + '.db')}")
        app = create_witness_app(Witness(Cosigner(skey), {ORIGIN: [Verifier(log_vkey)]}, state))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.02)
        running.append(Running(f"http://127.0.0.1:{port}", vkey, server, thread))
    yield running
    for r in running:
        r.server.should_exit = True  # type: ignore[attr-defined]
        r.thread.join(5)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def make_log(path: Path, key_file: Path, data: list[bytes]) -> str:
    url = f"sqlite:///{path}"
    log: AuditLog = open_audit_log(url, log_key=key_file)
    log.append_encoded(data)
    log.checkpoint()
    log.close()
    return url


def test_municipality_care_home_and_ngo(tmp_path: Path, log_key: tuple[Signer, str],
                                        witnesses: list[Running]) -> None:
    signer, vkey = log_key
    key_file = tmp_path / "log.key"
    write_secret(key_file, "PRIVATE+KEY+" + _skey_of(signer) + "\n")
    honest = make_log(tmp_path / "honest.db", key_file, entries(20))
    options = [f"--witness={w.url}={w.vkey}" for w in witnesses]
    quorum = ["--vkey", vkey, *(f"--witness-vkey={w.vkey}" for w in witnesses), "--quorum", "2"]

    result = run("audit", "verify", "--audit", honest, *quorum)
    assert result.exit_code == 1 and "0 valid cosignature(s)" in result.output
    result = run("audit", "witness", "--audit", honest, *options)
    assert result.exit_code == 0, result.output
    assert "2 of 2 witnesses cosigned" in result.output
    shown = run("audit", "checkpoint", "--audit", honest).output
    assert shown.count("\u2014 witness.") == 2
    found = verify_cosignatures(shown, [CosignatureVerifier(w.vkey) for w in witnesses])
    assert len(found) == 2
    result = run("audit", "verify", "--audit", honest, *quorum)
    assert result.exit_code == 0, result.output
    assert "cosigned by at least 2" in result.output

    # the log grows: the witnesses learn it through consistency proofs, signed first
    log = open_audit_log(honest, log_key=key_file)
    log.append_encoded(entries(5, "later"))
    log.close()
    result = run("audit", "witness", "--audit", honest, "--log-key", str(key_file), *options)
    assert result.exit_code == 0, result.output
    assert "checkpoint of 25 entries" in result.output
    assert run("audit", "verify", "--audit", honest, *quorum).exit_code == 0
    result = run("audit", "verify", "--audit", honest, *quorum, "--all-checkpoints")
    assert result.exit_code == 0, result.output  # both checkpoints were witnessed
    receipt = run("audit", "prove", "--audit", honest, "3").output
    assert receipt.count("\u2014 witness.") == 2
    (tmp_path / "receipt.txt").write_text(receipt)
    result = run("audit", "verify-receipt", str(tmp_path / "receipt.txt"), "--vkey", vkey,
                 "--audit", honest)
    assert result.exit_code == 0, result.output  # the log's verifier ignores witness lines
    witness_keys = [f"--witness-vkey={w.vkey}" for w in witnesses]
    result = run("audit", "verify-receipt", str(tmp_path / "receipt.txt"), "--vkey", vkey,
                 "--audit", honest, *witness_keys, "--quorum", "2")
    assert result.exit_code == 0 and "cosigned by at least 2" in result.output
    bare = _strip_cosignatures(receipt)
    (tmp_path / "bare.txt").write_text(bare)
    result = run("audit", "verify-receipt", str(tmp_path / "bare.txt"), "--vkey", vkey,
                 "--audit", honest, *witness_keys, "--quorum", "2")
    assert result.exit_code == 1 and "0 valid cosignature(s)" in result.output
    # an exported copy: the checkpoint files carry the cosignatures
    export = tmp_path / "export.txt"
    export.write_bytes(run("audit", "export", "--audit", honest).stdout_bytes)
    (tmp_path / "cp.txt").write_text(run("audit", "checkpoint", "--audit", honest).output)
    result = run("audit", "verify", "--entries", str(export), "--checkpoint",
                 str(tmp_path / "cp.txt"), "--vkey", vkey, *witness_keys, "--quorum", "2")
    assert result.exit_code == 0, result.output

    # a rewritten log (same key, other entries) and a truncated one are refused
    rewritten = make_log(tmp_path / "rewritten.db", key_file, entries(30, "rewritten"))
    result = run("audit", "witness", "--audit", rewritten, *options)
    assert result.exit_code == 1
    assert result.output.count("REFUSED") == 2 and "422" in result.output
    result = run("audit", "verify", "--audit", rewritten, *quorum)
    assert result.exit_code == 1 and "FAILED: the witness quorum is not met" in result.output
    truncated = make_log(tmp_path / "truncated.db", key_file, entries(20))
    result = run("audit", "witness", "--audit", truncated, *options)
    assert result.exit_code == 1 and "larger tree (25 entries)" in result.output
    assert run("audit", "verify", "--audit", truncated, *quorum).exit_code == 1
    # the honest log still passes
    assert run("audit", "verify", "--audit", honest, *quorum).exit_code == 0


def _strip_cosignatures(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith("\u2014 witness."))


def _skey_of(signer: Signer) -> str:
    seed = signer._key.private_bytes_raw()
    return f"{signer.name}+{signer.key_id:08x}+" + base64.b64encode(b"\x01" + seed).decode()


def test_bad_input_exits_2(tmp_path: Path) -> None:
    result = run("audit", "witness", "--audit", f"sqlite:///{tmp_path / 'x.db'}",
                 "--witness", "no-equals-sign")
    assert result.exit_code == 2 and "URL=VKEY" in result.output
    result = run("audit", "verify", "--audit", f"sqlite:///{tmp_path / 'x.db'}", "--vkey",
                 "a+00000000+AAAA", "--witness-vkey", "nonsense", "--quorum", "1")
    assert result.exit_code == 2 and "Traceback" not in result.output
    out = tmp_path / "w.key"
    result = run("witness", "keygen", "--name", "witness.ngo.test/w1", "--out", str(out))
    assert result.exit_code == 0
    assert (out.stat().st_mode & 0o777) == 0o600
    vkey = result.output.strip()
    assert CosignatureVerifier(vkey).vkey == vkey
    assert Cosigner(out.read_text().strip()).vkey == vkey
    assert run("witness", "keygen", "--name", "x", "--out", str(out)).exit_code == 2


# --------------------------------------------------------------------------- independent check

GO_SOURCE = Path(__file__).parent / "go" / "cosigverify"
GO_PATH = "/usr/share/gocode"  # Debian's golang-golang-x-mod-dev


@pytest.fixture(scope="module")
def go_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/go/cosigverify built with Go's golang.org/x/mod/sumdb/note."""
    go = shutil.which("go")
    note_package = Path(GO_PATH) / "src" / "golang.org" / "x" / "mod" / "sumdb" / "note"
    if go is None or not note_package.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but go or golang.org/x/mod is missing (apt golang-go "
                        "golang-golang-x-mod-dev; .ci/run installs them)")
        pytest.skip("the independent verifier needs go and golang-golang-x-mod-dev")
    out = tmp_path_factory.mktemp("go") / "cosigverify"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GO_PATH, "GOFLAGS": "",
           "GOCACHE": str(out.parent / "cache")}
    subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_SOURCE, env=env, check=True,
                   capture_output=True, timeout=300)
    return out


def test_cosigned_by_two_witnesses_verified_by_go(tmp_path: Path, go_verifier: Path,
                                                  log_key: tuple[Signer, str]) -> None:
    signer, vkey = log_key
    tree = Tree(signer, entries(9))
    url = f"sqlite:///{tmp_path / 'a.db'}"
    care_home, care_key = make_witness(url, vkey, "witness.carehome.test/w1")
    ngo, ngo_key = make_witness(f"sqlite:///{tmp_path / 'b.db'}", vkey, "witness.ngo.test/w1")
    lines = [w.add_checkpoint(tree.body(0)).body for w in (care_home, ngo)]
    cosigned = tmp_path / "cosigned.txt"
    cosigned.write_text(tree.note() + "".join(lines))
    keys = [vkey, care_key.vkey, ngo_key.vkey]
    result = subprocess.run([str(go_verifier), str(cosigned), *keys], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(line.split()[0] for line in result.stdout.splitlines()) == [
        "witness.carehome.test/w1", "witness.ngo.test/w1"]
    # the same cosignature lines on a forked checkpoint of the same size: Go refuses too
    forked = tmp_path / "forked.txt"
    forked.write_text(Tree(signer, entries(9, "forked")).note() + "".join(lines))
    result = subprocess.run([str(go_verifier), str(forked), *keys], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    # one witness only: the other's cosignature is missing
    single = tmp_path / "single.txt"
    single.write_text(tree.note() + lines[0])
    assert subprocess.run([str(go_verifier), str(single), *keys], capture_output=True,
                          timeout=60).returncode == 1
    care_home.state.close()
    ngo.state.close()


def test_serve_submits_every_checkpoint_and_serves_the_witnessed_one(
        tmp_path: Path, log_key: tuple[Signer, str], witnesses: list[Running]) -> None:
    from flowguard.audit.entries import generate_pseudonym_key
    from flowguard.server.app import ServerConfig, create_app
    from flowguard.server.tokens import new_token

    signer, _ = log_key
    key_file = tmp_path / "log.key"
    write_secret(key_file, "PRIVATE+KEY+" + _skey_of(signer) + "\n")
    pseudonym_key = tmp_path / "pseudonym.key"
    generate_pseudonym_key(pseudonym_key)
    secret, digest = new_token()
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f'{{"tokens": [{{"id": "auditor", "hash": "{digest}", '
                      '"organization": "aalborg-kommune", "scopes": ["audit:read"]}]}',
                      encoding="utf-8")
    tokens.chmod(0o600)
    config = ServerConfig(
        policy=str(Path(__file__).parent.parent / "policies" / "aalborg-aktiv"),
        tokens=str(tokens), audit=f"sqlite:///{tmp_path / 'audit.db'}", log_key=str(key_file),
        pseudonym_key=str(pseudonym_key),
        witnesses=tuple(f"{w.url}={w.vkey}" for w in witnesses), witness_quorum=2)
    headers = {"Authorization": f"Bearer {secret}"}
    app = create_app(config)
    with TestClient(app) as client:
        trail = app.state.service.trail
        trail.log.append_encoded(entries(7))
        trail.log.checkpoint()
        shown = ""
        for _ in range(250):
            answer = client.get("/v1/audit/checkpoint", headers=headers)
            shown = answer.text
            if answer.status_code == 200 and shown.split("\n")[1] == str(trail.log.size):
                break
            time.sleep(0.02)
    found = verify_cosignatures(shown, [CosignatureVerifier(w.vkey) for w in witnesses])
    assert len(found) == 2, shown
    assert Checkpoint.parse(parse_note(shown).text).size == 8  # the policy text, then 7
    with pytest.raises(Exception, match="--witness needs --audit"):
        create_app(ServerConfig(policy=config.policy, tokens=config.tokens,
                                witnesses=config.witnesses))


def test_stale_checkpoint_without_log_key_is_not_reported_as_success(
        tmp_path: Path, log_key: tuple[Signer, str], witnesses: list[Running]) -> None:
    """Issue 18 pins a fresh checkpoint first; without --log-key none can be signed, so the
    entries after the latest checkpoint are counted, --log-key named, and the exit is 1."""
    signer, _ = log_key
    key_file = tmp_path / "log.key"
    write_secret(key_file, "PRIVATE+KEY+" + _skey_of(signer) + "\n")
    honest = make_log(tmp_path / "honest.db", key_file, entries(25))
    options = [f"--witness={w.url}={w.vkey}" for w in witnesses]
    for grown, wording in ((1, "1 entry of the log is not covered by the latest checkpoint "
                               "(25 of 26)"),
                           (1, "2 entries of the log are not covered by the latest checkpoint "
                               "(25 of 27)")):
        log = open_audit_log(honest, log_key=key_file)
        log.append_encoded(entries(grown, f"later {wording[0]}"))
        log.close()
        result = run("audit", "witness", "--audit", honest, *options)
        assert result.exit_code == 1, result.output
        assert "checkpoint of 25 entries: 2 of 2 witnesses cosigned" in result.output
        assert wording in result.output and "pass --log-key" in result.output
    log = open_audit_log(honest, log_key=key_file)
    log.append_encoded(entries(1, "one more"))
    log.close()
    result = run("audit", "witness", "--audit", honest, "--log-key", str(key_file), *options)
    assert result.exit_code == 0, result.output
    assert "checkpoint of 28 entries: 2 of 2 witnesses cosigned" in result.output
    assert "not covered" not in result.output


def test_all_checkpoints_from_the_first_cosigned_one_on(
        tmp_path: Path, log_key: tuple[Signer, str], witnesses: list[Running]) -> None:
    """Checkpoints signed before the log had witnesses cannot carry cosignatures: with
    --all-checkpoints the quorum holds from the first cosigned one on, and the output says
    how many earlier ones were not checked; a gap after it still fails."""
    signer, vkey = log_key
    key_file = tmp_path / "log.key"
    write_secret(key_file, "PRIVATE+KEY+" + _skey_of(signer) + "\n")
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = open_audit_log(url, log_key=key_file)
    for batch in range(3):  # checkpoints at 10, 20 and 30 entries, before any witness
        log.append_encoded(entries(10, f"early {batch}"))
        log.checkpoint()
    log.close()
    options = [f"--witness={w.url}={w.vkey}" for w in witnesses]
    every = ["--vkey", vkey, *(f"--witness-vkey={w.vkey}" for w in witnesses), "--quorum", "2",
             "--all-checkpoints"]
    assert run("audit", "witness", "--audit", url, *options).exit_code == 0
    log = open_audit_log(url, log_key=key_file)
    log.append_encoded(entries(2, "later"))
    log.close()
    assert run("audit", "witness", "--audit", url, "--log-key", str(key_file),
               *options).exit_code == 0
    result = run("audit", "verify", "--audit", url, *every)
    assert result.exit_code == 0, result.output
    assert ("all 2 checkpoints from the first cosigned one (at 30 entries) on cosigned by at "
            "least 2 of the given witnesses; 2 earlier checkpoints, signed before the "
            "witnesses cosigned, not checked") in result.output
    # a checkpoint signed after the witnesses started but never submitted: fails
    log = open_audit_log(url, log_key=key_file)
    log.append_encoded(entries(1, "unwitnessed"))
    log.checkpoint()
    log.append_encoded(entries(1, "witnessed"))
    log.close()
    assert run("audit", "witness", "--audit", url, "--log-key", str(key_file),
               *options).exit_code == 0
    result = run("audit", "verify", "--audit", url, *every)
    assert result.exit_code == 1
    assert "the checkpoint of 33 entries: 0 valid cosignature(s)" in result.output
    # no checkpoint cosigned at all: the latest is checked, and fails
    bare = make_log(tmp_path / "bare.db", key_file, entries(5))
    result = run("audit", "verify", "--audit", bare, *every)
    assert result.exit_code == 1 and "the checkpoint of 5 entries" in result.output
