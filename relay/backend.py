"""The one place that picks a storage backend from configuration.

Used by the application factory (:mod:`relay.app`) and by the admin CLI, which opens the store
without serving; neither imports the other.
"""

from __future__ import annotations

from relay.config import RelayConfig
from relay.storage.base import EnvelopeStore, Wakeups

__all__ = ["build_backend"]


def build_backend(config: RelayConfig, *, serve: bool = False) -> tuple[EnvelopeStore, Wakeups]:
    """Construct (but do not open) the store and wake-up channel the config asks for.

    ``serve``: for ``blindrelay serve``, which keeps the SQLite space reserve
    (``sqlite_reserve_mib``); the admin CLI, which may run beside it, leaves it alone."""
    if config.storage == "redis":
        from relay.storage.redis import RedisStore, RedisWakeups, ShardedWakeups

        redis_store: EnvelopeStore = RedisStore(
            config.redis_url,
            config.store_limits(),
            durability="strict" if config.redis_durability == "strict" else "relaxed",
            key_prefix=config.redis_key_prefix,
            cluster=config.redis_cluster,
            wait_replicas=config.redis_wait_replicas,
        )
        # On Redis Cluster, sharded pub/sub: a wake-up goes to the master of the mailbox's
        # slot only, not to every node.
        kind = ShardedWakeups if config.redis_cluster else RedisWakeups
        wakeups: Wakeups = kind(
            config.redis_url,
            key_prefix=config.redis_key_prefix,
            publish_timeout_s=config.storage_timeout_s,
        )
        return redis_store, wakeups
    from relay.storage.sqlite import SQLiteStore
    from relay.storage.wakeups import LocalWakeups

    path = config.resolved_sqlite_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SQLiteStore(
        path,
        config.store_limits(),
        reserve_bytes=(config.sqlite_reserve_mib << 20) if serve else 0,
        wait_timeout_s=config.storage_timeout_s,
    )
    return store, LocalWakeups()
