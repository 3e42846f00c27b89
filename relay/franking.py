"""Relay franking tags and report verification (protocol.md §4.11, Part II §15.4).

The relay binds every franking commitment ``fc`` it stores to its delivery context::

    ctx = u32be(kid) || u32be(day) || sid(16) || src_kind(1) || src
    ft  = HMAC-SHA256(K_kid, "blindrelay/v1/relay-frank" || 0x00 || fc || ctx)

``day`` is the UTC day of receipt, ``sid`` the send id of the mailbox it was deposited to,
``src`` what the relay accepted the deposit on: the 32-byte capability hash (``pair``
mailboxes, ``src_kind`` 1), the 16-byte requester handle (``addr``, 2) or nothing (``open``,
0). A report reveals the message and its franking key; the relay recomputes the tag and the
sender's commitment, so it learns that this exact message was delivered to this mailbox.

This is an implementation of its own of the constructions in protocol.md, on purpose: the
relay never imports client cryptography (``clientlib.crypto``), and the conformance vectors
(``tests/vectors/franking-relay-v1.json``) check both implementations against each other.

:class:`FrankingKeyring` keeps the current key of a process cached, rotates keys every
``franking_rotation_s`` (the storage backend arbitrates concurrent rotations: one key per
kid) and looks keys up for verification.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from clientlib.wire.limits import KIND_ADDRESS, KIND_PAIRWISE
from relay.amf import JudgeKey, judge_key
from relay.storage.base import FrankingKey, FrankingKeyStore, StoreLimits

__all__ = [
    "FRANKING_CONTEXT",
    "KEY_REFRESH_S",
    "RELAY_FRANK_CONTEXT",
    "SOURCE_CAPABILITY",
    "SOURCE_HANDLE",
    "SOURCE_NAMES",
    "SOURCE_NONE",
    "FrankingContext",
    "FrankingKeyring",
    "build_context",
    "commitment",
    "commitment_over_hashes",
    "parse_context",
    "relay_tag",
    "report_id",
    "source_for",
]

#: Domain separation of the relay tag (25 ASCII bytes and a zero byte).
RELAY_FRANK_CONTEXT: Final = b"blindrelay/v1/relay-frank\x00"
#: Domain separation of the sender's commitment (Part II §15.1), written out again here.
FRANKING_CONTEXT: Final = b"blindrelay/v1/franking\x00"

SOURCE_NONE: Final = 0
SOURCE_CAPABILITY: Final = 1
SOURCE_HANDLE: Final = 2
#: ``src_kind`` -> the length of ``src``.
_SOURCE_SIZES: Final[dict[int, int]] = {SOURCE_NONE: 0, SOURCE_CAPABILITY: 32, SOURCE_HANDLE: 16}
#: ``src_kind`` -> its name in moderation views.
SOURCE_NAMES: Final[dict[int, str]] = {
    SOURCE_NONE: "none",
    SOURCE_CAPABILITY: "capability",
    SOURCE_HANDLE: "handle",
}
_CONTEXT_FIXED: Final = 4 + 4 + 16 + 1
_SID_SIZE: Final = 16
_MAX_U32: Final = 2**32 - 1
#: How long a process uses its cached key list before reading storage again.
KEY_REFRESH_S: Final = 60


@dataclass(frozen=True, slots=True)
class FrankingContext:
    """A parsed ``fx``."""

    kid: int
    day: int
    sid: bytes
    source_kind: int
    source: bytes


def build_context(kid: int, day: int, sid: bytes, source_kind: int, source: bytes) -> bytes:
    """``u32be(kid) || u32be(day) || sid(16) || src_kind(1) || src``.

    Raises:
        ValueError: a field out of range or of the wrong length for its kind.
    """
    if not (0 <= kid <= _MAX_U32 and 0 <= day <= _MAX_U32 and len(sid) == _SID_SIZE):
        raise ValueError("kid and day are u32, sid is 16 bytes")
    if _SOURCE_SIZES.get(source_kind) != len(source):
        raise ValueError("the source does not match its kind")
    return struct.pack(">II", kid, day) + sid + bytes((source_kind,)) + source


def parse_context(ctx: bytes) -> FrankingContext | None:
    """Parse ``fx``; None unless it is exactly one well-formed context."""
    if len(ctx) < _CONTEXT_FIXED:
        return None
    kind = ctx[_CONTEXT_FIXED - 1]
    size = _SOURCE_SIZES.get(kind)
    if size is None or len(ctx) != _CONTEXT_FIXED + size:
        return None
    kid, day = struct.unpack(">II", ctx[:8])
    return FrankingContext(kid, day, ctx[8:24], kind, ctx[_CONTEXT_FIXED:])


def relay_tag(key: bytes, fc: bytes, ctx: bytes) -> bytes:
    """``ft = HMAC-SHA256(K_kid, RELAY_FRANK_CONTEXT || fc || ctx)``."""
    return hmac.new(key, RELAY_FRANK_CONTEXT + fc + ctx, hashlib.sha256).digest()


def commitment(
    fk: bytes, sender: bytes, recipient: bytes, msg: bytes, attachments: Sequence[bytes]
) -> bytes:
    """The sender's commitment (Part II §15.1) over the revealed attachment plaintexts:
    ``HMAC-SHA256(fk, FRANKING_CONTEXT || snd || rcp || u32be(len(msg)) || msg || u8(n) ||
    SHA-256(att_1) || ...)``.

    Raises:
        ValueError: more than 255 attachments.
    """
    return commitment_over_hashes(
        fk, sender, recipient, msg, [hashlib.sha256(att).digest() for att in attachments]
    )


def commitment_over_hashes(
    fk: bytes, sender: bytes, recipient: bytes, msg: bytes, hashes: Sequence[bytes]
) -> bytes:
    """:func:`commitment` from the attachments' SHA-256 (a report's ``ath``, revision 8):
    the same bytes, since the commitment covers each attachment only through its hash.

    Raises:
        ValueError: more than 255 attachments.
    """
    if len(hashes) > 255:
        raise ValueError("too many attachments")
    h = hmac.new(fk, FRANKING_CONTEXT, hashlib.sha256)
    for part in (sender, recipient, struct.pack(">I", len(msg)), msg, bytes((len(hashes),))):
        h.update(part)
    for digest in hashes:
        h.update(digest)
    return h.digest()


def report_id(tag: bytes) -> bytes:
    """A report's id: the first 16 bytes of ``SHA-256(ft)`` (one report per envelope)."""
    return hashlib.sha256(tag).digest()[:16]


