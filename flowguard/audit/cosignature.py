"""C2SP transparency-log cosignatures (https://c2sp.org/tlog-cosignature), Ed25519 type.

A cosignature is a signed-note signature line ``— <cosigner name> base64(key ID ||
timestamp || signature)`` over a checkpoint, where

* ``key ID = SHA-256(name || "\\n" || 0x04 || 32-byte public key)[:4]``;
* ``timestamp`` is a big-endian u64 POSIX time (at most 2**63 - 1);
* ``signature`` is Ed25519 over ``"cosignature/v1\\ntime <timestamp>\\n"`` followed by the
  whole checkpoint note text (with its final newline, without signature lines).

Cosigner keys use the note key encodings of :mod:`flowguard.audit.note` with signature type
``0x04`` (``name+hexid+base64(0x04 || key)``, and ``PRIVATE+KEY+name+hexid+base64(0x04 ||
seed)`` for the witness's own key file), so a witness key can never be mistaken for a log
key (type ``0x01``) and the other way round. The type is a parameter (:data:`ALG_COSIGNATURE_V1`)
so that another cosignature type (ML-DSA-44, ``0x06``) can be added beside it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from flowguard.audit.note import (
    _PRIVATE_PREFIX,
    BadSignatureError,
    KeyFormatError,
    Signature,
    _b64encode,
    _check_name,
    key_id,
    parse_note,
    split_key,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "MAX_TIMESTAMP",
    "CosignatureVerifier",
    "Cosigner",
    "VerifiedCosignature",
    "cosignature_message",
    "generate_cosigner_key",
    "verify_cosignatures",
]

ALG_COSIGNATURE_V1 = 0x04
"""Signature type byte of Ed25519 ``cosignature/v1`` keys (C2SP tlog-cosignature)."""

MAX_TIMESTAMP = 2**63 - 1


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosignature signs: the header and time lines, then the note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} is out of range")
    if not checkpoint_text.endswith("\n"):
        raise ValueError("the checkpoint text must end with a newline")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + checkpoint_text.encode("utf-8")


def _parse_key(key: str, what: str, alg: int) -> tuple[str, int, bytes]:
    material = "seed" if what == "cosigner key" else "key"
    return split_key(key, what, alg=alg, material=material,
                     supported=f"Ed25519 cosignatures, 0x{alg:02x},")


class CosignatureVerifier:
    """A cosigner's (witness's) verifier key ``name+hexid+base64(0x04 || public key)``."""

    __slots__ = ("_key", "alg", "key_id", "name", "public_key")

    def __init__(self, vkey: str, *, alg: int = ALG_COSIGNATURE_V1) -> None:
        if not isinstance(vkey, str):
            raise KeyFormatError("cosigner verifier key must be a string")
        name, kid, public_key = _parse_key(vkey, "cosigner verifier key", alg)
        if kid != key_id(name, public_key, alg):
            raise KeyFormatError(f"cosigner verifier key {name!r}: key ID {kid:08x} does not "
                                 "match the key")
        self.name, self.key_id, self.public_key, self.alg = name, kid, public_key, alg
        self._key = Ed25519PublicKey.from_public_bytes(public_key)

    @property
    def vkey(self) -> str:
        return _vkey(self.name, self.public_key, self.alg)

    def timestamp(self, checkpoint_text: str, signature: bytes) -> int | None:
        """The timestamp of a valid cosignature (the bytes after the key ID), else None."""
        if len(signature) != 8 + 64:
            return None
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return None
        try:
            self._key.verify(signature[8:], cosignature_message(checkpoint_text, timestamp))
        except (InvalidSignature, ValueError):
            return None
        return timestamp

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.vkey!r})"


def _vkey(name: str, public_key: bytes, alg: int) -> str:
    kid = key_id(name, public_key, alg)
    return f"{name}+{kid:08x}+{_b64encode(bytes([alg]) + public_key)}"


class Cosigner:
    """A witness's signing key, from ``PRIVATE+KEY+name+hexid+base64(0x04 || seed)``."""

    __slots__ = ("_key", "alg", "key_id", "name", "public_key")

    def __init__(self, skey: str, *, alg: int = ALG_COSIGNATURE_V1) -> None:
        if not isinstance(skey, str) or not skey.startswith(_PRIVATE_PREFIX):
            raise KeyFormatError("cosigner key must start with 'PRIVATE+KEY+'")
        name, kid, seed = _parse_key(skey[len(_PRIVATE_PREFIX):], "cosigner key", alg)
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes_raw()
        if kid != key_id(name, self.public_key, alg):
            raise KeyFormatError(f"cosigner key {name!r}: key ID {kid:08x} does not match "
                                 "the key")
        self.name, self.key_id, self.alg = name, kid, alg

    @property
    def vkey(self) -> str:
        return _vkey(self.name, self.public_key, self.alg)

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.vkey, alg=self.alg)

    def cosign(self, checkpoint_text: str, timestamp: int | None = None) -> Signature:
        """A cosignature of the checkpoint note text, now (or at ``timestamp``)."""
        when = int(time.time()) if timestamp is None else timestamp
        raw = self._key.sign(cosignature_message(checkpoint_text, when))
        blob = self.key_id.to_bytes(4, "big") + when.to_bytes(8, "big") + raw
        return Signature(self.name, self.key_id, _b64encode(blob))

    def __repr__(self) -> str:  # never show the seed
        return f"Cosigner(name={self.name!r}, key_id={self.key_id:08x})"


def generate_cosigner_key(name: str, *, alg: int = ALG_COSIGNATURE_V1) -> tuple[str, str]:
    """A new witness key pair: ``(signer key string, verifier key string)``."""
    _check_name(name)
    key = Ed25519PrivateKey.generate()
    public_key = key.public_key().public_bytes_raw()
    kid = key_id(name, public_key, alg)
    skey = (f"{_PRIVATE_PREFIX}{name}+{kid:08x}+"
            f"{_b64encode(bytes([alg]) + key.private_bytes_raw())}")
    return skey, _vkey(name, public_key, alg)


@dataclass(frozen=True, slots=True)
class VerifiedCosignature:
    verifier: CosignatureVerifier
    timestamp: int
    line: str


def verify_cosignatures(note: str | bytes, verifiers: Iterable[CosignatureVerifier], *,
                        max_future: float | None = 300.0) -> dict[str, VerifiedCosignature]:
    """The valid cosignatures of a signed note by the given cosigners, keyed by verifier key.

    Lines by other keys are ignored (as the signed-note spec requires). A line by a given
    cosigner that does not verify, or whose time is more than ``max_future`` seconds ahead,
    raises :class:`BadSignatureError`: the note is rejected, as for a bad log signature.
    Several valid lines by one cosigner count once (its latest time is kept).
    """
    parsed = parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    found: dict[str, VerifiedCosignature] = {}
    limit = None if max_future is None else time.time() + max_future
    for sig in parsed.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        stamp = verifier.timestamp(parsed.text, sig.signature)
        if stamp is None or (limit is not None and stamp > limit):
            raise BadSignatureError(sig.name, sig.key_id)
        previous = found.get(verifier.vkey)
        if previous is None or stamp > previous.timestamp:
            found[verifier.vkey] = VerifiedCosignature(verifier, stamp, sig.line)
    return found
