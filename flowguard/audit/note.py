"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a UTF-8 text ending in a newline, a blank line, then one or more
signature lines ``— <key name> <base64(4-byte key ID || signature)>``.  Keys are
encoded as in ``golang.org/x/mod/sumdb/note``:

* verifier key: ``<name>+<hex key ID>+<base64(0x01 || 32-byte public key)>``
* signer key:   ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>``

with ``key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4]`` (big-endian uint32).

Opening follows the spec: signatures by unknown keys (name *and* ID not both known)
are ignored; a signature by a known key is verified and a bad one rejects the whole
note; at least one known key must have signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from flowguard.errors import FlowguardError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "AmbiguousKeyError",
    "BadSignatureError",
    "DuplicateSignatureError",
    "KeyFormatError",
    "MalformedNoteError",
    "Note",
    "NoteError",
    "Signature",
    "Signer",
    "UnverifiedNoteError",
    "Verifier",
    "generate_key",
    "is_valid_key_name",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
    "split_key",
]

ALG_ED25519 = 0x01
"""Signature type identifier byte of Ed25519 note signatures."""

MAX_SIGNATURES = 100
"""Notes with more signature lines are rejected (the spec requires accepting 16)."""

_SIG_PREFIX = "\u2014 "  # em dash, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")

# Unicode White_Space, which is what Go's unicode.IsSpace (used by the reference
# implementation to validate names) tests for.
_UNICODE_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class NoteError(FlowguardError):
    """Base class of the errors raised by :mod:`flowguard.audit.note`."""


class MalformedNoteError(NoteError):
    """The note is not a well-formed signed note."""


class KeyFormatError(NoteError, ValueError):
    """A signer or verifier key string (or a key name) is malformed."""


class UnverifiedNoteError(NoteError):
    """No signature of the note is by a known key (unknown-key signatures are ignored).

    ``note`` holds the parsed, *unverified* note, for diagnostics only.
    """

    def __init__(self, note: Note) -> None:
        self.note = note
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in note.signatures)
        super().__init__(
            f"note has no verifiable signatures (signed only by unknown keys: {names})"
        )


class BadSignatureError(NoteError):
    """A signature by a known key does not verify; the whole note is rejected."""

    def __init__(self, name: str, key_id: int) -> None:
        self.name = name
        self.key_id = key_id
        super().__init__(f"invalid signature for key {name}+{key_id:08x}")


class DuplicateSignatureError(NoteError):
    """A known key has two different signatures in one note (or signs twice)."""

    def __init__(self, name: str, key_id: int) -> None:
        self.name = name
        self.key_id = key_id
        super().__init__(f"key {name}+{key_id:08x} has more than one different signature")


class AmbiguousKeyError(NoteError):
    """Several verifiers share the name and key ID of a signature."""

    def __init__(self, name: str, key_id: int) -> None:
        self.name = name
        self.key_id = key_id
        super().__init__(f"ambiguous key {name}+{key_id:08x}: several verifiers match")


# --------------------------------------------------------------------------- helpers


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space, no ``+``, no control character, valid UTF-8."""
    if not isinstance(name, str) or not name or "+" in name:
        return False
    if any(ch in _UNICODE_SPACES or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _b64decode(text: str) -> bytes:
    """Strict RFC 4648 §4 base64: padded, standard alphabet, canonical encoding only."""
    if not _B64.fullmatch(text):
        raise ValueError("not canonical base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64 (padding bits set)")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> int:
    """``SHA-256(name || 0x0A || alg || public key)[:4]`` as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _check_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise KeyFormatError(
            f"invalid key name {name!r}: it must be non-empty and contain no spaces, "
            "'+' or control characters"
        )


def _decode_text(note: str | bytes) -> str:
    """The note as ``str``; raise :class:`MalformedNoteError` unless valid UTF-8 without
    ASCII control characters other than newline."""
    if isinstance(note, bytes | bytearray):
        try:
            text = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNoteError("malformed note: not valid UTF-8") from None
    elif isinstance(note, str):
        text = note
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedNoteError("malformed note: not valid UTF-8") from None
    else:
        raise MalformedNoteError(
            f"malformed note: expected str or bytes, not {type(note).__name__}"
        )
    control = _CONTROL.search(text)
    if control is not None:
        raise MalformedNoteError(
            f"malformed note: control character U+{ord(control.group()):04X} "
            "(only newline is allowed)"
        )
    return text


