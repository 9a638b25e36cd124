"""RFC 6962 / RFC 9162 Merkle tree: upstream conformance vectors and properties.

Conformance data (vendored byte-exact under tests/data/tlog/, see SOURCE.md there):
transparency-dev/merkle (hasher vectors, the 8-leaf reference tree, proof test data
with its negative probes) and golang/mod (real Certificate Transparency proofs from
Google's Argon 2020 log).  ``vectors.json`` is the transcription the tests use; the
first tests check it against the vendored originals.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowguard.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryNodeStore,
    MerkleError,
    MissingNodeError,
    ProofError,
    TreeRangeError,
    consistency_proof,
    consistency_proof_keys,
    frontier_keys,
    inclusion_proof,
    inclusion_proof_keys,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from flowguard.errors import FlowguardError

DATA = Path(__file__).parent / "data" / "tlog"
VECTORS: dict[str, Any] = json.loads((DATA / "vectors.json").read_text(encoding="utf-8"))
MERKLE = DATA / "transparency-dev-merkle"
SLOW = settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --------------------------------------------------------------------- reference (RFC 6962 text)

N_LEAVES = 4100
ENTRIES = [f"audit entry {i}".encode() for i in range(N_LEAVES)]
LEAVES = [leaf_hash(e) for e in ENTRIES]


@functools.cache
def mth(begin: int, end: int) -> bytes:
    """MTH(D[begin:end]) exactly as RFC 6962 §2.1 defines it (recursive)."""
    n = end - begin
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return LEAVES[begin]
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    return node_hash(mth(begin, begin + k), mth(begin + k, end))


def rfc_path(m: int, begin: int, end: int) -> list[bytes]:
    """PATH(m, D[begin:end]), RFC 6962 §2.1.1."""
    n = end - begin
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*rfc_path(m, begin, begin + k), mth(begin + k, end)]
    return [*rfc_path(m - k, begin + k, end), mth(begin, begin + k)]


def rfc_subproof(m: int, begin: int, end: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[begin:end], b), RFC 6962 §2.1.2."""
    n = end - begin
    if m == n:
        return [] if b else [mth(begin, end)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*rfc_subproof(m, begin, begin + k, b), mth(begin + k, end)]
    return [*rfc_subproof(m - k, begin + k, end, False), mth(begin, begin + k)]


def rfc_proof(m: int, n: int) -> list[bytes]:
    return rfc_subproof(m, 0, n, True)


@functools.lru_cache(maxsize=1)
def big_tree() -> tuple[MemoryNodeStore, list[bytes], list[tuple[bytes, ...]]]:
    """The tree of LEAVES, with the compact root and frontier after every append."""
    store = MemoryNodeStore()
    rng = CompactRange()
    roots, frontiers = [rng.root()], [rng.hashes]
    for leaf in LEAVES:
        store.store(rng.append(leaf))
        roots.append(rng.root())
        frontiers.append(rng.hashes)
    return store, roots, frontiers


def flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# ---------------------------------------------------------- the transcription matches the originals


def test_vectors_json_matches_vendored_constants_go() -> None:
    source = (MERKLE / "testonly" / "constants.go").read_text(encoding="utf-8")
    tree = VECTORS["tree"]
    hexes = re.findall(r'hd\("([0-9a-f]*)"\)', source)
    leaves = tree["leaf_inputs_hex"]
    nodes = [x for level in tree["node_hashes_by_level"] for x in level]
    roots = tree["root_hashes_by_size"]
    assert hexes == [*leaves, *nodes, *roots[1:], roots[0]]
    assert [len(level) for level in tree["node_hashes_by_level"]] == [8, 4, 2, 1]
    refs = re.findall(r"\{(nh\[.*?)\},?\n", source)
    shapes = [[tuple(map(int, r)) for r in re.findall(r"nh\[(\d)\]\[(\d)\]", ref)] for ref in refs]
    by_level = tree["node_hashes_by_level"]
    assert tree["compact_ranges_by_size"] == [[]] + [[by_level[a][b] for a, b in s] for s in shapes]


