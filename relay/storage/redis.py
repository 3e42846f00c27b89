"""Redis envelope store and cross-process wake-ups (``redis.asyncio``).

Theory of operation
-------------------
Every key of one mailbox carries the hash tag ``{<rid hex>}``, so on Redis Cluster they live
in one slot and every script touches a single slot::

    <prefix>m:{rid}   hash: send id, owner key, created/active day, last seq, counters;
                      kind, boundaries and the daily request counter (revision 3)
    <prefix>q:{rid}   zset: seq by seq (FIFO)        <prefix>x:{rid}  zset: seq by expiry
    <prefix>e:{rid}   hash: seq -> envelope blob
    <prefix>d:{rid}   hash: eid -> "seq:ts:expiry"   <prefix>y:{rid}  zset: eid by expiry
    <prefix>k:{rid}   hash: static prekey part, hourly handout window, last upload token
    <prefix>p:{rid}   list: one-time prekey items (FIFO)
    <prefix>a:{rid}   set: capability hashes (pair mailboxes)
    <prefix>n:{rid}   set: banned handles (contact addresses)
    <prefix>w:{rid}   pub/sub channel of the mailbox (never a key)

The mailbox record ``m`` also holds ``su`` while a moderator has suspended the mailbox, and
an envelope blob its relay franking tag and context (revision 4). Franking keys, reports and
the audit log are not per mailbox: their keys share the hash tag ``{mod}`` (see
``redis_mod_lib.lua``), so every moderation script touches one slot.

The send-id index ``<prefix>s:{sid}`` (value: rid) lives in another slot. A deposit reads it
(or a bounded in-process cache of it) and then runs the deposit script on the rid slot; the
script checks that the mailbox record still names that send id, so a deleted or recreated
mailbox is never written through a stale index. A bundle request resolves the send id the
same way and its script makes the same check. Challenges are ``<prefix>c:<nonce hex>``.

Every write is a Lua script (``register_script``) that is safe to retry, because redis-py
retries commands after connection errors: a repeated deposit finds its dedupe record, a
repeated ack or delete finds nothing left to delete, a repeated prekey upload finds its
token. The one exception is handing out a one-time prekey: a retry after a lost reply pops
another item, so one item is wasted (never handed out twice). Every key has a TTL: envelope
keys are refreshed to the envelope TTL on insert, dedupe keys to the dedupe window, the
mailbox record, its index, its prekey keys, capability hashes and bans to the idle period
(refreshed by ``touch_mailbox``), challenges and proof-of-work nonces to their own expiry.
The contract (expiry as seen by the ``now`` argument) is enforced by the scripts; TTLs are
garbage collection with a little slack for clock differences.

Durability: with ``appendonly yes`` and ``appendfsync always`` Redis fsyncs the AOF before it
replies, so a deposit that returned is on disk. ``durability="relaxed"`` accepts
``appendfsync everysec`` (up to about one second of acknowledged envelopes, two in the worst
case, can be lost if the Redis host crashes).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any, Final, Literal

import msgpack
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from clientlib.errors import WireError
from clientlib.wire.frames import DEFAULT_BOUNDARIES, Boundaries, StoredEnvelope
from clientlib.wire.limits import KIND_ADDRESS, KIND_OPEN, KIND_PAIRWISE, MAX_FRAME_SIZE
from relay.storage._common import (
    MSG_CLOSED,
    MSG_FULL,
    MSG_ID_COLLISION,
    MSG_NOT_FOUND,
    MSG_QUOTA,
    MSG_UNAVAILABLE,
    day_of,
    mailbox_deadline,
    mailbox_expired,
)
from relay.storage.base import (
    SECONDS_PER_DAY,
    AuditRecord,
    BoundaryExceeded,
    DepositOutcome,
    DuplicateReport,
    FrankingKey,
    IdCollision,
    MailboxNotFound,
    MailboxRecord,
    MailboxSnapshot,
    PowRequired,
    QuotaExceeded,
    RelayStamp,
    ReportAlreadyResolved,
    ReportNotFound,
    ReportRecord,
    ReportResolution,
    StampMismatch,
    StorageError,
    StorageFull,
    StorageUnavailable,
    StoreLimits,
    WakeCallback,
    WakeEvent,
    WrongKind,
)
from relay.storage.wakeups import ListenerRegistry

__all__ = ["RedisStore", "RedisWakeups"]

log = structlog.get_logger("blindrelay.storage")

#: Extra seconds every TTL gets beyond the logical expiry: absorbs clock differences between
#: relay processes and Redis, which only matters for garbage collection.
TTL_SLACK_S: Final = 300
#: Entries of the in-process send id -> receive id cache (about 100 bytes each).
SID_CACHE_SIZE: Final = 65_536
#: Keys one SCAN step asks for during purge and counting.
SCAN_COUNT: Final = 1000
#: Seconds to wait for Redis before answering "unavailable"; with two retries a dead Redis is
#: reported in about ten seconds at worst, a refused connection at once.
SOCKET_TIMEOUT_S: Final = 3.0
CONNECT_TIMEOUT_S: Final = 2.0
#: Connections per client: enough to keep Redis busy (it runs scripts one at a time anyway)
#: while bounding file descriptors; callers beyond it wait for a free connection.
MAX_CONNECTIONS: Final = 64
#: How long a command may wait for a free pooled connection. Waiting is back-pressure, not an
#: outage: a healthy but busy Redis must not turn into UNAVAILABLE (the relay allows many
#: requests in flight), so this is much longer than the socket timeout.
POOL_WAIT_TIMEOUT_S: Final = 30.0
#: Largest wake-up message accepted from the channel (an online-only envelope and headers).
MAX_WAKE_MESSAGE: Final = MAX_FRAME_SIZE + 256

#: How long :meth:`RedisWakeups.sync` waits for the server to confirm subscriptions.
SYNC_TIMEOUT_S: Final = 5.0

_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9_.:\-]{0,64}$")
_ENVELOPE_HEADER: Final = 4  # big-endian ciphertext length in front of each stored blob
_DUPLICATE, _STORED, _NOT_FOUND, _QUOTA = 1, 0, -1, -2
_WRONG_KIND, _BOUNDARY, _POW, _REFUSED, _STAMP_KIND = -3, -4, -5, -6, -7
#: Reports and audit entries one purge script removes at most (the purge repeats it).
MOD_PURGE_CHUNK: Final = 500
#: The hash tag of every moderation key (franking keys, reports, audit log).
_MOD_TAG: Final = "{mod}"
#: A receive id no mailbox has: deposits to unknown send ids run the deposit script against
#: it, so that they cost the same round trips as deposits refused for a capability.
_NO_RID: Final = bytes(16)
_KINDS: Final = frozenset({KIND_OPEN, KIND_PAIRWISE, KIND_ADDRESS})

#: Script name -> shebang. Scripts that only delete may run when Redis is out of memory.
_SCRIPTS: Final[dict[str, str]] = {
    "create": "#!lua",
    "touch": "#!lua flags=allow-oom",
    "delete": "#!lua flags=allow-oom",
    "deposit": "#!lua",
    "fetch": "#!lua flags=allow-oom",
    "ack": "#!lua flags=allow-oom",
    "purge": "#!lua flags=allow-oom",
    "put_challenge": "#!lua",
    "unlink_if": "#!lua flags=allow-oom",
    "put_prekeys": "#!lua",
    "take_prekeys": "#!lua flags=allow-oom",
    "set_members": "#!lua flags=allow-oom",
    "set_boundaries": "#!lua",
    "suspend": "#!lua flags=allow-oom",
    "add_franking_key": "#!lua",
    "insert_report": "#!lua",
    "resolve_report": "#!lua",
    "append_audit": "#!lua",
    "purge_mod": "#!lua flags=allow-oom",
}
#: Scripts that also get the moderation helpers (redis_mod_lib.lua).
_MOD_SCRIPTS: Final = frozenset({"insert_report", "resolve_report", "append_audit"})


def _load_script(name: str) -> str:
    package = resources.files("relay.storage")
    lib = package.joinpath("redis_lib.lua").read_text(encoding="utf-8")
    if name in _MOD_SCRIPTS:
        lib += "\n" + package.joinpath("redis_mod_lib.lua").read_text(encoding="utf-8")
    body = package.joinpath(f"redis_{name}.lua").read_text(encoding="utf-8")
    return f"{_SCRIPTS[name]}\n{lib}\n{body}"


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    """Translate redis-py failures into the store's errors (messages carry no ids)."""
    try:
        yield
    except StorageError:
        raise
    except ResponseError as exc:
        text = str(exc)
        if (
            isinstance(exc, OutOfMemoryError)
            or text.startswith(("OOM", "MISCONF"))
            or "No space left" in text
        ):
            raise StorageFull(MSG_FULL) from exc
        raise StorageUnavailable(MSG_UNAVAILABLE) from exc
    except (RedisError, OSError) as exc:
        raise StorageUnavailable(MSG_UNAVAILABLE) from exc


