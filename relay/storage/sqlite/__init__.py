"""SQLite envelope store: stdlib :mod:`sqlite3`, WAL, ``synchronous=FULL``, group commit.

The package is split by concern: :mod:`.engine` (the writer thread, batching, connections and
error mapping; its docstring is the theory of operation), :mod:`.schema` (the schema, its
versions and migrations), and one mixin per concern of :mod:`relay.storage.base`
(:mod:`.mailboxes`, :mod:`.envelopes`, :mod:`.challenges`, :mod:`.prekeys`, :mod:`.consent`,
:mod:`.moderation`, :mod:`.expiry`). :class:`SQLiteStore` composes them.
"""

from __future__ import annotations

from relay.storage.sqlite.challenges import ChallengesMixin
from relay.storage.sqlite.consent import ConsentMixin
from relay.storage.sqlite.envelopes import EnvelopesMixin
from relay.storage.sqlite.expiry import ExpiryMixin
from relay.storage.sqlite.mailboxes import MailboxesMixin
from relay.storage.sqlite.moderation import ModerationMixin
from relay.storage.sqlite.prekeys import PrekeysMixin
from relay.storage.sqlite.push import PushMixin
from relay.storage.sqlite.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]


class SQLiteStore(
    MailboxesMixin,
    EnvelopesMixin,
    ChallengesMixin,
    PrekeysMixin,
    ConsentMixin,
    ModerationMixin,
    ExpiryMixin,
    PushMixin,
):
    """An :class:`~relay.storage.base.EnvelopeStore` in one SQLite file (see
    :class:`~relay.storage.sqlite.engine.SQLiteEngine` for the arguments)."""
