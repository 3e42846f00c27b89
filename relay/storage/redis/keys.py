"""Redis key builders: every key and channel name of the store, in one place.

Every key of one mailbox carries the hash tag ``{<rid hex>}``, so on Redis Cluster they live
in one slot and every script touches a single slot (the layout is in
:mod:`relay.storage.redis.engine`). The send-id index ``s:{<sid hex>}`` lives in the slot of
the send id; moderation keys share the tag ``{mod}``.
"""

from __future__ import annotations

import binascii
import functools
import re
from typing import Final

__all__ = ["NO_RID", "SLOTS", "RedisKeys", "check_prefix", "slot_of", "slot_tags", "tag"]

#: Hash slots of Redis Cluster (``CRC16(tag) mod 16384``).
SLOTS: Final = 16_384

_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9_.:\-]{0,64}$")
#: The hash tag of every moderation key (franking keys, reports, audit log).
_MOD_TAG: Final = "{mod}"
#: A receive id no mailbox has: deposits to unknown send ids run the deposit script against
#: it, so that they cost the same round trips as deposits refused for a capability.
NO_RID: Final = bytes(16)


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid key prefix.

    Raises:
        ValueError: it is longer than 64 characters or not of ``[A-Za-z0-9_.:-]``.
    """
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError("key prefix must be up to 64 characters of [A-Za-z0-9_.:-]")
    return prefix


def tag(ident: bytes) -> str:
    """The hash tag of an id: ``{<hex>}``."""
    return "{" + ident.hex() + "}"


def slot_of(ident: bytes) -> int:
    """The hash slot of every key tagged ``{<ident hex>}`` (CRC16-XMODEM, as Redis)."""
    return binascii.crc_hqx(ident.hex().encode(), 0) % SLOTS


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For every hash slot, the smallest decimal number whose hash tag lands in it.

    ``xi:{<slot_tags()[s]>}`` is the expiry index of slot ``s``: it lives in the slot of the
    mailboxes it indexes, so a mailbox script updates it atomically, on Redis Cluster too.
    Computed once per process (about 110,000 CRC16s, half a second).
    """
    tags: list[str | None] = [None] * SLOTS
    left, i = SLOTS, 0
    while left:
        s = str(i)
        slot = binascii.crc_hqx(s.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = s
            left -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


class RedisKeys:
    """The key names under one prefix (validated with :func:`check_prefix`)."""

    __slots__ = ("cluster", "prefix")

    def __init__(self, prefix: str, *, cluster: bool = False) -> None:
        self.prefix = check_prefix(prefix)
        #: On Redis Cluster the gauges are one hash per slot (see :meth:`gauges`).
        self.cluster = cluster

    def mailbox(self, rid: bytes) -> list[str]:
        """``[m, q, e, x, d, y]``: the record, FIFO, blobs, expiries, dedupe hash and its
        expiries."""
        t, p = tag(rid), self.prefix
        return [f"{p}{kind}:{t}" for kind in ("m", "q", "e", "x", "d", "y")]

    def prekeys(self, rid: bytes) -> list[str]:
        """``[m, k, p]``: the mailbox record, then its prekey hash and one-time item list."""
        t, p = tag(rid), self.prefix
        return [f"{p}{kind}:{t}" for kind in ("m", "k", "p")]

    def consent(self, rid: bytes) -> list[str]:
        """``[a, n]``: the capability hash set and the banned handle set."""
        t, p = tag(rid), self.prefix
        return [f"{p}a:{t}", f"{p}n:{t}"]

    def deposit(self, rid: bytes) -> list[str]:
        """The keys of the deposit script: :meth:`mailbox`, then :meth:`consent`."""
        return self.mailbox(rid) + self.consent(rid)

    def every(self, rid: bytes) -> list[str]:
        """Every key of the mailbox, for the scripts that create, delete or purge it."""
        return self.mailbox(rid) + self.prekeys(rid)[1:] + self.consent(rid)

    def counted(self, rid: bytes) -> list[str]:
        """:meth:`every`, then the slot's expiry index and the gauges: the keys of the scripts
        that create, delete, sweep or backfill a mailbox."""
        return [*self.every(rid), self.index(rid), self.gauges(rid)]

    def touch(self, rid: bytes) -> list[str]:
        """The record and the keys whose TTL moves with it."""
        return self.prekeys(rid) + self.consent(rid)

    def sid(self, sid: bytes) -> str:
        """The send-id index key (value: the receive id)."""
        return f"{self.prefix}s:{tag(sid)}"

    def challenge(self, nonce: bytes) -> str:
        return f"{self.prefix}c:{nonce.hex()}"

    def mod(self, name: str, suffix: str = "") -> str:
        """A moderation key: ``<prefix><name>:{mod}[:<suffix>]`` (one slot for all)."""
        return f"{self.prefix}{name}:{_MOD_TAG}" + (f":{suffix}" if suffix else "")

    def index(self, rid: bytes) -> str:
        """The expiry index of the slot of mailbox ``rid``."""
        return self.slot_index(slot_of(rid))

    def slot_index(self, slot: int) -> str:
        """The expiry index of hash slot ``slot``: rid -> the second it may be due."""
        return f"{self.prefix}xi:{{{slot_tags()[slot]}}}"

    def gauges(self, rid: bytes) -> str:
        """The gauges hash (m mailboxes, n envelopes, b bytes) a script on mailbox ``rid``
        updates: one key for the deployment on a single Redis; on Redis Cluster one per hash
        slot (``g:{<slot tag>}``, in the mailbox's slot, so the script stays in one slot),
        summed on read (:meth:`gauge_keys`)."""
        if not self.cluster:
            return f"{self.prefix}g"
        return self.slot_gauges(slot_of(rid))

    def slot_gauges(self, slot: int) -> str:
        """The gauges hash of hash slot ``slot`` (Redis Cluster)."""
        return f"{self.prefix}g:{{{slot_tags()[slot]}}}"

    def gauge_keys(self) -> list[str]:
        """Every gauges key to read and sum: one, or one per slot on Redis Cluster."""
        if not self.cluster:
            return [f"{self.prefix}g"]
        return [self.slot_gauges(s) for s in range(SLOTS)]

    def lease(self) -> str:
        """The sweeper lease (value: the token of the process that sweeps)."""
        return f"{self.prefix}sweep"

    def layout(self) -> str:
        """The layout version (2: expiry index and gauges backfilled)."""
        return f"{self.prefix}layout"

    def channel(self, rid: bytes) -> bytes:
        """The pub/sub channel of a mailbox (never a key)."""
        return f"{self.prefix}w:{tag(rid)}".encode()
