"""The pieces both directions share (protocol.md §3, §4): the owner operations, the field
types built from :mod:`clientlib.wire.limits` (package-private: the frame modules use them),
the boundaries of a contact address, the stored envelope, and the frame-type dispatch.
"""

from __future__ import annotations

from typing import Any

from clientlib.errors import WireError
from clientlib.wire.codec import (
    Bin,
    Int,
    IntIn,
    Struct,
    wire,
    wire_struct,
)
from clientlib.wire.limits import (
    BOUNDARY_SIZES,
    CAPABILITY_HASH_SIZE,
    ENVELOPE_ID_SIZE,
    FRANKING_COMMITMENT_SIZE,
    FRANKING_TAG_SIZE,
    HANDLE_SIZE,
    MAILBOX_ID_SIZE,
    MAX_ENVELOPE_SIZE,
    MAX_FRANKING_CONTEXT_SIZE,
    MAX_POW_BITS,
    MAX_PREKEY_ITEM_SIZE,
    MAX_PREKEY_STATIC_SIZE,
    MAX_REQUEST_ID,
    MAX_REQUESTS_PER_DAY,
    REPORT_ID_SIZE,
)

__all__ = [
    "DEFAULT_BOUNDARIES",
    "OP_BAN",
    "OP_BOUNDARIES",
    "OP_CAPS",
    "OP_CREATE",
    "OP_DELEGATED_CAPS",
    "OP_DELETE",
    "OP_FETCH",
    "OP_INFO",
    "OP_PREKEYS",
    "OP_PUSH",
    "OP_REPORT",
    "OP_REPORT_STATUS",
    "OP_SUBSCRIBE",
    "OP_UNPUSH",
    "OWNER_OPS",
    "Boundaries",
    "StoredEnvelope",
]

OP_CREATE = "create"
OP_SUBSCRIBE = "sub"
OP_DELETE = "delete"
OP_FETCH = "fetch"
OP_PREKEYS = "keys"
OP_CAPS = "caps"
OP_BOUNDARIES = "bnd"
OP_BAN = "ban"
OP_INFO = "info"
OP_REPORT = "report"
OP_REPORT_STATUS = "rstat"
#: Delegated revocation (protocol.md §26.2, revision 9): signed by a delegate, not the owner.
OP_DELEGATED_CAPS = "dcaps"
#: Push wake-ups (protocol.md §28, revision 12): register and unregister a push endpoint.
OP_PUSH = "push"
OP_UNPUSH = "unpush"
OWNER_OPS = (
    OP_CREATE,
    OP_SUBSCRIBE,
    OP_DELETE,
    OP_FETCH,
    OP_PREKEYS,
    OP_CAPS,
    OP_BOUNDARIES,
    OP_BAN,
    OP_INFO,
    OP_REPORT,
    OP_REPORT_STATUS,
    OP_DELEGATED_CAPS,
    OP_PUSH,
    OP_UNPUSH,
)

# Field types used by more than one structure (package-private: the frame modules import them).
_REQ_ID = Int(0, MAX_REQUEST_ID)
_MAILBOX_ID = Bin(MAILBOX_ID_SIZE)
_ENVELOPE_ID = Bin(ENVELOPE_ID_SIZE)
_SEQ = Int(1, 2**63 - 1)
_CT = Bin(min=1, max=MAX_ENVELOPE_SIZE)
_FC = Bin(FRANKING_COMMITMENT_SIZE)
_FLAGS = Int(0, 255)
_PREKEY_STATIC = Bin(min=1, max=MAX_PREKEY_STATIC_SIZE)
_PREKEY_ITEM = Bin(min=1, max=MAX_PREKEY_ITEM_SIZE)
_CAP_HASH = Bin(CAPABILITY_HASH_SIZE)
_HANDLE = Bin(HANDLE_SIZE)
_COUNT = Int(0, 2**63 - 1)
_DAY = Int(0, 2**32 - 1)
_FT = Bin(FRANKING_TAG_SIZE)
_FX = Bin(min=1, max=MAX_FRANKING_CONTEXT_SIZE)
_REPORT_ID = Bin(REPORT_ID_SIZE)


@wire_struct
class Boundaries(Struct):
    """What a contact address accepts (protocol.md §4.9; revision 3).

    ``size``: the largest request envelope, one of the buckets 2048..65536; ``att``: 1 if
    requests may reference attachments; ``day``: requests stored per UTC day; ``pow``: the
    proof-of-work difficulty in leading zero bits (0: none).
    """

    size: int = wire(IntIn(BOUNDARY_SIZES))
    att: int = wire(Int(0, 1))
    day: int = wire(Int(1, MAX_REQUESTS_PER_DAY))
    pow: int = wire(Int(0, MAX_POW_BITS))


#: The boundaries of a contact address created without any (max size 4096, no attachments,
#: 100 requests a day, no proof of work).
DEFAULT_BOUNDARIES = Boundaries(size=4096, att=0, day=100, pow=0)


@wire_struct
class StoredEnvelope(Struct):
    """An envelope as the relay hands it to the owner.

    ``seq`` is the per-mailbox sequence number (0 for online-only envelopes, which are never
    stored and need no ack), ``ts`` the relay's receive time in whole seconds, ``hdl`` the
    requester's handle (contact addresses only; revision 3), ``ft`` and ``fx`` the relay's
    franking tag over ``fc`` and its context (every envelope deposited with ``fc``; revision 4,
    protocol.md §4.11) -- keep them with the franking key to be able to report the message.
    """

    seq: int = wire(Int(0, 2**63 - 1))
    eid: bytes = wire(_ENVELOPE_ID)
    ts: int = wire(Int())
    flags: int = wire(_FLAGS)
    ct: bytes = wire(_CT)
    fc: bytes | None = wire(_FC, default=None)
    hdl: bytes | None = wire(_HANDLE, default=None)
    ft: bytes | None = wire(_FT, default=None)
    fx: bytes | None = wire(_FX, default=None)


def _dispatch(registry: dict[str, Any], fields: dict[str, Any]) -> Any:
    """Build the frame ``fields["t"]`` names in ``registry``.

    Raises:
        WireError: MALFORMED -- ``t`` is missing or names no frame of this direction, or the
            fields do not fit that frame's schema.
    """
    t = fields.get("t")
    cls = registry.get(t) if type(t) is str else None
    if cls is None:
        raise WireError("unknown frame type")
    return cls.from_map(fields)