def source_for(kind: str, cap_hash: bytes | None, handle: bytes | None) -> tuple[int, bytes]:
    """``(src_kind, src)`` of a deposit accepted by a mailbox of ``kind``."""
    if kind == KIND_PAIRWISE and cap_hash is not None:
        return SOURCE_CAPABILITY, cap_hash
    if kind == KIND_ADDRESS and handle is not None:
        return SOURCE_HANDLE, handle
    return SOURCE_NONE, b""


def _window_end(keys: Sequence[FrankingKey], kid: int, limits: StoreLimits) -> int | None:
    """When key ``kid`` stops verifying: ``report_window_s`` after its successor's creation
    (None: it is the newest key, which always verifies)."""
    later = [k.created for k in keys if k.kid > kid]
    return min(later) + limits.report_window_s if later else None


class FrankingKeyring:
    """The franking keys of a deployment, as one process sees them.

    ``current(now)`` is the key new tags use: cached, re-read every ``KEY_REFRESH_S`` and
    rotated when it is ``franking_rotation_s`` old (``add_franking_key`` keeps one key per
    kid when processes race). ``verifying(kid, now)`` is a key that may still verify a
    report, re-reading storage for an unknown kid.
    """

    def __init__(
        self,
        store: FrankingKeyStore,
        limits: StoreLimits,
        *,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._store = store
        self._limits = limits
        self._rng = rng
        self._keys: list[FrankingKey] = []
        self._loaded_at: int | None = None
        self._lock = asyncio.Lock()
        self._judges: dict[int, JudgeKey] = {}

    async def _load(self, now: int) -> None:
        self._keys = await self._store.franking_keys()
        # A destroyed franking key takes its derived moderator secret with it.
        live = {k.kid for k in self._keys}
        self._judges = {kid: j for kid, j in self._judges.items() if kid in live}
        self._loaded_at = now

    def _stale(self, now: int) -> bool:
        return self._loaded_at is None or not 0 <= now - self._loaded_at < KEY_REFRESH_S

    def _due(self, now: int) -> bool:
        return not self._keys or now >= self._keys[-1].created + self._limits.franking_rotation_s

    async def current(self, now: int) -> FrankingKey:
        """The key to tag with now (creating or rotating it when due).

        Raises:
            StorageError: storage failed.
        """
        if not self._stale(now) and not self._due(now):
            return self._keys[-1]
        async with self._lock:
            if self._stale(now) or self._due(now):
                await self._load(now)
                if self._due(now):
                    kid = self._keys[-1].kid + 1 if self._keys else 1
                    await self._store.add_franking_key(
                        FrankingKey(kid=kid, secret=self._rng(32), created=now)
                    )
                    await self._load(now)
            return self._keys[-1]

    async def verifying(self, kid: int, now: int) -> FrankingKey | None:
        """Key ``kid`` if it exists and is within its report window at ``now``, else None.

        Raises:
            StorageError: storage failed.
        """
        async with self._lock:
            if self._stale(now) or all(k.kid != kid for k in self._keys):
                await self._load(now)
            keys = list(self._keys)
        key = next((k for k in keys if k.kid == kid), None)
        if key is None:
            return None
        end = _window_end(keys, kid, self._limits)
        return key if end is None or now < end else None

    def judge(self, key: FrankingKey) -> JudgeKey:
        """The moderator key pair ``(j, M)`` of franking key ``key`` (protocol.md §15.5.3),
        derived once per kid and process."""
        judge = self._judges.get(key.kid)
        if judge is None:
            judge = self._judges[key.kid] = judge_key(key.secret)
        return judge

    async def moderator_keys(self, now: int, *, limit: int = 16) -> list[tuple[int, bytes]]:
        """``(kid, M_kid)`` of the current key, then of each retired key still inside its
        report window, newest first, at most ``limit`` (the ``mkeys`` reply, §4.11).

        Raises:
            StorageError: storage failed.
        """
        current = await self.current(now)
        async with self._lock:
            keys = list(self._keys)
        out = [(current.kid, self.judge(current).public)]
        for key in reversed(keys):
            if len(out) >= limit:
                break
            if key.kid == current.kid:
                continue
            end = _window_end(keys, key.kid, self._limits)
            if end is None or now < end:
                out.append((key.kid, self.judge(key).public))
        return out

    def forget(self) -> None:
        """Drop the cache (the next call reads storage)."""
        self._loaded_at = None
