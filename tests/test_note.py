"""Signed notes, checkpoints and tlog-proof receipts: upstream conformance and tampering.

Conformance data (vendored byte-exact under tests/data/tlog/, see SOURCE.md there):
golang/mod sumdb/note (the PeterNeumann / EnochRoot keys and notes), golang/mod
sumdb/tlog (the go.sum tree text), transparency-dev/formats log (four key pairs, a
real sum.golang.org checkpoint signed by the real sumdb key, witness signatures on
it), and the C2SP signed-note, tlog-checkpoint and tlog-proof examples.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowguard.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    sign_checkpoint,
)
from flowguard.audit.merkle import (
    CompactRange,
    MemoryNodeStore,
    ProofError,
    inclusion_proof,
    leaf_hash,
)
from flowguard.audit.note import (
    AmbiguousKeyError,
    BadSignatureError,
    DuplicateSignatureError,
    KeyFormatError,
    MalformedNoteError,
    NoteError,
    Signature,
    Signer,
    UnverifiedNoteError,
    Verifier,
    generate_key,
    is_valid_key_name,
    key_id,
    open_note,
    parse_note,
    sign_note,
)
from flowguard.audit.receipt import (
    TLOG_PROOF_HEADER,
    Receipt,
    ReceiptError,
    make_receipt,
    parse_receipt,
    verify_receipt,
)
from flowguard.errors import FlowguardError

DATA = Path(__file__).parent / "data" / "tlog"
VECTORS: dict[str, Any] = json.loads((DATA / "vectors.json").read_text(encoding="utf-8"))
GO = VECTORS["golang_note"]
FORMATS = VECTORS["formats_log"]
EXAMPLES = VECTORS["c2sp_examples"]
EM = "\u2014"

PETER_VKEY = GO["peter_verifier_key"]
PETER_SKEY = GO["peter_signer_key"]
ENOCH_VKEY = GO["enoch_verifier_key"]
TEXT = GO["text"]
PETER_SIG = GO["peter_signature_line"] + "\n"
ENOCH_SIG = GO["enoch_signature_line"] + "\n"


def peter() -> Verifier:
    return Verifier(PETER_VKEY)


def enoch() -> Verifier:
    return Verifier(ENOCH_VKEY)


# ------------------------------------------------------- the transcription matches the originals


def test_vectors_json_matches_vendored_go_note_tests() -> None:
    src = (DATA / "golang-mod" / "sumdb" / "note" / "note_test.go").read_text(encoding="utf-8")
    assert f'vkey := "{PETER_VKEY}"' in src and f'skey := "{PETER_SKEY}"' in src
    assert f'enochKey := "{ENOCH_VKEY}"' in src
    assert f"want := `{GO['signed_note']}`" in src
    assert GO["signed_note"] == TEXT + "\n" + PETER_SIG
    assert f'peterSig := "{GO["peter_signature_line"]}\\n"' in src
    assert f'enochSig := "{GO["enoch_signature_line"]}\\n"' in src
    fmt = (DATA / "transparency-dev-formats" / "log" / "note_test.go").read_text(encoding="utf-8")
    for pair in FORMATS["key_pairs"].values():
        assert f'"{pair["verifier_key"]}"' in fmt and f'"{pair["signer_key"]}"' in fmt
    assert f"noteString := `{FORMATS['sumdb_checkpoint_note']}`" in fmt
    for line in FORMATS["extra_signature_lines_on_sumdb_note"]:
        assert f'"{line}"' in fmt
    spec = (DATA / "c2sp" / "signed-note.md").read_text(encoding="utf-8")
    assert f"```\n{EXAMPLES['signed_note']['note']}```" in spec
    spec = (DATA / "c2sp" / "tlog-checkpoint.md").read_text(encoding="utf-8")
    assert f"```\n{EXAMPLES['checkpoint']['note']}```" in spec
    spec = (DATA / "c2sp" / "tlog-proof.md").read_text(encoding="utf-8")
    assert f"```\n{EXAMPLES['tlog_proof']['text']}```" in spec


# -------------------------------------------------------------------------------- keys


def test_peter_neumann_keys() -> None:
    signer, verifier = Signer(PETER_SKEY), peter()
    assert signer.name == verifier.name == "PeterNeumann"
    assert signer.key_id == verifier.key_id == int(GO["peter_key_id"], 16) == 0xC74F20A3
    assert signer.vkey == verifier.vkey == PETER_VKEY
    assert key_id("PeterNeumann", verifier.public_key) == 0xC74F20A3
    assert enoch().key_id == int(GO["enoch_key_id"], 16)
    assert "AYEKFALV" not in repr(signer)  # never show the seed


@pytest.mark.parametrize("name", sorted(FORMATS["key_pairs"]))
def test_transparency_dev_key_pairs(name: str) -> None:
    pair = FORMATS["key_pairs"][name]
    signer = Signer(pair["signer_key"])
    assert signer.vkey == pair["verifier_key"]
    assert Verifier(pair["verifier_key"]).key_id == signer.key_id
    assert pair["verifier_key"].split("+")[1] == f"{signer.key_id:08x}"


def test_real_sumdb_key() -> None:
    v = Verifier(FORMATS["sumdb_verifier_key"])
    assert (v.name, v.key_id) == ("sum.golang.org", 0x033DE0AE)
    for vkey in FORMATS["other_verifier_keys"]:
        assert Verifier(vkey).vkey == vkey


def test_mangled_verifier_keys_are_rejected() -> None:
    """golang/mod TestNewVerifier: every proper substring and every byte increment fails."""
    b = PETER_VKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(KeyFormatError):
                    Verifier(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(KeyFormatError):
            Verifier(mangled.decode())
    for bad in GO["bad_verifier_keys"]:
        with pytest.raises(KeyFormatError):
            Verifier(bad)


def test_mangled_signer_keys_are_rejected() -> None:
    """golang/mod TestNewSigner."""
    b = PETER_SKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(KeyFormatError):
                    Signer(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(KeyFormatError):
            Signer(mangled.decode())


def test_generate_key_round_trip() -> None:
    skey, vkey = generate_key("example.com/audit-log")
    signer, verifier = Signer(skey), Verifier(vkey)
    assert skey.startswith("PRIVATE+KEY+example.com/audit-log+")
    assert signer.vkey == vkey and signer.key_id == verifier.key_id
    sig = signer.sign(b"hi")
    assert verifier.verify(b"hi", sig)
    assert not verifier.verify(b"hj", sig)
    assert not verifier.verify(b"hi", bytes([sig[0] ^ 1]) + sig[1:])
    assert not verifier.verify(b"hi", sig[:63])
    assert Verifier.from_public_key("example.com/audit-log", verifier.public_key).vkey == vkey
    assert generate_key("example.com/audit-log") != (skey, vkey)


@pytest.mark.parametrize(
    "name", ["", "a+b", "a b", "tab\there", "nbsp\xa0x", "line\u2028sep", "ideo\u3000x", "ctl\x01"]
)
def test_invalid_key_names(name: str) -> None:
    assert not is_valid_key_name(name)
    with pytest.raises(KeyFormatError):
        generate_key(name)


def test_unsupported_key_types_are_rejected() -> None:
    pub = peter().public_key
    for alg in (0x02, 0x04, 0xFF):
        raw = bytes([alg]) + pub
        vkey = (
            f"PeterNeumann+{key_id('PeterNeumann', pub, alg):08x}+{base64.b64encode(raw).decode()}"
        )
        with pytest.raises(KeyFormatError, match="unsupported signature type"):
            Verifier(vkey)


# ---------------------------------------------------------------------------- signing


def test_signing_reproduces_the_go_signature_byte_exactly() -> None:
    assert sign_note(TEXT, [Signer(PETER_SKEY)]) == GO["signed_note"]


def test_note_with_two_signers() -> None:
    skey, vkey = generate_key("EnochRoot")
    note = sign_note(TEXT, [Signer(PETER_SKEY), Signer(skey)])
    assert note.startswith(GO["signed_note"])
    text, sigs = open_note(note, [peter(), Verifier(vkey)])
    assert text == TEXT and [s.name for s in sigs] == ["PeterNeumann", "EnochRoot"]


def test_sign_note_rejects_bad_input() -> None:
    signer = Signer(PETER_SKEY)
    with pytest.raises(MalformedNoteError, match="newline"):
        sign_note("abc", [signer])
    with pytest.raises(MalformedNoteError, match="control character"):
        sign_note("a\tb\n", [signer])
    with pytest.raises(MalformedNoteError):
        sign_note("a\ud800b\n", [signer])
    with pytest.raises(DuplicateSignatureError):
        sign_note(TEXT, [signer, Signer(PETER_SKEY)])
    with pytest.raises(ValueError):
        sign_note(TEXT, [])


# ---------------------------------------------------------------------------- opening


def test_open_the_go_note() -> None:
    text, sigs = open_note(GO["signed_note"], [peter()])
    assert text == TEXT
    assert sigs == [Signature("PeterNeumann", 0xC74F20A3, PETER_SIG[len(EM) + 14 : -1])]
    assert sigs[0].line == PETER_SIG
    assert len(sigs[0].signature) == 64
    assert open_note(GO["signed_note"].encode(), [peter()]) == (text, sigs)


def test_go_open_cases() -> None:
    """golang/mod TestOpen, case by case."""
    msg = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    # One signature verified, the other by an unknown key: ignored.
    text, sigs = open_note(msg, [peter()])
    assert text == TEXT and [s.name for s in sigs] == ["PeterNeumann"]
    # Both verified.
    _, sigs = open_note(msg, [peter(), enoch()])
    assert [s.name for s in sigs] == ["PeterNeumann", "EnochRoot"]
    # Neither known: rejected, with the unverified note attached.
    with pytest.raises(UnverifiedNoteError, match="no verifiable signatures") as info:
        open_note(msg, [])
    assert [s.name for s in info.value.note.signatures] == ["PeterNeumann", "EnochRoot"]
    # Duplicated verifier, used: ambiguous.
    with pytest.raises(AmbiguousKeyError, match=r"EnochRoot\+af0cfe78"):
        open_note(TEXT + "\n" + ENOCH_SIG, [enoch(), peter(), enoch()])
    # Duplicated verifier, unused: fine.
    open_note(TEXT + "\n" + PETER_SIG, [enoch(), peter(), enoch()])
    # Too many signatures.
    for verifiers in ([peter()], []):
        with pytest.raises(MalformedNoteError, match="more than 100"):
            open_note(TEXT + "\n" + PETER_SIG * 101, verifiers)
    # Invalid signature by a known key.
    with pytest.raises(
        BadSignatureError, match=r"invalid signature for key PeterNeumann\+c74f20a3"
    ):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [peter()])
    # Repeated identical lines count once; unknown ones are ignored.
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    _, sigs = open_note(
        TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd, [peter()]
    )
    assert [s.name for s in sigs] == ["PeterNeumann"]
    with pytest.raises(UnverifiedNoteError) as info:
        open_note(TEXT + "\n" + ENOCH_SIG + ENOCH_SIG + enoch_abcd, [peter()])
    assert len(info.value.note.signatures) == 2


BAD_MESSAGES: list[str | bytes] = [
    TEXT,
    TEXT + "\n",
    TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + TEXT + "\n" + PETER_SIG,
    b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
    TEXT + "\n" + f"{EM} Bad Name " + PETER_SIG.split(" ")[2],
    TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    # Beyond the Go table:
    TEXT + "\n" + PETER_SIG.replace(EM, "-"),
    TEXT + "\n" + PETER_SIG.replace(EM + " ", EM),
    TEXT + "\n" + PETER_SIG.replace(" x08g", "  x08g"),
    TEXT + "\n" + PETER_SIG.replace("AM=", "AN="),  # non-canonical base64 (padding bits)
    TEXT + "\n" + PETER_SIG.replace("AM=", "AM"),  # unpadded
    TEXT + "\n" + f"{EM} PeterNeumann xw==\n",  # shorter than a key ID and one byte
    TEXT + "\n" + f"{EM} PeterNeumann \n",
    TEXT + "\n" + f"{EM} a+b " + PETER_SIG.split(" ")[2],
    TEXT + "\r\n" + PETER_SIG,
    "a\ud800\n\n" + PETER_SIG,
    "",
]


@pytest.mark.parametrize("msg", BAD_MESSAGES, ids=range(len(BAD_MESSAGES)))
def test_malformed_notes_are_rejected(msg: str | bytes) -> None:
    with pytest.raises(MalformedNoteError):
        open_note(msg, [peter()])


def test_tampering_with_a_signed_note() -> None:
    note = GO["signed_note"]
    with pytest.raises(BadSignatureError):
        open_note(note.replace("cryptography", "cryptographY"), [peter()])
    with pytest.raises(BadSignatureError):
        open_note(note.replace("problem is.", "problem was."), [peter()])
    with pytest.raises(BadSignatureError):
        open_note("Prefix.\n" + note, [peter()])
    with pytest.raises(BadSignatureError):  # the last blank line separates: text changes
        open_note(TEXT + "\n\n" + PETER_SIG, [peter()])
    sig = base64.b64decode(PETER_SIG.split(" ")[2])
    for i in range(4, len(sig)):
        forged = base64.b64encode(sig[:i] + bytes([sig[i] ^ 0x10]) + sig[i + 1 :]).decode()
        with pytest.raises(BadSignatureError):
            open_note(f"{TEXT}\n{EM} PeterNeumann {forged}\n", [peter()])
    # A changed key ID makes it an unknown key's signature: ignored, so unverified.
    forged = base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()
    with pytest.raises(UnverifiedNoteError):
        open_note(f"{TEXT}\n{EM} PeterNeumann {forged}\n", [peter()])


def test_unknown_keys_sharing_a_name_or_an_id_are_ignored() -> None:
    """Spec: ignore signatures from unknown keys even if they share a name OR an ID."""
    same_name_skey, same_name_vkey = generate_key("PeterNeumann")  # same name, other ID
    note = sign_note(TEXT, [Signer(same_name_skey)])
    with pytest.raises(UnverifiedNoteError):
        open_note(note, [peter()])
    same_id_line = f"{EM} Impostor {PETER_SIG.split(' ')[2]}"  # same ID, other name
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + same_id_line, [peter()])
    _, sigs = open_note(note + same_id_line + PETER_SIG, [peter()])
    assert [s.name for s in sigs] == ["PeterNeumann"]
    _, sigs = open_note(note, [peter(), Verifier(same_name_vkey)])
    assert sigs[0].key_id != 0xC74F20A3


def test_two_different_signatures_by_one_known_key_are_rejected() -> None:
    other = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(DuplicateSignatureError, match=r"PeterNeumann\+c74f20a3"):
        open_note(TEXT + "\n" + PETER_SIG + other, [peter()])
    with pytest.raises(BadSignatureError):
        open_note(TEXT + "\n" + other + PETER_SIG, [peter()])


def test_at_least_sixteen_signatures_are_accepted() -> None:
    keys = [generate_key(f"witness{i}.example") for i in range(16)]
    note = sign_note(TEXT, [Signer(s) for s, _ in keys])
    _, sigs = open_note(note, [Verifier(v) for _, v in keys])
    assert len(sigs) == 16


def test_the_c2sp_spec_example_note() -> None:
    """The spec's example: the text keeps its inner blank line; its key is not known."""
    example = EXAMPLES["signed_note"]
    parsed = parse_note(example["note"])
    assert parsed.text == (
        "Ognuno sta solo sul cuor della terra\n"
        "trafitto da un raggio di sole:\n"
        "\n"
        "ed è subito sera.\n"
    )
    assert [s.name for s in parsed.signatures] == [example["key_name"]]
    with pytest.raises(UnverifiedNoteError):
        open_note(example["note"], [peter()])
    _, vkey = generate_key(example["key_name"])
    with pytest.raises(UnverifiedNoteError):
        open_note(example["note"], [Verifier(vkey)])


