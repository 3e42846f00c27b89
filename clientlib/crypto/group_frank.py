"""Franking of group messages (protocol.md §26.9, revision 16): what makes a group message
reportable to the relay exactly like a pairwise one.

A group text message is one envelope for every member, so its commitment and AMF signature
(§15.1, §15.5) cannot name one recipient's identity key. They name instead:

* as the sender, the sender's **per-group** key ``gpk`` (§26.3), whose secret scalar the
  AMF derives from the member's per-group ``sign_seed`` as from an identity seed;
* as the recipient, the **group point** ``R_gid`` (:func:`group_recipient`), a point of the
  prime-order subgroup hashed from the group id with Elligator 2, whose discrete logarithm
  nobody knows. Clauses B and C of the AMF therefore hold only through their left branches:
  every member can check on receipt that a report will verify (no member, the sender
  included, holds ``r``), and nobody can sign as ``gpk`` without its secret.

The committed content is a v1 content map ``{"t": "gmsg", "id", "ts", "text"}``
(:func:`group_content`), so that the moderation page shows its text and that it is a group
message (the sender committed to that). Sans-IO: randomness is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final

import msgpack
import nacl.bindings as _b

from clientlib.crypto.amf import frank, verify_as_recipient
from clientlib.crypto.franking import franking_commit, franking_verify
from clientlib.errors import DecryptionError, WireError
from clientlib.wire.codec import decode_map, encode_map

__all__ = [
    "GROUP_CONTENT_TYPE",
    "RECIPIENT_LABEL",
    "FrankedGroupText",
    "frank_group_text",
    "group_content",
    "group_recipient",
    "open_group_content",
    "verify_group_text",
]

#: The hash input label of the group point (29 bytes with its zero byte).
RECIPIENT_LABEL: Final = b"blindrelay/v1/group/amf-rcp\x00"
#: The content type ``t`` of a franked group text.
GROUP_CONTENT_TYPE: Final = "gmsg"
_CONTENT_KEYS: Final = frozenset({"t", "id", "ts", "text"})
#: Largest content map accepted (a text of at most 16 KiB and its fields).
_MAX_CONTENT: Final = 17 * 1024

RNG = Callable[[int], bytes]


def group_recipient(gid: bytes) -> bytes:
    """``R_gid = from_uniform(SHA-256(RECIPIENT_LABEL || gid))``: the AMF recipient of every
    message of group ``gid`` (libsodium's Elligator 2 map, cofactor cleared)."""
    if type(gid) is not bytes or len(gid) != 16:
        raise ValueError("a group id is 16 bytes")
    point: bytes = _b.crypto_core_ed25519_from_uniform(
        hashlib.sha256(RECIPIENT_LABEL + gid).digest()
    )
    if not _b.crypto_core_ed25519_is_valid_point(point):  # pragma: no cover - prob. 2^-252
        raise ValueError("the group point is not a valid point")
    return point


def group_content(mid: bytes, ts: int, text: str) -> bytes:
    """The committed content of a group text: ``0x01 || msgpack({"t": "gmsg", "id": mid,
    "ts": ts, "text": text})`` (keys in this order)."""
    return encode_map({"t": GROUP_CONTENT_TYPE, "id": mid, "ts": ts, "text": text}, 1)


def open_group_content(content: bytes) -> tuple[bytes, int, str]:
    """``(mid, ts, text)`` of a committed group text.

    Raises:
        DecryptionError: not exactly such a map.
    """
    try:
        _, f = decode_map(content, max_size=_MAX_CONTENT)
    except WireError:
        raise DecryptionError from None
    mid, ts, text = f.get("id"), f.get("ts"), f.get("text")
    if (
        set(f) != _CONTENT_KEYS
        or f["t"] != GROUP_CONTENT_TYPE
        or type(mid) is not bytes
        or len(mid) != 16
        or type(ts) is not int
        or type(text) is not str
    ):
        raise DecryptionError
    return mid, ts, text


class FrankedGroupText:
    """A franked group text as the sender makes it: ``plain`` (the type-1 plaintext before
    padding, ``["ftext", content, fk, akid, sigma]``) and ``fc`` (for the ``fan`` frame)."""

    __slots__ = ("fc", "plain")

    def __init__(self, plain: bytes, fc: bytes) -> None:
        self.plain = plain
        self.fc = fc

    def __repr__(self) -> str:
        return "FrankedGroupText(<secret>)"


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def frank_group_text(
    sign_seed: bytes,
    gpk: bytes,
    gid: bytes,
    content: bytes,
    kid: int,
    moderator: bytes,
    rng: RNG,
) -> FrankedGroupText:
    """Commit to ``content`` and sign the commitment for the relay's moderator key
    ``(kid, moderator)``: ``fk = rng(32)``, ``fc = HMAC(fk, … gpk || R_gid || content …)``
    (§15.1 with these two keys and no attachments), ``sigma = AMF(sign_seed; gpk, R_gid,
    M_kid, kid, fc)`` (§15.5.5)."""
    rcp = group_recipient(gid)
    fk = rng(32)
    fc = franking_commit(fk, sender=gpk, recipient=rcp, message=content)
    sigma = frank(sign_seed, gpk, rcp, moderator, kid, fc, rng=rng)
    return FrankedGroupText(_pack(["ftext", content, fk, kid, sigma]), fc)


def verify_group_text(
    gpk: bytes,
    gid: bytes,
    fc: bytes | None,
    content: bytes,
    fk: bytes,
    akid: int,
    sigma: bytes,
    moderator: bytes,
) -> None:
    """The recipient's checks (§26.9): the delivered ``fc`` opens to ``content`` for ``gpk``
    and ``R_gid``, and ``sigma`` verifies as recipient under our relay's ``M_akid``.

    Raises:
        DecryptionError: any check fails (the message is dropped, never shown).
    """
    if fc is None or type(fk) is not bytes or type(sigma) is not bytes or type(akid) is not int:
        raise DecryptionError
    rcp = group_recipient(gid)
    try:
        franking_verify(fc, fk, sender=gpk, recipient=rcp, message=content)
    except ValueError:
        raise DecryptionError from None
    verify_as_recipient(gpk, rcp, moderator, akid, fc, sigma)
