"""Sessions: the sans-IO state machine a client drives (protocol.md §11-§15).

Theory of operation
-------------------
Sending: :func:`initiate` (from a :class:`PreKeyBundle`) creates a session and its first
envelope; :meth:`Session.encrypt` makes every later one. Each envelope is::

    ct = seal(inner)                               # §13, hides the sender from the relay
    inner = 0x01 | type | [prekey header] | ratchet header | AEAD(padded body)
    fc = franking commitment                       # §15, travels next to ct

Receiving: :func:`open_envelope` removes the sealed layer and says who sent it and whether it
is a prekey message. The caller then either routes it to the sender's existing session
(:meth:`Session.receive_opened`) or, for a new handshake, fetches the prekeys it names
(:attr:`OpenedEnvelope.prekey_header`) and calls :func:`accept`. For a known pairwise peer,
:meth:`Session.receive` does both steps with a cached static DH.

Rules: nothing here does I/O, reads a clock or draws randomness of its own (``now`` and ``rng``
are parameters); every failure to decrypt or authenticate raises the one
:class:`~clientlib.errors.DecryptionError` and leaves the session exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from clientlib.crypto.amf import AMF_SIGNATURE_SIZE, PreparedFrank, frank, verify_as_recipient
from clientlib.crypto.franking import (
    FRANKING_COMMITMENT_SIZE,
    FRANKING_KEY_SIZE,
    MAX_ATTACHMENTS,
    franking_commit,
    franking_verify,
)
from clientlib.crypto.kdf import kdf_message_keys
from clientlib.crypto.keys import RNG, IdentityKeyPair, IdentityPublicKey, X25519KeyPair, _draw
from clientlib.crypto.padding import max_content_size, pad, unpad
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair
from clientlib.crypto.primitives import (
    AEAD_TAG_SIZE,
    HASH_SIZE,
    aead_decrypt,
    aead_encrypt,
    ct_eq,
    sha256,
)
from clientlib.errors import DecryptionError, KeyValidationError, LocalProtocolError
from clientlib.session.events import MessageReceived, SealedEnvelope, SessionEstablished
from clientlib.session.handshake import (
    PREKEY_HEADER_SIZE,
    Encapsulate,
    PreKeyBundle,
    PreKeyHeader,
    initiator_handshake,
    responder_handshake,
)
from clientlib.session.ratchet import HEADER_SIZE, RatchetState, parse_header
from clientlib.session.sealed import SEALED_OVERHEAD, seal, unseal
from clientlib.session.state import SessionRecord
from clientlib.wire.limits import ENVELOPE_BUCKETS

__all__ = [
    "BODY_VERSION",
    "BODY_VERSION_LEGACY",
    "INNER_VERSION",
    "MESSAGE_OVERHEAD",
    "PREKEY_MESSAGE_OVERHEAD",
    "TYPE_PREKEY",
    "TYPE_RATCHET",
    "Accepted",
    "ModeratorKey",
    "ModeratorKeys",
    "OpenedEnvelope",
    "Session",
    "accept",
    "initiate",
    "max_plaintext_size",
    "open_envelope",
]

INNER_VERSION: Final = 1
#: Body version of revision 5: ``0x02 | fk | u32(akid) | sigma | n | hashes | message``.
BODY_VERSION: Final = 2
#: The revision-4 body ``0x01 | fk | n | hashes | message`` (no sender binding, §15.5).
BODY_VERSION_LEGACY: Final = 1
TYPE_PREKEY: Final = 0x01
TYPE_RATCHET: Final = 0x02
#: Bytes wrapped around the padded body of a ratchet message: sealed layer (97), inner
#: version and type (2), ratchet header (40), AEAD tag (16).
MESSAGE_OVERHEAD: Final = SEALED_OVERHEAD + 2 + HEADER_SIZE + AEAD_TAG_SIZE
#: The same for a prekey message, which also carries the 1134-byte handshake header.
PREKEY_MESSAGE_OVERHEAD: Final = MESSAGE_OVERHEAD + PREKEY_HEADER_SIZE
#: ``version(1) | fk(32) | n_attachments(1)`` before the hashes and the message.
_BODY_FIXED: Final = 1 + FRANKING_KEY_SIZE + 1
#: ``version(1) | fk(32) | akid(4) | sigma(448) | n_attachments(1)`` of body version 2.
_BODY_FIXED_V2: Final = 1 + FRANKING_KEY_SIZE + 4 + AMF_SIGNATURE_SIZE + 1


class ModeratorKey(NamedTuple):
    """A moderator key ``(kid, M_kid)`` that a relay publishes (protocol.md §15.5.3)."""

    kid: int
    public: bytes


#: The recipient's lookup of its own relay's moderator keys: ``kid -> M_kid``, or None for a
#: kid that is neither its relay's current key nor the one immediately before (§15.5.7).
ModeratorKeys = Callable[[int], bytes | None]


def max_plaintext_size(*, prekey: bool = False, attachments: int = 0, franked: bool = False) -> int:
    """The largest message :meth:`Session.encrypt` accepts: 65,343 bytes for a plain legacy
    one (body version 1), 64,891 with ``franked`` (body version 2, what a client sends)."""
    overhead = PREKEY_MESSAGE_OVERHEAD if prekey else MESSAGE_OVERHEAD
    fixed = _BODY_FIXED_V2 if franked else _BODY_FIXED
    return max_content_size(overhead, ENVELOPE_BUCKETS) - fixed - HASH_SIZE * attachments


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """An envelope whose sealed layer was removed: the sender is authenticated, the content
    not yet.

    Attributes:
        sender: the identity key that authenticated the sealed layer.
        inner: the inner message bytes.
        prekey_header: the handshake fields of a prekey message (which prekeys to look up),
            or None for a ratchet message.
    """

    sender: IdentityPublicKey
    inner: bytes
    prekey_header: PreKeyHeader | None

    @property
    def is_prekey_message(self) -> bool:
        return self.prekey_header is not None

    def __repr__(self) -> str:
        kind = "prekey" if self.prekey_header is not None else "ratchet"
        return f"OpenedEnvelope(sender={self.sender!r}, {kind}, <{len(self.inner)} bytes>)"


def _parse_inner(inner: bytes) -> PreKeyHeader | None:
    if len(inner) < 2 + HEADER_SIZE + AEAD_TAG_SIZE or inner[0] != INNER_VERSION:
        raise DecryptionError
    if inner[1] == TYPE_RATCHET:
        return None
    if inner[1] == TYPE_PREKEY and len(inner) >= 2 + PREKEY_HEADER_SIZE + HEADER_SIZE:
        return PreKeyHeader.parse(inner[2 : 2 + PREKEY_HEADER_SIZE])
    raise DecryptionError


def open_envelope(identity: IdentityKeyPair, ct: bytes) -> OpenedEnvelope:
    """Remove the sealed layer of an envelope addressed to ``identity`` (§13.3).

    Raises:
        DecryptionError: on every failure (wrong size, wrong recipient, tampering, bad keys).
    """
    if len(ct) not in ENVELOPE_BUCKETS:
        raise DecryptionError
    sender, inner = unseal(ct, recipient=identity)
    return OpenedEnvelope(sender, inner, _parse_inner(inner))


class Session:
    """One end of a pairwise Double Ratchet session (sans-IO).

    Not thread-safe; the caller persists :meth:`to_record` after every successful call.
    """

    __slots__ = (
        "_ad",
        "_dh_s",
        "_handshake_hash",
        "_local",
        "_prekey_header",
        "_ratchet",
        "_remote",
    )

    def __init__(
        self,
        *,
        local: IdentityPublicKey,
        remote: IdentityPublicKey,
        ad: bytes,
        dh_static: bytes,
        ratchet: RatchetState,
        prekey_header: bytes | None,
        handshake_hash: bytes | None,
    ) -> None:
        self._local = local
        self._remote = remote
        self._ad = ad
        self._dh_s = dh_static
        self._ratchet = ratchet
        self._prekey_header = prekey_header
        self._handshake_hash = handshake_hash

    def __repr__(self) -> str:
        return (
            f"<Session local={self._local!r} remote={self._remote!r} "
            f"handshake={self._ad[:8].hex()}... {self._ratchet!r}>"
        )

    __str__ = __repr__

    # --- properties -----------------------------------------------------------------------

    @property
    def local_identity(self) -> IdentityPublicKey:
        return self._local

    @property
    def remote_identity(self) -> IdentityPublicKey:
        return self._remote

    @property
    def handshake_hash(self) -> bytes:
        """The transcript hash ``th`` of the handshake (public; names the session)."""
        return self._ad

    @property
    def awaiting_reply(self) -> bool:
        """True while the initiator still attaches the handshake header (§11.6)."""
        return self._prekey_header is not None

    @property
    def skipped_key_count(self) -> int:
        return len(self._ratchet.skipped)

    def expire_skipped(self, now: int) -> int:
        """Delete the skipped message keys older than ``MAX_SKIPPED_KEY_AGE`` (protocol.md
        §12.3) and return how many went. ``now`` is the caller's clock in seconds (sans-IO).

        Receiving and sending also expire, and an over-age key is refused at lookup even
        before it is deleted; call this on an idle session (the client does on open and
        whenever it loads a session record) so that the keys leave the keystore too.
        """
        return self._ratchet.expire_skipped(now)

    # --- sending --------------------------------------------------------------------------

    def encrypt(
        self,
        plaintext: bytes,
        *,
        rng: RNG,
        now: int,
        attachment_hashes: Sequence[bytes] = (),
        identity: IdentityKeyPair | None = None,
        moderator: ModeratorKey | None = None,
        prepared: PreparedFrank | None = None,
    ) -> SealedEnvelope:
        """Encrypt, pad, seal, commit and frank one message (§12.4, §13.2, §14, §15).

        With ``identity`` and ``moderator`` the body is version 2 and carries the AMF
        signature ``sigma`` (§15.5) by ``identity`` to this session's peer under the moderator
        key of the peer's relay; without them it is the legacy version 1 (no sender binding:
        a revision-5 recipient drops it, §12.5).

        Args:
            plaintext: the message.
            rng: injected randomness; draws, in order: franking key (32), the AMF hedge (32,
                version 2 only and not with a usable ``prepared``; again on the ~2^-250
                retry), a new ratchet key (32, only when
                a DH step is pending), the sealed-sender ephemeral (32).
            now: the current time in seconds (expires old skipped keys).
            attachment_hashes: SHA-256 of each attachment's plaintext (at most 16).
            identity: our identity key pair (it signs ``sigma``); must match the session.
            moderator: ``(kid, M_kid)`` published by the recipient's relay (§15.5.3).
            prepared: an unused signature prepared ahead of time by
                :func:`clientlib.crypto.amf.prepare` for this session's peer under
                ``moderator`` (§15.5.5 "Precomputation"): only the challenge and responses
                are left to compute, and no AMF hedge is drawn. One prepared for other
                inputs is ignored (the signature is made in full).

        Returns:
            ``SealedEnvelope(ct, fc)`` with ``len(ct)`` exactly one envelope bucket.

        Raises:
            LocalProtocolError: the message or attachment list is too large or malformed, or
                only one of ``identity``/``moderator`` is given, or ``identity`` is not ours.
            KeyValidationError: ``moderator.public`` is not a valid prime-order point.
            SessionError: the session cannot send (responder before its first receipt).
        """
        if (identity is None) != (moderator is None):
            raise LocalProtocolError("identity and moderator go together")
        if identity is not None and identity.public != self._local:
            raise LocalProtocolError("identity is not this session's local identity")
        fixed = _BODY_FIXED if moderator is None else _BODY_FIXED_V2
        hashes = tuple(attachment_hashes)
        if len(hashes) > MAX_ATTACHMENTS or any(len(h) != HASH_SIZE for h in hashes):
            raise LocalProtocolError("at most 16 attachment hashes of 32 bytes each")
        prefix = bytes((INNER_VERSION,))
        if self._prekey_header is not None:
            prefix += bytes((TYPE_PREKEY,)) + self._prekey_header
            overhead = PREKEY_MESSAGE_OVERHEAD
        else:
            prefix += bytes((TYPE_RATCHET,))
            overhead = MESSAGE_OVERHEAD
        if len(plaintext) + fixed + HASH_SIZE * len(hashes) > max_content_size(
            overhead, ENVELOPE_BUCKETS
        ):
            raise LocalProtocolError("message too large for the largest envelope bucket")
        fk = _draw(rng, FRANKING_KEY_SIZE)
        fc = franking_commit(
            fk,
            sender=bytes(self._local),
            recipient=bytes(self._remote),
            message=plaintext,
            attachment_hashes=hashes,
        )
        if identity is None or moderator is None:
            head = bytes((BODY_VERSION_LEGACY,)) + fk
        else:
            sigma = None
            if prepared is not None and prepared.binds(
                self._local, self._remote, moderator.public, moderator.kid
            ):
                try:
                    sigma = prepared.sign(fc)
                except ValueError:  # pragma: no cover - a zero response, probability 2^-251
                    sigma = None
            if sigma is None:
                try:
                    sigma = frank(
                        identity,
                        self._local,
                        self._remote,
                        moderator.public,
                        moderator.kid,
                        fc,
                        rng=rng,
                    )
                except ValueError as exc:
                    raise LocalProtocolError("bad moderator key id") from exc
            head = bytes((BODY_VERSION,)) + fk + moderator.kid.to_bytes(4, "big") + sigma
        body = head + bytes((len(hashes),)) + b"".join(hashes) + plaintext
        padded = pad(body, overhead=overhead, buckets=ENVELOPE_BUCKETS)
        self._ratchet.expire_skipped(now)
        header, mk = self._ratchet.next_sending_key(rng)
        key, nonce = kdf_message_keys(mk)
        prefix += header
        inner = prefix + aead_encrypt(key, nonce, padded, self._ad + fc + prefix)
        ct = seal(inner, sender=self._local, dh_s=self._dh_s, recipient=self._remote, rng=rng)
        assert len(ct) in ENVELOPE_BUCKETS
        return SealedEnvelope(ct, fc)

    # --- receiving ------------------------------------------------------------------------

    def receive(
        self,
        ct: bytes,
        fc: bytes | None,
        *,
        identity: IdentityKeyPair,
        now: int,
        relay_tag: bytes | None = None,
        moderator_keys: ModeratorKeys | None = None,
    ) -> MessageReceived:
        """Open an envelope from this session's peer (sealed layer included).

        Args:
            ct: the envelope ciphertext exactly as delivered.
            fc: the franking commitment delivered with it (``None`` fails: v1 always sends it).
            identity: our identity key pair (for the sealed layer).
            now: the current time in seconds.
            relay_tag: the relay's tag over ``fc`` and delivery context, when provided
                (passed through to the event for reports; reserved, not verified in v1).
            moderator_keys: our own relay's moderator keys (§15.5.7). Given, only body
                version 2 is accepted and its ``sigma`` must verify under the key the lookup
                returns for its ``akid``; without it, only the legacy body version 1 is
                accepted (tests and vectors of revision 4), and the event is not reportable.

        Raises:
            DecryptionError: on every failure, including an envelope from anyone else; the
                session is left unchanged.
        """
        if len(ct) not in ENVELOPE_BUCKETS:
            raise DecryptionError
        sender, inner = unseal(ct, recipient=identity, known_sender=(self._remote, self._dh_s))
        if sender != self._remote:
            raise DecryptionError
        return self._receive_inner(
            inner, fc, now=now, relay_tag=relay_tag, moderator_keys=moderator_keys
        )

    def receive_opened(
        self,
        opened: OpenedEnvelope,
        fc: bytes | None,
        *,
        now: int,
        relay_tag: bytes | None = None,
        moderator_keys: ModeratorKeys | None = None,
    ) -> MessageReceived:
        """Decrypt an envelope already opened by :func:`open_envelope`
        (``moderator_keys`` as for :meth:`receive`).

        Raises:
            DecryptionError: on every failure (including a sender that is not our peer, or a
                prekey message of another handshake); the session is left unchanged.
        """
        if opened.sender != self._remote:
            raise DecryptionError
        return self._receive_inner(
            opened.inner, fc, now=now, relay_tag=relay_tag, moderator_keys=moderator_keys
        )

    def owns(self, opened: OpenedEnvelope) -> bool:
        """Whether ``opened`` belongs to this session (same peer; same handshake if prekey)."""
        if opened.sender != self._remote:
            return False
        if opened.prekey_header is None:
            return True
        return self._handshake_hash is not None and ct_eq(
            sha256(opened.prekey_header.raw), self._handshake_hash
        )

    def _receive_inner(
        self,
        inner: bytes,
        fc: bytes | None,
        *,
        now: int,
        relay_tag: bytes | None,
        moderator_keys: ModeratorKeys | None = None,
    ) -> MessageReceived:
        # protocol.md §12.5: steps 1-8; no state changes before step 8.
        if fc is None or len(fc) != FRANKING_COMMITMENT_SIZE:
            raise DecryptionError
        prekey = _parse_inner(inner)
        pos = 2
        if prekey is not None:
            if self._handshake_hash is None or not ct_eq(sha256(prekey.raw), self._handshake_hash):
                raise DecryptionError
            pos += PREKEY_HEADER_SIZE
        dh, pn, n = parse_header(inner[pos : pos + HEADER_SIZE])
        pos += HEADER_SIZE
        mk, update = self._ratchet.plan_receive(dh, pn, n, now=now)
        key, nonce = kdf_message_keys(mk)
        padded = aead_decrypt(key, nonce, inner[pos:], self._ad + fc + inner[:pos])
        body = unpad(padded)
        akid: int | None = None
        sigma: bytes | None = None
        if moderator_keys is None:
            # Legacy receiver (tests, vectors of revision 4): body version 1 only.
            if len(body) < _BODY_FIXED or body[0] != BODY_VERSION_LEGACY:
                raise DecryptionError
            fixed = _BODY_FIXED
        else:
            # Revision 5 (§12.5 step 7b): body version 2 only, sigma checked below.
            if len(body) < _BODY_FIXED_V2 or body[0] != BODY_VERSION:
                raise DecryptionError
            akid = int.from_bytes(body[33:37], "big")
            sigma = body[37 : 37 + AMF_SIGNATURE_SIZE]
            fixed = _BODY_FIXED_V2
        fk = body[1:33]
        count = body[fixed - 1]
        end = fixed + HASH_SIZE * count
        if count > MAX_ATTACHMENTS or len(body) < end:
            raise DecryptionError
        hashes = tuple(body[i : i + HASH_SIZE] for i in range(fixed, end, HASH_SIZE))
        message = body[end:]
        franking_verify(
            fc,
            fk,
            sender=bytes(self._remote),
            recipient=bytes(self._local),
            message=message,
            attachment_hashes=hashes,
        )
        if moderator_keys is not None:
            assert akid is not None and sigma is not None
            moderator = moderator_keys(akid)
            if moderator is None:
                raise DecryptionError
            try:
                verify_as_recipient(self._remote, self._local, moderator, akid, fc, sigma)
            except KeyValidationError:
                raise DecryptionError from None
        # Authenticated: commit.
        self._ratchet.apply(update, now)
        self._ratchet.expire_skipped(now)
        self._prekey_header = None
        return MessageReceived(self._remote, message, hashes, fk, fc, relay_tag, akid, sigma)

    # --- persistence ----------------------------------------------------------------------

    def to_record(self) -> SessionRecord:
        """Snapshot the state for the keystore (secret)."""
        r = self._ratchet
        return SessionRecord(
            local_identity=bytes(self._local),
            remote_identity=bytes(self._remote),
            ad=self._ad,
            dh_static=self._dh_s,
            root_key=r.root_key,
            dhs_private=None if r.dhs is None else r.dhs.private_bytes(),
            dhr=r.dhr,
            cks=r.cks,
            ckr=r.ckr,
            ns=r.ns,
            nr=r.nr,
            pn=r.pn,
            step_pending=r.step_pending,
            skipped=tuple((dh, n, mk, t) for (dh, n), (mk, t) in r.skipped.items()),
            prekey_header=self._prekey_header,
            handshake_hash=self._handshake_hash,
        )

    @classmethod
    def from_record(cls, record: SessionRecord | bytes, *, now: int | None = None) -> Session:
        """Restore a session saved by :meth:`to_record`.

        With ``now`` (seconds), skipped message keys older than ``MAX_SKIPPED_KEY_AGE`` are
        expired on load (:meth:`expire_skipped`).

        Raises:
            KeystoreError: the record is malformed or holds invalid keys.
        """
        from clientlib.errors import KeystoreError

        rec = record if isinstance(record, SessionRecord) else SessionRecord.from_bytes(record)
        try:
            local = IdentityPublicKey.from_bytes(rec.local_identity)
            remote = IdentityPublicKey.from_bytes(rec.remote_identity)
        except KeyValidationError:
            raise KeystoreError("session record holds an invalid identity key") from None
        if rec.prekey_header is not None and len(rec.prekey_header) != PREKEY_HEADER_SIZE:
            raise KeystoreError("session record holds a malformed prekey header")
        ratchet = RatchetState(
            root_key=rec.root_key,
            dhs=None if rec.dhs_private is None else X25519KeyPair(rec.dhs_private),
            dhr=rec.dhr,
            cks=rec.cks,
            ckr=rec.ckr,
            ns=rec.ns,
            nr=rec.nr,
            pn=rec.pn,
            step_pending=rec.step_pending,
            skipped={(dh, n): (mk, t) for dh, n, mk, t in rec.skipped},
        )
        session = cls(
            local=local,
            remote=remote,
            ad=rec.ad,
            dh_static=rec.dh_static,
            ratchet=ratchet,
            prekey_header=rec.prekey_header,
            handshake_hash=rec.handshake_hash,
        )
        if now is not None:
            session.expire_skipped(now)
        return session


@dataclass(frozen=True, slots=True)
class Accepted:
    """What :func:`accept` returns: the new session and the two events it produced."""

    session: Session
    established: SessionEstablished
    message: MessageReceived


def initiate(
    identity: IdentityKeyPair,
    bundle: PreKeyBundle | bytes,
    plaintext: bytes,
    *,
    rng: RNG,
    now: int,
    attachment_hashes: Sequence[bytes] = (),
    encapsulate: Encapsulate | None = None,
    moderator: ModeratorKey | None = None,
) -> tuple[Session, SealedEnvelope]:
    """Start a session from a prekey bundle or invitation and encrypt its first message.

    Args:
        identity: our identity key pair.
        bundle: the peer's bundle (parsed and verified here if given as bytes).
        plaintext: the first message.
        rng: injected randomness; draws, in order: ``EK_A`` (32), the first ratchet key (32),
            then those of :meth:`Session.encrypt`.
        now: the current time in seconds.
        attachment_hashes: as for :meth:`Session.encrypt`.
        encapsulate: test-vector hook replacing ML-KEM ``Encaps`` (see §10.2).
        moderator: the moderator key of the peer's relay; given, the message is franked
            (body version 2, :meth:`Session.encrypt`).

    Returns:
        ``(session, envelope)``. Until a reply arrives every envelope repeats the handshake.

    Raises:
        KeyValidationError: the bundle is malformed or a signature or key is invalid.
        LocalProtocolError: the message is too large.
    """
    b = bundle if isinstance(bundle, PreKeyBundle) else PreKeyBundle.parse(bundle)
    hs = initiator_handshake(identity, b, rng=rng, encapsulate=encapsulate)
    ratchet = RatchetState.for_initiator(hs.sk, bytes(b.signed_prekey.public), rng)
    session = Session(
        local=identity.public,
        remote=b.identity,
        ad=hs.th,
        dh_static=identity.dh(b.identity.x25519),
        ratchet=ratchet,
        prekey_header=hs.header,
        handshake_hash=None,
    )
    envelope = session.encrypt(
        plaintext,
        rng=rng,
        now=now,
        attachment_hashes=attachment_hashes,
        identity=None if moderator is None else identity,
        moderator=moderator,
    )
    return session, envelope


def accept(
    identity: IdentityKeyPair,
    opened: OpenedEnvelope,
    fc: bytes | None,
    *,
    signed_prekey: PreKeyPair,
    kem_prekey: PreKeyPair,
    one_time_prekey: PreKeyPair | None,
    now: int,
    relay_tag: bytes | None = None,
    moderator_keys: ModeratorKeys | None = None,
) -> Accepted:
    """Bob: create a session from a prekey message and decrypt its content (§11.5).

    Args:
        identity: our identity key pair.
        opened: a prekey message from :func:`open_envelope`.
        fc: the franking commitment delivered with it.
        signed_prekey: the X25519 signed prekey named by ``opened.prekey_header``.
        kem_prekey: the ML-KEM prekey it names (one-time or last-resort).
        one_time_prekey: the one-time X25519 prekey it names, or None if it names none (or
            the keystore no longer has it, which fails).
        now: the current time in seconds.
        relay_tag: as for :meth:`Session.receive`.
        moderator_keys: as for :meth:`Session.receive`.

    Returns:
        :class:`Accepted`; ``established.consumed_prekeys`` lists the one-time keys to delete
        now. Nothing is consumed when this raises.

    Raises:
        LocalProtocolError: ``opened`` is not a prekey message, or the prekeys passed are not
            the ones it names.
        DecryptionError: the message does not decrypt or authenticate.
    """
    header = opened.prekey_header
    if header is None:
        raise LocalProtocolError("not a prekey message")
    hs = responder_handshake(
        identity,
        opened.sender,
        header,
        signed_prekey=signed_prekey,
        kem_prekey=kem_prekey,
        one_time_prekey=one_time_prekey,
    )
    spk = signed_prekey.keypair
    assert isinstance(spk, X25519KeyPair)
    try:
        dh_s = identity.dh(opened.sender.x25519)
    except KeyValidationError:  # pragma: no cover - validated in unseal
        raise DecryptionError from None
    session = Session(
        local=identity.public,
        remote=opened.sender,
        ad=hs.th,
        dh_static=dh_s,
        ratchet=RatchetState.for_responder(hs.sk, X25519KeyPair(spk.private_bytes())),
        prekey_header=None,
        handshake_hash=sha256(header.raw),
    )
    message = session._receive_inner(
        opened.inner, fc, now=now, relay_tag=relay_tag, moderator_keys=moderator_keys
    )
    consumed: list[tuple[PreKeyKind, int]] = []
    if header.kem_kind is PreKeyKind.MLKEM_ONE_TIME:
        consumed.append((PreKeyKind.MLKEM_ONE_TIME, header.kem_prekey_id))
    if header.one_time_prekey_id is not None:
        consumed.append((PreKeyKind.X25519_ONE_TIME, header.one_time_prekey_id))
    established = SessionEstablished(
        opened.sender,
        hs.th,
        tuple(consumed),
        header.kem_kind is PreKeyKind.MLKEM_LAST_RESORT,
    )
    return Accepted(session, established, message)
