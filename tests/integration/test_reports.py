"""Relay franking tags and abuse reports (protocol.md §4.11, Part II §15.4), end to end.

A real in-process relay on loopback, both backends. Envelopes are genuine: two real
clientlib sessions (PQXDH handshake, ratchet, sealed sender, franking commitments) encrypt
and decrypt them, the relay tags them on deposit, and the recipient reports with what its
session revealed. The forgery matrix checks that every forged or misused report is refused
with its documented code and that nothing is stored (no report, no audit entry); then the
moderation service resolves reports and the effects (revocation, suspension) are checked
against real deposits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import aiohttp
import pytest
import relaydriver
from aiohttp.test_utils import TestServer
from relaydriver import Owner
from reportkit import ADMIN_TOKENS, ALICE_TOKEN, AdminSession

from clientlib.crypto import IdentityKeyPair, PreKeyKind, PreKeyPair
from clientlib.crypto.amf import forge_as_recipient, verify_as_recipient
from clientlib.crypto.franking import franking_commit
from clientlib.errors import LocalProtocolError, RelayRejected
from clientlib.session import ModeratorKey, PreKeyBundle, Session, accept, initiate, open_envelope
from clientlib.transport import (
    Delivered,
    HTTPTransport,
    MailboxCredential,
    WebSocketTransport,
)
from clientlib.transport.api import RelayAPI
from clientlib.wire import (
    FLAG_ONLINE_ONLY,
    Boundaries,
    StoredEnvelope,
    capability_hash,
    encode_map,
)
from relay.admin import admin_listener_key
from relay.admin.web import ATTACHMENT_CSP, REPORT_CSP
from relay.appkeys import service_key
from relay.config import RelayConfig
from relay.franking import parse_context
from relay.moderation import ModerationError, ModerationService
from relay.service import MailboxService

MakeRelay = Callable[[RelayConfig], Awaitable[tuple[str, TestServer]]]
DAY = 86_400


def rng(n: int) -> bytes:
    return os.urandom(n)


def remember(*values: bytes) -> bytes:
    relaydriver.remember(*values)  # the relay must never log them
    return values[0]


def content(text: str) -> bytes:
    """A v1 content map (Part III §22.1), as a client encrypts it."""
    return encode_map({"t": "msg", "id": os.urandom(16), "ts": 1, "text": text}, 1)


async def rejected(call: Awaitable[object]) -> str:
    with pytest.raises(RelayRejected) as info:
        await call
    return info.value.code


# --- two real clients ---------------------------------------------------------------------


@dataclass
class Peer:
    identity: IdentityKeyPair
    spk: PreKeyPair
    kem: PreKeyPair

    @classmethod
    def new(cls) -> Peer:
        ident = IdentityKeyPair.generate(rng)
        remember(bytes(ident.public))
        return cls(
            ident,
            PreKeyPair.generate(ident, PreKeyKind.X25519_SIGNED, 1, rng),
            PreKeyPair.generate(ident, PreKeyKind.MLKEM_LAST_RESORT, 2, rng),
        )

    @property
    def key(self) -> bytes:
        return bytes(self.identity.public)

    def bundle(self) -> bytes:
        return PreKeyBundle.build(
            self.identity.public, self.spk.public_record, self.kem.public_record, None
        ).to_bytes()


@dataclass
class Received:
    """What the recipient keeps of one delivered message to be able to report it."""

    env: StoredEnvelope
    msg: bytes
    fk: bytes
    attachments: tuple[bytes, ...] = ()
    akid: int | None = None
    amf: bytes | None = None


class Conversation:
    """Alice writes to Bob through real sessions; Bob decrypts what the relay delivers."""

    def __init__(self) -> None:
        self.alice, self.bob = Peer.new(), Peer.new()
        self.sa: Session | None = None
        self.sb: Session | None = None
        # The relay's moderator keys (protocol.md §15.5): Alice franks under the current one,
        # Bob accepts the ones his relay lists.
        self.moderator: ModeratorKey | None = None
        self.known: dict[int, bytes] = {}

    async def sync_keys(self, relay: RelayAPI) -> None:
        """Fetch the relay's moderator keys, as both clients do (``mkeys?``)."""
        keys = await relay.moderation_keys()
        self.moderator = ModeratorKey(*keys[0])
        self.known.update(keys)

    def first(self, text: str) -> tuple[bytes, bytes]:
        """Alice's first message (a prekey message: a contact request)."""
        assert self.moderator is not None, "sync_keys first"
        self.sa, env = initiate(
            self.alice.identity,
            self.bob.bundle(),
            content(text),
            rng=rng,
            now=int(time.time()),
            moderator=self.moderator,
        )
        return env.ct, env.fc

    def next(self, text: str, attachments: tuple[bytes, ...] = ()) -> tuple[bytes, bytes]:
        assert self.sa is not None
        env = self.sa.encrypt(
            content(text),
            rng=rng,
            now=int(time.time()),
            attachment_hashes=[hashlib.sha256(a).digest() for a in attachments],
            identity=self.alice.identity,
            moderator=self.moderator,
        )
        return env.ct, env.fc

    def open(self, env: StoredEnvelope, attachments: tuple[bytes, ...] = ()) -> Received:
        """Bob decrypts (and franking-verifies) a delivered envelope."""
        now = int(time.time())
        if self.sb is None:
            opened = open_envelope(self.bob.identity, env.ct)
            acc = accept(
                self.bob.identity,
                opened,
                env.fc,
                signed_prekey=self.bob.spk,
                kem_prekey=self.bob.kem,
                one_time_prekey=None,
                now=now,
                relay_tag=env.ft,
                moderator_keys=self.known.get,
            )
            self.sb, message = acc.session, acc.message
        else:
            message = self.sb.receive(
                env.ct,
                env.fc,
                identity=self.bob.identity,
                now=now,
                relay_tag=env.ft,
                moderator_keys=self.known.get,
            )
        assert message.sender == self.alice.identity.public
        assert message.relay_tag == env.ft
        assert message.attachment_hashes == tuple(hashlib.sha256(a).digest() for a in attachments)
        return Received(
            env,
            message.plaintext,
            message.franking_key,
            attachments,
            message.akid,
            message.amf_signature,
        )


