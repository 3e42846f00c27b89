"""Invitations and relay-hosted address bundles (protocol.md §21).

An *invitation* is a link to a contact address::

    http://127.0.0.1:7480/v1/invite#AQ...   (base64url, no padding, of 0x01 || sid || k)

The part before ``/v1/invite`` is the relay's base URL. The fragment carries the address's
send id ``sid`` (16 bytes) and the *address key* ``k`` (32 random bytes). Browsers never send
a fragment to a server, so pasting the link into one leaks neither. The QR payload is the
link itself.

The prekeys the relay hosts for the address are encrypted under a key derived from ``k``, so
the relay stores no identity key and nobody without the invitation can read them; the AEAD
also means the relay cannot substitute keys of its own (it does not know ``k``)::

    kb        = HKDF-SHA256(ikm=k, salt=32 zero bytes, info="blindrelay/v1/address-bundle", L=32)
    static    = nonce(24) || XChaCha20-Poly1305(kb, nonce, IK || SPK record || PQLR record,
                                                 ad="blindrelay/v1/address-static\\x00" || sid)
    item      = nonce(24) || XChaCha20-Poly1305(kb, nonce, PQOT record || OPK record,
                                                 ad="blindrelay/v1/address-item\\x00" || sid)
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from clientlib.crypto.keys import RNG, IdentityPublicKey
from clientlib.crypto.prekeys import PreKeyKind, SignedPreKey
from clientlib.crypto.primitives import (
    AEAD_NONCE_SIZE,
    aead_decrypt,
    aead_encrypt,
    hkdf,
)
from clientlib.errors import DecryptionError, KeyValidationError, LocalProtocolError
from clientlib.session.handshake import PreKeyBundle
from clientlib.wire.limits import MAILBOX_ID_SIZE

__all__ = [
    "ADDRESS_KEY_SIZE",
    "INVITE_PATH",
    "InvalidInvitation",
    "Invitation",
    "open_bundle",
    "seal_item",
    "seal_static",
]

ADDRESS_KEY_SIZE = 32
INVITE_PATH = "/v1/invite"
_INVITE_VERSION = 1
_BUNDLE_INFO = b"blindrelay/v1/address-bundle"
_STATIC_AD = b"blindrelay/v1/address-static\x00"
_ITEM_AD = b"blindrelay/v1/address-item\x00"


class InvalidInvitation(LocalProtocolError):
    """The string is not a blindrelay invitation link (or of an unsupported version)."""


@dataclass(frozen=True, slots=True)
class Invitation:
    """A link to a contact address: where the relay is, the send id, and the address key.

    ``link`` and ``qr_payload`` are what you share; treat them like a phone number you give
    out: whoever has them can send you a contact request (which you may decline).
    """

    relay_url: str
    sid: bytes = field(repr=False)
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.sid) != MAILBOX_ID_SIZE or len(self.key) != ADDRESS_KEY_SIZE:
            raise InvalidInvitation("bad invitation field sizes")

    @property
    def link(self) -> str:
        raw = bytes((_INVITE_VERSION,)) + self.sid + self.key
        token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        return f"{self.relay_url.rstrip('/')}{INVITE_PATH}#{token}"

    @property
    def qr_payload(self) -> bytes:
        """The bytes to put in a QR code (the link, UTF-8)."""
        return self.link.encode("utf-8")

    @classmethod
    def parse(cls, link: str) -> Invitation:
        """Parse an invitation link.

        Raises:
            InvalidInvitation: not a link of this form, or an unsupported version.
        """
        text = link.strip()
        base, sep, token = text.partition("#")
        if not sep or not base.endswith(INVITE_PATH):
            raise InvalidInvitation("not a blindrelay invitation link")
        relay_url = base[: -len(INVITE_PATH)]
        parts = urlsplit(relay_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise InvalidInvitation("the invitation's relay URL must be http(s)://host[:port]")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidInvitation("the invitation token is not base64url") from None
        if len(raw) != 1 + MAILBOX_ID_SIZE + ADDRESS_KEY_SIZE or raw[0] != _INVITE_VERSION:
            raise InvalidInvitation("unsupported or damaged invitation")
        return cls(relay_url, raw[1:17], raw[17:])

    def __repr__(self) -> str:
        return f"Invitation(relay_url={self.relay_url!r}, <secret>)"


def _bundle_key(k: bytes) -> bytes:
    return hkdf(k, salt=bytes(32), info=_BUNDLE_INFO, length=32)


def _seal(k: bytes, ad: bytes, plaintext: bytes, rng: RNG) -> bytes:
    nonce = rng(AEAD_NONCE_SIZE)
    if len(nonce) != AEAD_NONCE_SIZE:
        raise ValueError("rng returned the wrong number of bytes")
    return nonce + aead_encrypt(_bundle_key(k), nonce, plaintext, ad)


def _open(k: bytes, ad: bytes, blob: bytes) -> bytes:
    if len(blob) <= AEAD_NONCE_SIZE:
        raise DecryptionError
    return aead_decrypt(_bundle_key(k), blob[:AEAD_NONCE_SIZE], blob[AEAD_NONCE_SIZE:], ad)


def seal_static(
    k: bytes,
    sid: bytes,
    identity: IdentityPublicKey,
    signed_prekey: SignedPreKey,
    last_resort: SignedPreKey,
    rng: RNG,
) -> bytes:
    """Encrypt the static part of an address bundle for upload."""
    return _seal(k, _STATIC_AD + sid, bytes(identity) + signed_prekey.raw + last_resort.raw, rng)


def seal_item(
    k: bytes, sid: bytes, kem_one_time: SignedPreKey, one_time: SignedPreKey, rng: RNG
) -> bytes:
    """Encrypt one one-time item (an ML-KEM and an X25519 one-time prekey) for upload."""
    return _seal(k, _ITEM_AD + sid, kem_one_time.raw + one_time.raw, rng)


def open_bundle(invitation: Invitation, static: bytes, item: bytes | None) -> PreKeyBundle:
    """Decrypt and verify what the relay handed out for ``invitation`` into a bundle.

    Without an item (the address ran out, or the relay's rate limit applied) the bundle uses
    the last-resort ML-KEM key and no one-time X25519 key.

    Raises:
        KeyValidationError: a blob does not decrypt under the invitation's key, or a key or
            signature inside is invalid (a relay cannot forge or swap these).
    """
    try:
        pt = _open(invitation.key, _STATIC_AD + invitation.sid, static)
        item_pt = _open(invitation.key, _ITEM_AD + invitation.sid, item) if item else None
    except DecryptionError:
        raise KeyValidationError("address bundle does not authenticate") from None
    spk_size = PreKeyKind.X25519_SIGNED.record_size
    kem_size = PreKeyKind.MLKEM_LAST_RESORT.record_size
    if len(pt) != 32 + spk_size + kem_size:
        raise KeyValidationError("address bundle: bad length")
    identity = IdentityPublicKey.from_bytes(pt[:32])
    spk = SignedPreKey.parse(pt[32 : 32 + spk_size], identity)
    kem = SignedPreKey.parse(pt[32 + spk_size :], identity)
    opk: SignedPreKey | None = None
    if item_pt is not None:
        if len(item_pt) != kem_size + PreKeyKind.X25519_ONE_TIME.record_size:
            raise KeyValidationError("address bundle item: bad length")
        kem_ot = SignedPreKey.parse(item_pt[:kem_size], identity)
        opk = SignedPreKey.parse(item_pt[kem_size:], identity)
        if kem_ot.kind is not PreKeyKind.MLKEM_ONE_TIME:
            raise KeyValidationError("address bundle item: wrong kind")
        kem = kem_ot
    elif kem.kind is not PreKeyKind.MLKEM_LAST_RESORT:
        raise KeyValidationError("address bundle: static KEM key must be last-resort")
    return PreKeyBundle.build(identity, spk, kem, opk)
