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
``lua/mod_lib.lua``), so every moderation script touches one slot.

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
keys live at least the envelope TTL after the last insert, dedupe keys the dedupe window
(both renewed only when less than that is left, plus a day: ``keep_alive`` in lua/lib.lua, so
a deposit does not rewrite five TTLs), the mailbox record, its index, its prekey keys,
capability hashes and bans the idle period plus a day (refreshed by ``touch_mailbox``),
challenges and proof-of-work nonces their own expiry. The contract (expiry as seen by the
``now`` argument) is enforced by the scripts; TTLs are garbage collection.

Costs independent of the stored state (issue 21)::

    <prefix>xi:{<n>}  zset per hash slot: rid -> a second at or before which something of
                      the mailbox may be due (its idle deadline, its oldest envelope or
                      dedupe expiry); ``<n>`` is the smallest number whose tag is in that
                      slot (:func:`~relay.storage.redis.keys.slot_tags`), so the mailbox
                      scripts update it atomically, on Redis Cluster too
    <prefix>g         hash: m mailbox records, n envelopes, b ciphertext bytes (the gauges,
                      changed by the same scripts as the data; read in one command)
    <prefix>sweep     the sweeper lease: one relay process of a deployment sweeps
    <prefix>layout    "2" once records written before the index and gauges were counted

The sweep (:mod:`relay.storage.redis.expiry`) asks every slot's index for what is due
(16,384 pipelined ``ZRANGEBYSCORE``, whatever the number of mailboxes) and runs a bounded
script per due mailbox. The gauges key is the one key outside the mailbox's slot that a
mailbox script writes: on Redis Cluster it becomes one per slot, summed on read.

Pipelining: every script call (:meth:`RedisEngine._run`) goes through a
:class:`~relay.storage.redis.batch.Batcher`: the calls of one turn of the event loop go to
Redis as one pipeline (no MULTI: each script is atomic on its own, as before), at most
:data:`MAX_PIPELINE` calls each and :data:`MAX_PIPELINES` pipelines in flight; calls beyond
them wait in the batcher's queue (back-pressure), not in the connection pool. With a Cluster
client each call is sent alone, as before (routed by its key).

Durability: with ``appendonly yes`` and ``appendfsync always`` Redis fsyncs the AOF before it
replies, so a deposit that returned is on disk. ``durability="relaxed"`` accepts
``appendfsync everysec`` (up to about one second of acknowledged envelopes, two in the worst
case, can be lost if the Redis host crashes).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any, Final, Literal, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from clientlib.wire.frames import Boundaries
from clientlib.wire.limits import KIND_ADDRESS, KIND_OPEN, KIND_PAIRWISE
from relay.storage._common import (
    MSG_CLOSED,
    MSG_FULL,
    MSG_UNAVAILABLE,
    day_of,
    mailbox_deadline,
)
from relay.storage.errors import (
    StorageError,
    StorageFull,
    StorageUnavailable,
)
from relay.storage.records import SECONDS_PER_DAY, StoreLimits
from relay.storage.redis.argv import SCRIPT_ARGV, lua_prologue
from relay.storage.redis.batch import Batcher
from relay.storage.redis.keys import RedisKeys, slot_tags

__all__ = ["GC_MARGIN_S", "TTL_SLACK_S", "RedisEngine", "make_cluster_client", "redis_errors"]

#: Extra seconds every TTL gets beyond the logical expiry: absorbs clock differences between
#: relay processes and Redis, which only matters for garbage collection.
TTL_SLACK_S: Final = 300
#: Extra lifetime of keys the sweeper deletes on time (mailbox records, envelope and dedupe
#: keys): a day for the sweeper to get there first and keep the gauges exact (the same
#: margin as ``GC_MARGIN`` in lua/lib.lua).
GC_MARGIN_S: Final = 86_400

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

#: Most script calls one pipeline carries (see "Pipelining").
MAX_PIPELINE: Final = 128

#: Pipelines in flight at once, each on one pooled connection; script calls beyond them wait
#: in the store's queue (bounded by the relay's requests in flight), never for the pool.
MAX_PIPELINES: Final = 16

#: How long a command may wait for a free pooled connection. Waiting is back-pressure, not an
#: outage: a healthy but busy Redis must not turn into UNAVAILABLE (the relay allows many
#: requests in flight), so this is much longer than the socket timeout.
POOL_WAIT_TIMEOUT_S: Final = 30.0