def test_real_sumdb_note_with_witness_signatures() -> None:
    """The formats BenchmarkParse note: sum.golang.org plus three known cosigners."""
    note = FORMATS["sumdb_checkpoint_note"] + "".join(
        line + "\n" for line in FORMATS["extra_signature_lines_on_sumdb_note"]
    )
    verifiers = [Verifier(FORMATS["sumdb_verifier_key"])]
    verifiers += [Verifier(v) for v in FORMATS["other_verifier_keys"]]
    _, sigs = open_note(note, verifiers)
    assert [s.name for s in sigs] == ["sum.golang.org", "monkeys", "bananas", "witness"]
    monkeys = [v for v in verifiers if v.name == "monkeys"]
    _, sigs = open_note(note, verifiers[:1] + monkeys)  # the others are now unknown
    assert [s.name for s in sigs] == ["sum.golang.org", "monkeys"]


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(min_codepoint=0x20, exclude_categories=["Cs"])), st.data())
def test_sign_open_round_trip_and_any_text_change_is_caught(body: str, data: st.DataObject) -> None:
    text = body.replace("\x7f", "") + "\n"
    signer = Signer(PETER_SKEY)
    note = sign_note(text, [signer])
    assert open_note(note, [peter()]) == (text, [parse_note(note).signatures[0]])
    assert parse_note(note).text == text
    i = data.draw(st.integers(0, len(text) - 1))
    changed = text[:i] + ("y" if text[i] != "y" else "z") + text[i + 1 :]
    with pytest.raises(NoteError):
        open_note(changed + note[len(text) :], [peter()])