def test_vectors_json_matches_vendored_rfc6962_test_go() -> None:
    source = (MERKLE / "rfc6962" / "rfc6962_test.go").read_text(encoding="utf-8")
    want = re.findall(r'want: "([0-9a-f]{64})"', source)
    hasher = VECTORS["rfc6962_hasher"]
    assert want == [
        hasher["empty_root"],
        *(x["hash"] for x in hasher["leaf_hashes"]),
        *(x["hash"] for x in hasher["node_hashes"]),
    ]
    assert '[]byte("L123456")' in source and '[]byte("N123"), []byte("N456")' in source


def load_probe(path: Path) -> dict[str, Any]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        k: ([b64(x) for x in v] if k == "proof" and v is not None else v) for k, v in raw.items()
    }


def test_vectors_json_matches_vendored_happy_paths() -> None:
    for vec in VECTORS["inclusion_proofs"]:
        raw = load_probe(DATA / vec["file"])
        assert raw["desc"] == "happy path" and raw["wantErr"] is False
        assert raw.get("leafIdx", raw.get("leafIndex")) == vec["leaf_index"]
        assert raw["treeSize"] == vec["tree_size"]
        assert b64(raw["root"]).hex() == vec["root"]
        assert b64(raw["leafHash"]).hex() == vec["leaf_hash"]
        assert [p.hex() for p in raw["proof"] or []] == vec["proof"]
    for vec in VECTORS["consistency_proofs"]:
        raw = load_probe(DATA / vec["file"])
        assert (raw["size1"], raw["size2"]) == (vec["size1"], vec["size2"])
        assert (b64(raw["root1"]).hex(), b64(raw["root2"]).hex()) == (vec["root1"], vec["root2"])
        assert [p.hex() for p in raw["proof"] or []] == vec["proof"]


def test_vectors_json_matches_vendored_argon2020() -> None:
    folder = DATA / "golang-mod" / "sumdb" / "tlog" / "testdata" / "argon2020"
    ct = VECTORS["ct_argon2020"]
    sth = json.loads((folder / "sth.json").read_text())
    proof = json.loads((folder / "proof.json").read_text())
    cons = json.loads((folder / "consistency.json").read_text())
    entries = json.loads((folder / "entries.json").read_text())
    assert (
        sth["tree_size"] == ct["tree_size"]
        and b64(sth["sha256_root_hash"]).hex() == ct["root_hash"]
    )
    assert proof["leaf_index"] == ct["leaf_index"] == 10000
    assert [b64(x).hex() for x in proof["audit_path"]] == ct["audit_path"]
    assert [b64(x).hex() for x in cons["consistency"]] == ct["consistency"]
    assert entries["entries"][0]["leaf_input"] == ct["leaf_input_b64"]
    go = (DATA / "golang-mod" / "sumdb" / "tlog" / "ct_test.go").read_text(encoding="utf-8")
    assert f'ParseHash("{base64.b64encode(h(ct["old_root_hash"])).decode()}")' in go
    assert f"root.Hash, {ct['old_tree_size']}, oh)" in go


# ------------------------------------------------------------------------ upstream conformance


def test_rfc6962_hasher_vectors() -> None:
    hasher = VECTORS["rfc6962_hasher"]
    assert h(hasher["empty_root"]) == EMPTY_ROOT == CompactRange().root()
    for vec in hasher["leaf_hashes"]:
        assert leaf_hash(h(vec["input_hex"])) == h(vec["hash"])
    for vec in hasher["node_hashes"]:
        assert node_hash(h(vec["left_hex"]), h(vec["right_hex"])) == h(vec["hash"])
    # Domain separation: a node is not the leaf of its children's concatenation.
    a, b = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert node_hash(a, b) != leaf_hash(a + b) and node_hash(a, b) != node_hash(b, a)


def reference_store() -> tuple[MemoryNodeStore, list[CompactRange]]:
    store, rng, states = MemoryNodeStore(), CompactRange(), [CompactRange()]
    for entry in VECTORS["tree"]["leaf_inputs_hex"]:
        store.store(rng.append(leaf_hash(h(entry))))
        states.append(rng.copy())
    return store, states


def test_reference_tree_nodes_roots_and_compact_ranges() -> None:
    tree = VECTORS["tree"]
    store, states = reference_store()
    for level, hashes in enumerate(tree["node_hashes_by_level"]):
        for index, digest in enumerate(hashes):
            assert store.nodes([(level, index)]) == [h(digest)]
    assert len(store) == 15  # exactly the complete subtrees of an 8-leaf tree
    for size, digest in enumerate(tree["root_hashes_by_size"]):
        assert states[size].root() == root(size, store) == h(digest)
        assert [x.hex() for x in states[size].hashes] == tree["compact_ranges_by_size"][size]
        assert CompactRange.from_reader(size, store) == states[size]