#: Connections per node of a Redis Cluster client (the cluster client does not queue callers
#: like the blocking pool; beyond this a command fails, so the bound is generous).
CLUSTER_MAX_CONNECTIONS: Final = 512

#: Retries of a command on Redis Cluster: a failover takes a few seconds (the node timeout
#: plus the election), and the client refreshes the slot map between attempts.
CLUSTER_RETRIES: Final = 6

#: How long a write waits for ``redis_wait_replicas`` replicas to confirm (``WAIT``).
WAIT_TIMEOUT_MS: Final = 1000

#: Scripts whose effect a client is told about as done: with ``wait_replicas`` they are
#: followed by ``WAIT`` on the same connection, and fail as unavailable if too few replicas
#: confirmed (a retry is safe: every script is idempotent, see above).
_CONFIRMED: Final = frozenset(
    {
        "create",
        "delete",
        "deposit",
        "ack",
        "recall",
        "put_challenge",
        "put_challenge_oom",
        "put_prekeys",
        "take_prekeys",
        "set_members",
        "set_boundaries",
        "suspend",
        "add_franking_key",
        "insert_report",
        "resolve_report",
        "append_audit",
    }
)

ENVELOPE_HEADER: Final = 4  # big-endian ciphertext length in front of each stored blob

DUPLICATE, STORED, NOT_FOUND, QUOTA = 1, 0, -1, -2

WRONG_KIND, BOUNDARY, POW, REFUSED, STAMP_KIND = -3, -4, -5, -6, -7

KINDS: Final = frozenset({KIND_OPEN, KIND_PAIRWISE, KIND_ADDRESS})

#: Script name -> shebang. Scripts that only delete may run when Redis is out of memory.
_SCRIPTS: Final[dict[str, str]] = {
    "create": "#!lua",
    "touch": "#!lua flags=allow-oom",
    "delete": "#!lua flags=allow-oom",
    "deposit": "#!lua",
    "fetch": "#!lua flags=allow-oom",
    "ack": "#!lua flags=allow-oom",
    "recall": "#!lua flags=allow-oom",
    "purge": "#!lua flags=allow-oom",
    "put_challenge": "#!lua",
    # The same script, allowed at maxmemory: challenges of operations that free memory
    # (relay.storage.redis.challenges).
    "put_challenge_oom": "#!lua flags=allow-oom",
    "unlink_if": "#!lua flags=allow-oom",
    "put_prekeys": "#!lua",
    "take_prekeys": "#!lua flags=allow-oom",
    "set_members": "#!lua flags=allow-oom",
    "set_boundaries": "#!lua",
    "set_push": "#!lua",
    "suspend": "#!lua flags=allow-oom",
    "add_franking_key": "#!lua",
    "insert_report": "#!lua",
    "resolve_report": "#!lua",
    "append_audit": "#!lua",
    "purge_mod": "#!lua flags=allow-oom",
    "backfill": "#!lua",
    "lease": "#!lua",
    "due": "#!lua flags=no-writes,allow-cross-slot-keys",
    "gsum": "#!lua flags=no-writes,allow-cross-slot-keys",
}

#: Scripts whose source is another's (same body, other flags).
_SOURCES: Final = {"put_challenge_oom": "put_challenge"}

#: Scripts that also get the moderation helpers (lua/mod_lib.lua).
_MOD_SCRIPTS: Final = frozenset({"insert_report", "resolve_report", "append_audit"})


def _load_script(name: str) -> str:
    """The source of script ``name``: its shebang, the shared helpers (``lua/lib.lua``, and
    ``lua/mod_lib.lua`` for moderation scripts), its named ARGV prologue if it has one
    (:mod:`relay.storage.redis.argv`), then ``lua/<name>.lua``."""
    package = resources.files("relay.storage.redis").joinpath("lua")
    lib = package.joinpath("lib.lua").read_text(encoding="utf-8")
    if name in _MOD_SCRIPTS:
        lib += "\n" + package.joinpath("mod_lib.lua").read_text(encoding="utf-8")
    body = package.joinpath(f"{_SOURCES.get(name, name)}.lua").read_text(encoding="utf-8")
    spec = SCRIPT_ARGV.get(name)
    prologue = "" if spec is None else lua_prologue(spec) + "\n"
    return f"{_SCRIPTS[name]}\n{lib}\n{prologue}{body}"


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
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
    except (RedisError, RedisClusterException, OSError) as exc:
        # RedisClusterException: no node serves a slot (during a failover), among others.
        raise StorageUnavailable(MSG_UNAVAILABLE) from exc


