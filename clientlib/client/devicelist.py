"""Linked devices, the formats (protocol.md §24.5-§24.7): the signed device list, the link
code and linking transcript, and the device part of a session offer. Pure functions, no I/O.

Every device of a user holds the same identity key (it is transferred when a device is
linked) and a random 16-byte device id. The identity key signs the list of device ids::

    DL  = 0x01 | u32be(version) | u8(n) | n x (did(16) | u8(len) | name(UTF-8, <= 32)) | sig(64)
    sig = Ed25519(IK, "blindrelay/v1/device-list\\x00" || DL[:-64])

Linking (the new device N shows the code, an existing device E approves)::

    code   = "brlink1:" || base64url(0x01 | u32be(expiry) | sid(16) | cap(32) | X_N(32) | relay)
    dh     = X25519(x_E, X_N)
    th     = SHA-256("blindrelay/v1/link\\x00" || code bytes || X_E)
    K      = HKDF-SHA256(dh, salt = th, info = "blindrelay/v1/link-key", 32)
    SAS    = u32be(HKDF-SHA256(dh, salt = th, info = "blindrelay/v1/link-sas", 4)) mod 10^6
    msg1   = 0x01 | 0x01 | X_E | zeros                         (256 bytes, E -> N)
    msg2   = 0x01 | 0x02 | nonce(24) | XChaCha20-Poly1305(K, nonce, pad(transfer), ad = th)
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from clientlib.crypto.keys import IdentityKeyPair, IdentityPublicKey, X25519KeyPair
from clientlib.crypto.padding import pad, unpad
from clientlib.crypto.primitives import (
    aead_decrypt,
    aead_encrypt,
    hkdf,
    sha256,
    validate_x25519_public,
)
from clientlib.errors import DecryptionError, KeyValidationError, LocalProtocolError, WireError
from clientlib.wire.codec import unpack_strict
from clientlib.wire.limits import ENVELOPE_BUCKETS

__all__ = [
    "DEVICE_ID_SIZE",
    "LINK_CODE_LIFETIME",
    "MAX_DEVICES",
    "DeviceList",
    "InvalidDeviceList",
    "LinkCode",
    "LinkError",
    "LinkKeys",
    "decode_device_part",
    "decode_transfer",
    "encode_device_part",
    "encode_transfer",
    "first_device",
    "link_keys",
    "msg1",
    "open_msg1",
    "open_msg2",
    "seal_msg2",
]

DEVICE_ID_SIZE: Final = 16
#: Devices one identity may have at once (the list, the fan-out per message and the
#: sessions per contact grow with it; Signal allows 5 linked devices besides the phone).
MAX_DEVICES: Final = 5
MAX_DEVICE_NAME: Final = 32
#: Seconds a link code stays valid; the new device deletes its link mailbox after it.
LINK_CODE_LIFETIME: Final = 600
_DL_CONTEXT: Final = b"blindrelay/v1/device-list\x00"
_CODE_PREFIX: Final = "brlink1:"
_LINK_TH: Final = b"blindrelay/v1/link\x00"


class InvalidDeviceList(DecryptionError):
    """A device list that does not parse or whose signature does not verify."""


class LinkError(LocalProtocolError):
    """Linking failed: a malformed, expired or already used link code, codes that differ, or
    a transfer that does not open. Nothing was changed."""


@dataclass(frozen=True, slots=True)
class DeviceList:
    """A verified (or freshly signed) device list."""

    version: int
    devices: tuple[tuple[bytes, str], ...]  # (device id, name)
    raw: bytes

    @property
    def ids(self) -> tuple[bytes, ...]:
        return tuple(d for d, _ in self.devices)

    @classmethod
    def sign(
        cls, identity: IdentityKeyPair, version: int, devices: Sequence[tuple[bytes, str]]
    ) -> DeviceList:
        if not 1 <= len(devices) <= MAX_DEVICES:
            raise LocalProtocolError(f"an identity has 1 to {MAX_DEVICES} devices")
        if len({d for d, _ in devices}) != len(devices):
            raise LocalProtocolError("a device is listed twice")
        body = struct.pack(">BIB", 1, version, len(devices))
        for did, name in devices:
            nb = name.encode()[:MAX_DEVICE_NAME]
            if len(did) != DEVICE_ID_SIZE:
                raise LocalProtocolError("a device id is 16 bytes")
            body += did + bytes((len(nb),)) + nb
        raw = body + identity.sign(_DL_CONTEXT + body)
        return cls.parse(raw, identity.public)

    @classmethod
    def parse(cls, raw: bytes, identity: IdentityPublicKey) -> DeviceList:
        """Raises: InvalidDeviceList: malformed, or not signed by ``identity``."""
        try:
            if len(raw) < 6 + 64 or raw[0] != 1:
                raise ValueError
            body, sig = raw[:-64], raw[-64:]
            identity.verify(_DL_CONTEXT + body, sig)
            _, version, n = struct.unpack(">BIB", body[:6])
            if not 1 <= n <= MAX_DEVICES:
                raise ValueError
            pos, devices = 6, []
            for _ in range(n):
                did = body[pos : pos + 16]
                ln = body[pos + 16]
                name = body[pos + 17 : pos + 17 + ln].decode()
                if len(did) != 16 or len(name.encode()) != ln or ln > MAX_DEVICE_NAME:
                    raise ValueError
                devices.append((did, name))
                pos += 17 + ln
            if pos != len(body) or len({d for d, _ in devices}) != n:
                raise ValueError
        except (ValueError, IndexError, KeyValidationError, DecryptionError, UnicodeDecodeError):
            raise InvalidDeviceList from None
        return cls(version, tuple(devices), raw)


def first_device(identity: IdentityKeyPair, rng: Callable[[int], bytes]) -> tuple[bytes, bytes]:
    """A new keystore's device id and its one-device list ``(did, DL)``."""
    did = rng(DEVICE_ID_SIZE)
    return did, DeviceList.sign(identity, 1, [(did, "first device")]).raw