@pytest.mark.parametrize("vec", VECTORS["inclusion_proofs"], ids=lambda v: v["file"].split("/")[-2])
def test_upstream_inclusion_proofs(vec: dict[str, Any]) -> None:
    store, _ = reference_store()
    proof = inclusion_proof(vec["leaf_index"], vec["tree_size"], store)
    assert [p.hex() for p in proof] == vec["proof"]
    assert root(vec["tree_size"], store) == h(vec["root"])
    verify_inclusion(
        h(vec["leaf_hash"]), vec["leaf_index"], vec["tree_size"], proof, h(vec["root"])
    )


@pytest.mark.parametrize(
    "vec", VECTORS["consistency_proofs"], ids=lambda v: v["file"].split("/")[-2]
)
def test_upstream_consistency_proofs(vec: dict[str, Any]) -> None:
    store, _ = reference_store()
    proof = consistency_proof(vec["size1"], vec["size2"], store)
    assert [p.hex() for p in proof] == vec["proof"]
    verify_consistency(vec["size1"], vec["size2"], h(vec["root1"]), h(vec["root2"]), proof)


PROBE_FILES = sorted(
    p.relative_to(MERKLE).as_posix() for p in (MERKLE / "testdata").rglob("*.json")
)


@pytest.mark.parametrize("name", PROBE_FILES)
def test_upstream_probe_files(name: str) -> None:
    """Every vendored transparency-dev probe: accepted iff it says ``wantErr: false``."""
    probe = load_probe(MERKLE / name)
    proof = probe["proof"] or []
    if "treeSize" in probe:
        index = probe.get("leafIdx", probe.get("leafIndex"))

        def check() -> None:
            verify_inclusion(
                b64(probe["leafHash"]), index, probe["treeSize"], proof, b64(probe["root"])
            )
    else:

        def check() -> None:
            verify_consistency(
                probe["size1"], probe["size2"], b64(probe["root1"]), b64(probe["root2"]), proof
            )

    if probe["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


def test_probe_files_cover_every_upstream_category() -> None:
    assert len(PROBE_FILES) == 69
    descs = {json.loads((MERKLE / n).read_text())["desc"] for n in PROBE_FILES}
    for want in (
        "happy path",
        "wrong leaf",
        "inserted component",
        "removed component",
        "trailing garbage",
        "preceding root",
        "swapped roots",
        "truncated proof",
        "empty proof",
        "size1 is greater than size2",
    ):
        assert want in descs


SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def corrupt_inclusion(index: int, size: int, proof: list[bytes], root_hash: bytes, leaf: bytes):
    """transparency-dev cmd/proofgen invalidInclusionProof, applied to every happy path."""
    probes = [
        (index - 1, size, root_hash, leaf, proof),
        (index + 1, size, root_hash, leaf, proof),
        (index ^ 2, size, root_hash, leaf, proof),
        (index, size * 2, root_hash, leaf, proof),
        (index, size // 2, root_hash, leaf, proof),
        (index, size, root_hash, b"WrongLeaf", proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, root_hash, leaf, [*proof, b""]),
        (index, size, root_hash, leaf, [*proof, root_hash]),
        (index, size, root_hash, leaf, [b"", *proof]),
        (index, size, root_hash, leaf, [root_hash, *proof]),
    ]
    for i in range(len(proof)):
        probes.append(
            (index, size, root_hash, leaf, [*proof[:i], flip(proof[i], 3), *proof[i + 1 :]])
        )
    if proof:
        probes.append((index, size, root_hash, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append((index, size, root_hash, leaf, [proof[0], SOME_HASH, *proof[1:]]))
    return probes


def corrupt_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]):
    """transparency-dev cmd/proofgen invalidConsistencyProof."""
    probes = [
        (size1 - 1, size2, root1, root2, proof),
        (size1 + 1, size2, root1, root2, proof),
        (size1 ^ 2, size2, root1, root2, proof),
        (size1, size2 * 2, root1, root2, proof),
        (size1, size2 // 2, root1, root2, proof),
        (size1, size2, b"WrongRoot", root2, proof),
        (size1, size2, root1, b"WrongRoot", proof),
        (size1, size2, root2, root1, proof),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*proof, b""]),
        (size1, size2, root1, root2, [*proof, root1]),
        (size1, size2, root1, root2, [*proof, root2]),
        (size1, size2, root1, root2, [b"", *proof]),
        (size1, size2, root1, root2, [root1, *proof]),
        (size1, size2, root1, root2, [root2, *proof]),
        (size1, size2, root1, root2, [proof[0], *proof]),
        (size1, size2, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        probes.append(
            (size1, size2, root1, root2, [*proof[:i], flip(proof[i], 4), *proof[i + 1 :]])
        )
    return probes


def test_upstream_corruptions_of_every_happy_path_are_rejected() -> None:
    count = 0
    for vec in VECTORS["inclusion_proofs"]:
        proof = [h(p) for p in vec["proof"]]
        for index, size, root_hash, leaf, bad in corrupt_inclusion(
            vec["leaf_index"], vec["tree_size"], proof, h(vec["root"]), h(vec["leaf_hash"])
        ):
            with pytest.raises(ProofError):
                verify_inclusion(leaf, index, size, bad, root_hash)
            count += 1
    for vec in VECTORS["consistency_proofs"]:
        proof = [h(p) for p in vec["proof"]]
        if not proof:
            continue
        for size1, size2, root1, root2, bad in corrupt_consistency(
            vec["size1"], vec["size2"], h(vec["root1"]), h(vec["root2"]), proof
        ):
            with pytest.raises(ProofError):
                verify_consistency(size1, size2, root1, root2, bad)
            count += 1
    assert count > 150


def test_real_certificate_transparency_log_proofs() -> None:
    """Google Argon 2020 CT log: a real inclusion proof and a real consistency proof."""
    ct = VECTORS["ct_argon2020"]
    leaf = leaf_hash(b64(ct["leaf_input_b64"]))
    audit_path = [h(x) for x in ct["audit_path"]]
    cons = [h(x) for x in ct["consistency"]]
    verify_inclusion(leaf, ct["leaf_index"], ct["tree_size"], audit_path, h(ct["root_hash"]))
    verify_consistency(
        ct["old_tree_size"], ct["tree_size"], h(ct["old_root_hash"]), h(ct["root_hash"]), cons
    )
    assert len(audit_path) == 30 and len(cons) == 30
    with pytest.raises(ProofError):
        verify_inclusion(
            leaf, ct["leaf_index"] + 1, ct["tree_size"], audit_path, h(ct["root_hash"])
        )
    with pytest.raises(ProofError):
        verify_consistency(
            ct["old_tree_size"] + 1,
            ct["tree_size"],
            h(ct["old_root_hash"]),
            h(ct["root_hash"]),
            cons,
        )
    for i in (0, 15, 29):
        with pytest.raises(ProofError):
            verify_inclusion(
                leaf,
                ct["leaf_index"],
                ct["tree_size"],
                [*audit_path[:i], flip(audit_path[i], 100), *audit_path[i + 1 :]],
                h(ct["root_hash"]),
            )
        with pytest.raises(ProofError):
            verify_consistency(
                ct["old_tree_size"],
                ct["tree_size"],
                h(ct["old_root_hash"]),
                h(ct["root_hash"]),
                [*cons[:i], flip(cons[i], 7), *cons[i + 1 :]],
            )


# ------------------------------------------------------------------------------- properties


def test_roots_of_every_small_size_agree_with_the_rfc() -> None:
    store, roots, frontiers = big_tree()
    for size in range(0, 600):
        assert roots[size] == root(size, store) == mth(0, size)
        assert CompactRange.from_reader(size, store).hashes == frontiers[size]


def test_every_small_proof_is_the_rfc_proof_and_verifies() -> None:
    store, roots, _ = big_tree()
    for size in range(1, 65):
        for index in range(size):
            proof = inclusion_proof(index, size, store)
            assert proof == rfc_path(index, 0, size)
            verify_inclusion(LEAVES[index], index, size, proof, roots[size])
        for old in range(1, size + 1):
            proof = consistency_proof(old, size, store)
            assert proof == rfc_proof(old, size)
            verify_consistency(old, size, roots[old], roots[size], proof)


@SLOW
@given(st.integers(0, N_LEAVES))
def test_root_compact_range_and_reader_agree_with_the_rfc(size: int) -> None:
    store, roots, frontiers = big_tree()
    assert roots[size] == root(size, store) == mth(0, size)
    resumed = CompactRange(size, frontiers[size])
    assert resumed == CompactRange.from_reader(size, store)
    # A writer resuming from the stored frontier produces the same nodes and roots.
    for i in range(size, min(size + 40, N_LEAVES)):
        created = resumed.append(LEAVES[i])
        assert all(store.nodes([(level, index)]) == [digest] for level, index, digest in created)
        assert resumed.root() == roots[i + 1]


@SLOW
@given(st.data())
def test_inclusion_proofs_are_the_rfc_path_and_resist_tampering(data: st.DataObject) -> None:
    store, roots, _ = big_tree()
    size = data.draw(st.integers(1, N_LEAVES), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(index, size, store)
    assert proof == rfc_path(index, 0, size)
    leaf, root_hash = LEAVES[index], roots[size]
    verify_inclusion(leaf, index, size, proof, root_hash)

    bit = data.draw(st.integers(0, 255), label="bit")
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="element")
        with pytest.raises(ProofError):
            verify_inclusion(
                leaf, index, size, [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]], root_hash
            )
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof[:i] + proof[i + 1 :], root_hash)
    with pytest.raises(ProofError):
        verify_inclusion(flip(leaf, bit), index, size, proof, root_hash)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, flip(root_hash, bit))
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, [*proof, proof[0] if proof else leaf], root_hash)
    other = data.draw(st.integers(0, N_LEAVES), label="other index")
    if other != index:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, other, size, proof, root_hash)
    # A wrong size fails against that size's true root.
    wrong = data.draw(st.integers(index + 1, N_LEAVES), label="wrong size")
    if wrong != size:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, wrong, proof, roots[wrong])


