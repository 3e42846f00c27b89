"""Linking a new device by approval (protocol.md §24.6): the existing device's two steps
(:func:`start_approval`, :func:`finish_approval`), the new device's :class:`DeviceLinker`,
the records a linked device starts with (:func:`link_into`) and removal
(:func:`remove_device`). The formats are in :mod:`clientlib.client.devicelist`; sessions
with the new device are made by the session offers of :mod:`clientlib.client._devices`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from clientlib.client._book import AddressBook, credential
from clientlib.client._devices import Renewal, backup_contents, restore_into
from clientlib.client._link import Link
from clientlib.client.backup import BackupContents, decode_body, encode_body
from clientlib.client.devicelist import (
    DEVICE_ID_SIZE,
    LINK_CODE_LIFETIME,
    MAX_DEVICES,
    DeviceList,
    InvalidDeviceList,
    LinkCode,
    LinkError,
    LinkKeys,
    decode_transfer,
    encode_transfer,
    link_keys,
    msg1,
    open_msg1,
    open_msg2,
    seal_msg2,
)
from clientlib.client.state import ContactRecord
from clientlib.client.types import (
    Device,
)
from clientlib.crypto.keys import X25519KeyPair
from clientlib.crypto.primitives import (
    ct_eq,
    ed25519_expand_seed,
    ed25519_public_from_seed,
    ed25519_sign,
)
from clientlib.errors import (
    DecryptionError,
    KeyValidationError,
    LocalProtocolError,
    MessagingError,
    RelayRejected,
)
from clientlib.keystore import Keystore
from clientlib.transport.http import HTTPTransport
from clientlib.wire.limits import OWNER_COMMAND_CONTEXT
from clientlib.wire.pow import capability_hash

if TYPE_CHECKING:
    from clientlib.client.client import Client
    from clientlib.client.config import ClientConfig

__all__ = [
    "DeviceApproval",
    "DeviceLinker",
    "LinkedState",
    "finish_approval",
    "link_into",
    "remove_device",
    "start_approval",
]


# --- linking (protocol.md §24.6) --------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class DeviceApproval:
    """An approval in progress on an existing device: compare :attr:`sas` with the code the
    new device shows, then :meth:`Client.approve_device`."""

    sas: str
    code: LinkCode
    keys: LinkKeys

    def __repr__(self) -> str:
        return f"DeviceApproval(sas={self.sas})"


@dataclass(slots=True, repr=False)
class LinkedState:
    """What a new device writes into its keystore: the approver's backup body with our own
    new mailboxes, the device list, our device id and our own-devices mailbox."""

    contents: BackupContents
    mailboxes: dict[bytes, tuple[bytes, bytes, bytes, bytes]]  # cid -> (rid, sid, owner, cap)
    device_list: bytes
    did: bytes
    approver: bytes
    self_box: tuple[bytes, bytes, bytes, bytes]  # our own-devices mailbox (rid, sid, owner, cap)
    self_send: tuple[bytes, bytes]  # the approver's own-devices mailbox (sid, cap)


CreatePairwise = Callable[[bytes, bytes], Awaitable[tuple[bytes, bytes]]]


async def start_approval(book: AddressBook, link: Link, text: str, *, now: int) -> DeviceApproval:
    """Check a link code, then send the new device our half of the key agreement."""
    code = LinkCode.parse(text)
    if now >= code.expiry:
        raise LinkError("the device link code has expired; show a new one on the new device")
    if code.relay.rstrip("/") != book.relay_url:
        raise LinkError("the new device uses another relay: " + code.relay)
    x = X25519KeyPair.generate(book.rng)
    try:
        dh = x.dh(code.public)
    except KeyValidationError:
        raise LinkError("the device link code is damaged") from None
    keys = link_keys(code, dh, bytes(x.public))
    try:
        await link.depositor().deposit(code.sid, msg1(x), eid=book.rng(16), cap=code.cap)
    except RelayRejected as exc:
        if exc.code != "AUTH":
            raise
        raise LinkError("the device link code was already used or has expired") from None
    return DeviceApproval(keys.sas, code, keys)


async def finish_approval(
    book: AddressBook,
    link: Link,
    devices: Renewal,
    seal: Callable[[bytes, bytes], None],
    create_pairwise: CreatePairwise,
    approval: DeviceApproval,
    sas: str,
    *,
    name: str,
    now: int,
) -> Device:
    """The user saw the same code on both devices: transfer the identity (or refuse)."""
    if not ct_eq("".join(sas.split()).encode(), approval.sas.encode()):
        raise LinkError("the codes differ: nothing was sent to the new device")
    if now >= approval.code.expiry:
        raise LinkError("the device link code has expired; show a new one on the new device")
    current = devices.my_list()
    if len(current.ids) >= MAX_DEVICES:
        raise LinkError(f"this identity already has {MAX_DEVICES} devices; remove one first")
    mine = devices.self_contact()
    if mine is None:
        owner, cap = book.rng(32), book.rng(32)
        rid, sid = await create_pairwise(owner, cap)
        async with book.lock:
            rec = ContactRecord(
                name="",
                state="accepted",
                identity=bytes(book.identity.public),
                session=b"",
                rid=rid,
                sid=sid,
                owner=owner,
                send=None,
                created=now,
                mycap=cap,
                me=True,
            )
            book.add_contact(book.rng(16), rec)
            await book.save()
        await link.subscribe(rid)
        mine = devices.self_contact()
        assert mine is not None
    did = book.rng(DEVICE_ID_SIZE)
    new = DeviceList.sign(
        book.identity, current.version + 1, [*current.devices, (did, name or "new device")]
    )
    async with book.lock:
        body = encode_body(backup_contents(book, now=now, groups=False))
    transfer = encode_transfer(
        backup=body,
        device_list=new.raw,
        did=did,
        approver=devices.did,
        self_sid=mine[1].sid,
        self_cap=mine[1].mycap,
    )
    try:
        ct = seal_msg2(approval.keys, transfer, book.rng(24))
    except LocalProtocolError:
        raise LinkError("too many contacts to transfer in one link envelope") from None
    try:
        await link.depositor().deposit(
            approval.code.sid, ct, eid=book.rng(16), cap=approval.code.cap
        )
    except RelayRejected as exc:
        if exc.code != "AUTH":
            raise
        raise LinkError("the device link code was already used or has expired") from None
    async with book.lock:
        book.ks.put("meta", b"devlist", new.raw)
        content = devices.list_content()
        for cid, c in list(book.contacts.items()):
            if c.state == "accepted":
                seal(cid, content)
        await book.save()
    return Device(did.hex(), name or "new device", False)


async def remove_device(
    book: AddressBook, devices: Renewal, seal: Callable[[bytes, bytes], None], device_id: str
) -> Device:
    """Sign a list without the device and tell every contact and our own devices."""
    current = devices.my_list()
    found = [(d, n) for d, n in current.devices if d.hex() == device_id.strip().lower()]
    if not found:
        raise LocalProtocolError("no such device (see devices())")
    did, name = found[0]
    if did == devices.did:
        raise LocalProtocolError("remove this device from another of your devices")
    new = DeviceList.sign(
        book.identity, current.version + 1, [x for x in current.devices if x[0] != did]
    )
    async with book.lock:
        book.ks.put("meta", b"devlist", new.raw)
        content = devices.list_content()
        for cid, c in list(book.contacts.items()):
            if c.state == "accepted":
                seal(cid, content)  # the removed device hears it too, then nothing more
        mine = devices.self_contact()
        if mine is not None:
            cid, c = mine
            c.devs = [d for d in c.devs if d[0] != did]
            if c.mdid == did:
                c.off = True
            book.put_contact(cid)
        await book.save()
    return Device(did.hex(), name, False)


def _signer(sk: bytes) -> Callable[[bytes], bytes]:
    return lambda cmd: ed25519_sign(sk, OWNER_COMMAND_CONTEXT + cmd)


class DeviceLinker:
    """The new device's side of linking: a one-time link mailbox, the code to show, the
    short code once an existing device answered, then the transfer (protocol.md §24.6).

    ::

        async with DeviceLinker(relay_url) as linker:
            show(linker.code)                      # text; linker.qr_payload for a QR code
            sas = await linker.wait_for_approver() # show it; the user compares
            client = await linker.finish(path, passphrase)
        async with client: ...
    """

    def __init__(
        self,
        relay_url: str,
        *,
        config: ClientConfig | None = None,
        lifetime: int = LINK_CODE_LIFETIME,
        poll: float = 0.25,
    ) -> None:
        from clientlib.client.config import ClientConfig

        self._config = config if config is not None else ClientConfig()
        self._relay = relay_url.rstrip("/")
        self._lifetime = lifetime
        self._poll = poll
        self._session: aiohttp.ClientSession | None = None
        self._http: HTTPTransport | None = None
        self._owner = b""
        self._rid = b""
        self._x: X25519KeyPair | None = None
        self._code: LinkCode | None = None
        self._keys: LinkKeys | None = None

    async def __aenter__(self) -> DeviceLinker:
        rng = self._config.rng
        self._session = aiohttp.ClientSession()
        try:
            self._http = HTTPTransport(self._session, self._relay)
            self._owner, cap = rng(32), rng(32)
            sk = ed25519_expand_seed(self._owner)
            rid, sid = await self._http.create_mailbox(
                ed25519_public_from_seed(self._owner),
                lambda cmd: ed25519_sign(sk, OWNER_COMMAND_CONTEXT + cmd),
                kind="pair",
            )
            self._rid = rid
            await self._http.set_caps(credential(rid, self._owner), add=[capability_hash(sid, cap)])
            self._x = X25519KeyPair.generate(rng)
            expiry = int(self._config.clock()) + self._lifetime
            self._code = LinkCode(expiry, sid, cap, bytes(self._x.public), self._relay)
        except BaseException:
            await self._session.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._delete()
        if self._session is not None:
            await self._session.close()

    @property
    def code(self) -> str:
        """The link code to show (and paste into ``devices approve`` on the other device)."""
        if self._code is None:
            raise LocalProtocolError("enter the linker first")
        return self._code.text

    @property
    def qr_payload(self) -> bytes:
        return self.code.encode()

    async def _delete(self) -> None:
        if self._http is not None and self._rid:
            with contextlib.suppress(MessagingError):
                await self._http.delete_mailbox(credential(self._rid, self._owner))
            self._rid = b""

    async def _next(self, accept: Callable[[bytes], bool]) -> None:
        """Poll the link mailbox until ``accept(ct)`` takes an envelope (others are dropped)
        or the code expires."""
        assert self._http is not None and self._code is not None
        cred = credential(self._rid, self._owner)
        acks: list[int] = []
        while True:
            if self._config.clock() >= self._code.expiry:
                await self._delete()
                raise LinkError("the device link code expired before the approval arrived")
            envs, _ = await self._http.fetch(cred, ack=acks)
            acks = []
            for env in envs:
                acks.append(env.seq)
                if accept(env.ct):
                    await self._http.fetch(cred, ack=acks, max=0)
                    return
            await asyncio.sleep(self._poll)

    async def wait_for_approver(self) -> str:
        """Wait for the existing device's answer; returns the short code to show."""
        assert self._x is not None and self._code is not None
        x, code = self._x, self._code

        def take(ct: bytes) -> bool:
            try:
                approver = open_msg1(ct)
            except DecryptionError:
                return False
            self._keys = link_keys(code, x.dh(approver), approver)
            return True

        await self._next(take)
        assert self._keys is not None
        return self._keys.sas

    async def finish(
        self,
        keystore_path: str | os.PathLike[str] | None,
        passphrase: bytes | str,
        *,
        config: ClientConfig | None = None,
        allow_weak_passphrase: bool = False,
    ) -> Client:
        """Wait for the transfer (sent once the user approved on the other device), create
        this device's mailboxes and return the client (not started) for a new keystore.

        Raises:
            LinkError: the code expired first, or the transfer does not decode.
        """
        from clientlib.client.client import Client

        keys = self._keys
        if keys is None:
            raise LocalProtocolError("wait_for_approver first")
        got: list[bytes] = []

        def take(ct: bytes) -> bool:
            try:
                got.append(open_msg2(keys, ct))
            except DecryptionError:
                return False
            return True

        await self._next(take)
        await self._delete()  # single use: a second approval finds no mailbox
        t = decode_transfer(got[0])
        contents = decode_body(t["b"])
        from clientlib.crypto.keys import IdentityKeyPair

        ik = IdentityKeyPair(contents.seed).public
        try:
            dl = DeviceList.parse(t["dl"], ik)
        except InvalidDeviceList:
            raise LinkError("the device list of the transfer does not verify") from None
        if t["did"] not in dl.ids or t["from"] not in dl.ids:
            raise LinkError("the transfer's device list does not name both devices")
        assert self._http is not None
        rng = self._config.rng
        boxes: dict[bytes, tuple[bytes, bytes, bytes, bytes]] = {}
        for c in [*contents.contacts, None]:
            owner, cap = rng(32), rng(32)
            sk = ed25519_expand_seed(owner)
            rid, sid = await self._http.create_mailbox(
                ed25519_public_from_seed(owner), _signer(sk), kind="pair"
            )
            await self._http.set_caps(credential(rid, owner), add=[capability_hash(sid, cap)])
            boxes[c.cid if c is not None else b""] = (rid, sid, owner, cap)
        state = LinkedState(
            contents,
            boxes,
            dl.raw,
            t["did"],
            t["from"],
            boxes.pop(b""),
            (t["ss"], t["sc"]),
        )
        client = Client(
            keystore_path,
            passphrase,
            create=True,
            relay_url=contents.relay,
            name=contents.name,
            config=config if config is not None else self._config,
            allow_weak_passphrase=allow_weak_passphrase,
        )
        client._linked = state
        return client