# --- the link code and transcript ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkCode:
    """What the new device shows (as text and QR code)."""

    expiry: int
    sid: bytes
    cap: bytes
    public: bytes  # X_N
    relay: str

    def payload(self) -> bytes:
        return (
            struct.pack(">BI", 1, self.expiry)
            + self.sid
            + self.cap
            + self.public
            + self.relay.encode()
        )

    @property
    def text(self) -> str:
        return _CODE_PREFIX + base64.urlsafe_b64encode(self.payload()).rstrip(b"=").decode()

    @classmethod
    def parse(cls, text: str) -> LinkCode:
        """Raises: LinkError: not a link code of this version."""
        t = text.strip()
        if not t.startswith(_CODE_PREFIX):
            raise LinkError("not a device link code (it starts with brlink1:)")
        try:
            b = t[len(_CODE_PREFIX) :]
            raw = base64.urlsafe_b64decode(b + "=" * (-len(b) % 4))
            if len(raw) < 86 or raw[0] != 1:
                raise ValueError
            (expiry,) = struct.unpack(">I", raw[1:5])
            public = raw[53:85]
            validate_x25519_public(public)
            relay = raw[85:].decode()
        except (ValueError, binascii.Error, KeyValidationError, UnicodeDecodeError):
            raise LinkError("the device link code is damaged") from None
        return cls(expiry, raw[5:21], raw[21:53], public, relay)


@dataclass(frozen=True, slots=True, repr=False)
class LinkKeys:
    th: bytes
    key: bytes
    sas: str

    def __repr__(self) -> str:
        return f"LinkKeys(sas={self.sas})"


def link_keys(code: LinkCode, dh: bytes, approver_public: bytes) -> LinkKeys:
    th = sha256(_LINK_TH + code.payload() + approver_public)
    key = hkdf(dh, salt=th, info=b"blindrelay/v1/link-key", length=32)
    n = struct.unpack(">I", hkdf(dh, salt=th, info=b"blindrelay/v1/link-sas", length=4))[0]
    return LinkKeys(th, key, f"{n % 1_000_000:06d}")


def msg1(approver: X25519KeyPair) -> bytes:
    out = b"\x01\x01" + bytes(approver.public)
    return out + bytes(ENVELOPE_BUCKETS[0] - len(out))


def open_msg1(ct: bytes) -> bytes:
    """X_E from the first message. Raises: DecryptionError: not a msg1."""
    if len(ct) != ENVELOPE_BUCKETS[0] or ct[:2] != b"\x01\x01" or any(ct[34:]):
        raise DecryptionError
    try:
        validate_x25519_public(ct[2:34])
    except KeyValidationError:
        raise DecryptionError from None
    return ct[2:34]


def seal_msg2(keys: LinkKeys, transfer: bytes, nonce: bytes) -> bytes:
    return (
        b"\x01\x02"
        + nonce
        + aead_encrypt(
            keys.key,
            nonce,
            pad(transfer, overhead=2 + 24 + 16, buckets=ENVELOPE_BUCKETS),
            keys.th,
        )
    )


def open_msg2(keys: LinkKeys, ct: bytes) -> bytes:
    """Raises: DecryptionError: not a msg2 under these keys."""
    if len(ct) not in ENVELOPE_BUCKETS or ct[:2] != b"\x01\x02":
        raise DecryptionError
    return unpad(aead_decrypt(keys.key, ct[2:26], ct[26:], keys.th))


# --- what travels ----------------------------------------------------------------------------


def encode_transfer(
    *,
    backup: bytes,
    device_list: bytes,
    did: bytes,
    approver: bytes,
    self_sid: bytes,
    self_cap: bytes,
) -> bytes:
    """The transfer: the backup body (§24.3) of the approver, the new device list, the new
    device's id, the approver's id and its own-devices mailbox (send id and capability)."""
    doc = {
        "b": backup,
        "dl": device_list,
        "did": did,
        "from": approver,
        "ss": self_sid,
        "sc": self_cap,
    }
    packed: bytes = msgpack.packb(doc, use_bin_type=True)
    return b"\x01" + packed


def decode_transfer(raw: bytes) -> dict[str, bytes]:
    """Raises: LinkError: malformed."""
    try:
        if not raw or raw[0] != 1:
            raise ValueError
        d: Any = unpack_strict(raw[1:])
        sizes = {"b": None, "dl": None, "did": 16, "from": 16, "ss": 16, "sc": 32}
        if type(d) is not dict or set(d) != set(sizes):
            raise ValueError
        for k, n in sizes.items():
            if type(d[k]) is not bytes or (n is not None and len(d[k]) != n):
                raise ValueError
        return dict(d)
    except (WireError, ValueError):
        raise LinkError("the transfer from the approving device does not decode") from None


def encode_device_part(did: bytes, sid: bytes, cap: bytes, device_list: bytes) -> bytes:
    """The ``ext`` of a device offer (§24.6): who we are and where to answer."""
    return did + sid + cap + device_list


def decode_device_part(
    ext: bytes, identity: IdentityPublicKey
) -> tuple[bytes, bytes, bytes, DeviceList]:
    """Raises: InvalidDeviceList: malformed, unsigned, or the device is not in the list."""
    if len(ext) < 64 + 70:
        raise InvalidDeviceList
    did, sid, cap = ext[:16], ext[16:32], ext[32:64]
    dl = DeviceList.parse(ext[64:], identity)
    if did not in dl.ids:
        raise InvalidDeviceList
    return did, sid, cap, dl
