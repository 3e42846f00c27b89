"""The closed set of wire error codes (protocol.md §6)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ErrorCode"]


class ErrorCode(StrEnum):
    """Every error the relay may put on the wire. No other value is ever sent.

    ``AUTH`` deliberately covers both "no such mailbox" and "bad credential", so that the
    relay is not an oracle for the existence of a mailbox.
    """

    MALFORMED = "MALFORMED"  # undecodable: msgpack, types, unknown/duplicate field, trailing bytes
    VERSION = "VERSION"  # unsupported or reserved protocol version
    TOO_LARGE = "TOO_LARGE"  # frame, body or envelope larger than the limit
    AUTH = "AUTH"  # unknown mailbox, bad signature, bad/used/expired challenge
    QUOTA = "QUOTA"  # the mailbox is full (count or bytes), or a count limit was reached
    LIMIT = "LIMIT"  # a per-connection or per-process resource limit was reached
    TIMEOUT = "TIMEOUT"  # the request body was not received in time
    UNAVAILABLE = "UNAVAILABLE"  # storage unreachable; nothing was stored; retry later
    STORAGE_FULL = "STORAGE_FULL"  # storage out of space; nothing was stored
    INTERNAL = "INTERNAL"  # a bug in the relay; nothing is known to have been stored
    BOUNDARY = "BOUNDARY"  # a contact request exceeds the address's boundaries (rev. 3)
    POW = "POW"  # a contact request lacks a valid proof of work (rev. 3)
    FRANKING = "FRANKING"  # a report's relay tag, context or commitment fails (rev. 4)
    EXPIRED = "EXPIRED"  # a report's franking key is unknown or past its report window (rev. 4)
    DUPLICATE = "DUPLICATE"  # this envelope was reported before (rev. 4)
    ROUTE = "ROUTE"  # will not forward there: off, not a relay, private address, loop (rev. 11)
    RKEY = "RKEY"  # the packet is not sealed to a current route key of this relay (rev. 11)
