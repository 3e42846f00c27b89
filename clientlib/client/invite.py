"""Invitations and relay-hosted address bundles (protocol.md §21).

An *invitation* is a link to a contact address::

    http://127.0.0.1:7480/v1/invite#Ag...   (base64url, no padding, of 0x02 || sid || k || h)

The part before ``/v1/invite`` is the relay's base URL. The fragment carries the address's
send id ``sid`` (16 bytes), the *address key* ``k`` (32 random bytes) and, since link version
2, ``h``, a 16-byte hash of the inviter's identity key (:func:`identity_hash`). Browsers never
send a fragment to a server, so pasting the link into one leaks none of them. The QR payload
is the link itself.

The prekeys the relay hosts for the address are encrypted under a key derived from ``k``, so
the relay stores no identity key and nobody without the invitation can read them. The AEAD
does NOT stop whoever knows ``k`` (the relay operator holding a published link, an invitee
colluding with it) from sealing a bundle of its own identity under the same ``sid`` and ``k``;
``h`` does: :func:`open_bundle` refuses a bundle whose identity key does not hash to ``h``
(:class:`IdentityMismatch`). A version-1 link (``0x01 || sid || k``, no ``h``) still parses,
with :attr:`Invitation.commits_to_identity` False: the bundle it fetches is only as
trustworthy as the relay, until the safety number is compared (protocol.md §21.2, §17)::

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

from clientlib.client.relayurl import InvalidRelayUrl, normalize_relay_url
from clientlib.crypto.keys import RNG, IdentityPublicKey
from clientlib.crypto.prekeys import PreKeyKind, SignedPreKey
from clientlib.crypto.primitives import (
    AEAD_NONCE_SIZE,
    aead_decrypt,
    aead_encrypt,
    ct_eq,
    hkdf,
    sha256,
)
from clientlib.errors import DecryptionError, KeyValidationError, LocalProtocolError
from clientlib.session.handshake import PreKeyBundle
from clientlib.wire.limits import MAILBOX_ID_SIZE

__all__ = [
    "ADDRESS_KEY_SIZE",
    "IDENTITY_HASH_SIZE",
    "INVITE_PATH",
    "IdentityMismatch",
    "InvalidInvitation",
    "Invitation",
    "identity_hash",
    "open_bundle",
    "relay_identity_hash",
    "seal_item",
    "seal_static",
]

ADDRESS_KEY_SIZE = 32
INVITE_PATH = "/v1/invite"
IDENTITY_HASH_SIZE = 16
_INVITE_VERSION = 2
_V1 = 1
_V3 = 3
_RELAY_LABEL = b"blindrelay/v1/relay-identity\x00"
_IDENTITY_LABEL = b"blindrelay/v1/invite-identity\x00"
_BUNDLE_INFO = b"blindrelay/v1/address-bundle"
_STATIC_AD = b"blindrelay/v1/address-static\x00"
_ITEM_AD = b"blindrelay/v1/address-item\x00"


class InvalidInvitation(LocalProtocolError):
    """The string is not a blindrelay invitation link (or of an unsupported version)."""


class IdentityMismatch(KeyValidationError):
    """The bundle the relay served for a version-2 invitation carries an identity key that
    does not hash to the one the link commits to: someone who knows the link's address key
    (the relay operator, or an invitee colluding with it) substituted its own bundle. Nothing
    is sent and nothing is kept."""


def relay_identity_hash(relay_identity: bytes) -> bytes:
    """``SHA-256("blindrelay/v1/relay-identity" || 0x00 || ri)[0:16]`` (protocol.md §27.3):
    what a version-3 link pins of its relay's identity key."""
    return sha256(_RELAY_LABEL + relay_identity)[:IDENTITY_HASH_SIZE]


def identity_hash(identity: IdentityPublicKey) -> bytes:
    """``SHA-256("blindrelay/v1/invite-identity" || 0x00 || IK)[0:16]`` (protocol.md §21.2)."""
    return sha256(_IDENTITY_LABEL + bytes(identity))[:IDENTITY_HASH_SIZE]