def link_into(ks: Keystore, state: LinkedState, *, now: int) -> None:
    """Write a linked device's records (before the book loads them): every contact with
    our own new mailbox and no session, our own-devices contact, the device list."""
    restore_into(ks, state.contents)
    for x in state.contents.contacts:
        rid, sid, owner, cap = state.mailboxes[x.cid]
        raw = ks.get("contacts", x.cid)
        assert raw is not None
        rec = ContactRecord.from_bytes(raw)
        rec.rid, rec.sid, rec.owner, rec.mycap = rid, sid, owner, cap
        ks.put("contacts", x.cid, rec.to_bytes())
    rid, sid, owner, cap = state.self_box
    seed = state.contents.seed
    from clientlib.crypto.keys import IdentityKeyPair

    me = ContactRecord(
        name="",
        state="accepted",
        identity=bytes(IdentityKeyPair(seed).public),
        session=b"",
        rid=rid,
        sid=sid,
        owner=owner,
        send=state.self_send[0],
        created=now,
        mycap=cap,
        sendcap=state.self_send[1],
        me=True,
        mdid=state.approver,
    )
    ks.put("contacts", bytes(16), me.to_bytes())
    ks.put("meta", b"device", state.did)
    ks.put("meta", b"devlist", state.device_list)
    ks.put("meta", b"linked", b"\x01")