def test_errors_are_typed_flowguard_errors() -> None:
    for cls in (
        MalformedNoteError,
        BadSignatureError,
        UnverifiedNoteError,
        DuplicateSignatureError,
        AmbiguousKeyError,
        KeyFormatError,
    ):
        assert issubclass(cls, NoteError) and issubclass(cls, FlowguardError)
    for cls in (CheckpointError, ReceiptError, ProofError):
        assert issubclass(cls, FlowguardError)


# ------------------------------------------------------------------------------ checkpoints

LOG = "example.com/flowguard-audit"
ROOT = leaf_hash(b"hello world")


def test_checkpoint_text_round_trip() -> None:
    cp = Checkpoint(LOG, 42, ROOT)
    text = cp.to_text()
    assert text == f"{LOG}\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert Checkpoint.parse(text) == cp
    ext = Checkpoint(LOG, 0, ROOT, ("ext one", "ext two"))
    assert Checkpoint.parse(ext.to_text()) == ext
    assert ext.to_text().endswith("\next one\next two\n")


def test_go_sumdb_tree_text() -> None:
    """golang/mod TestFormatTree / TestParseTree golden text."""
    vec = VECTORS["sumdb_tree_text"]
    cp = Checkpoint.parse(vec["text"])
    assert (cp.origin, cp.size) == ("go.sum database tree", vec["size"])
    assert cp.root_hash == leaf_hash(vec["root_is_leaf_hash_of_ascii"].encode())
    assert Checkpoint("go.sum database tree", vec["size"], cp.root_hash).to_text() == vec["text"]
    for bad in vec["bad_texts"]:
        with pytest.raises(CheckpointError):
            Checkpoint.parse(bad)
    # Go's sumdb parser ignores trailing junk; tlog-checkpoint makes it extension lines,
    # which must be complete (newline-terminated) and non-empty.
    assert Checkpoint.parse(vec["text"] + "JOE\n").extensions == ("JOE",)
    for junk in ("JOE", "\n", "JOE\n\n"):
        with pytest.raises(CheckpointError):
            Checkpoint.parse(vec["text"] + junk)