def _make_client(url: str, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    # A blocking pool queues callers when every connection is busy (the default pool raises
    # "Too many connections"); the client owns the pool and closes it in aclose().
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), retries=2),
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


def _check_prefix(prefix: str) -> str:
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError("key prefix must be up to 64 characters of [A-Za-z0-9_.:-]")
    return prefix


def _bytes(value: object) -> bytes | None:
    """Narrow a redis-py reply (bytes, since responses are not decoded) for the type checker."""
    if value is None:
        return None
    assert isinstance(value, bytes)
    return value


def _tag(ident: bytes) -> str:
    return "{" + ident.hex() + "}"


class RedisStore:
    """An :class:`~relay.storage.base.EnvelopeStore` on Redis (single node or Cluster-ready).

    Args:
        url: ``redis://`` or ``rediss://`` URL (``unix://`` works too).
        limits: quotas and expiry periods.
        durability: ``"strict"`` requires ``appendonly yes`` with ``appendfsync always``;
            ``"relaxed"`` also accepts ``appendfsync everysec`` (about 1 s loss window).
        key_prefix: prefix of every key and channel, default ``br:``.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        limits: StoreLimits,
        *,
        durability: Literal["strict", "relaxed"] = "strict",
        key_prefix: str = "br:",
    ) -> None:
        if durability not in ("strict", "relaxed"):
            raise ValueError("durability must be 'strict' or 'relaxed'")
        self._limits = limits
        self._mode = durability
        self._prefix = _check_prefix(key_prefix)
        self._client = _make_client(url)
        self._scripts: dict[str, AsyncScript] = {
            name: self._client.register_script(_load_script(name)) for name in _SCRIPTS
        }
        self._sid_cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._closed = False

    # --- keys ----------------------------------------------------------------------------

    def _mailbox_keys(self, rid: bytes) -> list[str]:
        tag, p = _tag(rid), self._prefix
        return [f"{p}{kind}:{tag}" for kind in ("m", "q", "e", "x", "d", "y")]

    def _prekey_keys(self, rid: bytes) -> list[str]:
        """``[m, k, p]``: the mailbox record, then its prekey hash and one-time item list."""
        tag, p = _tag(rid), self._prefix
        return [f"{p}{kind}:{tag}" for kind in ("m", "k", "p")]

    def _consent_keys(self, rid: bytes) -> list[str]:
        """``[a, n]``: the capability hash set and the banned handle set."""
        tag, p = _tag(rid), self._prefix
        return [f"{p}a:{tag}", f"{p}n:{tag}"]

    def _deposit_keys(self, rid: bytes) -> list[str]:
        return self._mailbox_keys(rid) + self._consent_keys(rid)

    def _all_keys(self, rid: bytes) -> list[str]:
        """Every key of the mailbox, for the scripts that create, delete or purge it."""
        return self._mailbox_keys(rid) + self._prekey_keys(rid)[1:] + self._consent_keys(rid)

    def _touch_keys(self, rid: bytes) -> list[str]:
        """The record and the keys whose TTL moves with it."""
        return self._prekey_keys(rid) + self._consent_keys(rid)

    def _sid_key(self, sid: bytes) -> str:
        return f"{self._prefix}s:{_tag(sid)}"

    def _challenge_key(self, nonce: bytes) -> str:
        return f"{self._prefix}c:{nonce.hex()}"

    def _mod_key(self, name: str, suffix: str = "") -> str:
        """A moderation key: ``<prefix><name>:{mod}[:<suffix>]`` (one slot for all)."""
        return f"{self._prefix}{name}:{_MOD_TAG}" + (f":{suffix}" if suffix else "")

    def _mailbox_ttl(self, now: int) -> int:
        return mailbox_deadline(day_of(now), self._limits) - now + TTL_SLACK_S

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Refuse calls after :meth:`aclose`, and translate redis-py failures."""
        if self._closed:
            raise StorageUnavailable(MSG_CLOSED)
        with _redis_errors():
            yield

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._guard():
            return await self._scripts[name](keys=list(keys), args=list(args))

    # --- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Check that Redis answers and is configured durably enough for the chosen mode.

        Raises:
            StorageUnavailable: Redis cannot be reached, or its persistence settings can lose
                acknowledged envelopes beyond what ``durability`` accepts.
        """
        await self.ping()
        strict = self._mode == "strict"
        refused = [msg for msg, relaxed_ok in await self._durability() if strict or not relaxed_ok]
        if refused:
            raise StorageUnavailable("storage is not durable: " + "; ".join(refused))

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    async def _durability(self) -> list[tuple[str, bool]]:
        """Return ``(problem, acceptable in relaxed mode)`` pairs."""
        with self._guard():
            try:
                cfg = await self._client.config_get("append*")
                cfg.update(await self._client.config_get("maxmemory-policy"))
            except ResponseError:
                return [("redis CONFIG GET is not allowed; persistence cannot be verified", False)]
        out: list[tuple[str, bool]] = []
        if cfg.get("appendonly") != "yes":
            out.append(("redis appendonly is not yes: envelopes are lost on restart", False))
        elif cfg.get("appendfsync") == "everysec":
            out.append(
                (
                    "redis appendfsync is everysec: about 1 s (2 s worst case) of acknowledged"
                    " envelopes can be lost if the Redis host crashes",
                    True,
                )
            )
        elif cfg.get("appendfsync") != "always":
            out.append(
                ("redis appendfsync is no: the OS decides when envelopes reach the disk", False)
            )
        policy = cfg.get("maxmemory-policy", "noeviction")
        if policy != "noeviction":
            out.append((f"redis maxmemory-policy is {policy}: stored keys can be evicted", False))
        return out

    async def durability_problems(self) -> list[str]:
        """Read ``CONFIG GET appendonly/appendfsync/maxmemory-policy`` and report risks.

        In relaxed mode the everysec loss window is still reported (it is a real risk), but
        :meth:`open` accepts it.

        Raises:
            StorageUnavailable: Redis cannot be reached.
        """
        return [msg for msg, _ in await self._durability()]

    async def ping(self) -> None:
        """Send ``PING``.

        Raises:
            StorageUnavailable: Redis does not answer.
        """
        with self._guard():
            await self._client.ping()

    # --- mailboxes -----------------------------------------------------------------------

    async def create_mailbox(self, record: MailboxRecord, now: int) -> None:
        """Create the mailbox record, then its send-id index (both steps are retry-safe).

        Raises:
            IdCollision: ``record.rid`` or ``record.sid`` is used by a live mailbox.
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        ttl = self._mailbox_ttl(now)
        keys = self._all_keys(record.rid)
        if record.kind not in _KINDS:
            raise ValueError("unknown mailbox kind")
        bnd = record.boundaries or DEFAULT_BOUNDARIES
        created = await self._run(
            "create",
            keys,
            [
                record.sid,
                record.owner_key,
                record.created_day,
                now,
                self._limits.mailbox_idle_ttl_s,
                day_of(now),
                ttl,
                record.kind,
                bnd.size,
                bnd.att,
                bnd.day,
                bnd.pow,
            ],
        )
        if not created:
            raise IdCollision(MSG_ID_COLLISION)
        sid_key = self._sid_key(record.sid)
        with self._guard():
            if await self._client.set(sid_key, record.rid, nx=True, ex=ttl):
                return
            other = _bytes(await self._client.get(sid_key))
        if other == record.rid:
            return  # a retry of this very creation
        if other is not None and await self._live_rid_for(other, record.sid, now):
            await self._run("delete", keys, [record.sid])
            raise IdCollision(MSG_ID_COLLISION)
        with self._guard():
            await self._client.set(sid_key, record.rid, ex=ttl)

    async def _live_rid_for(self, rid: bytes, sid: bytes, now: int) -> bool:
        """Return True if ``rid`` names a live mailbox whose send id is ``sid``."""
        with self._guard():
            found_sid, ad = map(
                _bytes, await self._client.hmget(self._mailbox_keys(rid)[0], ["sid", "ad"])
            )
        return (
            found_sid == sid and ad is not None and not mailbox_expired(int(ad), now, self._limits)
        )

    async def get_mailbox(self, rid: bytes, now: int) -> MailboxRecord | None:
        """Return the live mailbox with receive id ``rid``, or None.

        Raises:
            StorageUnavailable: Redis failed.
        """
        fields = ["sid", "ok", "cd", "ad", "kd", "bs", "ba", "bd", "bp"]
        with self._guard():
            values = list(map(_bytes, await self._client.hmget(self._mailbox_keys(rid)[0], fields)))
        return self._record(rid, values, now)

    def _record(self, rid: bytes, values: list[bytes | None], now: int) -> MailboxRecord | None:
        """A record from ``sid, ok, cd, ad, kd, bs, ba, bd, bp`` of a mailbox hash."""
        sid, owner_key, cd, ad = values[:4]
        if (
            sid is None
            or owner_key is None
            or cd is None
            or ad is None
            or mailbox_expired(int(ad), now, self._limits)
        ):
            return None
        kind, bnd = _kind_and_boundaries(values[4:9])
        return MailboxRecord(
            rid=rid, sid=sid, owner_key=owner_key, created_day=int(cd), kind=kind, boundaries=bnd
        )

    async def resolve_sid(self, sid: bytes, now: int) -> bytes | None:
        """Return the receive id of the live mailbox with send id ``sid``, or None.

        Raises:
            StorageUnavailable: Redis failed.
        """
        rid = await self._rid_for_sid(sid, use_cache=True)
        if rid is not None and not await self._live_rid_for(rid, sid, now):
            self._sid_cache.pop(sid, None)
            rid = await self._rid_for_sid(sid, use_cache=False)
            if rid is not None and not await self._live_rid_for(rid, sid, now):
                return None
        return rid

    async def _sender_view(
        self, sid: bytes, now: int, fields: Sequence[str], cap_hash: bytes | None = None
    ) -> tuple[bytes, list[bytes | None], bool] | None:
        """Resolve ``sid`` and read ``fields`` of its live record (and whether ``cap_hash``
        is registered), in one pipelined round trip after the index lookup.

        Returns:
            ``(rid, values, cap registered)``, or None if no live mailbox has send id ``sid``.
        """
        use_cache = True
        while True:
            rid = await self._rid_for_sid(sid, use_cache=use_cache)
            if rid is None:
                return None
            m = self._mailbox_keys(rid)[0]
            with self._guard():
                async with self._client.pipeline(transaction=False) as pipe:
                    _ = pipe.hmget(m, ["sid", "ad", *fields])
                    if cap_hash is not None:
                        _ = pipe.sismember(self._consent_keys(rid)[0], cap_hash)  # type: ignore[arg-type]
                    replies = await pipe.execute()
            values = list(map(_bytes, replies[0]))
            if (
                values[0] == sid
                and values[1] is not None
                and not mailbox_expired(int(values[1]), now, self._limits)
            ):
                return rid, values[2:], bool(replies[1]) if cap_hash is not None else False
            # The cached mapping may be stale: ask the index once more.
            self._sid_cache.pop(sid, None)
            if not use_cache:
                return None
            use_cache = False

    async def resolve_online(
        self, sid: bytes, cap_hash: bytes | None, now: int
    ) -> tuple[bytes, str] | None:
        """Return ``(rid, kind)`` for an online-only envelope; pair mailboxes need the cap.

        Raises:
            StorageUnavailable: Redis failed.
        """
        view = await self._sender_view(sid, now, ["kd", "su"], cap_hash)
        if view is None:
            return None
        rid, (kd, su), has_cap = view
        if su is not None:
            return None  # suspended: like a mailbox that does not exist
        kind = kd.decode() if kd is not None else KIND_OPEN
        if kind == KIND_PAIRWISE and not has_cap:
            return None
        return rid, kind

    async def get_boundaries(self, sid: bytes, now: int) -> tuple[str, Boundaries | None] | None:
        """Return ``(kind, boundaries or None)`` of the live mailbox with send id ``sid``.

        Raises:
            StorageUnavailable: Redis failed.
        """
        view = await self._sender_view(sid, now, ["kd", "bs", "ba", "bd", "bp", "su"])
        if view is None or view[1][5] is not None:
            return None  # unknown, or suspended
        return _kind_and_boundaries(view[1][:5])

    async def _rid_for_sid(self, sid: bytes, *, use_cache: bool) -> bytes | None:
        if use_cache:
            rid = self._sid_cache.get(sid)
            if rid is not None:
                self._sid_cache.move_to_end(sid)
                return rid
        with self._guard():
            rid = _bytes(await self._client.get(self._sid_key(sid)))
        if rid is not None:
            self._sid_cache[sid] = rid
            self._sid_cache.move_to_end(sid)
            while len(self._sid_cache) > SID_CACHE_SIZE:
                self._sid_cache.popitem(last=False)
        return rid

    async def touch_mailbox(self, rid: bytes, now: int) -> None:
        """Record owner activity for today; refreshes the record's and index's TTLs.

        Raises:
            StorageUnavailable: Redis failed.
        """
        ttl = self._mailbox_ttl(now)
        sid = await self._run(
            "touch",
            self._touch_keys(rid),
            [now, self._limits.mailbox_idle_ttl_s, day_of(now), ttl],
        )
        if sid:
            with self._guard():
                await self._client.expire(self._sid_key(sid), ttl)

    async def delete_mailbox(self, rid: bytes) -> bool:
        """Delete the mailbox's keys in one script, then its send-id index.

        From the first step on, the send id no longer resolves (the deposit script checks the
        record), so the mailbox is gone at once even if the second step fails.

        Returns:
            False if no mailbox record had receive id ``rid``.

        Raises:
            StorageUnavailable: Redis failed.
        """
        deleted, sid = await self._run("delete", self._all_keys(rid), [""])
        if not deleted:
            return False
        self._sid_cache.pop(sid, None)
        await self._run("unlink_if", [self._sid_key(sid)], [rid])
        return True

    # --- envelopes -----------------------------------------------------------------------

    async def deposit(
        self,
        sid: bytes,
        eid: bytes,
        flags: int,
        ct: bytes,
        fc: bytes | None,
        now: int,
        *,
        cap_hash: bytes | None = None,
        handle: bytes | None = None,
        attachments: int = 0,
        pow_bits: int = 0,
        stamp: RelayStamp | None = None,
    ) -> DepositOutcome:
        """Append an envelope atomically; returns once Redis replied (after its AOF fsync).

        The kind's checks run inside the deposit script: a capability is one ``SISMEMBER``,
        a contact request reads the boundaries from the record it already reads, one
        ``SISMEMBER`` for bans, and updates the daily counter in the record. A send id that
        resolves to nothing still runs the script (against a receive id no mailbox has), so
        an unknown mailbox and a refused capability cost the same round trips.

        Raises:
            MailboxNotFound: no live mailbox has send id ``sid``, it is suspended, the
                capability is missing or unknown (pair), or the handle is banned (addr).
            WrongKind: a deposit to a contact address without a handle.
            BoundaryExceeded: the request breaks the address's size or attachment boundary.
            PowRequired: the address asks for more proof of work than ``pow_bits``.
            StampMismatch: ``stamp`` was computed for another kind of mailbox.
            QuotaExceeded: the mailbox is at its count or byte quota, or its daily allowance.
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        limits = self._limits
        header = len(ct).to_bytes(_ENVELOPE_HEADER, "big")
        # Blob items: eid, ts, flags, ct, fc, then the handle (contact requests) and, with a
        # stamp, the handle (or nil) followed by the franking tag and its context.
        tail: list[Any] = [] if stamp is None else [stamp.tag, stamp.ctx]
        plain = [eid, now, flags, ct, fc, *([None, *tail] if tail else [])]
        blob = header + msgpack.packb(plain, use_bin_type=True)
        with_handle = (
            header + msgpack.packb([eid, now, flags, ct, fc, handle, *tail], use_bin_type=True)
            if handle is not None
            else b""
        )
        args = [
            sid,
            eid,
            blob,
            len(ct),
            now,
            now + limits.envelope_ttl_s,
            now + limits.dedupe_window_s,
            limits.max_envelopes,
            limits.max_bytes,
            limits.mailbox_idle_ttl_s,
            limits.envelope_ttl_s + TTL_SLACK_S,
            limits.dedupe_window_s + TTL_SLACK_S,
            cap_hash or b"",
            handle or b"",
            attachments,
            pow_bits,
            day_of(now),
            with_handle,
            stamp.kind if stamp is not None else "",
        ]
        use_cache = True
        while True:
            cached = use_cache and sid in self._sid_cache
            rid = await self._rid_for_sid(sid, use_cache=use_cache)
            reply = await self._run("deposit", self._deposit_keys(rid or _NO_RID), args)
            status = int(reply[0])
            if rid is None:
                raise MailboxNotFound(MSG_NOT_FOUND)
            if status == _NOT_FOUND and cached:
                # The cached mapping may be stale: ask the index once more.
                self._sid_cache.pop(sid, None)
                use_cache = False
                continue
            break
        if status == _REFUSED:
            if cached:
                # Same round trips as an unknown send id (index lookup, then the script), so
                # a refused capability or handle cannot be told from a deleted mailbox by
                # timing.
                await self._rid_for_sid(sid, use_cache=False)
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == _NOT_FOUND:
            self._sid_cache.pop(sid, None)
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == _QUOTA:
            raise QuotaExceeded(MSG_QUOTA)
        if status == _WRONG_KIND:
            raise WrongKind("a contact request needs a handle")
        if status == _BOUNDARY:
            raise BoundaryExceeded("the request exceeds the address's boundaries")
        if status == _POW:
            raise PowRequired("the address asks for more proof of work")
        if status == _STAMP_KIND:
            raise StampMismatch(bytes(reply[1]).decode())
        return DepositOutcome(
            rid=rid, seq=int(reply[1]), ts=int(reply[2]), duplicate=status == _DUPLICATE
        )

    async def fetch(
        self, rid: bytes, after_seq: int, limit: int, max_bytes: int, now: int
    ) -> list[StoredEnvelope]:
        """Return unexpired envelopes with ``seq > after_seq`` in order; drops expired ones.

        Raises:
            StorageUnavailable: Redis failed.
        """
        if limit <= 0:
            return []
        keys = self._mailbox_keys(rid)[:4]
        flat = await self._run(
            "fetch", keys, [after_seq, limit, max_bytes, now, self._limits.mailbox_idle_ttl_s]
        )
        out: list[StoredEnvelope] = []
        for i in range(0, len(flat), 2):
            # Contact requests carry the handle as a sixth item (revision 3); stamped
            # envelopes the handle (or nil), the franking tag and its context (revision 4).
            eid, ts, flags, ct, fc, *rest = msgpack.unpackb(
                flat[i + 1][_ENVELOPE_HEADER:], raw=False
            )
            ft, fx = (rest[1], rest[2]) if len(rest) >= 3 else (None, None)
            out.append(
                StoredEnvelope(
                    seq=int(flat[i]),
                    eid=eid,
                    ts=ts,
                    flags=flags,
                    ct=ct,
                    fc=fc,
                    hdl=rest[0] if rest else None,
                    ft=ft,
                    fx=fx,
                )
            )
        return out

    async def ack(self, rid: bytes, seqs: Sequence[int]) -> int:
        """Delete the given envelopes; unknown seqs are ignored.

        Returns:
            How many envelopes were deleted.

        Raises:
            StorageUnavailable: Redis failed.
        """
        wanted = sorted({int(s) for s in seqs})
        if not wanted:
            return 0
        return int(await self._run("ack", self._mailbox_keys(rid)[:4], wanted))

    async def purge_expired(self, now: int) -> int:
        """Scan mailbox records; delete idle mailboxes, expired envelopes and dedupe records.

        Challenges are left to their key TTL (at most ``TTL_SLACK_S`` after expiry), and
        ``take_challenge`` never returns an expired one.

        Returns:
            Envelopes, dedupe records and mailboxes deleted.

        Raises:
            StorageUnavailable: Redis failed.
        """
        total = 0
        pattern = f"{self._prefix}m:*"
        start = len(self._prefix) + 3  # "m:{"
        with self._guard():
            async for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
                try:
                    rid = bytes.fromhex(key[start:-1].decode("ascii"))
                except ValueError:
                    continue
                gone, n_env, n_dedupe, sid = await self._run(
                    "purge", self._all_keys(rid), [now, self._limits.mailbox_idle_ttl_s]
                )
                total += int(gone) + int(n_env) + int(n_dedupe)
                if gone:
                    self._sid_cache.pop(sid, None)
                    await self._run("unlink_if", [self._sid_key(sid)], [rid])
        limits = self._limits
        keys = [self._mod_key(n) for n in ("f", "fc", "r", "rr", "ri", "ro", "au")]
        args = [
            now,
            limits.report_window_s,
            limits.report_retention_s,
            limits.audit_retention_s,
            MOD_PURGE_CHUNK,
        ]
        for _ in range(1000):  # bounded: at most 1000 chunks per purge run
            removed = int(await self._run("purge_mod", keys, args))
            total += removed
            if removed < MOD_PURGE_CHUNK:
                break
        return total

    async def put_challenge(self, nonce: bytes, binding: bytes, expires_at: int) -> None:
        """Remember a single-use challenge until ``expires_at``.

        Raises:
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        value = expires_at.to_bytes(8, "big", signed=True) + binding
        await self._run(
            "put_challenge", [self._challenge_key(nonce)], [value, expires_at, TTL_SLACK_S]
        )

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        """Consume a challenge atomically (``GETDEL``): its binding if unexpired.

        Raises:
            StorageUnavailable: Redis failed.
        """
        with self._guard():
            value = _bytes(await self._client.getdel(self._challenge_key(nonce)))
        if value is None or now >= int.from_bytes(value[:8], "big", signed=True):
            return None
        binding: bytes = value[8:]
        return binding

    async def count_envelopes(self) -> int:
        """Total stored envelopes (SCAN over the FIFO sets; for metrics only).

        Raises:
            StorageUnavailable: Redis failed.
        """
        total = 0
        with self._guard():
            batch: list[bytes] = []
            async for key in self._client.scan_iter(match=f"{self._prefix}q:*", count=SCAN_COUNT):
                batch.append(key)
                if len(batch) >= SCAN_COUNT:
                    total += await self._zcards(batch)
                    batch = []
            if batch:
                total += await self._zcards(batch)
        return total

    async def _zcards(self, keys: list[bytes]) -> int:
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                _ = pipe.zcard(key)
            return sum(int(n) for n in await pipe.execute())

    # --- prekeys -------------------------------------------------------------------------

    async def put_prekeys(
        self,
        rid: bytes,
        static: bytes | None,
        items: Sequence[bytes],
        replace: bool,
        max_items: int,
        now: int,
    ) -> tuple[int, bool]:
        """Replace the static part and/or append one-time items in one script.

        A random token makes the script idempotent, so redis-py's retry after a lost reply
        cannot append the items twice.

        Returns:
            ``(one-time items held, static part held)`` after the update.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            QuotaExceeded: the items would exceed ``max_items``; nothing changed.
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        args: list[Any] = [
            secrets.token_bytes(16),
            now,
            self._limits.mailbox_idle_ttl_s,
            1 if replace else 0,
            max_items,
            self._mailbox_ttl(now),
            0 if static is None else 1,
            b"" if static is None else static,
            *items,
        ]
        reply = await self._run("put_prekeys", self._prekey_keys(rid), args)
        status = int(reply[0])
        if status == _NOT_FOUND:
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == _QUOTA:
            raise QuotaExceeded(MSG_QUOTA)
        return int(reply[1]), bool(int(reply[2]))

    async def prekey_count(self, rid: bytes, now: int) -> tuple[int, bool]:
        """Return ``(one-time items held, static part held)``; ``(0, False)`` if unknown.

        Raises:
            StorageUnavailable: Redis failed.
        """
        m, k, p = self._prekey_keys(rid)
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                _ = pipe.hget(m, "ad")
                _ = pipe.llen(p)
                _ = pipe.hexists(k, "s")
                ad, held, has_static = await pipe.execute()
        if ad is None or mailbox_expired(int(ad), now, self._limits):
            return 0, False
        return int(held), bool(has_static)

    async def take_prekeys(
        self, sid: bytes, now: int, per_hour: int
    ) -> tuple[bytes, bytes | None] | None:
        """Resolve the send id, then pop one item and count it in one script on its slot.

        Raises:
            StorageUnavailable: Redis failed.
            StorageFull: Redis cannot write its AOF.
        """
        args = [sid, now, self._limits.mailbox_idle_ttl_s, per_hour]
        use_cache = True
        while True:
            rid = await self._rid_for_sid(sid, use_cache=use_cache)
            if rid is None:
                return None
            reply = await self._run("take_prekeys", self._prekey_keys(rid), args)
            status = int(reply[0])
            if status == _NOT_FOUND and use_cache:
                # The cached mapping may be stale: ask the index once more.
                self._sid_cache.pop(sid, None)
                use_cache = False
                continue
            break
        if status == _NOT_FOUND:
            self._sid_cache.pop(sid, None)
            return None
        if status == 0:
            return None
        static = _bytes(reply[1])
        assert static is not None
        return static, _bytes(reply[2]) if len(reply) > 2 else None

    # --- consent (protocol.md §4.8-§4.10) ------------------------------------------------

    async def _set_members(
        self,
        key: str,
        kind: str,
        rid: bytes,
        add: Sequence[bytes],
        remove: Sequence[bytes],
        limit: int,
        now: int,
    ) -> int:
        removed = list(remove)
        args: list[Any] = [
            now,
            self._limits.mailbox_idle_ttl_s,
            kind,
            limit,
            self._mailbox_ttl(now),
            len(removed),
            *removed,
            *add,
        ]
        reply = await self._run("set_members", [self._mailbox_keys(rid)[0], key], args)
        status = int(reply[0])
        if status == _NOT_FOUND:
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == _QUOTA:
            raise QuotaExceeded(MSG_QUOTA)
        if status == _WRONG_KIND:
            raise WrongKind("the operation does not apply to this mailbox's kind")
        return int(reply[1])

    async def set_caps(
        self,
        rid: bytes,
        add: Sequence[bytes],
        remove: Sequence[bytes],
        max_caps: int,
        now: int,
    ) -> int:
        """Remove, then add capability hashes of a pair mailbox, in one script.

        Returns:
            The number of capability hashes now registered.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``pair``.
            QuotaExceeded: more than ``max_caps`` would be registered; nothing changed.
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        key = self._consent_keys(rid)[0]
        return await self._set_members(key, KIND_PAIRWISE, rid, add, remove, max_caps, now)

    async def set_bans(
        self,
        rid: bytes,
        ban: Sequence[bytes],
        unban: Sequence[bytes],
        max_bans: int,
        now: int,
    ) -> int:
        """Lift ``unban``, then ban ``ban`` on a contact address, in one script.

        Returns:
            The number of banned handles.

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``addr``.
            QuotaExceeded: more than ``max_bans`` would be banned; nothing changed.
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        key = self._consent_keys(rid)[1]
        return await self._set_members(key, KIND_ADDRESS, rid, ban, unban, max_bans, now)

    async def set_boundaries(self, rid: bytes, boundaries: Boundaries, now: int) -> None:
        """Replace the boundaries of a contact address (its daily counter is kept).

        Raises:
            MailboxNotFound: no live mailbox has receive id ``rid``.
            WrongKind: the mailbox is not of kind ``addr``.
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        b = boundaries
        status = int(
            await self._run(
                "set_boundaries",
                [self._mailbox_keys(rid)[0]],
                [now, self._limits.mailbox_idle_ttl_s, b.size, b.att, b.day, b.pow],
            )
        )
        if status == _NOT_FOUND:
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == _WRONG_KIND:
            raise WrongKind("the operation does not apply to this mailbox's kind")

    async def mailbox_info(self, rid: bytes, now: int) -> MailboxSnapshot | None:
        """Read every key of mailbox ``rid`` in one transaction (counts for collections),
        plus the receive time of its oldest envelope.

        Raises:
            StorageUnavailable: Redis failed.
        """
        m, q, e, _x, d, _y = self._mailbox_keys(rid)
        _, k, p = self._prekey_keys(rid)
        a, n = self._consent_keys(rid)
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                _ = pipe.hgetall(m)
                _ = pipe.zrange(q, 0, 0)
                _ = pipe.hlen(d)
                _ = pipe.llen(p)
                _ = pipe.hexists(k, "s")
                _ = pipe.hmget(k, ["h", "c"])
                _ = pipe.scard(a)
                _ = pipe.scard(n)
                (
                    rec,
                    first,
                    n_dedupe,
                    n_items,
                    has_static,
                    window,
                    n_caps,
                    n_bans,
                ) = await pipe.execute()
            oldest_blob = _bytes(await self._client.hget(e, first[0])) if first else None
        fields = {bytes(key).decode(): value for key, value in rec.items()}
        names = ["sid", "ok", "cd", "ad", "kd", "bs", "ba", "bd", "bp"]
        record = self._record(rid, [fields.get(name) for name in names], now)
        if record is None:
            return None
        oldest_ts: int | None = None
        if oldest_blob is not None:
            oldest_ts = int(msgpack.unpackb(oldest_blob[_ENVELOPE_HEADER:], raw=False)[1])
        handed = int(window[1] or 0)
        rd = fields.get("rd")
        return MailboxSnapshot(
            suspended=fields.get("su") is not None,
            record=record,
            active_day=int(fields["ad"]),
            last_seq=int(fields.get("ls", 0)),
            envelopes=int(fields.get("n", 0)),
            stored_bytes=int(fields.get("b", 0)),
            oldest_ts=oldest_ts,
            dedupe_records=int(n_dedupe),
            prekeys_left=int(n_items),
            prekey_static=bool(has_static),
            prekey_hour=int(window[0]) if handed else None,
            prekeys_handed=handed,
            caps=int(n_caps),
            bans=int(n_bans),
            requests_day=int(rd) if rd is not None else None,
            requests=int(fields.get("rc", 0)),
        )

    async def set_suspended(self, sid: bytes, suspended: bool, now: int) -> bool:
        """Set or clear ``su`` on the record of the live mailbox with send id ``sid``.

        Returns:
            False if no live mailbox has that send id.

        Raises:
            StorageUnavailable: Redis failed.
        """
        args = [sid, now, self._limits.mailbox_idle_ttl_s, 1 if suspended else 0]
        for use_cache in (True, False):
            rid = await self._rid_for_sid(sid, use_cache=use_cache)
            if rid is None:
                return False
            if int(await self._run("suspend", [self._mailbox_keys(rid)[0]], args)) == 1:
                return True
            self._sid_cache.pop(sid, None)
        return False

    # --- franking keys and moderation (protocol.md §4.11) ------------------------------

    def _key_ttl(self) -> int:
        limits = self._limits
        return limits.franking_rotation_s + limits.report_window_s + TTL_SLACK_S

    async def franking_keys(self) -> list[FrankingKey]:
        """Every stored franking key, by increasing kid.

        Raises:
            StorageUnavailable: Redis failed.
        """
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                _ = pipe.hgetall(self._mod_key("f"))
                _ = pipe.hgetall(self._mod_key("fc"))
                secrets_, created = await pipe.execute()
        keys = []
        for kid, secret in secrets_.items():
            at = created.get(kid)
            if at is not None:
                keys.append(FrankingKey(kid=int(kid), secret=bytes(secret), created=int(at)))
        return sorted(keys, key=lambda k: k.kid)

    async def add_franking_key(self, key: FrankingKey) -> FrankingKey:
        """Store ``key`` unless its kid is taken (``HSETNX``); return the stored one.

        Raises:
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        secret, created = await self._run(
            "add_franking_key",
            [self._mod_key("f"), self._mod_key("fc")],
            [key.kid, key.secret, key.created, self._key_ttl()],
        )
        return FrankingKey(kid=key.kid, secret=bytes(secret), created=int(created))

    def _report_ttl(self) -> int:
        return self._limits.report_retention_s + TTL_SLACK_S

    def _audit_args(self, entry: AuditRecord) -> list[Any]:
        return [
            entry.ts,
            entry.moderator,
            entry.action,
            entry.report_id or b"",
            entry.detail,
            self._limits.audit_retention_s + TTL_SLACK_S,
        ]

    async def insert_report(
        self, report: ReportRecord, audit: AuditRecord, *, max_per_day: int
    ) -> None:
        """Store a report and its audit entry in one script (duplicate, then allowance).

        Raises:
            DuplicateReport: the id is taken.
            QuotaExceeded: the filing mailbox's daily allowance is used up.
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        keys = [
            self._mod_key("r"),
            self._mod_key("ri"),
            self._mod_key("ro"),
            self._mod_key("rs", report.sid.hex()),
            self._mod_key("au"),
            self._mod_key("as"),
        ]
        args = [
            report.id,
            _pack_report(report),
            report.created,
            day_of(report.created) * SECONDS_PER_DAY,
            max_per_day,
            self._report_ttl(),
            2 * SECONDS_PER_DAY + TTL_SLACK_S,
            *self._audit_args(audit),
        ]
        status = int(await self._run("insert_report", keys, args))
        if status == -1:
            raise DuplicateReport("the envelope was reported before")
        if status == -2:
            raise QuotaExceeded("the daily report allowance is used up")

    async def _reports(self, ids: Sequence[bytes]) -> list[ReportRecord]:
        if not ids:
            return []
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                _ = pipe.hmget(self._mod_key("r"), list(ids))
                _ = pipe.hmget(self._mod_key("rr"), list(ids))
                blobs, resolutions = await pipe.execute()
        return [
            _unpack_report(blob, res)
            for blob, res in zip(blobs, resolutions, strict=True)
            if blob is not None
        ]

    async def get_report(self, report_id: bytes) -> ReportRecord | None:
        """Return the report with this id, or None.

        Raises:
            StorageUnavailable: Redis failed.
        """
        found = await self._reports([report_id])
        return found[0] if found else None

    async def list_reports(self, status: str | None, limit: int) -> list[ReportRecord]:
        """Open reports oldest first, resolved (or all) newest first.

        Raises:
            StorageUnavailable: Redis failed.
        """
        if status not in ("open", "resolved", None):
            raise ValueError("status must be open, resolved or None")
        if limit <= 0:
            return []
        if status == "open":
            with self._guard():
                ids = _byte_list(await self._client.zrange(self._mod_key("ro"), 0, limit - 1))
            return await self._reports(ids)
        out: list[ReportRecord] = []
        start = 0
        while len(out) < limit:
            with self._guard():
                ids = _byte_list(
                    await self._client.zrevrange(self._mod_key("ri"), start, start + 2 * limit - 1)
                )
            if not ids:
                break
            start += len(ids)
            for rec in await self._reports(ids):
                if status is None or rec.status == status:
                    out.append(rec)
        return out[:limit]

    async def resolve_report(
        self, report_id: bytes, resolution: ReportResolution, audit: AuditRecord
    ) -> ReportRecord:
        """Resolve an open report with its audit entry in one script.

        Raises:
            ReportNotFound: no report has this id.
            ReportAlreadyResolved: it was resolved before.
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        r = resolution
        blob = msgpack.packb([r.action, r.moderator, r.resolved_at, r.note], use_bin_type=True)
        keys = [
            self._mod_key("r"),
            self._mod_key("rr"),
            self._mod_key("ro"),
            self._mod_key("au"),
            self._mod_key("as"),
        ]
        status = int(
            await self._run(
                "resolve_report",
                keys,
                [report_id, blob, self._report_ttl(), *self._audit_args(audit)],
            )
        )
        if status == -1:
            raise ReportNotFound("no such report")
        if status == -2:
            raise ReportAlreadyResolved("the report was resolved before")
        found = await self.get_report(report_id)
        if found is None:  # purged in between: report what was written
            raise ReportNotFound("no such report")
        return found

    async def append_audit(self, entry: AuditRecord) -> int:
        """Append an audit entry to the stream; returns its sequence number.

        Raises:
            StorageUnavailable: Redis failed.
            StorageFull: Redis is out of memory or cannot write its AOF.
        """
        keys = [self._mod_key("au"), self._mod_key("as")]
        return int(await self._run("append_audit", keys, self._audit_args(entry)))

    async def list_audit(self, limit: int) -> list[AuditRecord]:
        """The latest ``limit`` audit entries, newest first (``XREVRANGE``).

        Raises:
            StorageUnavailable: Redis failed.
        """
        if limit <= 0:
            return []
        with self._guard():
            entries: Any = await self._client.xrevrange(self._mod_key("au"), "+", "-", count=limit)
        out = []
        for entry_id, fields in entries:
            f = {bytes(k).decode(): bytes(v) for k, v in fields.items()}
            out.append(
                AuditRecord(
                    seq=int(bytes(entry_id).split(b"-")[0]),
                    ts=int(f["ts"]),
                    moderator=f["mo"].decode(),
                    action=f["ac"].decode(),
                    report_id=f["ri"] or None,
                    detail=f["de"].decode(),
                )
            )
        return out


def _byte_list(values: object) -> list[bytes]:
    """Narrow a redis-py list reply of bytes for the type checker."""
    assert isinstance(values, list)
    return [v for v in values if isinstance(v, bytes)]


def _pack_report(r: ReportRecord) -> bytes:
    packed: bytes = msgpack.packb(
        [
            r.id,
            r.created,
            r.sid,
            r.reason,
            r.note,
            r.msg,
            list(r.attachments),
            r.sender_key,
            r.recipient_key,
            r.kid,
            r.day,
            r.source_kind,
            r.source,
            r.verified_at,
        ],
        use_bin_type=True,
    )
    return packed


def _unpack_report(blob: bytes, resolution: bytes | None) -> ReportRecord:
    (
        rid,
        created,
        sid,
        reason,
        note,
        msg,
        atts,
        snd,
        rcp,
        kid,
        day,
        source_kind,
        source,
        verified_at,
    ) = msgpack.unpackb(blob, raw=False)
    res = None
    if resolution is not None:
        action, moderator, resolved_at, res_note = msgpack.unpackb(resolution, raw=False)
        res = ReportResolution(
            action=action, moderator=moderator, resolved_at=resolved_at, note=res_note
        )
    return ReportRecord(
        id=rid,
        created=created,
        reason=reason,
        note=note,
        msg=msg,
        attachments=tuple(atts),
        sender_key=snd,
        recipient_key=rcp,
        sid=sid,
        kid=kid,
        day=day,
        source_kind=source_kind,
        source=source,
        verified_at=verified_at,
        resolution=res,
    )


def _kind_and_boundaries(values: Sequence[bytes | None]) -> tuple[str, Boundaries | None]:
    """Kind and boundaries from the ``kd, bs, ba, bd, bp`` fields of a mailbox record."""
    kd = values[0]
    kind = kd.decode() if kd is not None else KIND_OPEN
    if kind != KIND_ADDRESS:
        return kind, None
    size, att, day, bits = (int(v) if v is not None else 0 for v in values[1:5])
    return kind, Boundaries(size=size, att=att, day=day, pow=bits)


class RedisWakeups:
    """A :class:`~relay.storage.base.Wakeups` shared by every relay process using one Redis.

    Local listeners get each event at once (with its envelope). Other processes get it through
    the mailbox's channel ``<prefix>w:{<rid hex>}`` (same hash tag as the mailbox keys, ready
    for sharded pub/sub), as an 8-byte random per-process id (so a process skips its own
    publications without decoding them) followed by a msgpack map carrying the kind, seq and,
    for ``online``, the envelope (never stored). One reader task receives; channels are
    subscribed while they have listeners. Pub/sub is best effort: an event published while
    the connection is down is lost, so subscribers must fetch after (re)subscribing.

    Args:
        url: the Redis URL.
        key_prefix: prefix of channel names, default ``br:``.
    """

    def __init__(self, url: str, *, key_prefix: str = "br:") -> None:
        self._prefix = _check_prefix(key_prefix)
        self._client = _make_client(url)
        self._pubsub: PubSub | None = None
        self._registry = ListenerRegistry()
        self._process_id = secrets.token_bytes(8)
        self._control = f"{self._prefix}w:ctl:{self._process_id.hex()}".encode()
        self._subscribed: set[bytes] = set()
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def _channel(self, rid: bytes) -> bytes:
        return f"{self._prefix}w:{_tag(rid)}".encode()

    async def start(self) -> None:
        """Connect the subscriber connection and start the reader and subscription tasks.

        Raises:
            StorageUnavailable: Redis cannot be reached.
        """
        self._pubsub = self._client.pubsub()
        with _redis_errors():
            # A private control channel keeps the connection in subscribed mode, so the
            # reader always has a connection to wait on.
            await self._pubsub.subscribe(self._control)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._reader(), name="redis-wakeups-reader"),
            loop.create_task(self._subscriber(), name="redis-wakeups-subscriber"),
        ]
        if self._registry.rids():
            self._dirty.set()

    async def aclose(self) -> None:
        """Stop the tasks and close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for fut in self._pongs.values():
            if not fut.done():
                fut.cancel()
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._client.aclose()

    def listen(self, rid: bytes, callback: WakeCallback) -> None:
        """Call ``callback`` for every event about ``rid``; subscribes its channel if new."""
        if self._registry.add(rid, callback):
            self._dirty.set()

    def unlisten(self, rid: bytes, callback: WakeCallback) -> None:
        """Stop calling ``callback``; unsubscribes the channel when no listener is left."""
        if self._registry.remove(rid, callback):
            self._dirty.set()

    async def sync(self) -> None:
        """Wait until every ``listen``/``unlisten`` so far is in effect on the Redis server.

        Raises:
            StorageUnavailable: Redis did not confirm in time.
        """
        if self._pubsub is None:
            raise StorageUnavailable(MSG_UNAVAILABLE)
        token = secrets.token_bytes(8)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[token] = fut
        try:
            await self._reconcile()
            # PING on a subscribed connection is answered in order, after the (un)subscribe
            # commands sent before it.
            with _redis_errors():
                await self._pubsub.ping(token)
            await asyncio.wait_for(fut, SYNC_TIMEOUT_S)
        except TimeoutError as exc:
            raise StorageUnavailable(MSG_UNAVAILABLE) from exc
        finally:
            self._pongs.pop(token, None)

    async def publish(self, event: WakeEvent) -> None:
        """Deliver ``event`` to local listeners at once, then publish it to other processes.

        Raises:
            StorageUnavailable: Redis failed (local listeners were still called).
        """
        self._registry.dispatch(event)
        body: dict[str, Any] = {"k": event.kind, "s": event.seq}
        if event.kind == "online" and event.env is not None:
            body["e"] = event.env.to_map()
        # The publishing process id is a fixed-size prefix, so every process can skip its own
        # publications (one per local deposit) without decoding them.
        message = self._process_id + msgpack.packb(body, use_bin_type=True)
        with _redis_errors():
            await self._client.publish(self._channel(event.rid), message)

    # --- background tasks ----------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Subscribe channels that gained listeners, unsubscribe those that lost them."""
        async with self._lock:
            assert self._pubsub is not None
            wanted = {self._channel(rid) for rid in self._registry.rids()}
            add, drop = wanted - self._subscribed, self._subscribed - wanted
            with _redis_errors():
                if add:
                    await self._pubsub.subscribe(*add)
                if drop:
                    await self._pubsub.unsubscribe(*drop)
            self._subscribed = wanted

    async def _subscriber(self) -> None:
        delay = 0.05
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._reconcile()
                delay = 0.05
            except StorageError:
                log.warning("wakeups_subscribe_failed")
                self._dirty.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _reader(self) -> None:
        assert self._pubsub is not None
        delay = 0.05
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
                delay = 0.05
            except (RedisError, OSError):
                # redis-py reconnects and resubscribes on the next read.
                log.warning("wakeups_connection_lost")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if message is None:
                continue
            kind = message.get("type")
            if kind == "pong":
                fut = self._pongs.get(message.get("data") or b"")
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif kind == "message":
                self._deliver(message["channel"], message["data"])

    def _deliver(self, channel: bytes, data: bytes) -> None:
        rid = self._rid_of(channel)
        if rid is None or not self._registry.has(rid) or len(data) > MAX_WAKE_MESSAGE:
            return
        if data[: len(self._process_id)] == self._process_id:
            return  # our own publication: local listeners already had it
        try:
            body = msgpack.unpackb(data[len(self._process_id) :], raw=False, strict_map_key=True)
            if not isinstance(body, dict):
                return
            kind, seq = body["k"], body["s"]
            if kind not in ("stored", "online", "deleted") or type(seq) is not int:
                return
            env = StoredEnvelope.from_map(body["e"]) if kind == "online" else None
            if kind == "online" and env is None:
                return
        except (KeyError, TypeError, ValueError, WireError, msgpack.UnpackException):
            log.warning("wakeup_message_malformed")
            return
        self._registry.dispatch(WakeEvent(kind=kind, rid=rid, seq=seq, env=env))

    def _rid_of(self, channel: bytes) -> bytes | None:
        head = f"{self._prefix}w:{{".encode()
        if not channel.startswith(head) or not channel.endswith(b"}"):
            return None
        try:
            return bytes.fromhex(channel[len(head) : -1].decode("ascii"))
        except ValueError:
            return None
