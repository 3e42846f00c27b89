"""Named ARGV for the Lua scripts with many arguments.

A script's arguments are declared once, as the fields of a frozen dataclass, in order. The
Python side builds the ARGV list from an instance (:func:`argv`); the script reads them by
name from the table ``A`` that :func:`lua_prologue` declares in front of its body
(``local A = {sid = ARGV[1], ...}``). Positions therefore cannot drift apart between the two
sides, and a script reads ``A.max_bytes`` instead of ``ARGV[9]``. Scripts with a few
arguments keep positional ARGV, documented in their header comment.
"""

from __future__ import annotations

import dataclasses
from operator import attrgetter
from typing import Any, Final

__all__ = ["SCRIPT_ARGV", "CreateArgv", "DepositArgv", "argv", "lua_prologue"]


@dataclasses.dataclass(frozen=True, slots=True)
class DepositArgv:
    """ARGV of ``lua/deposit.lua`` (see its header for the replies)."""

    sid: bytes
    eid: bytes
    blob: bytes  # 4-byte ciphertext length || msgpack body, stored for non-addr kinds
    size: int  # ciphertext length
    now: int
    expires_at: int  # envelope expiry second
    dedupe_until: int  # dedupe record expiry second
    max_envelopes: int
    max_bytes: int
    idle_ttl: int  # mailbox idle period, seconds
    envelope_key_ttl: int  # TTL of the envelope keys (q, e, x)
    dedupe_key_ttl: int  # TTL of the dedupe keys (d, y)
    cap_hash: bytes  # b"" without a capability
    handle: bytes  # b"" without a handle
    attachments: int  # attachments the envelope references
    att_cap_hash: bytes  # the attachment capability hash (pair, revision 8) or b""
    pow_bits: int  # proof-of-work bits the caller verified
    today: int  # day number of ``now``
    blob_with_handle: bytes  # stored instead of ``blob`` for contact requests (or b"")
    stamp_kind: str  # the kind the franking stamp was computed for ("" without a stamp)
    rid: bytes  # the mailbox the send id resolved to (its member in the expiry index)
    index_ttl: int  # TTL of the expiry index and gauges keys
    rc: str = ""  # the recall hash in lowercase hex, kept in the dedupe record ("" without)


@dataclasses.dataclass(frozen=True, slots=True)
class CreateArgv:
    """ARGV of ``lua/create.lua``."""

    sid: bytes
    owner_key: bytes
    created_day: int
    now: int
    idle_ttl: int
    today: int  # the active day of the new record
    key_ttl: int  # TTL of the mailbox record
    kind: str  # open | pair | addr
    size: int  # boundaries (stored for addr only)
    att: int
    day: int
    pow: int
    rid: bytes  # the receive id (its member in the expiry index)
    index_ttl: int  # TTL of the expiry index and gauges keys


#: Script name -> its named ARGV.
SCRIPT_ARGV: Final[dict[str, type[Any]]] = {"deposit": DepositArgv, "create": CreateArgv}

_GETTERS: Final[dict[type[Any], attrgetter[Any]]] = {
    cls: attrgetter(*(f.name for f in dataclasses.fields(cls))) for cls in SCRIPT_ARGV.values()
}


def argv(values: DepositArgv | CreateArgv) -> list[Any]:
    """The ARGV list of ``values``, in field order."""
    return list(_GETTERS[type(values)](values))


def lua_prologue(cls: type[Any]) -> str:
    """The Lua line that names the ARGV of ``cls``: ``local A = {<field> = ARGV[i], ...}``."""
    names = [f.name for f in dataclasses.fields(cls)]
    return "local A = {" + ", ".join(f"{n} = ARGV[{i}]" for i, n in enumerate(names, 1)) + "}"