def report_args(conv: Conversation, got: Received, **changes: object) -> dict[str, object]:
    env = got.env
    assert env.fc is not None and env.ft is not None and env.fx is not None
    args: dict[str, object] = {
        "msg": got.msg,
        "fk": got.fk,
        "fc": env.fc,
        "ft": env.ft,
        "fx": env.fx,
        "sender": conv.alice.key,
        "recipient": conv.bob.key,
        "attachments": got.attachments,
        "reason": "harassment",
        "note": "she keeps writing",
        "amf": got.amf,
        "akid": got.akid,
    }
    args.update(changes)
    return args


# --- fixtures -----------------------------------------------------------------------------


@dataclass
class Setup:
    url: str
    server: TestServer
    http: HTTPTransport
    conv: Conversation
    bob: MailboxCredential  # Bob's pairwise mailbox for Alice
    bob_sid: bytes
    cap: bytes  # Alice's capability on it
    clock: dict[str, float]

    @property
    def service(self) -> MailboxService:
        return self.server.app[service_key]

    @property
    def moderation(self) -> ModerationService:
        return self.service.moderation

    async def send(
        self, text: str, attachments: tuple[bytes, ...] = (), *, flags: int = 0
    ) -> tuple[bytes, bytes]:
        ct, fc = self.conv.next(text, attachments)
        await self.http.deposit(
            self.bob_sid, ct, eid=os.urandom(16), fc=fc, cap=self.cap, flags=flags
        )
        return ct, fc

    async def receive_all(self) -> list[StoredEnvelope]:
        envs, _ = await self.http.fetch(self.bob, max=256)
        if envs:
            await self.http.fetch(self.bob, ack=[e.seq for e in envs], max=0)
        return list(envs)

    async def stored(self) -> tuple[int, int]:
        """Reports and audit entries the relay holds (what a refusal must not change)."""
        reports = await self.moderation.list_reports(status=None, limit=1000)
        return len(reports), len(await self.moderation.audit(limit=1000))


async def new_mailbox(
    t: HTTPTransport | WebSocketTransport, kind: str = "open", bnd: Boundaries | None = None
) -> tuple[MailboxCredential, bytes]:
    owner = Owner()
    rid, sid = await t.create_mailbox(owner.pk, owner.sign, kind=kind, boundaries=bnd)
    remember(rid, sid)
    return MailboxCredential(rid, owner.sign), sid