def test_the_c2sp_spec_example_checkpoint() -> None:
    example = EXAMPLES["checkpoint"]
    note = parse_note(example["note"])
    cp = Checkpoint.parse(note.text)
    assert (cp.origin, cp.size) == (example["origin"], example["size"])
    assert cp.root_hash == base64.b64decode(example["root_hash_b64"])
    assert cp.to_text() == note.text
    assert note.signatures[0].name == cp.origin  # the spec's key-name convention
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(example["note"], [peter()])


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n1\n",
        "\n1\n{root}\n",
        "origin\n01\n{root}\n",
        "origin\n-1\n{root}\n",
        "origin\n+1\n{root}\n",
        "origin\n 1\n{root}\n",
        "origin\n1 \n{root}\n",
        "origin\n0x10\n{root}\n",
        "origin\n\u0661\n{root}\n",  # a non-ASCII digit
        "origin\n18446744073709551616\n{root}\n",
        "origin\n1\n{root}",
        "origin\n1\n{root}\n\n",
        "origin\n1\n{root}\next\n\n",
        "origin\n1\nYmFuYW5hcw==\n",  # not 32 bytes
        "origin\n1\n{root_noncanonical}\n",
        "origin\n1\n{root_unpadded}\n",
        "origin\n1\n{root} \n",
        "ori\tgin\n1\n{root}\n",
    ],
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    root_b64 = base64.b64encode(ROOT).decode()
    noncanonical = root_b64[:-2] + chr(ord(root_b64[-2]) + 1) + "="
    assert base64.b64decode(noncanonical) == ROOT  # same bytes, padding bits set
    text = text.format(root=root_b64, root_noncanonical=noncanonical, root_unpadded=root_b64[:-1])
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