@SLOW
@given(st.data())
def test_consistency_proofs_are_the_rfc_proof_and_resist_tampering(data: st.DataObject) -> None:
    store, roots, _ = big_tree()
    new = data.draw(st.integers(1, N_LEAVES), label="new")
    old = data.draw(st.integers(1, new), label="old")
    proof = consistency_proof(old, new, store)
    assert proof == rfc_proof(old, new)
    verify_consistency(old, new, roots[old], roots[new], proof)
    bit = data.draw(st.integers(0, 255), label="bit")
    if old == new:
        assert proof == []
        with pytest.raises(ProofError):
            verify_consistency(old, new, roots[old], flip(roots[new], bit), proof)
        return
    i = data.draw(st.integers(0, len(proof) - 1), label="element")
    with pytest.raises(ProofError):
        verify_consistency(
            old, new, roots[old], roots[new], [*proof[:i], flip(proof[i], bit), *proof[i + 1 :]]
        )
    with pytest.raises(ProofError):
        verify_consistency(old, new, roots[old], roots[new], proof[:i] + proof[i + 1 :])
    with pytest.raises(ProofError):
        verify_consistency(old, new, flip(roots[old], bit), roots[new], proof)
    with pytest.raises(ProofError):
        verify_consistency(old, new, roots[old], flip(roots[new], bit), proof)
    with pytest.raises(ProofError):
        verify_consistency(old, new, roots[new], roots[old], proof)
    # Wrong sizes fail even against the true roots of the claimed sizes.
    other_new = data.draw(st.integers(old, N_LEAVES), label="other new")
    if other_new != new:
        with pytest.raises(ProofError):
            verify_consistency(old, other_new, roots[old], roots[other_new], proof)
    other_old = data.draw(st.integers(1, new), label="other old")
    if other_old != old:
        with pytest.raises(ProofError):
            verify_consistency(other_old, new, roots[other_old], roots[new], proof)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.binary(max_size=40), max_size=300))