# --------------------------------------------------------------------------- keys


def split_key(key: str, what: str, *, alg: int = ALG_ED25519, material: str = "key",
              supported: str = "Ed25519, 0x01,") -> tuple[str, int, bytes]:
    """``<name>+<hex id>+<base64(alg || 32 bytes)>`` as (name, key ID, the 32 bytes); the
    key ID is not checked against the key here. Raises :class:`KeyFormatError` naming
    ``what``."""
    name, _, rest = key.partition("+")
    hex_id, _, key64 = rest.partition("+")
    _check_name(name)
    if not _HEX8.fullmatch(hex_id):
        raise KeyFormatError(f"{what} {name!r}: key ID must be 8 hex digits")
    try:
        raw = _b64decode(key64)
    except ValueError:
        raise KeyFormatError(f"{what} {name!r}: key is not valid base64") from None
    if not raw:
        raise KeyFormatError(f"{what} {name!r}: empty key")
    if raw[0] != alg:
        raise KeyFormatError(
            f"{what} {name!r}: unsupported signature type 0x{raw[0]:02x} "
            f"(only {supported} is supported)"
        )
    if len(raw) != 33:
        raise KeyFormatError(f"{what} {name!r}: Ed25519 {material} must be 32 bytes")
    return name, int(hex_id, 16), raw[1:]


class Verifier:
    """An Ed25519 note verifier, from a ``<name>+<hex id>+<base64 key>`` string."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, vkey: str) -> None:
        if not isinstance(vkey, str):
            raise KeyFormatError("verifier key must be a string")
        name, kid, public_key = split_key(vkey, "verifier key")
        if kid != key_id(name, public_key):
            raise KeyFormatError(
                f"verifier key {name!r}: key ID {vkey.split('+')[1]} does not match the key"
            )
        self.name = name
        self.key_id = kid
        self.public_key = public_key
        self._key = Ed25519PublicKey.from_public_bytes(self.public_key)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        """Build a verifier from a name and a raw 32-byte Ed25519 public key."""
        _check_name(name)
        if len(public_key) != 32:
            raise KeyFormatError("Ed25519 public key must be 32 bytes")
        return cls(_vkey(name, public_key))

    @property
    def vkey(self) -> str:
        """The verifier key string."""
        return _vkey(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the 4-byte key ID) is valid for ``message``."""
        if len(signature) != 64:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


def _vkey(name: str, public_key: bytes) -> str:
    kid = key_id(name, public_key)
    return f"{name}+{kid:08x}+{_b64encode(bytes([ALG_ED25519]) + public_key)}"


class Signer:
    """An Ed25519 note signer, from a ``PRIVATE+KEY+<name>+<hex id>+<base64 seed>`` string."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, skey: str) -> None:
        if not isinstance(skey, str) or not skey.startswith(_PRIVATE_PREFIX):
            raise KeyFormatError("signer key must start with 'PRIVATE+KEY+'")
        name, kid, seed = split_key(skey[len(_PRIVATE_PREFIX) :], "signer key", material="seed")
        key = Ed25519PrivateKey.from_private_bytes(seed)
        public_key = key.public_key().public_bytes_raw()
        if kid != key_id(name, public_key):
            hex_id = skey.split("+")[3]
            raise KeyFormatError(f"signer key {name!r}: key ID {hex_id} does not match the key")
        self.name = name
        self.key_id = kid
        self.public_key = public_key
        self._key = key

    @property
    def vkey(self) -> str:
        """The matching verifier key string."""
        return _vkey(self.name, self.public_key)

    def verifier(self) -> Verifier:
        return Verifier(self.vkey)

    def sign(self, message: bytes) -> bytes:
        """Raw Ed25519 signature (64 bytes, deterministic) of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:  # never show the seed
        return f"Signer(name={self.name!r}, key_id={self.key_id:08x})"


def generate_key(name: str) -> tuple[str, str]:
    """A new Ed25519 key pair for ``name``: ``(signer key string, verifier key string)``."""
    _check_name(name)
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    public_key = key.public_key().public_bytes_raw()
    kid = key_id(name, public_key)
    skey = f"{_PRIVATE_PREFIX}{name}+{kid:08x}+{_b64encode(bytes([ALG_ED25519]) + seed)}"
    return skey, _vkey(name, public_key)