def test_checkpoint_field_validation() -> None:
    assert Checkpoint.parse(Checkpoint(LOG, 2**64 - 1, ROOT).to_text()).size == 2**64 - 1
    bad: list[tuple[Any, ...]] = [
        ("", 1, ROOT),
        ("two\nlines", 1, ROOT),
        (LOG, -1, ROOT),
        (LOG, 2**64, ROOT),
        (LOG, True, ROOT),
        (LOG, 1, ROOT[:31]),
        (LOG, 1, ROOT, ("",)),
        (LOG, 1, ROOT, ("a\nb",)),
    ]
    for args in bad:
        with pytest.raises(CheckpointError):
            Checkpoint(*args)


@settings(deadline=None, max_examples=100)
@given(
    st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1)),
)
def test_checkpoint_round_trip_property(
    origin: str, size: int, root_hash: bytes, ext: list[str]
) -> None:
    cp = Checkpoint(origin, size, root_hash, tuple(ext))
    assert Checkpoint.parse(cp.to_text()) == cp


def test_real_sumdb_checkpoint() -> None:
    """transparency-dev/formats TestSumDBNoteParsing: a real sum.golang.org checkpoint.

    sum.golang.org's key name is not its origin, so the log key name is given.
    """
    note, key = FORMATS["sumdb_checkpoint_note"], Verifier(FORMATS["sumdb_verifier_key"])
    cp = open_checkpoint(note, [key], origin=FORMATS["sumdb_origin"], log_key_name="sum.golang.org")
    assert (cp.origin, cp.size) == (FORMATS["sumdb_origin"], FORMATS["sumdb_size"])
    with pytest.raises(CheckpointError, match="expected"):
        open_checkpoint(
            note, [key], origin="Go rocks but I might have the wrong ID", log_key_name=key.name
        )
    with pytest.raises(CheckpointError, match="log key"):
        open_checkpoint(note, [key])  # default convention: key name == origin
    with pytest.raises(BadSignatureError):
        open_checkpoint(note.replace("6476701", "6476702"), [key], log_key_name=key.name)


