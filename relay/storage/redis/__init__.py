"""Redis envelope store and cross-process wake-ups (``redis.asyncio``).

The package is split by concern: :mod:`.engine` (client, error mapping, script loading,
durability checks; its docstring is the theory of operation and the key layout),
:mod:`.keys` (every key name), :mod:`.argv` (named ARGV of the larger scripts), the Lua
scripts in ``lua/``, one mixin per concern of :mod:`relay.storage.base` (:mod:`.mailboxes`,
:mod:`.envelopes`, :mod:`.challenges`, :mod:`.prekeys`, :mod:`.consent`, :mod:`.moderation`,
:mod:`.expiry`), :mod:`.wakeups` (pub/sub) and :mod:`.sharded` (sharded pub/sub on Redis
Cluster). :class:`RedisStore` composes the mixins.
"""

from __future__ import annotations

from relay.storage.redis.challenges import ChallengesMixin
from relay.storage.redis.consent import ConsentMixin
from relay.storage.redis.envelopes import EnvelopesMixin
from relay.storage.redis.expiry import ExpiryMixin
from relay.storage.redis.mailboxes import MailboxesMixin
from relay.storage.redis.moderation import ModerationMixin
from relay.storage.redis.prekeys import PrekeysMixin
from relay.storage.redis.push import PushMixin
from relay.storage.redis.sharded import ShardedWakeups
from relay.storage.redis.wakeups import RedisWakeups

__all__ = ["RedisStore", "RedisWakeups", "ShardedWakeups"]


class RedisStore(
    MailboxesMixin,
    EnvelopesMixin,
    ChallengesMixin,
    PrekeysMixin,
    ConsentMixin,
    ModerationMixin,
    ExpiryMixin,
    PushMixin,
):
    """An :class:`~relay.storage.base.EnvelopeStore` on Redis (single node or Cluster-ready;
    see :class:`~relay.storage.redis.engine.RedisEngine` for the arguments)."""
