"""The checks of a deposit, their order and their outcomes, declared once.

Each backend runs these checks inside its own atomic step, so that no concurrent write can
slip between a check and the insert: SQLite in the deposit's savepoint
(:mod:`relay.storage.sqlite.envelopes`), Redis in ``lua/deposit.lua``. The code is therefore
written twice, on purpose. This table is the one statement of what both must do: the first
check that applies to the mailbox's kind and fails decides the outcome, and nothing is
stored unless every check passes. ``tests/contract/test_store.py``
(``test_deposit_checks_follow_the_policy_table``) drives every backend through the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from clientlib.wire.limits import KIND_ADDRESS, KIND_OPEN, KIND_PAIRWISE
from relay.storage.errors import (
    BoundaryExceeded,
    MailboxNotFound,
    PowRequired,
    QuotaExceeded,
    StampMismatch,
    StorageError,
    WrongKind,
)

__all__ = ["DEPOSIT_CHECKS", "Check", "checks_for"]

_ALL: Final = frozenset({KIND_OPEN, KIND_PAIRWISE, KIND_ADDRESS})
_PAIR: Final = frozenset({KIND_PAIRWISE})
_ADDR: Final = frozenset({KIND_ADDRESS})


@dataclass(frozen=True, slots=True)
class Check:
    """One check of a deposit.

    ``outcome`` is the error raised when it fails, or None for the duplicate check, whose
    "failure" returns the first deposit's outcome (``duplicate=True``) and stores nothing.
    """

    name: str
    kinds: frozenset[str]
    fails_when: str
    outcome: type[StorageError] | None


#: In the order both backends run them (protocol.md §4.8-§4.11, relay/storage/base.py).
DEPOSIT_CHECKS: Final[tuple[Check, ...]] = (
    Check("mailbox", _ALL, "no live mailbox has the send id", MailboxNotFound),
    Check("suspended", _ALL, "a moderator suspended the mailbox", MailboxNotFound),
    Check("capability", _PAIR, "no capability hash, or one not registered", MailboxNotFound),
    Check(
        "media",
        _PAIR,
        "attachments without a registered attachment capability hash (revision 8)",
        BoundaryExceeded,
    ),
    Check("handle", _ADDR, "a contact request without a handle", WrongKind),
    Check(
        "boundary",
        _ADDR,
        "larger than the address accepts, or attachments where none are accepted",
        BoundaryExceeded,
    ),
    Check("pow", _ADDR, "the address asks for more proof of work than verified", PowRequired),
    Check("banned", _ADDR, "the handle is banned", MailboxNotFound),
    Check("duplicate", _ALL, "the eid was stored within the dedupe window", None),
    Check("stamp", _ALL, "the franking stamp names another kind", StampMismatch),
    Check("allowance", _ADDR, "the address's daily allowance is used up", QuotaExceeded),
    Check(
        "quota",
        _ALL,
        "the mailbox is at its count or byte quota (after dropping its expired envelopes)",
        QuotaExceeded,
    ),
)


def checks_for(kind: str) -> tuple[Check, ...]:
    """The checks a deposit to a mailbox of ``kind`` goes through, in order."""
    return tuple(c for c in DEPOSIT_CHECKS if kind in c.kinds)