def _formats_keys() -> dict[str, tuple[Signer, Verifier]]:
    return {
        name: (Signer(pair["signer_key"]), Verifier(pair["verifier_key"]))
        for name, pair in FORMATS["key_pairs"].items()
    }


@pytest.mark.parametrize(
    ("signers", "origin", "want_error", "want_sigs"),
    [
        # transparency-dev/formats TestParseCheckpoint, with a 32-byte root hash.
        (["log"], "TestParseCheckpoint", None, 1),
        (["log", "known1"], "TestParseCheckpoint", None, 2),
        (["log", "known1", "unknown"], "TestParseCheckpoint", None, 2),
        (["log", "known1", "known2"], "TestParseCheckpoint", None, 3),
        (["known2", "log", "known1"], "TestParseCheckpoint", None, 3),
        (["log", "known1", "known2", "unknown"], "TestParseCheckpoint", None, 3),
        (["known1", "known2"], "TestParseCheckpoint", CheckpointError, 2),
        (["unknown"], "TestParseCheckpoint", UnverifiedNoteError, 0),
        (["log", "known1", "known2", "unknown"], "not the logID", CheckpointError, 3),
    ],
)
def test_formats_parse_checkpoint_table(
    signers: list[str], origin: str, want_error: type[Exception] | None, want_sigs: int
) -> None:
    keys = _formats_keys()
    body = Checkpoint("TestParseCheckpoint", 42, ROOT).to_text()
    note = sign_note(body, [keys[s][0] for s in signers])
    verifiers = [keys[n][1] for n in ("log", "known1", "known2")]
    _, sigs = open_note(note, verifiers) if want_sigs else (None, [])
    assert len(sigs) == want_sigs
    if want_error is None:
        cp = open_checkpoint(note, verifiers, origin=origin, log_key_name="Log")
        assert cp == Checkpoint("TestParseCheckpoint", 42, ROOT)
    else:
        with pytest.raises(want_error):
            open_checkpoint(note, verifiers, origin=origin, log_key_name="Log")


def test_bad_body_good_signature() -> None:
    keys = _formats_keys()
    note = sign_note("if this is a valid checkpoint then I'll eat my hat\n", [keys["log"][0]])
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        open_checkpoint(note, [keys["log"][1]], log_key_name="Log")


def test_sign_and_open_checkpoint_with_the_origin_convention() -> None:
    skey, vkey = generate_key(LOG)
    w_skey, w_vkey = generate_key("witness.example")
    cp = Checkpoint(LOG, 7, ROOT)
    note = sign_checkpoint(cp, [Signer(skey), Signer(w_skey)])
    assert open_checkpoint(note, [Verifier(vkey)], origin=LOG) == cp
    assert open_checkpoint(note, [Verifier(vkey), Verifier(w_vkey)]) == cp
    with pytest.raises(CheckpointError, match="log key"):
        open_checkpoint(note, [Verifier(w_vkey)])  # a witness alone is not the log
    with pytest.raises(CheckpointError, match="no signer is the log key"):
        sign_checkpoint(cp, [Signer(w_skey)])
    assert sign_checkpoint(cp, [Signer(w_skey)], log_key_name="witness.example")
    with pytest.raises(CheckpointError, match="expected"):
        open_checkpoint(note, [Verifier(vkey)], origin="example.com/other")
    tampered = note.replace("\n7\n", "\n8\n")
    with pytest.raises(BadSignatureError):
        open_checkpoint(tampered, [Verifier(vkey)])