def test_compact_range_over_arbitrary_entries(entries: list[bytes]) -> None:
    leaves = [leaf_hash(e) for e in entries]

    def ref(begin: int, end: int) -> bytes:
        n = end - begin
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return leaves[begin]
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(ref(begin, begin + k), ref(begin + k, end))

    store, rng = MemoryNodeStore(), CompactRange()
    for leaf in leaves:
        store.store(rng.append(leaf))
    assert rng.root() == root(len(leaves), store) == ref(0, len(leaves))
    # Exactly the complete subtrees are stored: 2n - popcount(n) nodes.
    assert len(store) == 2 * len(leaves) - len(leaves).bit_count()


# ------------------------------------------------------------------------- storage access cost


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 100, 1023, 1024, 1025, 4097])
def test_roots_and_proofs_cost_one_batched_lookup_of_log_n_nodes(size: int) -> None:
    store, roots, _ = big_tree()
    bound = 2 * size.bit_length() + 1
    for index in {0, size // 3, size // 2, size - 1}:
        store.calls = store.keys_read = 0
        inclusion_proof(index, size, store)
        keys = inclusion_proof_keys(index, size)
        assert store.calls == (1 if keys else 0) and len(keys) == store.keys_read <= bound
    for old in {1, size // 3 or 1, size - 1 or 1}:
        store.calls = store.keys_read = 0
        consistency_proof(old, size, store)
        keys = consistency_proof_keys(old, size)
        assert store.calls == (1 if keys else 0) and len(keys) == store.keys_read <= bound
    store.calls = store.keys_read = 0
    assert root(size, store) == roots[size]
    assert store.calls == 1 and store.keys_read == size.bit_count() == len(frontier_keys(size))


def test_append_is_amortised_constant() -> None:
    rng, created = CompactRange(), 0
    for i in range(1, 2049):
        created += len(rng.append(LEAVES[i - 1]))
    assert created == 2 * 2048 - 1  # every complete node exactly once: < 2 per append
    assert rng.append(LEAVES[2048]) == [(0, 2048, LEAVES[2048])]


# ------------------------------------------------------------------------------ rejections


def test_errors_are_typed_flowguard_errors() -> None:
    assert issubclass(ProofError, MerkleError) and issubclass(MerkleError, FlowguardError)
    assert issubclass(TreeRangeError, ValueError) and issubclass(MissingNodeError, LookupError)


def test_verify_inclusion_rejects_malformed_input() -> None:
    _, roots, _ = big_tree()
    leaf, good = LEAVES[2], rfc_path(2, 0, 5)
    verify_inclusion(leaf, 2, 5, good, roots[5])
    bad_calls: list[tuple[Any, ...]] = [
        (leaf, 5, 5, good, roots[5]),  # index == size
        (leaf, 6, 5, good, roots[5]),
        (leaf, -1, 5, good, roots[5]),
        (leaf, 0, 0, [], EMPTY_ROOT),  # nothing is in the empty tree
        (leaf, True, 5, good, roots[5]),
        (leaf, 2, 2**64, good, roots[5]),
        (leaf[:31], 2, 5, good, roots[5]),
        (leaf, 2, 5, good, roots[5] + b"\0"),
        (leaf, 2, 5, [*good[:1], good[1][:16], *good[2:]], roots[5]),
        (leaf, 2, 5, [], roots[5]),
        (leaf, 2, 5, good[::-1], roots[5]),
    ]
    for args in bad_calls:
        with pytest.raises(ProofError):
            verify_inclusion(*args)


def test_verify_inclusion_messages_say_what_is_wrong() -> None:
    _, roots, _ = big_tree()
    with pytest.raises(ProofError, match="leaf index 5 is not in a tree of size 5"):
        verify_inclusion(LEAVES[0], 5, 5, [], roots[5])
    with pytest.raises(ProofError, match="must have 3 hashes, got 2"):
        verify_inclusion(LEAVES[0], 0, 5, rfc_path(0, 0, 5)[:2], roots[5])
    with pytest.raises(ProofError, match="element 1 is 3 bytes"):
        verify_inclusion(LEAVES[0], 0, 5, [LEAVES[1], b"abc", LEAVES[2]], roots[5])
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(LEAVES[1], 0, 5, rfc_path(0, 0, 5), roots[5])


def test_verify_consistency_rejects_malformed_input() -> None:
    _, roots, _ = big_tree()
    good = rfc_proof(3, 7)
    verify_consistency(3, 7, roots[3], roots[7], good)
    verify_consistency(7, 7, roots[7], roots[7], [])
    with pytest.raises(ProofError, match="larger than new tree size"):
        verify_consistency(8, 7, roots[8], roots[7], good)
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 7, EMPTY_ROOT, roots[7], [])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(7, 7, roots[7], roots[7], [roots[7]])
    with pytest.raises(ProofError, match="different root hashes"):
        verify_consistency(7, 7, roots[7], roots[6], [])
    with pytest.raises(ProofError, match="is empty"):
        verify_consistency(3, 7, roots[3], roots[7], [])
    with pytest.raises(ProofError, match=f"must have {len(good)} hashes, got {len(good) + 1}"):
        verify_consistency(3, 7, roots[3], roots[7], [*good, good[0]])
    with pytest.raises(ProofError, match="old root"):
        verify_consistency(3, 7, roots[4], roots[7], good)
    with pytest.raises(ProofError, match="new root"):
        verify_consistency(3, 7, roots[3], roots[6], good)
    with pytest.raises(ProofError, match="31 bytes"):
        verify_consistency(3, 7, roots[3][:31], roots[7], good)
    with pytest.raises(ProofError):
        verify_consistency(-1, 7, roots[3], roots[7], good)


def test_producers_reject_out_of_range_arguments() -> None:
    store, _, _ = big_tree()
    for call in (
        lambda: inclusion_proof(5, 5, store),
        lambda: inclusion_proof(-1, 5, store),
        lambda: inclusion_proof(0, 0, store),
        lambda: consistency_proof(6, 5, store),
        lambda: consistency_proof(0, 5, store),
        lambda: root(-1, store),
        lambda: CompactRange(3, [LEAVES[0]]),
        lambda: CompactRange(1, [b"short"]),
        lambda: CompactRange().append(b"short"),
    ):
        with pytest.raises(TreeRangeError):
            call()
    assert consistency_proof(0, 0, store) == [] and consistency_proof(9, 9, store) == []
    assert root(0, store) == EMPTY_ROOT


def test_missing_nodes_are_reported() -> None:
    store, _, _ = big_tree()
    with pytest.raises(MissingNodeError, match="not stored"):
        root(N_LEAVES + 1, store)
    with pytest.raises(MissingNodeError):
        inclusion_proof(0, N_LEAVES + 7, store)
    with pytest.raises(MissingNodeError):
        CompactRange.from_reader(N_LEAVES + 3, store)

    class ShortReader:
        def nodes(self, keys: Any) -> list[bytes]:
            return [LEAVES[0]] * (len(keys) - 1)

    with pytest.raises(MissingNodeError, match="returned"):
        root(3, ShortReader())


def test_wrong_size_with_the_same_root_is_not_detectable_by_the_proof_alone() -> None:
    """Documented RFC property: the size is bound by the signed checkpoint, not the proof.

    Leaf 0's proofs in trees of 5 and 6 leaves have the same shape, so the size-5
    proof checked with a claimed size of 6 still reproduces the size-5 root.
    """
    _, roots, _ = big_tree()
    proof = rfc_path(0, 0, 5)
    verify_inclusion(LEAVES[0], 0, 6, proof, roots[5])
    with pytest.raises(ProofError):
        verify_inclusion(LEAVES[0], 0, 6, proof, roots[6])


def test_leaf_count_limits() -> None:
    rng = CompactRange(2**64 - 1, [LEAVES[0]] * 64)
    with pytest.raises(TreeRangeError, match="full"):
        rng.append(LEAVES[0])
    with pytest.raises(TreeRangeError):
        CompactRange(2**64, [LEAVES[0]])


def test_vendored_files_are_unchanged_and_all_listed_in_source_md() -> None:
    rows = re.findall(
        r"^\| `([^`]+)` \| (\S+) \| `([^`]+)` \| `([0-9a-f]{40})` \| `([0-9a-f]{64})` \|$",
        (DATA / "SOURCE.md").read_text(encoding="utf-8"),
        re.M,
    )
    listed = {}
    for name, _repo, upstream_path, _commit, digest in rows:
        assert name.endswith(upstream_path)
        listed[name] = digest
    on_disk = {
        p.relative_to(DATA).as_posix()
        for p in DATA.rglob("*")
        if p.is_file() and p.name not in {"SOURCE.md", "vectors.json"}
    }
    assert set(listed) == on_disk and len(on_disk) == 82
    for name, digest in listed.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name
