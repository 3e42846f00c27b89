"""The SQLite schema, its versions and migrations, and row helpers shared by the mixins.

Schema versions
---------------
``SCHEMA_VERSION`` is stored in ``PRAGMA user_version``. Remember to update the list below and
to add a migration to ``MIGRATIONS`` when you change the schema.

Changes in SCHEMA_VERSION = 1:
    Initial schema: ``mailboxes`` (with ``last_seq`` so sequence numbers are never reused,
    day-coarse ``created_day``/``active_day``, envelope and byte counters for quotas),
    ``envelopes``, ``dedupe`` (``(mailbox, eid) -> seq`` for the dedupe window) and
    ``challenges``.

Changes in SCHEMA_VERSION = 2:
    Prekey hosting (protocol.md §4.7): ``prekey_state`` (one row per mailbox that uploaded
    prekeys: the opaque static part and the hourly one-time handout window) and
    ``prekey_items`` (the opaque one-time items, FIFO by ``id``). Both cascade from
    ``mailboxes``, so deleting or purging a mailbox removes its prekeys in the same step. They
    are separate tables so the ``mailboxes`` row that every deposit reads and rewrites stays
    small.

Changes in SCHEMA_VERSION = 3:
    Consent (protocol.md §4.8-§4.10): ``mailboxes.kind`` (0 open, 1 pair, 2 addr; existing
    mailboxes are open), ``envelopes.hdl`` (the requester's handle of a contact request),
    ``caps`` (capability hashes of pair mailboxes, primary key ``(mbox, h)`` so the deposit's
    check is one index lookup), ``bans`` (banned handles of contact addresses) and
    ``addr_state`` (boundaries and the daily request counter of a contact address, one row per
    address, so deposits to other kinds never read or rewrite it). All three cascade from
    ``mailboxes``.

Changes in SCHEMA_VERSION = 4:
    Franking and moderation (protocol.md §4.11): ``envelopes.ft``/``.fx`` (the relay franking
    tag and its context, delivered with the envelope), ``mailboxes.suspended`` (0/1, set by
    a moderator), ``franking_keys`` (kid, secret, creation time), ``reports`` (the
    moderation queue: verified reports with their resolution; indexed by status, by filing
    mailbox and time for the daily allowance, and by creation time for the purge) and
    ``audit`` (the append-only moderation log: a trigger refuses every UPDATE; only the
    purge deletes, past ``audit_retention_s``). Reports and audit entries reference no
    mailbox row (they outlive mailboxes).

Changes in SCHEMA_VERSION = 5:
    Costs independent of the stored state (issue 21): ``gauges`` (one row: mailbox records,
    envelopes and their ciphertext bytes), filled from the existing rows by the migration
    (one scan, once) and then kept exact by triggers on every insert and delete of
    ``mailboxes`` and ``envelopes`` (cascaded deletes fire them too), in the same
    transaction as the write. Reading the gauges is one row at any size.

Changes in SCHEMA_VERSION = 6:
    Push wake-ups (protocol.md §28): ``push`` (one row per mailbox with a registered push
    endpoint: the URL as the owner registered it and the opaque token). It cascades from
    ``mailboxes``, so deleting or expiring a mailbox removes its endpoint in the same step.

Changes in SCHEMA_VERSION = 7:
    Recall (protocol.md §5.10, revision 15): ``dedupe.rc``, the recall hash a deposit
    carried (NULL without one). The dedupe record is what maps an envelope id to its
    sequence number, so a recall is one primary-key lookup there; ``rc`` is set to NULL when
    the envelope is recalled and goes with the record at the end of the dedupe window.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from clientlib.wire.frames import Boundaries
from clientlib.wire.limits import KIND_ADDRESS, KIND_OPEN, KIND_PAIRWISE
from relay.storage.errors import StorageUnavailable

__all__ = [
    "ADDR",
    "KIND_CODES",
    "KIND_NAMES",
    "MIGRATIONS",
    "PAIR",
    "SCHEMA_VERSION",
    "boundaries_of",
    "has_cap",
    "migrate",
    "statements",
]

SCHEMA_VERSION: Final = 7  # remember to update the changelog in the module docstring

_SCHEMA_V1: Final = """
CREATE TABLE mailboxes (
    id          INTEGER PRIMARY KEY,
    rid         BLOB NOT NULL UNIQUE,
    sid         BLOB NOT NULL UNIQUE,
    owner_key   BLOB NOT NULL,
    created_day INTEGER NOT NULL,
    active_day  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    n_envelopes INTEGER NOT NULL DEFAULT 0,
    n_bytes     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX mailboxes_active_day ON mailboxes(active_day);
CREATE TABLE envelopes (
    mbox       INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    eid        BLOB NOT NULL,
    ts         INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    flags      INTEGER NOT NULL,
    ct         BLOB NOT NULL,
    fc         BLOB,
    PRIMARY KEY (mbox, seq)
);
CREATE INDEX envelopes_expires_at ON envelopes(expires_at);
CREATE TABLE dedupe (
    mbox       INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    eid        BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (mbox, eid)
) WITHOUT ROWID;
CREATE INDEX dedupe_expires_at ON dedupe(expires_at);
CREATE TABLE challenges (
    nonce      BLOB PRIMARY KEY,
    binding    BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX challenges_expires_at ON challenges(expires_at);
"""

_SCHEMA_V2: Final = """
CREATE TABLE prekey_state (
    mbox      INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
    win_hour  INTEGER NOT NULL DEFAULT 0,
    win_count INTEGER NOT NULL DEFAULT 0,
    static    BLOB
);
CREATE TABLE prekey_items (
    id   INTEGER PRIMARY KEY,
    mbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    item BLOB NOT NULL
);
CREATE INDEX prekey_items_mbox ON prekey_items(mbox, id);
"""

_SCHEMA_V3: Final = """
ALTER TABLE mailboxes ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE envelopes ADD COLUMN hdl BLOB;
CREATE TABLE addr_state (
    mbox      INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
    max_size  INTEGER NOT NULL,
    att       INTEGER NOT NULL,
    per_day   INTEGER NOT NULL,
    pow_bits  INTEGER NOT NULL,
    req_day   INTEGER,
    req_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE caps (
    mbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    h    BLOB NOT NULL,
    PRIMARY KEY (mbox, h)
) WITHOUT ROWID;
CREATE TABLE bans (
    mbox INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    hdl  BLOB NOT NULL,
    PRIMARY KEY (mbox, hdl)
) WITHOUT ROWID;
"""

_SCHEMA_V4: Final = """
ALTER TABLE envelopes ADD COLUMN ft BLOB;
ALTER TABLE envelopes ADD COLUMN fx BLOB;
ALTER TABLE mailboxes ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
CREATE TABLE franking_keys (
    kid     INTEGER PRIMARY KEY,
    secret  BLOB NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE reports (
    id            BLOB PRIMARY KEY,
    created       INTEGER NOT NULL,
    sid           BLOB NOT NULL,
    reason        TEXT NOT NULL,
    note          TEXT,
    msg           BLOB NOT NULL,
    attachments   BLOB NOT NULL,
    sender_key    BLOB NOT NULL,
    recipient_key BLOB NOT NULL,
    kid           INTEGER NOT NULL,
    day           INTEGER NOT NULL,
    source_kind   INTEGER NOT NULL,
    source        BLOB NOT NULL,
    verified_at   INTEGER NOT NULL,
    action        TEXT,
    moderator     TEXT,
    resolved_at   INTEGER,
    resolution    TEXT
);
CREATE INDEX reports_open ON reports(resolved_at, created);
CREATE INDEX reports_sid ON reports(sid, created);
CREATE INDEX reports_created ON reports(created);
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        INTEGER NOT NULL,
    moderator TEXT NOT NULL,
    action    TEXT NOT NULL,
    report_id BLOB,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit(ts);
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
"""

_SCHEMA_V5: Final = """
CREATE TABLE gauges (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    mailboxes INTEGER NOT NULL,
    envelopes INTEGER NOT NULL,
    bytes     INTEGER NOT NULL
);
INSERT INTO gauges (id, mailboxes, envelopes, bytes) VALUES (
    1,
    (SELECT count(*) FROM mailboxes),
    (SELECT count(*) FROM envelopes),
    (SELECT coalesce(sum(length(ct)), 0) FROM envelopes)
);
CREATE TRIGGER gauges_mailbox_insert AFTER INSERT ON mailboxes
BEGIN UPDATE gauges SET mailboxes = mailboxes + 1 WHERE id = 1; END;
CREATE TRIGGER gauges_mailbox_delete AFTER DELETE ON mailboxes
BEGIN UPDATE gauges SET mailboxes = mailboxes - 1 WHERE id = 1; END;
CREATE TRIGGER gauges_envelope_insert AFTER INSERT ON envelopes
BEGIN
    UPDATE gauges SET envelopes = envelopes + 1, bytes = bytes + length(NEW.ct) WHERE id = 1;
END;
CREATE TRIGGER gauges_envelope_delete AFTER DELETE ON envelopes
BEGIN
    UPDATE gauges SET envelopes = envelopes - 1, bytes = bytes - length(OLD.ct) WHERE id = 1;
END
"""

_SCHEMA_V6: Final = """
CREATE TABLE push (
    mbox  INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
    url   TEXT NOT NULL,
    token BLOB NOT NULL
);
"""

_SCHEMA_V7: Final = """
ALTER TABLE dedupe ADD COLUMN rc BLOB;
"""

#: ``MIGRATIONS[v]`` upgrades a database at version ``v - 1`` to version ``v``.
MIGRATIONS: Final[dict[int, str]] = {
    1: _SCHEMA_V1,
    2: _SCHEMA_V2,
    3: _SCHEMA_V3,
    4: _SCHEMA_V4,
    5: _SCHEMA_V5,
    6: _SCHEMA_V6,
    7: _SCHEMA_V7,
}

#: ``mailboxes.kind`` values.
KIND_CODES: Final[dict[str, int]] = {KIND_OPEN: 0, KIND_PAIRWISE: 1, KIND_ADDRESS: 2}

KIND_NAMES: Final[dict[int, str]] = {v: k for k, v in KIND_CODES.items()}

PAIR: Final = KIND_CODES[KIND_PAIRWISE]

ADDR: Final = KIND_CODES[KIND_ADDRESS]


def statements(script: str) -> list[str]:
    """Split a migration script into statements (a trigger body keeps its semicolons)."""
    out: list[str] = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf)
            buf = ""
    if buf.strip(" \n;"):
        out.append(buf)
    return out


def boundaries_of(row: Sequence[Any]) -> Boundaries:
    """Boundaries from ``(max_size, att, per_day, pow_bits)`` columns."""
    return Boundaries(size=row[0], att=row[1], day=row[2], pow=row[3])


def has_cap(conn: sqlite3.Connection, mbox: int, cap_hash: bytes | None) -> bool:
    """Whether ``cap_hash`` is registered on mailbox ``mbox`` (one primary-key lookup)."""
    if cap_hash is None:
        return False
    found = conn.execute("SELECT 1 FROM caps WHERE mbox = ? AND h = ?", (mbox, cap_hash))
    return found.fetchone() is not None


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a database at schema ``version`` (``PRAGMA user_version``) to ``SCHEMA_VERSION``
    in one transaction.

    Raises:
        StorageUnavailable: the database's schema is newer than this relay.
    """
    if version > SCHEMA_VERSION:
        raise StorageUnavailable("database schema is newer than this relay")
    if version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in statements(MIGRATIONS[v]):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