# -------------------------------------------------------------------------------- receipts


def test_the_c2sp_spec_example_receipt() -> None:
    """The tlog-proof example parses and re-serialises byte-exactly.

    Its signatures are elided (``[...]``) in the spec, so it cannot verify.
    """
    example = EXAMPLES["tlog_proof"]
    receipt = parse_receipt(example["text"])
    assert receipt.index == example["index"]
    assert receipt.extra == base64.b64decode(example["extra_b64"])
    assert receipt.extra is not None and receipt.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert [base64.b64encode(p).decode() for p in receipt.proof] == example["proof_b64"]
    cp = receipt.checkpoint
    assert (cp.origin, cp.size) == (example["origin"], example["size"])
    assert cp.root_hash == base64.b64decode(example["root_hash_b64"])
    assert receipt.to_text() == example["text"]
    assert receipt.checkpoint_note.endswith(f"{EM} witness3.example S4X82uH5[...]3oEcROGLFQ==\n")
    with pytest.raises(MalformedNoteError):
        verify_receipt(example["text"], [peter()], leaf_hash=ROOT)


@pytest.fixture(scope="module")
def audit_log() -> dict[str, Any]:
    skey, vkey = generate_key(LOG)
    entries = [json.dumps({"seq": i, "decision": "permit"}).encode() for i in range(37)]
    store, rng = MemoryNodeStore(), CompactRange()
    for entry in entries:
        store.store(rng.append(leaf_hash(entry)))
    note = sign_checkpoint(Checkpoint(LOG, rng.size, rng.root()), [Signer(skey)])
    return {"entries": entries, "store": store, "note": note, "verifier": Verifier(vkey)}


def test_receipts_for_every_entry_verify(audit_log: dict[str, Any]) -> None:
    entries, store, note = audit_log["entries"], audit_log["store"], audit_log["note"]
    for i, entry in enumerate(entries):
        text = make_receipt(i, entry, inclusion_proof(i, len(entries), store), note)
        assert text.startswith(TLOG_PROOF_HEADER + f"\nindex {i}\n")
        assert text.endswith("\n\n" + note)
        got = verify_receipt(text, [audit_log["verifier"]], entry=entry, origin=LOG)
        assert (got.index, got.leaf_hash, got.extra) == (i, leaf_hash(entry), None)
        assert got.checkpoint == Checkpoint.parse(parse_note(note).text)
        assert parse_receipt(text).to_text() == text


def test_receipt_with_extra_data_and_leaf_hash(audit_log: dict[str, Any]) -> None:
    entries, store, note = audit_log["entries"], audit_log["store"], audit_log["note"]
    proof = inclusion_proof(5, len(entries), store)
    text = make_receipt(5, None, proof, note, leaf_hash=leaf_hash(entries[5]), extra=b"\x00ctx")
    assert text.splitlines()[1] == "extra " + base64.b64encode(b"\x00ctx").decode()
    got = verify_receipt(text, [audit_log["verifier"]], leaf_hash=leaf_hash(entries[5]))
    assert got.extra == b"\x00ctx"
    assert parse_receipt(make_receipt(5, entries[5], proof, note, extra=b"")).extra == b""


def test_tampered_receipts_are_rejected(audit_log: dict[str, Any]) -> None:
    entries, store, note = audit_log["entries"], audit_log["store"], audit_log["note"]
    verifier = audit_log["verifier"]
    text = make_receipt(9, entries[9], inclusion_proof(9, len(entries), store), note)
    with pytest.raises(ProofError):
        verify_receipt(text, [verifier], entry=entries[10])
    with pytest.raises(ProofError):
        verify_receipt(text.replace("index 9\n", "index 8\n"), [verifier], entry=entries[9])
    lines = text.split("\n")
    proof_line = lines[2]
    flipped = base64.b64encode(bytes([base64.b64decode(proof_line)[0] ^ 1])).decode()[:2]
    bad = text.replace(proof_line, flipped + proof_line[2:], 1)
    with pytest.raises(ProofError):
        verify_receipt(bad, [verifier], entry=entries[9])
    with pytest.raises(ProofError):
        verify_receipt(text.replace(proof_line + "\n", "", 1), [verifier], entry=entries[9])
    with pytest.raises(BadSignatureError):
        verify_receipt(text.replace(f"\n{len(entries)}\n", "\n36\n"), [verifier], entry=entries[9])
    _, other = generate_key(LOG)
    with pytest.raises(UnverifiedNoteError):
        verify_receipt(text, [Verifier(other)], entry=entries[9])
    with pytest.raises(CheckpointError):
        verify_receipt(text, [verifier], entry=entries[9], origin="example.com/elsewhere")
    with pytest.raises(ValueError):
        verify_receipt(text, [verifier])


