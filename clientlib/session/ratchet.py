"""The Double Ratchet (protocol.md §12), after Signal's specification, with a lazy send step.

Theory of operation
-------------------
State per session: root key ``RK``; our ratchet key pair ``DHs``; the peer's ratchet key
``DHr``; sending and receiving chain keys ``CKs``/``CKr``; counters ``Ns``, ``Nr``, ``PN``; a
flag ``step_pending``; and a bounded cache of skipped message keys keyed by ``(DHr, n)``.

* **Receiving** a header ``(dh, pn, n)``:
  1. ``(dh, n)`` in the skipped cache: use and delete that key.
  2. ``dh == DHr``: ``n < Nr`` is a duplicate or an evicted key (rejected); otherwise step
     ``CKr`` forward to ``n``, caching the keys passed over.
  3. otherwise (a new peer ratchet key): cache the rest of the current receiving chain up to
     ``pn``, then ``RK, CKr = KDF_RK(RK, DH(DHs, dh))``, ``DHr = dh``, ``Nr = 0``,
     ``step_pending = True``, then as in 2. The old ``DHs`` private key is erased at that
     point: the next send draws a new one, and the peer cannot send under a new ratchet key
     before it has received ours, so nothing needs it any more (for a responder, ``DHs`` is
     the signed prekey: a pending request's session does not keep it past rotation).
* **Sending**: if ``step_pending``: ``PN = Ns``, ``Ns = 0``, new ``DHs`` from the rng,
  ``RK, CKs = KDF_RK(RK, DH(DHs, DHr))``, ``step_pending = False``. Then ``CKs, MK =
  KDF_CK(CKs)``, header ``(DHs.pub, PN, Ns)``, ``Ns += 1``.

Signal's specification performs the sending step eagerly on receipt; doing it at the next send
(a "lazy" variant) means decryption needs no randomness and costs one DH less,
and the new key is as fresh. Both sides follow the same rule, so the key schedule is defined.

Rules: (1) receiving never mutates state before the AEAD has authenticated the message: it
computes a :class:`_Update`, and the caller applies it only after successful decryption; (2)
every failure is the one :class:`~clientlib.errors.DecryptionError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from clientlib.crypto.kdf import kdf_chain, kdf_root
from clientlib.crypto.keys import RNG, X25519KeyPair
from clientlib.crypto.primitives import X25519_KEY_SIZE, ct_eq, validate_x25519_public
from clientlib.errors import DecryptionError, KeyValidationError, SessionError

__all__ = [
    "HEADER_SIZE",
    "MAX_COUNTER",
    "MAX_FORWARD_JUMP",
    "MAX_SKIPPED_KEYS",
    "MAX_SKIPPED_KEY_AGE",
    "RatchetState",
    "encode_header",
    "parse_header",
]

#: ``dh(32) | pn(4) | n(4)``.
HEADER_SIZE: Final = X25519_KEY_SIZE + 8
#: Counters are u32 on the wire; a chain that reaches this must ratchet (never in practice).
MAX_COUNTER: Final = 2**32 - 1
#: Most message keys one received message may make us derive (previous-chain tail plus the
#: gap in the new chain). Bounds the CPU one forged-but-unauthenticated header can cost before
#: the AEAD rejects it: 2000 HMAC pairs are about 5 ms in CPython. libsignal allows 25,000 in
#: Rust; a client that is 2000 messages behind on one chain has lost them (the relay's
#: mailbox quota and 21-day TTL drop older envelopes anyway).
MAX_FORWARD_JUMP: Final = 2000
#: Most skipped message keys kept per session; the oldest is evicted first. Bounds memory and
#: the session record (about 2000 * 80 bytes = 160 KiB). libsignal keeps 2000 as well.
MAX_SKIPPED_KEYS: Final = 2000
#: Skipped keys older than this (seconds) are deleted: they weaken forward secrecy for every
#: message they could still open, and an envelope older than the relay's 21-day TTL (plus a
#: week of client offline slack) cannot arrive any more.
MAX_SKIPPED_KEY_AGE: Final = 28 * 24 * 3600


def encode_header(dh: bytes, pn: int, n: int) -> bytes:
    """``dh(32) | pn(4, big-endian) | n(4, big-endian)``."""
    return dh + struct.pack(">II", pn, n)


def parse_header(data: bytes) -> tuple[bytes, int, int]:
    """Inverse of :func:`encode_header`, with the peer's key validated.

    Raises:
        DecryptionError: wrong length or an invalid ratchet key.
    """
    if len(data) != HEADER_SIZE:
        raise DecryptionError
    dh = data[:X25519_KEY_SIZE]
    try:
        validate_x25519_public(dh)
    except KeyValidationError:
        raise DecryptionError from None
    pn, n = struct.unpack(">II", data[X25519_KEY_SIZE:])
    return dh, pn, n


@dataclass(slots=True)
class _Update:
    """Everything a successful receive changes; applied only after the AEAD succeeds."""

    used_skipped: tuple[bytes, int] | None = None
    new_skipped: list[tuple[bytes, int, bytes]] = field(default_factory=list)
    root_key: bytes | None = None
    dhr: bytes | None = None
    ckr: bytes | None = None
    nr: int = 0


class RatchetState:
    """Mutable Double Ratchet state. Never printed, never compared."""

    __slots__ = (
        "ckr",
        "cks",
        "dhr",
        "dhs",
        "nr",
        "ns",
        "pn",
        "root_key",
        "skipped",
        "step_pending",
    )

    def __init__(
        self,
        *,
        root_key: bytes,
        dhs: X25519KeyPair | None,
        dhr: bytes | None,
        cks: bytes | None,
        ckr: bytes | None,
        ns: int = 0,
        nr: int = 0,
        pn: int = 0,
        step_pending: bool = False,
        skipped: dict[tuple[bytes, int], tuple[bytes, int]] | None = None,
    ) -> None:
        self.root_key = root_key
        self.dhs = dhs
        self.dhr = dhr
        self.cks = cks
        self.ckr = ckr
        self.ns = ns
        self.nr = nr
        self.pn = pn
        self.step_pending = step_pending
        #: ``(dh, n) -> (message_key, stored_at)``, insertion-ordered (oldest first).
        self.skipped: dict[tuple[bytes, int], tuple[bytes, int]] = skipped or {}

    def __repr__(self) -> str:
        return f"<RatchetState ns={self.ns} nr={self.nr} skipped={len(self.skipped)}>"

    __str__ = __repr__

    # --- initialisation (§12.1) -----------------------------------------------------------

    @classmethod
    def for_initiator(cls, sk: bytes, remote_spk: bytes, rng: RNG) -> RatchetState:
        """Alice: ``DHs`` fresh, ``DHr = SPK_B``, ``RK, CKs = KDF_RK(SK, DH(DHs, SPK_B))``."""
        dhs = X25519KeyPair.generate(rng)
        rk, cks = kdf_root(sk, dhs.dh(remote_spk))
        return cls(root_key=rk, dhs=dhs, dhr=remote_spk, cks=cks, ckr=None)

    @classmethod
    def for_responder(cls, sk: bytes, spk: X25519KeyPair) -> RatchetState:
        """Bob: ``DHs = SPK_B``, ``RK = SK``, no chains yet."""
        return cls(root_key=sk, dhs=spk, dhr=None, cks=None, ckr=None)

    # --- sending --------------------------------------------------------------------------

    def next_sending_key(self, rng: RNG) -> tuple[bytes, bytes]:
        """Advance the sending chain (performing a pending DH step first).

        Returns:
            ``(header, message_key)``.

        Raises:
            SessionError: the session cannot send yet (responder before any receipt) or a
                counter would overflow.
        """
        if self.step_pending:
            if self.dhr is None:  # pragma: no cover - step_pending implies dhr
                raise SessionError("no remote ratchet key")
            dhs = X25519KeyPair.generate(rng)
            self.root_key, self.cks = kdf_root(self.root_key, dhs.dh(self.dhr))
            self.pn, self.ns, self.dhs = self.ns, 0, dhs
            self.step_pending = False
        if self.cks is None:
            raise SessionError("this session cannot send before it has received")
        if self.ns >= MAX_COUNTER:
            raise SessionError("sending chain exhausted")
        if self.dhs is None:  # pragma: no cover - dhs is erased only with step_pending set
            raise SessionError("no ratchet key")
        header = encode_header(bytes(self.dhs.public), self.pn, self.ns)
        self.cks, mk = kdf_chain(self.cks)
        self.ns += 1
        return header, mk

    # --- receiving ------------------------------------------------------------------------

    def plan_receive(self, dh: bytes, pn: int, n: int, *, now: int) -> tuple[bytes, _Update]:
        """Find the message key for a header without changing any state.

        A skipped key stored more than ``MAX_SKIPPED_KEY_AGE`` seconds before ``now`` is a
        miss, whether or not :meth:`expire_skipped` has run since (protocol.md §12.3).

        Returns:
            ``(message_key, update)``; call :meth:`apply` with ``update`` once the message
            has authenticated.

        Raises:
            DecryptionError: duplicate, evicted, expired, beyond ``MAX_FORWARD_JUMP``, or a
                bad key.
        """
        hit = self.skipped.get((dh, n))
        if hit is not None:
            if hit[1] < now - MAX_SKIPPED_KEY_AGE:
                raise DecryptionError  # over age: a miss, exactly like an evicted key
            return hit[0], _Update(used_skipped=(dh, n), ckr=self.ckr, nr=self.nr)
        update = _Update()
        if self.dhr is not None and ct_eq(dh, self.dhr) and self.ckr is not None:
            if n < self.nr:
                raise DecryptionError  # duplicate or a key already evicted
            if n - self.nr > MAX_FORWARD_JUMP:
                raise DecryptionError
            ck, nr = self.ckr, self.nr
        else:
            if self.dhr is not None and ct_eq(dh, self.dhr):
                # Our own initial chain target (Alice: DHr = SPK_B) never sends.
                raise DecryptionError
            tail = max(0, pn - self.nr) if self.ckr is not None else 0
            if tail + n > MAX_FORWARD_JUMP:
                raise DecryptionError
            if self.ckr is not None and self.dhr is not None:
                ck = self.ckr
                for i in range(self.nr, pn):
                    ck, mk = kdf_chain(ck)
                    update.new_skipped.append((self.dhr, i, mk))
            if self.dhs is None:
                # Erased at our last receive step: a peer key that needs it cannot be
                # honest (the peer steps only after receiving our next key).
                raise DecryptionError
            try:
                shared = self.dhs.dh(dh)
            except KeyValidationError:
                raise DecryptionError from None
            update.root_key, ck = kdf_root(self.root_key, shared)
            update.dhr = dh
            nr = 0
        for i in range(nr, n):
            ck, mk = kdf_chain(ck)
            update.new_skipped.append((dh, i, mk))
        update.ckr, mk = kdf_chain(ck)
        update.nr = n + 1
        return mk, update

    def apply(self, update: _Update, now: int) -> None:
        """Commit a receive planned by :meth:`plan_receive`."""
        if update.used_skipped is not None:
            del self.skipped[update.used_skipped]
            return
        if update.root_key is not None:
            self.root_key = update.root_key
            self.dhr = update.dhr
            self.step_pending = True
            self.dhs = None  # never needed again (module docstring; protocol.md §12.5 step 8)
        self.ckr = update.ckr
        self.nr = update.nr
        for dh, i, mk in update.new_skipped:
            self.skipped[(dh, i)] = (mk, now)
        while len(self.skipped) > MAX_SKIPPED_KEYS:
            del self.skipped[next(iter(self.skipped))]

    def expire_skipped(self, now: int) -> int:
        """Delete skipped keys stored more than ``MAX_SKIPPED_KEY_AGE`` seconds before ``now``;
        return how many were deleted."""
        cutoff = now - MAX_SKIPPED_KEY_AGE
        stale = [k for k, (_mk, t) in self.skipped.items() if t < cutoff]
        for k in stale:
            del self.skipped[k]
        return len(stale)