@dataclass(frozen=True, slots=True)
class Invitation:
    """A link to a contact address: where the relay is, the send id, the address key and
    (link version 2) a hash of the inviter's identity key.

    ``link`` and ``qr_payload`` are what you share; treat them like a phone number you give
    out: whoever has them can send you a contact request (which you may decline). Build a
    version-2 invitation with :meth:`for_identity` (what :class:`~clientlib.Client` does);
    ``identity_hash=None`` is a version-1 link (parsed from an old link; see
    :attr:`commits_to_identity`).
    """

    relay_url: str
    sid: bytes = field(repr=False)
    key: bytes = field(repr=False)
    identity_hash: bytes | None = field(default=None, repr=False)
    #: Version 3 (revision 11): a hash of the relay's identity key (:func:`relay_identity_hash`),
    #: which pins the relay's route keys for two-hop routing (protocol.md §27.3).
    relay_hash: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.sid) != MAILBOX_ID_SIZE or len(self.key) != ADDRESS_KEY_SIZE:
            raise InvalidInvitation("bad invitation field sizes")
        if self.identity_hash is not None and len(self.identity_hash) != IDENTITY_HASH_SIZE:
            raise InvalidInvitation("bad invitation field sizes")
        if self.relay_hash is not None and (
            len(self.relay_hash) != IDENTITY_HASH_SIZE or self.identity_hash is None
        ):
            raise InvalidInvitation("bad invitation field sizes")

    @classmethod
    def for_identity(
        cls, relay_url: str, sid: bytes, key: bytes, identity: IdentityPublicKey
    ) -> Invitation:
        """A version-2 invitation committing to ``identity`` (the inviter's identity key)."""
        return cls(relay_url, sid, key, identity_hash(identity))

    def pinning_relay(self, relay_identity: bytes | None) -> Invitation:
        """This invitation as a version-3 link that also pins the relay's identity key
        (unchanged when ``relay_identity`` is None: a relay without route keys)."""
        if relay_identity is None or self.identity_hash is None:
            return self
        return Invitation(
            self.relay_url, self.sid, self.key, self.identity_hash,
            relay_identity_hash(relay_identity),
        )  # fmt: skip

    @property
    def version(self) -> int:
        """The link version: 2 (commits to the identity key) or 1 (an old link)."""
        if self.relay_hash is not None:
            return _V3
        return _V1 if self.identity_hash is None else _INVITE_VERSION

    @property
    def commits_to_identity(self) -> bool:
        """False for a version-1 link: the relay (or anyone holding the link) can then serve
        a bundle of its own identity, and only a safety-number comparison detects it. Warn
        the user and ask the inviter for a new link (protocol.md §21.2)."""
        return self.identity_hash is not None

    @property
    def link(self) -> str:
        raw = bytes((self.version,)) + self.sid + self.key + (self.identity_hash or b"")
        raw += self.relay_hash or b""
        token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        return f"{self.relay_url.rstrip('/')}{INVITE_PATH}#{token}"

    @property
    def qr_payload(self) -> bytes:
        """The bytes to put in a QR code (the link, UTF-8)."""
        return self.link.encode("utf-8")

    @classmethod
    def parse(cls, link: str) -> Invitation:
        """Parse an invitation link.

        Version-2 links (65-byte token) and version-1 links (49 bytes, no identity hash:
        :attr:`commits_to_identity` is False) are accepted.

        Raises:
            InvalidInvitation: not a link of this form, or an unsupported version.
        """
        text = link.strip()
        base, sep, token = text.partition("#")
        if not sep or not base.endswith(INVITE_PATH):
            raise InvalidInvitation("not a blindrelay invitation link")
        relay_url = base[: -len(INVITE_PATH)]
        try:
            normalize_relay_url(relay_url)  # protocol.md §27.1: checked before any use
        except InvalidRelayUrl:
            raise InvalidInvitation(
                "the invitation's relay URL must be http(s)://host[:port][/prefix]"
            ) from None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidInvitation("the invitation token is not base64url") from None
        base_len = 1 + MAILBOX_ID_SIZE + ADDRESS_KEY_SIZE
        if raw[:1] == bytes((_INVITE_VERSION,)) and len(raw) == base_len + IDENTITY_HASH_SIZE:
            return cls(relay_url, raw[1:17], raw[17:base_len], raw[base_len:])
        if raw[:1] == bytes((_V3,)) and len(raw) == base_len + 2 * IDENTITY_HASH_SIZE:
            h_end = base_len + IDENTITY_HASH_SIZE
            return cls(relay_url, raw[1:17], raw[17:base_len], raw[base_len:h_end], raw[h_end:])
        if raw[:1] == bytes((_V1,)) and len(raw) == base_len:
            return cls(relay_url, raw[1:17], raw[17:])
        raise InvalidInvitation("unsupported or damaged invitation")

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

    For a version-2 invitation the bundle's identity key must hash to the link's
    :attr:`Invitation.identity_hash`; a version-1 invitation has nothing to check it against.

    Raises:
        IdentityMismatch: (a :class:`KeyValidationError`) the bundle's identity key is not
            the one the version-2 link commits to: a substituted bundle.
        KeyValidationError: a blob does not decrypt under the invitation's key, or a key or
            signature inside is invalid.
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
    if invitation.identity_hash is not None and not ct_eq(
        identity_hash(identity), invitation.identity_hash
    ):
        raise IdentityMismatch(
            "the address bundle's identity key does not match the invitation (substituted)"
        )
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