@contextlib.asynccontextmanager
async def setup(
    make_relay: MakeRelay, config: RelayConfig, session: aiohttp.ClientSession
) -> AsyncIterator[Setup]:
    url, server = await make_relay(config)
    clock = {"now": float(int(time.time()))}
    server.app[service_key]._clock = lambda: clock["now"]
    http = HTTPTransport(session, url)
    conv = Conversation()
    await conv.sync_keys(http)
    bob, bob_sid = await new_mailbox(http, "pair")
    cap = remember(os.urandom(32))
    await http.set_caps(bob, add=[capability_hash(bob_sid, cap)])
    # Alice's first message reaches Bob out of band here (the request path is tested below);
    # the conversation continues on Bob's pairwise mailbox.
    ct, fc = conv.first("hi Bob")
    first = StoredEnvelope(seq=0, eid=os.urandom(16), ts=0, flags=0, ct=ct, fc=fc)
    conv.open(first)
    yield Setup(url, server, http, conv, bob, bob_sid, cap, clock)


# --- the forgery matrix -------------------------------------------------------------------


async def test_forgery_matrix(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    async with setup(make_relay, relay_config, session) as s:
        att = (b"a picture", b"")
        await s.send("you are awful", att)
        await s.send("second")
        env1, env2 = await s.receive_all()
        got1, got2 = s.conv.open(env1, att), s.conv.open(env2)
        ctx = parse_context(env1.fx or b"")
        assert ctx is not None and (ctx.sid, ctx.source_kind) == (s.bob_sid, 1)
        assert ctx.source == capability_hash(s.bob_sid, s.cap)
        assert ctx.day == int(s.clock["now"]) // DAY

        # A mailbox of Bob's that never received the envelopes.
        other, other_sid = await new_mailbox(s.http, "open")
        forged = {
            "changed plaintext": (s.bob, {"msg": got1.msg + b"!"}),
            "changed franking key": (s.bob, {"fk": os.urandom(32)}),
            "changed commitment": (s.bob, {"fc": env2.fc}),
            "tag of another envelope": (s.bob, {"ft": env2.ft}),
            "changed context": (
                s.bob,
                {"fx": (env1.fx or b"")[:-1] + bytes([(env1.fx or b"\x00")[-1] ^ 1])},
            ),
            "unparseable context": (s.bob, {"fx": b"\x00" * 7}),
            "changed sender": (s.bob, {"sender": s.conv.bob.key}),
            "changed recipient": (s.bob, {"recipient": s.conv.alice.key}),
            "attachment withheld": (s.bob, {"attachments": att[:1]}),
            "attachment changed": (s.bob, {"attachments": (b"another picture", b"")}),
            "another mailbox's envelope": (other, {}),
            "context moved to my mailbox": (
                other,
                {"fx": (env1.fx or b"")[:8] + other_sid + (env1.fx or b"")[24:]},
            ),
        }
        before = await s.stored()
        assert before == (0, 0)
        for name, (cred, change) in forged.items():
            code = await rejected(s.http.report(cred, **report_args(s.conv, got1, **change)))
            assert code == "FRANKING", name
        assert await s.stored() == before  # nothing stored, nothing audited

        # The genuine report is accepted and stored, verified, with everything it reveals.
        report = await s.http.report(s.bob, **report_args(s.conv, got1))
        assert report == hashlib.sha256(env1.ft or b"").digest()[:16]
        view = await s.moderation.get_report(report.hex())
        assert view is not None
        assert (view.status, view.reason, view.note) == ("open", "harassment", "she keeps writing")
        assert (view.text, view.content_type, view.msg) == ("you are awful", "msg", got1.msg)
        assert view.attachments == [(hashlib.sha256(a).hexdigest(), len(a)) for a in att]
        assert (view.sender_key, view.recipient_key) == (
            s.conv.alice.key.hex(),
            s.conv.bob.key.hex(),
        )
        assert (view.source_kind, view.source) == ("capability", ctx.source.hex())
        assert (view.mailbox_sid, view.day, view.kid) == (s.bob_sid.hex(), ctx.day, ctx.kid)
        assert view.verified["commitment"] == view.verified["relay_tag"] == "verified"
        assert await s.stored() == (1, 1)

        # Replay: one report per envelope.
        assert await rejected(s.http.report(s.bob, **report_args(s.conv, got1))) == "DUPLICATE"
        assert await rejected(s.http.report(s.bob, **report_args(s.conv, got1, reason="spam"))) == (
            "DUPLICATE"
        )
        assert await s.stored() == (1, 1)

        # The reporter follows its report; nobody else can.
        status = await s.http.report_status(s.bob, report)
        assert (status.status, status.action, status.ts) == ("open", None, int(s.clock["now"]))
        assert await rejected(s.http.report_status(other, report)) == "AUTH"
        assert await rejected(s.http.report_status(s.bob, os.urandom(16))) == "AUTH"

        # The second envelope can still be reported (its own tag), over WebSocket too.
        async with WebSocketTransport(session, s.url) as ws:
            second = await ws.report(s.bob, **report_args(s.conv, got2, reason="spam", note=None))
            assert (await ws.report_status(s.bob, second)).status == "open"
        assert await s.stored() == (2, 2)


async def test_expired_franking_key(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    cfg = replace(relay_config, franking_rotation_s=7 * DAY, report_window_s=30 * DAY)
    async with setup(make_relay, cfg, session) as s:
        start = s.clock["now"]
        await s.send("old 1")
        await s.send("old 2")
        old1, old2 = [s.conv.open(e) for e in await s.receive_all()]
        kid1 = parse_context(old1.env.fx or b"")
        assert kid1 is not None
        # A week later the key rotates on the next deposit; the old key retires then.
        s.clock["now"] = start + 7 * DAY
        await s.conv.sync_keys(s.http)  # Alice's client refreshes: the key rotated
        await s.send("new")
        (new,) = [s.conv.open(e) for e in await s.receive_all()]
        kid2 = parse_context(new.env.fx or b"")
        assert kid2 is not None and kid2.kid == kid1.kid + 1
        # Within the window of the retired key: verifiable.
        s.clock["now"] = start + 7 * DAY + 30 * DAY - 1
        await s.http.report(s.bob, **report_args(s.conv, old1))
        # Past it: EXPIRED, nothing stored; the current key still verifies.
        s.clock["now"] = start + 7 * DAY + 30 * DAY
        before = await s.stored()
        assert await rejected(s.http.report(s.bob, **report_args(s.conv, old2))) == "EXPIRED"
        assert await s.stored() == before
        await s.http.report(s.bob, **report_args(s.conv, new))
        # An unknown kid is EXPIRED too (a forged kid cannot be told from a destroyed key).
        assert new.env.fx is not None
        fx = (0xFFFFFFF0).to_bytes(4, "big") + new.env.fx[4:]
        assert await rejected(s.http.report(s.bob, **report_args(s.conv, new, fx=fx))) == "EXPIRED"
        # The purge destroys the retired key; a report of its envelopes stays EXPIRED.
        await s.service.purge_expired()
        kids = [k.kid for k in await s.service.store.franking_keys()]
        assert kids == [kid2.kid]


async def test_daily_report_allowance(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    async with setup(make_relay, replace(relay_config, reports_per_day=2), session) as s:
        s.clock["now"] = float((int(s.clock["now"]) // DAY + 1) * DAY + 60)
        for i in range(4):
            await s.send(f"message {i}")
        got = [s.conv.open(e) for e in await s.receive_all()]
        for g in got[:2]:
            await s.http.report(s.bob, **report_args(s.conv, g))
        before = await s.stored()
        assert await rejected(s.http.report(s.bob, **report_args(s.conv, got[2]))) == "QUOTA"
        assert await s.stored() == before
        # A duplicate is a duplicate first, even when the allowance is used up.
        assert await rejected(s.http.report(s.bob, **report_args(s.conv, got[0]))) == "DUPLICATE"
        s.clock["now"] += DAY  # a new UTC day
        await s.http.report(s.bob, **report_args(s.conv, got[2]))


async def test_online_only_envelopes_are_tagged(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    async with (
        setup(make_relay, relay_config, session) as s,
        WebSocketTransport(session, s.url) as ws,
    ):
        await ws.subscribe(s.bob)
        events = ws.events()
        await s.send("typing...", flags=FLAG_ONLINE_ONLY)
        env: StoredEnvelope | None = None
        async for event in events:
            if isinstance(event, Delivered) and event.env.seq == 0:
                env = event.env
                break
        assert env is not None and env.ft is not None and env.fx is not None
        got = s.conv.open(env)
        assert (await s.receive_all()) == []  # pushed, never stored
        report = await ws.report(s.bob, **report_args(s.conv, got))
        assert (await s.moderation.get_report(report.hex())) is not None


# --- moderation: revoke, suspend, unsuspend, the audit log --------------------------------


async def test_revoke_capability(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    async with setup(make_relay, relay_config, session) as s:
        await s.send("abuse")
        (got,) = [s.conv.open(e) for e in await s.receive_all()]
        report = (await s.http.report(s.bob, **report_args(s.conv, got))).hex()
        mod = s.moderation
        with pytest.raises(ModerationError, match="action"):
            await mod.resolve(report, action="delete", moderator="ann")
        with pytest.raises(ModerationError, match="no report"):
            await mod.resolve(os.urandom(16).hex(), action="none", moderator="ann")
        with pytest.raises(ModerationError, match="suspend_sid"):
            await mod.resolve(report, action="suspend", moderator="ann")
        assert await mod.get_report("zz") is None
        s.clock["now"] += 3600
        view = await mod.resolve(report, action="revoke", moderator="ann", note="clear abuse")
        assert (view.status, view.action, view.moderator) == ("resolved", "revoke", "ann")
        assert (view.resolved_at, view.resolution_note) == (int(s.clock["now"]), "clear abuse")
        with pytest.raises(ModerationError, match="already resolved"):
            await mod.resolve(report, action="none", moderator="bob")
        # The abuser can no longer reach Bob on this mailbox.
        assert await rejected(s.send("again")) == "AUTH"
        assert await rejected(s.send("typing", flags=FLAG_ONLINE_ONLY)) == "AUTH"
        assert (await s.http.mailbox_info(s.bob)).caps == 0
        # Bob learns the outcome.
        status = await s.http.report_status(s.bob, bytes.fromhex(report))
        assert (status.status, status.action, status.ts) == (
            "resolved",
            "revoke",
            int(s.clock["now"]),
        )
        assert await mod.list_reports() == []
        assert [r.id for r in await mod.list_reports(status="resolved")] == [report]
        entries = await mod.audit()
        assert [(e.moderator, e.action, e.report_id) for e in entries] == [
            ("ann", "resolve:revoke", report),
            ("relay", "report", report),
        ]
        assert "clear abuse" in entries[0].detail and entries[0].seq == entries[1].seq + 1


async def test_contact_request_reports_revoke_the_handle_and_suspend(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    url, server = await make_relay(relay_config)
    mod: ModerationService = server.app[service_key].moderation
    http = HTTPTransport(session, url)
    conv = Conversation()
    await conv.sync_keys(http)
    addr, addr_sid = await new_mailbox(http, "addr", Boundaries(size=4096, att=0, day=50, pow=0))
    hdl = remember(os.urandom(16))
    ct, fc = conv.first("unsolicited abuse")
    await http.deposit(addr_sid, ct, eid=os.urandom(16), fc=fc, hdl=hdl)
    (env,) = (await http.fetch(addr))[0]
    assert env.hdl == hdl
    got = conv.open(env)
    ctx = parse_context(env.fx or b"")
    assert ctx is not None and (ctx.source_kind, ctx.source) == (2, hdl)
    report = (await http.report(addr, **report_args(conv, got, reason="threats"))).hex()
    view = await mod.get_report(report)
    assert view is not None and (view.source_kind, view.source) == ("handle", hdl.hex())
    # Revoke bans the requester's handle on the address.
    await mod.resolve(report, action="revoke", moderator="ann")
    again, fc2 = conv.next("once more")
    assert await rejected(http.deposit(addr_sid, again, eid=os.urandom(16), fc=fc2, hdl=hdl)) == (
        "AUTH"
    )
    assert (await http.mailbox_info(addr)).bans == 1

    # Suspension of a (spammer's) contact address: refused like a deleted one, reversibly.
    spam = Conversation()
    await spam.sync_keys(http)
    spam_addr, spam_sid = await new_mailbox(http, "addr")
    await http.put_prekeys(spam_addr, static=b"static", one_time=[b"item"])
    ct, fc = spam.first("visit my address")
    await http.deposit(addr_sid, ct, eid=os.urandom(16), fc=fc, hdl=remember(os.urandom(16)))
    envs, _ = await http.fetch(addr)
    got2 = spam.open(envs[-1])
    spam_report = (await http.report(addr, **report_args(spam, got2, reason="spam"))).hex()
    with pytest.raises(ModerationError, match="no live mailbox"):
        await mod.resolve(
            spam_report, action="suspend", moderator="ann", suspend_sid=os.urandom(16)
        )
    assert (await mod.get_report(spam_report)).status == "open"  # type: ignore[union-attr]
    await mod.resolve(spam_report, action="suspend", moderator="ann", suspend_sid=spam_sid)
    refusals = {
        "boundaries": await rejected(http.boundaries(spam_sid)),
        "pow": await rejected(http.pow_challenge(spam_sid)),
        "bundle": await rejected(http.fetch_bundle(spam_sid)),
        "request": await rejected(
            http.deposit(spam_sid, os.urandom(2048), eid=os.urandom(16), hdl=os.urandom(16))
        ),
    }
    assert set(refusals.values()) == {"AUTH"}, refusals
    info = await http.mailbox_info(spam_addr)  # the owner still reaches it, and is told
    assert (info.suspended, info.prekeys_left) == (1, 1)
    with pytest.raises(ModerationError, match="no live mailbox"):
        await mod.unsuspend(os.urandom(16), moderator="bob")
    await mod.unsuspend(spam_sid, moderator="bob", note="appeal granted")
    assert (await http.boundaries(spam_sid)).size == 4096
    assert (await http.fetch_bundle(spam_sid)) == (b"static", b"item")
    assert (await http.mailbox_info(spam_addr)).suspended is None
    actions = [(e.moderator, e.action) for e in await mod.audit()]
    assert actions == [
        ("bob", "unsuspend"),
        ("ann", "resolve:suspend"),
        ("relay", "report"),
        ("ann", "resolve:revoke"),
        ("relay", "report"),
    ]
    entries = await mod.audit()
    assert spam_sid.hex() in entries[0].detail and "appeal granted" in entries[0].detail
    assert spam_sid.hex() in entries[1].detail
    # Open mailboxes have nothing to revoke.
    open_conv = Conversation()
    await open_conv.sync_keys(http)
    inbox, inbox_sid = await new_mailbox(http, "open")
    ct, fc = open_conv.first("hello open mailbox")
    await http.deposit(inbox_sid, ct, eid=os.urandom(16), fc=fc)
    (env3,) = (await http.fetch(inbox))[0]
    assert parse_context(env3.fx or b"") is not None
    open_report = await http.report(inbox, **report_args(open_conv, open_conv.open(env3)))
    with pytest.raises(ModerationError, match="no capability or handle"):
        await mod.resolve(open_report.hex(), action="revoke", moderator="ann")
    await mod.resolve(open_report.hex(), action="none", moderator="ann")


async def test_capability_sent_to_an_open_mailbox_is_tagged_as_open(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    url, _ = await make_relay(relay_config)
    http = HTTPTransport(session, url)
    conv = Conversation()
    await conv.sync_keys(http)
    inbox, sid = await new_mailbox(http, "open")
    ct, fc = conv.first("hello")
    await http.deposit(sid, ct, eid=os.urandom(16), fc=fc, cap=os.urandom(32))  # ignored
    await http.deposit(sid, os.urandom(256), eid=os.urandom(16))  # no fc: no tag
    first, plain = (await http.fetch(inbox))[0]
    ctx = parse_context(first.fx or b"")
    assert ctx is not None and (ctx.source_kind, ctx.source) == (0, b"")
    assert (plain.ft, plain.fx) == (None, None)
    await http.report(inbox, **report_args(conv, conv.open(first)))


# --- issue 20, finding 1: a recipient forging a report of a message never sent ----------


async def test_a_recipient_cannot_forge_a_report_of_a_message_never_sent(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    """Bob invents a message "from" Alice, deposits it into his own pairwise mailbox with the
    capability he gave her, reads back ``ft``/``fx`` as owner and files the report: every
    revision-4 check passes (the same source as Alice's genuine messages), but the sender
    binding does not, whatever Bob puts in ``amf`` -- while Alice's genuine message verifies."""
    async with setup(make_relay, relay_config, session) as s:
        await s.send("a real message from Alice")
        (real_env,) = await s.receive_all()
        real = s.conv.open(real_env)

        alice, bob = s.conv.alice, s.conv.bob
        invented = content("I will hurt you")
        fk = os.urandom(32)
        fc = franking_commit(
            fk, sender=alice.key, recipient=bob.key, message=invented, attachment_hashes=()
        )
        await s.http.deposit(s.bob_sid, os.urandom(2048), eid=os.urandom(16), fc=fc, cap=s.cap)
        (planted,) = await s.receive_all()
        assert planted.ft is not None and planted.fx is not None
        ctx, real_ctx = parse_context(planted.fx), parse_context(real_env.fx or b"")
        assert ctx is not None and real_ctx is not None
        assert (ctx.source_kind, ctx.source) == (real_ctx.source_kind, real_ctx.source)
        assert s.conv.moderator is not None
        kid, m = s.conv.moderator
        forged = forge_as_recipient(bob.identity, alice.key, m, kid, fc, rng=os.urandom)
        verify_as_recipient(alice.key, bob.key, m, kid, fc, forged)  # convinces Bob only
        fake = Received(planted, invented, fk)
        before = await s.stored()
        for amf in (forged, os.urandom(448), real.amf):  # forged, random, another message's
            args = report_args(s.conv, fake, amf=amf, akid=kid)
            assert await rejected(s.http.report(s.bob, **args)) == "FRANKING"
        assert await rejected(s.http.report(s.bob, **report_args(s.conv, fake))) == "FRANKING"
        assert await s.stored() == before
        # The genuine message of the same contact still verifies.
        report = await s.http.report(s.bob, **report_args(s.conv, real))
        (view,) = [r for r in await s.moderation.list_reports(status=None) if r.id == report.hex()]
        assert view.verified["sender"].startswith("AMF signature verified")


# --- revealed attachments on the moderation page (issue 12, item 6) ----------------------


def tiny_png() -> bytes:
    """A real 4x4 red PNG."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_reported_attachments_on_the_moderation_page(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    """A report revealing an image, a PDF and an SVG (scripted): verified under the
    commitment; on the admin listener only, to a moderator, the image blurred until clicked
    under a CSP that lets the page load images from itself only, every attachment sandboxed,
    the non-images (the SVG included) as downloads."""
    config = replace(
        relay_config, admin_tokens=ADMIN_TOKENS, admin_port=0, admin_login_failures_per_client=50
    )
    png, pdf = tiny_png(), b"%PDF-1.4\n% a document\n"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script>'
    att = (png, pdf, svg)
    async with setup(make_relay, config, session) as s:
        await s.send("look at this", att)
        (env,) = await s.receive_all()
        got = s.conv.open(env, att)
        report = (await s.http.report(s.bob, **report_args(s.conv, got))).hex()
        view = await s.moderation.get_report(report)
        assert view is not None and view.attachment_types == ["image/png", None, None]
        assert await s.moderation.attachment(report, 1) == pdf
        assert await s.moderation.attachment(report, 3) is None
        url = s.server.app[admin_listener_key].url
        assert url is not None
        base = url.removesuffix("/admin/")
        path = f"/admin/reports/{report}/attachments"
        # Not on the public listener.
        async with session.get(s.url.rstrip("/") + f"{path}/0") as r:
            assert r.status == 404 and png not in await r.read()
        admin, http = AdminSession.open(base)
        async with http:
            status, _, resp = await admin.get(f"{path}/0")
            assert status == 303 and resp.headers["Location"] == "/admin/login"
            status, _, _ = await admin.login(ALICE_TOKEN)
            assert status == 303
            status, page, resp = await admin.get(f"/admin/reports/{report}")
            assert status == 200 and resp.headers["Content-Security-Policy"] == REPORT_CSP
            assert f'<img class="blurred" id="attachment-0" src="{path}/0"' in page
            assert '<input type="checkbox" class="reveal" id="reveal-0">' in page
            assert 'id="attachment-1"' in page and 'id="attachment-2"' in page
            assert "<img" not in page.split('id="attachment-1"')[1]  # no preview of the others
            assert hashlib.sha256(svg).hexdigest() in page
            _, css, _ = await admin.get("/admin/static/admin.css")
            assert "img.blurred { filter: blur(" in css
            assert "input.reveal:checked + .reveal-label img.blurred { filter: none; }" in css
            served = {}
            for i in range(3):
                async with http.get(f"{base}{path}/{i}", allow_redirects=False) as r:
                    assert r.status == 200
                    assert r.headers["Content-Security-Policy"] == ATTACHMENT_CSP
                    assert r.headers["X-Content-Type-Options"] == "nosniff"
                    assert r.headers["Cache-Control"] == "no-store"
                    served[i] = (r.content_type, r.headers["Content-Disposition"], await r.read())
            assert served[0] == (
                "image/png",
                f'inline; filename="report-{report[:12]}-attachment-0.png"',
                png,
            )
            for i, data in ((1, pdf), (2, svg)):
                assert served[i] == (
                    "application/octet-stream",
                    f'attachment; filename="report-{report[:12]}-attachment-{i}.bin"',
                    data,
                )
            for bad in ("3", "-1", "x", "00000000001"):
                status, body, _ = await admin.get(f"{path}/{bad}")
                assert status == 404 and "No such attachment" in body, bad
            status, body, _ = await admin.get(f"{path}/%2e%2e/%2e%2e/0")  # another route
            assert status == 404 and png.decode("latin-1") not in body
            status, _, _ = await admin.get(f"/admin/reports/{'0' * 32}/attachments/0")
            assert status == 404


def noisy_png(width: int, height: int) -> bytes:
    """A real PNG of random pixels (incompressible: about width x height x 3 bytes)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 1))
        + chunk(b"IEND", b"")
    )


async def test_large_attachments_are_revealed_by_hash(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    """Files too large for one owner command (protocol.md §5.9 "Reports"): the report
    commits them by hash (``ath``), then each plaintext is streamed to ``PUT
    /v1/report/<report>/<i>`` and kept only if it hashes to the committed value; the
    moderation page shows the image blurred (from the file) and the rest as a download."""
    config = replace(
        relay_config, admin_tokens=ADMIN_TOKENS, admin_port=0, admin_login_failures_per_client=50
    )
    big, doc = noisy_png(400, 300), os.urandom(300_000)
    att = (big, doc)
    hashes = [hashlib.sha256(a).digest() for a in att]
    async with setup(make_relay, config, session) as s:
        reveals = s.service.blobs.reveals
        await s.send("look at this", att)
        (env,) = await s.receive_all()
        got = s.conv.open(env, att)
        with pytest.raises(LocalProtocolError):  # inline: more than one command holds
            await s.http.report(s.bob, **report_args(s.conv, got))
        by_hash = report_args(s.conv, got, attachments=())
        rid = hashlib.sha256(env.ft or b"").digest()[:16]
        swapped = s.http.report(s.bob, **by_hash, attachment_hashes=hashes[::-1])
        assert await rejected(swapped) == "FRANKING"
        assert await reveals.state(rid) is None  # nothing kept of a refused report
        report = await s.http.report(s.bob, **by_hash, attachment_hashes=hashes)
        assert report == rid
        view = await s.moderation.get_report(rid.hex())
        assert view is not None and view.attachments == [(h.hex(), -1) for h in hashes]
        # Reveals that are not the committed bytes, or not of a committed attachment.
        wrong = {
            "other file": (rid, 0, doc),
            "truncated": (rid, 0, big[:-1]),
            "extended": (rid, 1, doc + b"\x00"),
            "no such index": (rid, 2, doc),
            "no such report": (os.urandom(16), 0, big),
        }
        codes = {}
        for name, (r, i, data) in wrong.items():
            with pytest.raises(RelayRejected) as info:
                await s.http.reveal_attachment(r, i, data)
            codes[name] = info.value.code
        assert codes == {
            "other file": "FRANKING",
            "truncated": "FRANKING",
            "extended": "FRANKING",
            "no such index": "AUTH",
            "no such report": "AUTH",
        }
        for bad in ("16", "01", "x"):
            async with session.put(f"{s.url.rstrip('/')}/v1/report/{rid.hex()}/{bad}") as r:
                assert r.status == 400, bad
        assert await reveals.state(rid) == [(h, None) for h in hashes]
        assert sorted(p.name for p in (reveals.directory / rid.hex()).iterdir()) == ["hashes"]

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

        await s.http.reveal_attachment(rid, 0, pieces())
        with pytest.raises(RelayRejected) as info:  # once revealed it cannot change
            await s.http.reveal_attachment(rid, 0, big)
        assert info.value.code == "AUTH"
        view = await s.moderation.get_report(rid.hex())
        assert view is not None
        assert view.attachments == [(hashes[0].hex(), len(big)), (hashes[1].hex(), -1)]
        assert view.attachment_types == ["image/png", None]
        # The moderation page: the image blurred, from its file; the other not revealed yet.
        url = s.server.app[admin_listener_key].url
        assert url is not None
        base = url.removesuffix("/admin/")
        admin, http = AdminSession.open(base)
        async with http:
            await admin.login(ALICE_TOKEN)
            status, page, _ = await admin.get(f"/admin/reports/{rid.hex()}")
            assert status == 200 and '<img class="blurred" id="attachment-0"' in page
            assert 'id="attachment-1">not revealed yet' in page
            path = f"{base}/admin/reports/{rid.hex()}/attachments"
            async with http.get(f"{path}/0") as r:
                assert (r.status, r.content_type, await r.read()) == (200, "image/png", big)
                assert r.headers["Content-Security-Policy"] == ATTACHMENT_CSP
            await s.http.reveal_attachment(rid, 1, doc)
            async with http.get(f"{path}/1") as r:
                assert r.content_type == "application/octet-stream" and await r.read() == doc
                assert r.headers["Content-Disposition"].startswith("attachment;")
        # A second report of the envelope is a duplicate and keeps what was revealed.
        again = s.http.report(s.bob, **by_hash, attachment_hashes=hashes)
        assert await rejected(again) == "DUPLICATE"
        assert await reveals.state(rid) == [(hashes[0], len(big)), (hashes[1], len(doc))]
        # The files go with the report (report_retention_s), by the purge.
        assert await s.service.blobs.purge() == 0
        assert (reveals.directory / rid.hex()).is_dir()
        s.clock["now"] += config.report_retention_s + 1
        await s.service.purge_expired()
        await s.service.blobs.purge()
        assert not (reveals.directory / rid.hex()).exists()