@pytest.mark.parametrize(
    "text",
    [
        # transparency-dev/merkle TestVerifyTLogProofErrors:
        "wrong-header\nindex 0\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n" + base64.b64encode(bytes(64)).decode() + "\n\ncp\n",
        # more:
        "c2sp.org/tlog-proof@v1\nindex 01\n\n{cp}",
        "c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\n{cp}",
        "c2sp.org/tlog-proof@v1\nindex 1\n{h}\n",
        "c2sp.org/tlog-proof@v1\nindex 1\n{h}\n\n",
        "c2sp.org/tlog-proof@v1\nindex 1\n{h}",
        "c2sp.org/tlog-proof@v2\nindex 1\n\n{cp}",
        "c2sp.org/tlog-proof@v1\nindex 1\nextra AA==\n\n{cp}",
        "c2sp.org/tlog-proof@v1\nextra\nindex 1\n\n{cp}",
        "c2sp.org/tlog-proof@v1\r\nindex 1\n\n{cp}",
        "c2sp.org/tlog-proof@v1\nindex 1\n{h} \n\n{cp}",
        "c2sp.org/tlog-proof@v1\nindex 1\n\nnot a checkpoint\n\n— x AAAAAAA=\n",
        "c2sp.org/tlog-proof@v1\nindex 1\n\n{cp_unsigned}",
    ],
)
def test_malformed_receipts_are_rejected(text: str, audit_log: dict[str, Any]) -> None:
    note = audit_log["note"]
    text = text.format(
        cp=note, h=base64.b64encode(ROOT).decode(), cp_unsigned=parse_note(note).text
    )
    with pytest.raises(ReceiptError):
        parse_receipt(text)


def test_make_receipt_refuses_invalid_input(audit_log: dict[str, Any]) -> None:
    entries, store, note = audit_log["entries"], audit_log["store"], audit_log["note"]
    proof = inclusion_proof(3, len(entries), store)
    with pytest.raises(ProofError):
        make_receipt(4, entries[3], proof, note)
    with pytest.raises(ProofError):
        make_receipt(3, entries[3], proof[:-1], note)
    root_line = note.split("\n")[2]
    other_root = base64.b64encode(leaf_hash(b"other")).decode()
    with pytest.raises(ProofError):
        make_receipt(3, entries[3], proof, note.replace(root_line, other_root))
    with pytest.raises(ValueError, match="does not match"):
        make_receipt(3, entries[3], proof, note, leaf_hash=leaf_hash(entries[4]))
    with pytest.raises(ValueError):
        make_receipt(3, None, proof, note)
    with pytest.raises(MalformedNoteError):
        make_receipt(3, entries[3], proof, parse_note(note).text)
    with pytest.raises(ReceiptError):
        Receipt(-1, (), note)
    with pytest.raises(ReceiptError):
        Receipt(0, (b"short",), note)


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 300), st.data())
def test_receipt_property(size: int, data: st.DataObject) -> None:
    skey, vkey = generate_key(LOG)
    entries = [f"entry {i}".encode() for i in range(size)]
    store, rng = MemoryNodeStore(), CompactRange()
    for entry in entries:
        store.store(rng.append(leaf_hash(entry)))
    note = sign_checkpoint(Checkpoint(LOG, size, rng.root()), [Signer(skey)])
    index = data.draw(st.integers(0, size - 1))
    extra = data.draw(st.none() | st.binary(max_size=20))
    text = make_receipt(
        index, entries[index], inclusion_proof(index, size, store), note, extra=extra
    )
    got = verify_receipt(text, [Verifier(vkey)], entry=entries[index], origin=LOG)
    assert (got.index, got.extra, got.checkpoint.size) == (index, extra, size)
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        with pytest.raises(ProofError):
            verify_receipt(text, [Verifier(vkey)], entry=entries[other])


def test_no_stray_regex_special_cases() -> None:
    # Signature lines are split on the first space only; key names may hold any
    # non-space, non-plus character (e.g. a URL path).
    skey, vkey = generate_key("example.com/a?b=c&d#e")
    note = sign_note(TEXT, [Signer(skey)])
    assert re.search(r"— example\.com/a\?b=c&d#e ", note)
    assert open_note(note, [Verifier(vkey)])[0] == TEXT
