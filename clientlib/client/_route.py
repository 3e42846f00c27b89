"""Two-hop private routing, the client side (protocol.md §27.3).

With ``ClientConfig(private_routing=True)`` a contact relay D is reached only through our
own relay F: every request to D (boundaries, bundle, proof-of-work nonce, moderator keys,
deposits) is a frame sealed to D's current route key and posted to F as a ``route`` frame;
F forwards it and returns D's reply sealed for us. F learns our address and that we talk to
D, not the mailbox nor anything inside; D learns the frame (the mailbox) but only F's
address. D's relay identity is pinned: learned once (a direct ``rkeys?`` to D, through our
proxy if any) and kept in the keystore; keys F relays later must be signed by it, so F
cannot substitute its own key and open the packets.

Packet (byte layouts in protocol.md §27.3)::

    ss      = X25519(esk, key_kid)
    kf | kr = HKDF-SHA256(ikm=ss, salt=epk || key_kid, info="blindrelay/v1/route", L=64)
    pkt     = 0x01 || u32(kid) || epk || n || XChaCha20-Poly1305(kf, n, frame, ad=pkt[0:37])
    ans     = n' || XChaCha20-Poly1305(kr, n', reply,
                                       ad="blindrelay/v1/route-answer" || 0x00 || epk)
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections.abc import Callable
from typing import Any

from clientlib.client.invite import relay_identity_hash
from clientlib.crypto.keys import RNG
from clientlib.crypto.primitives import (
    aead_decrypt,
    aead_encrypt,
    ct_eq,
    ed25519_verify,
    hkdf,
    sha256,
    x25519,
    x25519_public_from_private,
)
from clientlib.errors import (
    DecryptionError,
    KeyValidationError,
    LocalProtocolError,
    MessagingError,
    RelayRejected,
    TransportError,
    WireError,
)
from clientlib.transport.api import FrameBuilder, RelayAPI, expect
from clientlib.transport.base import SignFn
from clientlib.wire.client_frames import GetRouteKeys, Route
from clientlib.wire.pow import leading_zero_bits
from clientlib.wire.relay_frames import (
    ErrorReply,
    RelayFrame,
    Routed,
    RouteKeyEntry,
    RouteKeysIssued,
    decode_relay_frame,
)

__all__ = ["RoutedTransport", "open_answer", "seal_packet", "solve_route_pow"]

_SEAL_INFO = b"blindrelay/v1/route"
_SIG_LABEL = b"blindrelay/v1/route-keys\x00"
_ANSWER_AD = b"blindrelay/v1/route-answer\x00"
_POW_LABEL = b"blindrelay/v1/route-pow\x00"
#: Do not seal to a key that ends within this many seconds (F and D may be slow, clocks skew).
_EXPIRY_MARGIN = 300


def seal_packet(kid: int, key: bytes, frame: bytes, rng: RNG) -> tuple[bytes, bytes, bytes]:
    """Seal ``frame`` to the route key ``(kid, key)``: ``(pkt, reply key, epk)``.

    Raises:
        KeyValidationError: ``key`` is not a valid X25519 public key (a low-order point).
    """
    esk = rng(32)
    epk = x25519_public_from_private(esk)
    shared = x25519(esk, key)
    okm = hkdf(shared, salt=epk + key, info=_SEAL_INFO, length=64)
    header = bytes((1,)) + struct.pack(">I", kid) + epk
    nonce = rng(24)
    return header + nonce + aead_encrypt(okm[:32], nonce, frame, header), okm[32:], epk


def open_answer(reply_key: bytes, epk: bytes, ans: bytes) -> bytes:
    """Open D's sealed answer.

    Raises:
        DecryptionError: not sealed by the holder of the route key for this packet.
    """
    if len(ans) < 24 + 16:
        raise DecryptionError
    return aead_decrypt(reply_key, ans[:24], ans[24:], _ANSWER_AD + epk)


def signed_message(entry: RouteKeyEntry) -> bytes:
    return _SIG_LABEL + struct.pack(">I", entry.kid) + entry.key + struct.pack(">Q", entry.exp)


def solve_route_pow(pkt: bytes, bits: int) -> int:
    """The smallest counter whose route proof-of-work digest has ``bits`` leading zeros."""
    inner = sha256(pkt)
    for counter in itertools.count():
        digest = sha256(_POW_LABEL + inner + struct.pack(">Q", counter))
        if leading_zero_bits(digest) >= bits:
            return counter
    raise AssertionError("unreachable")


def _route_builder(dst: str, pkt: bytes, pwc: int | None) -> FrameBuilder:
    def build(request_id: int) -> Route:
        return Route(id=request_id, dst=dst, pkt=pkt, pwc=pwc)

    return build


class RoutedTransport(RelayAPI):
    """The public requests and deposits of one destination relay, through our relay.

    Args:
        via: a transport of our own relay (F), used for ``route`` and ``rkeys?``.
        direct: a transport of the destination itself (or a function making one), used
            once to learn its identity when neither the keystore nor a link pins it.
        dst: the destination's relay URL (normal form).
        pin: ``() -> identity or None``; ``save_pin(identity)`` keeps a new one.
    """

    def __init__(
        self,
        via: RelayAPI,
        direct: RelayAPI | Callable[[], RelayAPI],
        dst: str,
        *,
        pin: Callable[[], bytes | None],
        save_pin: Callable[[bytes], None],
        rng: RNG,
        clock: Callable[[], float] = time.time,
        expected: Callable[[], bytes | None] = lambda: None,
    ) -> None:
        self._expected = expected
        self._via = via
        self._direct = direct
        self._dst = dst
        self._pin = pin
        self._save_pin = save_pin
        self._rng = rng
        self._clock = clock
        self._keys: tuple[RouteKeyEntry, ...] = ()
        self._fpow: int | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"RoutedTransport(dst={self._dst!r})"

    async def _owner_request(
        self, op: str, rid: bytes | None, sign: SignFn, **fields: Any
    ) -> RelayFrame:
        raise LocalProtocolError("owner commands go to our own relay, never routed")

    async def _request(self, build: FrameBuilder) -> RelayFrame:
        frame = build(next(self._ids) & 0xFFFFFFFF)
        inner = frame.encode()
        for attempt in (0, 1):
            kid, key = await self._key(refresh=attempt == 1)
            pkt, reply_key, epk = seal_packet(kid, key, inner, self._rng)
            pwc = None
            bits = await self._forward_pow()
            if bits:
                pwc = await asyncio.to_thread(solve_route_pow, pkt, bits)
            try:
                reply = await self._via._request(_route_builder(self._dst, pkt, pwc))
            except RelayRejected as exc:
                if exc.code == "RKEY" and attempt == 0:
                    continue  # rotated since we fetched: fetch again, once
                raise
            routed = expect(reply, Routed)
            try:
                plain = open_answer(reply_key, epk, routed.ans)
                _, answer = decode_relay_frame(plain)
            except (DecryptionError, WireError):
                raise TransportError("the routed answer does not open") from None
            if isinstance(answer, ErrorReply):
                raise RelayRejected(answer.code)
            if getattr(answer, "id", None) != getattr(frame, "id", None):
                raise TransportError("the destination answered another request")
            return answer
        raise TransportError("the destination's route keys keep changing")

    async def _forward_pow(self) -> int:
        if self._fpow is None:
            reply = await self._via._request(lambda i: GetRouteKeys(id=i))
            own = expect(reply, RouteKeysIssued)
            if not own.fwd:
                raise RelayRejected("ROUTE")
            self._fpow = own.fpow
        return self._fpow

    async def _key(self, *, refresh: bool) -> tuple[int, bytes]:
        """The destination's newest route key valid for a while (fetched through F, checked
        against the pinned relay identity)."""
        async with self._lock:
            now = self._clock()
            usable = [e for e in self._keys if e.exp > now + _EXPIRY_MARGIN]
            if refresh or not usable:
                self._keys = await self._fetch_keys()
                usable = [e for e in self._keys if e.exp > now + _EXPIRY_MARGIN]
            if not usable:
                raise TransportError("the destination publishes no current route key")
            best = max(usable, key=lambda e: e.kid)
            return best.kid, best.key

    async def _fetch_keys(self) -> tuple[RouteKeyEntry, ...]:
        identity = self._pin()
        reply = expect(
            await self._via._request(lambda i: GetRouteKeys(id=i, dst=self._dst)), RouteKeysIssued
        )
        if identity is None:
            wanted = self._expected()
            if wanted is not None:
                # A version-3 link pinned the identity's hash: F's answer must match it.
                if not ct_eq(relay_identity_hash(reply.ri), wanted):
                    raise KeyValidationError("the relay identity is not the one the link pins")
                identity = reply.ri
            else:
                # No link pin: learn the identity from the destination itself, so that F
                # cannot introduce a key of its own (trust on first use, §27.3).
                direct = self._direct if isinstance(self._direct, RelayAPI) else self._direct()
                asked = await direct._request(lambda i: GetRouteKeys(id=i))
                identity = expect(asked, RouteKeysIssued).ri
            self._save_pin(identity)
        if reply.ri != identity:
            raise KeyValidationError(
                "the destination's relay identity changed (not the pinned one)"
            )
        good = []
        for entry in reply.keys:
            try:
                ed25519_verify(identity, signed_message(entry), entry.sig)
            except (MessagingError, ValueError, TypeError):
                continue
            good.append(entry)
        if not good:
            raise KeyValidationError("no route key of the destination verifies")
        return tuple(good)