def _as_bool(reply: object, **_options: object) -> bool:
    return bool(reply)


def make_cluster_client(url: str) -> RedisCluster:
    """A Redis Cluster client from a seed node's URL (it discovers the other nodes, follows
    MOVED/ASK redirections and refreshes the slot map after a failover)."""
    return RedisCluster.from_url(
        url,
        max_connections=CLUSTER_MAX_CONNECTIONS,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries=CLUSTER_RETRIES),
        health_check_interval=30,
    )


def own_error(exc: Exception) -> Exception:
    """A fresh exception for one caller of a failed pipeline (one exception object raised
    in many coroutines would pile their tracebacks onto it): the store's own error."""
    try:
        with redis_errors():
            raise exc
    except StorageError as mapped:
        return mapped
    except Exception:  # not a Redis failure (a bug): as it is
        return exc


def make_client(url: str, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
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


def as_bytes(value: object) -> bytes | None:
    """Narrow a redis-py reply (bytes, since responses are not decoded) for the type checker."""
    if value is None:
        return None
    assert isinstance(value, bytes)
    return value


def kind_and_boundaries(values: Sequence[bytes | None]) -> tuple[str, Boundaries | None]:
    """Kind and boundaries from the ``kd, bs, ba, bd, bp`` fields of a mailbox record."""
    kd = values[0]
    kind = kd.decode() if kd is not None else KIND_OPEN
    if kind != KIND_ADDRESS:
        return kind, None
    size, att, day, bits = (int(v) if v is not None else 0 for v in values[1:5])
    return kind, Boundaries(size=size, att=att, day=day, pow=bits)


class RedisEngine:
    """An :class:`~relay.storage.base.EnvelopeStore` on Redis (single node or Cluster-ready).

    Args:
        url: ``redis://`` or ``rediss://`` URL (``unix://`` works too).
        limits: quotas and expiry periods.
        durability: ``"strict"`` requires ``appendonly yes`` with ``appendfsync always``;
            ``"relaxed"`` also accepts ``appendfsync everysec`` (about 1 s loss window).
        key_prefix: prefix of every key and channel, default ``br:``.
        cluster: ``url`` is a seed node of a Redis Cluster.
        wait_replicas: after every confirmed write, wait (``WAIT``) until this many replicas
            have it; fewer in time is "unavailable" (the client retries). 0: do not wait.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        limits: StoreLimits,
        *,
        durability: Literal["strict", "relaxed"] = "strict",
        key_prefix: str = "br:",
        cluster: bool = False,
        wait_replicas: int = 0,
    ) -> None:
        if durability not in ("strict", "relaxed"):
            raise ValueError("durability must be 'strict' or 'relaxed'")
        if not 0 <= wait_replicas <= 16:
            raise ValueError("wait_replicas must be from 0 to 16")
        self._limits = limits
        self._mode = durability
        self._keys = RedisKeys(key_prefix, cluster=cluster)
        self._prefix = self._keys.prefix
        self._wait_replicas = wait_replicas
        #: The cluster client when on Redis Cluster (``_client`` is the same object, typed
        #: as the single-node client: the commands the mixins use are the same).
        self._cluster: RedisCluster | None = None
        if cluster:
            self._cluster = make_cluster_client(url)
            self._client = cast(aioredis.Redis, self._cluster)
            # redis-py's cluster MULTI path passes the routing ``keys=`` to the reply
            # callbacks, which ``bool`` does not take (HEXISTS, SISMEMBER in transactions).
            for command in ("HEXISTS", "SISMEMBER"):
                self._cluster.set_response_callback(command, _as_bool)  # type: ignore[arg-type]
        else:
            self._client = make_client(url)
        self._scripts: dict[str, AsyncScript] = {
            name: self._client.register_script(_load_script(name)) for name in _SCRIPTS
        }
        self._sid_cache: OrderedDict[bytes, bytes] = OrderedDict()
        #: Key expiries of the challenges written past maxmemory (redis/challenges.py).
        self._oom_issued: deque[float] = deque()
        self._closed = False
        #: Identifies this store's sweeper lease (see :mod:`relay.storage.redis.expiry`).
        self._lease_token = secrets.token_bytes(16)
        self._indexes: list[str] | None = None  # every slot's expiry index key, once built
        self._gauge_keys: list[str] | None = None  # every gauges key, once built
        #: Script calls pipelined per loop turn (single node; a cluster client sends each
        #: call alone, routed by its key).
        self._batcher = (
            Batcher(self._client, own_error, max_batch=MAX_PIPELINE, max_pipelines=MAX_PIPELINES)
            if self._cluster is None
            else None
        )

    def _mailbox_ttl(self, now: int) -> int:
        # The GC margin gives the sweeper a day to delete an idle mailbox (and take it out of
        # the gauges) before its keys' TTL would.
        return mailbox_deadline(day_of(now), self._limits) - now + TTL_SLACK_S + GC_MARGIN_S

    @property
    def _index_ttl(self) -> int:
        """TTL of the expiry index and gauges keys: longer than any record they describe
        (renewed by the scripts when less than this is left)."""
        return self._limits.mailbox_idle_ttl_s + 2 * SECONDS_PER_DAY + TTL_SLACK_S

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Refuse calls after :meth:`aclose`, and translate redis-py failures."""
        if self._closed:
            raise StorageUnavailable(MSG_CLOSED)
        with redis_errors():
            yield

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name``, pipelined with every other call of this loop turn on a single
        node (see "Pipelining")."""
        if self._wait_replicas and name in _CONFIRMED:
            return await self._run_confirmed(name, keys, args)
        with self._guard():
            script = self._scripts[name]
            keys, args = list(keys), list(args)
            if self._batcher is None:
                return await script(keys=keys, args=args)
            return await self._batcher.call(
                ("EVALSHA", script.sha, len(keys), *keys, *args),
                lambda: script(keys=keys, args=args),
            )

    async def _run_confirmed(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` then ``WAIT`` on the same connection (one pipeline to the node
        of its slot): the reply counts the replicas that have the write."""
        script = self._scripts[name]
        for attempt in range(2):
            with self._guard():
                async with self._client.pipeline(transaction=False) as pipe:
                    # (execute_command: the cluster pipeline blocks its evalsha method, but
                    # routes EVALSHA by its first key.)
                    _ = pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    if self._cluster is not None:
                        node = self._cluster.get_node_from_key(keys[0])
                        _ = pipe.execute_command(
                            "WAIT", self._wait_replicas, WAIT_TIMEOUT_MS, target_nodes=node
                        )
                    else:
                        _ = pipe.execute_command("WAIT", self._wait_replicas, WAIT_TIMEOUT_MS)
                    reply, confirmed = await pipe.execute(raise_on_error=False)
                if isinstance(reply, NoScriptError) and attempt == 0:
                    await self._client.script_load(script.script)
                    continue
                if isinstance(reply, Exception):
                    raise reply
                if isinstance(confirmed, Exception):
                    raise confirmed
            if int(confirmed) < self._wait_replicas:
                raise StorageUnavailable(MSG_UNAVAILABLE)
            return reply
        raise StorageUnavailable(MSG_UNAVAILABLE)

    async def _on_every_node(
        self, name: str, slots: Sequence[int], kind: str, args: Sequence[Any]
    ) -> list[tuple[list[int], Any]]:
        """Run the read-only cross-slot script ``name`` once per Redis Cluster master over the
        per-slot keys ``<prefix><kind>:{<slot tag>}`` of the slots of ``slots`` it serves;
        returns ``(its slots, its reply)`` per master. A slot no master serves is
        "unavailable".

        The script declares one of those keys (a script may declare keys of one slot only)
        and gets the others as ``ARGV``: after ``args``, the key head ``<prefix><kind>:{`` and
        the slot tags joined by commas, from which it builds every key (one short argument
        instead of thousands of key names to pack; allow-cross-slot-keys lets it reach them).
        """
        cluster = self._cluster
        assert cluster is not None
        script = self._scripts[name]
        tags = slot_tags()
        head = f"{self._prefix}{kind}:{{"
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        with self._guard():
            cache = cluster.nodes_manager.slots_cache
            for slot in slots:
                nodes = cache.get(slot)
                if not nodes:
                    raise StorageUnavailable(MSG_UNAVAILABLE)
                by_node.setdefault(nodes[0].name, (nodes[0], []))[1].append(slot)

            async def one(node: ClusterNode, mine: list[int]) -> tuple[list[int], Any]:
                first = f"{head}{tags[mine[0]]}}}"
                listed = ",".join(tags[s] for s in mine)
                for attempt in range(2):
                    try:
                        reply = await cluster.execute_command(
                            "EVALSHA", script.sha, 1, first, *args, head, listed, target_nodes=node
                        )
                        return mine, reply
                    except NoScriptError:
                        if attempt:
                            raise
                        await cluster.execute_command(
                            "SCRIPT LOAD", script.script, target_nodes=node
                        )
                raise StorageUnavailable(MSG_UNAVAILABLE)

            return list(await asyncio.gather(*(one(n, m) for n, m in by_node.values())))

    async def open(self) -> None:
        await asyncio.to_thread(slot_tags)  # the expiry index key names, once per process
        if self._cluster is not None:
            with self._guard():
                _ = await self._cluster.initialize()
        await self.ping()
        strict = self._mode == "strict"
        refused = [msg for msg, relaxed_ok in await self._durability() if strict or not relaxed_ok]
        if refused:
            raise StorageUnavailable("storage is not durable: " + "; ".join(refused))

    async def aclose(self) -> None:
        if not self._closed:
            # Hand the sweeper lease over at once (best effort: it expires anyway).
            with contextlib.suppress(StorageError):
                await self._run("unlink_if", [self._keys.lease()], [self._lease_token])
            self._closed = True
            if self._batcher is not None:
                await self._batcher.drain()  # let calls in flight finish
            await self._client.aclose()

    async def _durability(self) -> list[tuple[str, bool]]:
        """Return ``(problem, acceptable in relaxed mode)`` pairs: of the one server, or on
        Redis Cluster of every master (a problem names how many masters have it)."""
        if self._cluster is None:
            with self._guard():
                try:
                    cfg = await self._client.config_get("append*")
                    cfg.update(await self._client.config_get("maxmemory-policy"))
                except ResponseError:
                    return [
                        ("redis CONFIG GET is not allowed; persistence cannot be verified", False)
                    ]
            out = self._config_problems(cfg)
            if self._wait_replicas:
                with self._guard():
                    info = await self._client.info("replication")
                out += self._replica_problems([int(info.get("connected_slaves", 0))])
            return out
        return await self._cluster_durability(self._cluster)

    async def _cluster_durability(self, cluster: RedisCluster) -> list[tuple[str, bool]]:
        masters = cluster.get_primaries()
        counts: dict[tuple[str, bool], int] = {}
        replicas: list[int] = []
        for node in masters:
            with self._guard():
                try:
                    cfg = await cluster.config_get("append*", target_nodes=node)
                    cfg.update(await cluster.config_get("maxmemory-policy", target_nodes=node))
                except ResponseError:
                    return [
                        ("redis CONFIG GET is not allowed; persistence cannot be verified", False)
                    ]
                info = await cluster.info("replication", target_nodes=node)
            replicas.append(int(info.get("connected_slaves", 0)))
            for problem in self._config_problems(cfg):
                counts[problem] = counts.get(problem, 0) + 1
        out = [(f"{msg} (on {n} of {len(masters)} masters)", ok) for (msg, ok), n in counts.items()]
        if self._wait_replicas:
            out += self._replica_problems(replicas)
        else:
            out.append(
                (
                    "redis cluster replication is asynchronous: a master failover can lose the"
                    " envelopes acknowledged just before it (set redis_wait_replicas)",
                    True,
                )
            )
        return out

    def _replica_problems(self, replicas: list[int]) -> list[tuple[str, bool]]:
        short = sum(1 for n in replicas if n < self._wait_replicas)
        if not short:
            return []
        return [
            (
                f"redis_wait_replicas is {self._wait_replicas} but {short} of {len(replicas)}"
                " masters have fewer replicas connected: every write would fail",
                False,
            )
        ]

    @staticmethod
    def _config_problems(cfg: dict[str | None, str | None]) -> list[tuple[str, bool]]:
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
        # In relaxed mode the everysec loss window is still reported (it is a real risk), but
        # :meth:`open` accepts it.
        return [msg for msg, _ in await self._durability()]

    async def ping(self) -> None:
        with self._guard():
            await self._client.ping()

    def space_exhausted(self) -> bool:
        # Redis refuses writes at maxmemory by itself; the scripts that free memory run
        # anyway (allow-oom), and so do the challenges of freeing operations.
        return False

    async def _rid_for_sid(self, sid: bytes, *, use_cache: bool) -> bytes | None:
        if use_cache:
            rid = self._sid_cache.get(sid)
            if rid is not None:
                self._sid_cache.move_to_end(sid)
                return rid
        with self._guard():
            rid = as_bytes(await self._client.get(self._keys.sid(sid)))
        if rid is not None:
            self._sid_cache[sid] = rid
            self._sid_cache.move_to_end(sid)
            while len(self._sid_cache) > SID_CACHE_SIZE:
                self._sid_cache.popitem(last=False)
        return rid
