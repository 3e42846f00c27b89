"""The versioned session record the keystore persists (protocol.md §12.6).

``record = 0x01 || msgpack(map)``, decoded strictly by :func:`clientlib.wire.codec.decode_map`
(no unknown or duplicate keys, no ext types, no trailing bytes) and then checked field by field.
The record holds secrets: it must only ever be written inside the encrypted keystore.

Record version history: 1 (2026-11) initial; 2 (2026-12, revision 5) ``dhs`` may be absent
(only with ``sp`` = 1: the ratchet private key is erased at each receive step, §12.5 step 8).
A record that has ``dhs`` is still written as version 1, byte for byte as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from clientlib.errors import KeystoreError, WireError
from clientlib.wire.codec import decode_map, encode_map
from clientlib.wire.version import VersionRange

__all__ = ["MAX_SESSION_RECORD_SIZE", "SESSION_RECORD_VERSION", "SessionRecord"]

SESSION_RECORD_VERSION: Final = 2
_VERSIONS: Final = VersionRange(1, SESSION_RECORD_VERSION)
#: 2000 skipped keys at ~90 bytes each, plus the fixed fields and a prekey header.
MAX_SESSION_RECORD_SIZE: Final = 256 * 1024

_KEYS32 = ("li", "ri", "ad", "rk", "dhS")
_OPT32 = ("dhs", "dhr", "cks", "ckr", "hh")
_INTS = ("ns", "nr", "pn")


@dataclass(frozen=True, slots=True, repr=False)
class SessionRecord:
    """Plain session fields (see :class:`clientlib.session.Session` for their meaning).

    ``skipped`` is a tuple of ``(dh, n, message_key, stored_at)``, oldest first.
    """

    local_identity: bytes
    remote_identity: bytes
    ad: bytes
    dh_static: bytes
    root_key: bytes
    dhs_private: bytes | None
    dhr: bytes | None
    cks: bytes | None
    ckr: bytes | None
    ns: int
    nr: int
    pn: int
    step_pending: bool
    skipped: tuple[tuple[bytes, int, bytes, int], ...]
    prekey_header: bytes | None
    handshake_hash: bytes | None

    def __repr__(self) -> str:
        return "<SessionRecord [secret]>"

    __str__ = __repr__

    def to_bytes(self) -> bytes:
        """Serialize as ``0x01 || msgpack(map)`` (``0x02`` when ``dhs`` is erased)."""
        m: dict[str, Any] = {
            "li": self.local_identity,
            "ri": self.remote_identity,
            "ad": self.ad,
            "dhS": self.dh_static,
            "rk": self.root_key,
            "ns": self.ns,
            "nr": self.nr,
            "pn": self.pn,
            "sp": int(self.step_pending),
            "sk": [list(s) for s in self.skipped],
        }
        for key, value in (
            ("dhs", self.dhs_private),
            ("dhr", self.dhr),
            ("cks", self.cks),
            ("ckr", self.ckr),
            ("hh", self.handshake_hash),
            ("ph", self.prekey_header),
        ):
            if value is not None:
                m[key] = value
        return encode_map(m, 1 if self.dhs_private is not None else SESSION_RECORD_VERSION)

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        """Parse a record.

        Raises:
            KeystoreError: malformed, unknown version, or a field of the wrong type or size.
        """
        try:
            version, m = decode_map(data, max_size=MAX_SESSION_RECORD_SIZE, versions=_VERSIONS)
        except WireError:
            raise KeystoreError("session record is malformed") from None
        allowed = {*_KEYS32, *_OPT32, *_INTS, "sp", "sk", "ph"}
        if not set(m) <= allowed or not {*_KEYS32, *_INTS, "sp", "sk"} <= set(m):
            raise KeystoreError("session record has missing or unknown fields")
        if "dhs" not in m and (version < 2 or m.get("sp") != 1):
            raise KeystoreError("session record has missing or unknown fields")

        def b32(key: str) -> bytes:
            v = m[key]
            if type(v) is not bytes or len(v) != 32:
                raise KeystoreError("session record field has the wrong type")
            return v

        def opt32(key: str) -> bytes | None:
            return b32(key) if key in m else None

        def u32(value: object) -> int:
            if type(value) is not int or not 0 <= value <= 2**32 - 1:
                raise KeystoreError("session record field has the wrong type")
            return value

        def u64(value: object) -> int:
            if type(value) is not int or not -(2**63) <= value <= 2**63 - 1:
                raise KeystoreError("session record field has the wrong type")
            return value

        sk_raw = m["sk"]
        if type(sk_raw) is not list:
            raise KeystoreError("session record field has the wrong type")
        skipped: list[tuple[bytes, int, bytes, int]] = []
        for item in sk_raw:
            if type(item) is not list or len(item) != 4:
                raise KeystoreError("session record field has the wrong type")
            dh, n, mk, t = item
            if type(dh) is not bytes or len(dh) != 32 or type(mk) is not bytes or len(mk) != 32:
                raise KeystoreError("session record field has the wrong type")
            skipped.append((dh, u32(n), mk, u64(t)))
        ph = m.get("ph")
        if ph is not None and type(ph) is not bytes:
            raise KeystoreError("session record field has the wrong type")
        sp = m["sp"]
        if sp not in (0, 1) or type(sp) is not int:
            raise KeystoreError("session record field has the wrong type")
        return cls(
            local_identity=b32("li"),
            remote_identity=b32("ri"),
            ad=b32("ad"),
            dh_static=b32("dhS"),
            root_key=b32("rk"),
            dhs_private=opt32("dhs"),
            dhr=opt32("dhr"),
            cks=opt32("cks"),
            ckr=opt32("ckr"),
            ns=u32(m["ns"]),
            nr=u32(m["nr"]),
            pn=u32(m["pn"]),
            step_pending=bool(sp),
            skipped=tuple(skipped),
            prekey_header=ph,
            handshake_hash=opt32("hh"),
        )