# --------------------------------------------------------------------------- notes


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key name, key ID and the base64 text ``base64(id || sig)``."""

    name: str
    key_id: int
    base64: str

    @property
    def signature(self) -> bytes:
        """The raw signature bytes, without the 4-byte key ID."""
        return _b64decode(self.base64)[4:]

    @property
    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {self.base64}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: its text (with the final newline) and signature lines."""

    text: str
    signatures: tuple[Signature, ...]


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into text and signature lines, checking only the syntax.

    Nothing is verified: use :func:`open_note` before trusting the text.
    Raises :class:`MalformedNoteError`.
    """
    msg = _decode_text(note)
    split = msg.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("malformed note: no blank line before the signatures")
    text, block = msg[: split + 1], msg[split + 2 :]
    if not block:
        raise MalformedNoteError("malformed note: no signature lines")
    if not block.endswith("\n"):
        raise MalformedNoteError("malformed note: the last signature line must end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    sigs: list[Signature] = []
    for n, line in enumerate(lines, 1):
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNoteError(
                f"malformed note: signature line {n} does not start with an em dash and a space"
            )
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not is_valid_key_name(name):
            raise MalformedNoteError(f"malformed note: signature line {n} has an invalid key name")
        try:
            raw = _b64decode(b64)
        except ValueError:
            raise MalformedNoteError(
                f"malformed note: signature line {n} ({name}) is not valid base64"
            ) from None
        if len(raw) < 5:
            raise MalformedNoteError(f"malformed note: signature line {n} ({name}) is too short")
        sigs.append(Signature(name, int.from_bytes(raw[:4], "big"), b64))
    return Note(text, tuple(sigs))


def _check_text(text: str) -> str:
    text = _decode_text(text)
    if not text.endswith("\n"):
        raise MalformedNoteError("malformed note: the text must end with a newline")
    return text


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` (which must end with a newline) with each signer, in order."""
    text = _check_text(text)
    if not signers:
        raise ValueError("sign_note needs at least one signer")
    message = text.encode("utf-8")
    seen: set[tuple[str, int]] = set()
    lines: list[str] = []
    for signer in signers:
        ident = (signer.name, signer.key_id)
        if ident in seen:
            raise DuplicateSignatureError(*ident)
        seen.add(ident)
        raw = signer.key_id.to_bytes(4, "big") + signer.sign(message)
        lines.append(Signature(signer.name, signer.key_id, _b64encode(raw)).line)
    return text + "\n" + "".join(lines)


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> tuple[str, list[Signature]]:
    """Verify a signed note; return its text and the signatures by known keys.

    * Signature lines by unknown keys (whose name and key ID are not *both* those of
      a verifier) are ignored.
    * A signature by a known key that does not verify raises :class:`BadSignatureError`.
    * Byte-identical repeated lines count once; two *different* signatures by one known
      key raise :class:`DuplicateSignatureError`.
    * Without any verified signature, :class:`UnverifiedNoteError`.
    * Syntax errors raise :class:`MalformedNoteError`.
    """
    parsed = parse_note(note)
    known: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        known.setdefault((v.name, v.key_id), []).append(v)
    message = parsed.text.encode("utf-8")
    verified: dict[tuple[str, int], Signature] = {}
    seen_lines: set[tuple[str, str]] = set()
    for sig in parsed.signatures:
        ident = (sig.name, sig.key_id)
        candidates = known.get(ident)
        if not candidates:
            continue
        if len(candidates) > 1:
            raise AmbiguousKeyError(*ident)
        if (sig.name, sig.base64) in seen_lines:
            continue
        if ident in verified:
            raise DuplicateSignatureError(*ident)
        seen_lines.add((sig.name, sig.base64))
        if not candidates[0].verify(message, sig.signature):
            raise BadSignatureError(*ident)
        verified[ident] = sig
    if not verified:
        unknown: list[Signature] = []
        for sig in parsed.signatures:
            if sig not in unknown:
                unknown.append(sig)
        raise UnverifiedNoteError(Note(parsed.text, tuple(unknown)))
    return parsed.text, list(verified.values())
