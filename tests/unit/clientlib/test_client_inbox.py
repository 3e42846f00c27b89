"""The client's sans-IO inbox (``clientlib.client._inbox``), with no relay and no transport.

In the style of h11's ``ConnectionPair``: two real client states (keystore, address book,
prekeys, outbox, history) joined by a fake wire that carries what one side's outbox holds to
the other side's inbox as ``StoredEnvelope``s. Every envelope is real: sealed by a real
session with real keys, opened by the inbox with the keystore's keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from clientlib.client._book import AddressBook
from clientlib.client._inbox import Inbox, Processed
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._outbox import TRANSIENT, Outbox, classify
from clientlib.client._prekeys import PREKEY_BATCH, PREKEY_LOW_WATER, Prekeys
from clientlib.client._reports import ReportEvidence, ReportRecord
from clientlib.client.config import DEFAULT_BOUNDARIES
from clientlib.client.content import (
    Accept,
    ContactRequestContent,
    ConversationSettings,
    TextMessage,
    decode_content,
)
from clientlib.client.history import MemoryHistory
from clientlib.client.invite import Invitation, open_bundle
from clientlib.client.state import ContactRecord, OutboxRecord
from clientlib.client.types import (
    ClientEvent,
    ClientWarning,
    ContactAdded,
    MessageReceived,
    RequestReceived,
)
from clientlib.crypto.prekeys import PreKeyKind
from clientlib.errors import LocalProtocolError
from clientlib.keystore import CorruptKeystore
from clientlib.session import Session, initiate
from clientlib.wire.frames import StoredEnvelope
from relay.amf import judge_key, verify_as_judge

RELAY = "http://relay.test"
NOW = 1_700_000_000
#: The fake relay's moderator key (protocol.md §15.5.3), as every peer's cache holds it.
JUDGE = judge_key(b"\x07" * 32)


def modkeys() -> ModeratorKeyCache:
    cache = ModeratorKeyCache()
    cache.set(((7, JUDGE.public),), NOW)
    return cache


@dataclass
class Peer:
    """One client's state, as the facade wires it, minus the link."""

    name: str
    book: AddressBook = field(init=False)
    history: MemoryHistory = field(default_factory=MemoryHistory)
    events: list[ClientEvent] = field(default_factory=list)
    seq: int = 0  # the fake relay's per-peer sequence numbers

    def __post_init__(self) -> None:
        self.book = AddressBook(rng=os.urandom, boundaries=DEFAULT_BOUNDARIES)
        ks = self.book.create(None, b"", relay_url=RELAY, name=self.name, kdf=(1, 8 << 10))
        self.book.load(ks, relay_override=None, update_relay=False)
        self.book.attach(ks)
        self.prekeys = Prekeys(self.book)
        self.outbox = Outbox(self.book, lambda: self.history, self.events.append)
        self.outbox.load()
        self.modkeys = modkeys()
        self.inbox = Inbox(
            self.book, self.prekeys, self.outbox, lambda: self.history, self.modkeys
        )

    # --- what the facade does locally around its relay calls ------------------------------

    def address(self, *, left: int = PREKEY_BATCH) -> tuple[bytes, Invitation, bytes, bytes]:
        """A contact address with hosted blobs: (aid, invitation, static, first item)."""
        rid, sid, owner = os.urandom(16), os.urandom(16), os.urandom(32)
        aid, a, static, items = self.prekeys.new_address(
            rid, sid, owner, now=NOW, boundaries=DEFAULT_BOUNDARIES
        )
        a.left = left  # what the relay answered to the upload
        return aid, Invitation(RELAY, sid, a.key), static, items[0]

    def request(self, inv: Invitation, static: bytes, item: bytes | None) -> bytes:
        """Like ``send_request``: a pending contact and the request in the outbox."""
        bundle = open_bundle(inv, static, item)
        rid, sid, cap = os.urandom(16), os.urandom(16), os.urandom(32)
        content = ContactRequestContent(reply=sid, cap=cap, name=self.name, intro="hi")
        session, sealed = initiate(
            self.book.identity,
            bundle,
            content.encode(),
            rng=os.urandom,
            now=NOW,
            moderator=self.modkeys.current(),
        )
        cid = os.urandom(16)
        self.book.add_contact(
            cid,
            ContactRecord(
                name="",
                state="pending",
                identity=bytes(bundle.identity),
                session=session.to_record().to_bytes(),
                rid=rid,
                sid=sid,
                owner=os.urandom(32),
                send=None,
                created=NOW,
                mycap=cap,
            ),
        )
        hdl = self.book.handle(inv.sid)
        self.outbox.queue(OutboxRecord(cid, os.urandom(16), sealed.ct, sealed.fc, inv.sid, hdl=hdl))
        return cid

    def accept(self, qid: bytes) -> bytes:
        """Like ``accept_request``: the contact, and the acceptance in the outbox."""
        req = self.book.requests[qid]
        rid, sid, cap = os.urandom(16), os.urandom(16), os.urandom(32)
        session = Session.from_record(req.session)
        sealed = session.encrypt(
            Accept(reply=sid, cap=cap, name=self.name).encode(),
            rng=os.urandom,
            now=NOW,
            identity=self.book.identity,
            moderator=self.modkeys.current(),
        )
        cid = os.urandom(16)
        self.book.add_contact(
            cid,
            ContactRecord(
                name=req.name or "",
                state="accepted",
                identity=req.identity,
                session=session.to_record().to_bytes(),
                rid=rid,
                sid=sid,
                owner=os.urandom(32),
                send=req.reply,
                created=NOW,
                mycap=cap,
                sendcap=req.cap,
            ),
        )
        self.book.drop_request(qid)
        self.outbox.queue(OutboxRecord(cid, os.urandom(16), sealed.ct, sealed.fc, req.reply))
        return cid

    def say(self, cid: bytes, text: str, mid: bytes | None = None) -> bytes:
        """Like ``send``: a text message sealed into the outbox (returns the message id)."""
        mid = mid or os.urandom(16)
        self.seal(cid, TextMessage(id=mid, ts=NOW, text=text).encode(), mid)
        return mid

    def seal(self, cid: bytes, content: bytes, mid: bytes | None = None) -> None:
        c = self.book.contacts[cid]
        session = Session.from_record(c.session)
        sealed = session.encrypt(
            content,
            rng=os.urandom,
            now=NOW,
            identity=self.book.identity,
            moderator=self.modkeys.current(),
        )
        c.session = session.to_record().to_bytes()
        self.book.put_contact(cid)
        self.outbox.queue(
            OutboxRecord(cid, os.urandom(16), sealed.ct, sealed.fc, c.send, mid, c.sendcap)
        )

    def rid_of(self, sid: bytes) -> bytes:
        """The receive id behind one of our send ids (what the relay maps)."""
        for a in self.book.addresses.values():
            if a.sid == sid:
                return a.rid
        return next(c.rid for c in self.book.contacts.values() if c.sid == sid)


def wire(src: Peer, dst: Peer) -> list[tuple[bytes, StoredEnvelope]]:
    """The fake relay: take what ``src`` can deposit and deliver it as ``dst`` would get it
    (through the wire codec, with a franking tag and context). ``src``'s outbox empties."""
    batch = []
    for key, rec in src.outbox.ready():
        assert rec.sid is not None
        dst.seq += 1
        env = StoredEnvelope(
            seq=dst.seq,
            eid=rec.eid,
            ts=NOW,
            flags=0,
            ct=rec.ct,
            fc=rec.fc,
            hdl=rec.hdl,
            ft=os.urandom(32),
            fx=b"ctx" + os.urandom(8),
        )
        batch.append((dst.rid_of(rec.sid), StoredEnvelope.from_map(env.to_map())))
        src.book.ks.delete("outbox", key)
    return batch


def befriend(owner: Peer, requester: Peer) -> tuple[bytes, bytes, Processed, Processed]:
    """requester -> owner: request; owner accepts; requester gets the acceptance."""
    _aid, inv, static, item = owner.address()
    r_cid = requester.request(inv, static, item)
    got_request = owner.inbox.process(wire(requester, owner), NOW)
    (ev,) = got_request.events
    assert isinstance(ev, RequestReceived)
    o_cid = owner.accept(bytes.fromhex(ev.request.id))
    got_accept = requester.inbox.process(wire(owner, requester), NOW)
    return o_cid, r_cid, got_request, got_accept


# --- contact requests --------------------------------------------------------------------


def test_a_request_becomes_an_event_consumes_prekeys_and_is_acked() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    aid, inv, static, item = dana.address()
    erin.request(inv, static, item)
    batch = wire(erin, dana)
    out = dana.inbox.process(batch, NOW)
    (ev,) = out.events
    assert isinstance(ev, RequestReceived)
    assert (ev.request.name, ev.request.intro, ev.request.received_at) == ("erin", "hi", NOW)
    assert ev.request.safety_number == dana.book.safety_number(bytes(erin.book.identity.public))
    rid = batch[0][0]
    assert out.acks == [(rid, [1])] and out.refill == []
    a = dana.book.addresses[aid]
    assert a.left == PREKEY_BATCH - 1 and len(a.items) == PREKEY_BATCH - 1
    req = dana.book.requests[bytes.fromhex(ev.request.id)]
    assert req.hdl == erin.book.handle(inv.sid)
    # The one-time keys the request used are gone from the keystore.
    kid = next(k for k in range(1, 200) if k not in a.items and k not in (a.spk, a.lr))
    assert dana.prekeys.load(PreKeyKind.MLKEM_ONE_TIME, kid) is None
    assert dana.prekeys.load(PreKeyKind.X25519_SIGNED, a.spk) is not None


def test_a_redelivered_or_replayed_request_is_dropped_and_still_acked() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    _, inv, static, item = dana.address()
    erin.request(inv, static, item)
    batch = wire(erin, dana)
    assert len(dana.inbox.process(batch, NOW).events) == 1
    again = dana.inbox.process(batch, NOW)  # same envelope id: dropped silently
    assert again.events == [] and again.acks == [(batch[0][0], [1])]
    rid, env = batch[0]
    replay = StoredEnvelope(9, os.urandom(16), NOW, 0, env.ct, env.fc, env.hdl, env.ft, env.fx)
    out = dana.inbox.process([(rid, replay)], NOW)  # new eid, same handshake
    assert out.events == [ClientWarning("duplicate_request")]
    assert out.acks == [(rid, [9])] and len(dana.book.requests) == 1


def test_a_request_that_does_not_open_is_a_warning() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    aid, inv, static, item = dana.address()
    erin.request(inv, static, item)
    ((rid, env),) = wire(erin, dana)
    damaged = bytearray(env.ct)
    damaged[-1] ^= 1
    bad = StoredEnvelope(1, env.eid, NOW, 0, bytes(damaged), env.fc, env.hdl)
    out = dana.inbox.process([(rid, bad)], NOW)
    assert out.events == [ClientWarning("undecryptable", "a contact request did not decrypt")]
    assert out.acks == [(rid, [1])] and dana.book.requests == {}
    assert dana.book.addresses[aid].left == PREKEY_BATCH  # nothing consumed


def test_low_prekeys_ask_for_a_refill() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    aid, inv, static, item = dana.address(left=PREKEY_LOW_WATER)
    erin.request(inv, static, item)
    out = dana.inbox.process(wire(erin, dana), NOW)
    assert isinstance(out.events[0], RequestReceived)
    assert out.refill == [aid] and dana.book.addresses[aid].left == PREKEY_LOW_WATER - 1


def test_a_request_on_the_last_resort_key_says_so() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    aid, inv, static, _item = dana.address()
    erin.request(inv, static, None)  # the relay had no one-time item left
    out = dana.inbox.process(wire(erin, dana), NOW)
    assert out.events[0] == ClientWarning("prekeys_exhausted", "a request used the last-resort key")
    assert isinstance(out.events[1], RequestReceived)
    assert out.refill == [aid] and dana.book.addresses[aid].left == 0


# --- conversations -----------------------------------------------------------------------


def test_acceptance_makes_the_contact_and_releases_queued_messages() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    _, inv, static, item = dana.address()
    e_cid = erin.request(inv, static, item)
    dana_got = dana.inbox.process(wire(erin, dana), NOW)
    (req,) = dana_got.events
    assert isinstance(req, RequestReceived)
    erin.say(e_cid, "queued before acceptance")  # no destination yet
    assert [r.sid for _, r in erin.outbox.ready()] == []
    dana.accept(bytes.fromhex(req.request.id))
    out = erin.inbox.process(wire(dana, erin), NOW)
    (added,) = out.events
    assert isinstance(added, ContactAdded)
    assert (added.contact.id, added.contact.state, added.contact.name) == (
        e_cid.hex(),
        "accepted",
        "dana",
    )
    c = erin.book.contacts[e_cid]
    assert c.send is not None and c.sendcap is not None
    assert [(r.sid, r.cap) for _, r in erin.outbox.ready()] == [(c.send, c.sendcap)]
    # And the queued message reaches Dana.
    got = dana.inbox.process(wire(erin, dana), NOW)
    (msg,) = got.events
    assert isinstance(msg, MessageReceived) and msg.message.text == "queued before acceptance"


def test_messages_are_stored_evented_deduplicated_and_acked() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    d_cid, e_cid, _, _ = befriend(dana, erin)
    mid = erin.say(e_cid, "one")
    erin.say(e_cid, "two")
    batch = wire(erin, dana)
    out = dana.inbox.process(batch, NOW + 5)
    assert [e.message.text for e in out.events if isinstance(e, MessageReceived)] == ["one", "two"]
    first = out.events[0]
    assert isinstance(first, MessageReceived)
    assert first.contact.id == d_cid.hex()
    assert (first.message.id, first.message.direction) == (mid.hex(), "in")
    assert (first.message.sent_at, first.message.received_at) == (NOW, NOW + 5)
    assert out.acks == [(batch[0][0], [2, 3])]  # seq 1 was the acceptance
    assert [m.text for m in dana.history.messages(d_cid.hex())] == ["one", "two"]
    # Redelivered: dropped by envelope id; resent under the same message id: by the history.
    assert dana.inbox.process(batch, NOW).events == []
    erin.say(e_cid, "one again", mid)
    assert dana.inbox.process(wire(erin, dana), NOW).events == []
    assert [m.text for m in dana.history.messages(d_cid.hex())] == ["one", "two"]


def test_a_message_under_a_newer_moderator_key_waits_for_the_fetch_not_dropped() -> None:
    """The relay rotated between the sender's key fetch and ours (protocol.md §15.5.7): the
    envelope is neither acked nor remembered until the list is fetched again; then it is
    shown. A kid still unknown after that fetch is dropped for good (and acked)."""
    dana, erin = Peer("dana"), Peer("erin")
    d_cid, e_cid, _, _ = befriend(dana, erin)
    newer = judge_key(b"\x08" * 32)
    erin.modkeys.set(((8, newer.public), (7, JUDGE.public)), NOW)  # erin fetched after
    erin.say(e_cid, "after the rotation")
    batch = wire(erin, dana)
    first = dana.inbox.process(batch, NOW)
    assert first.events == [] and first.acks == [] and first.retry == batch
    assert dana.history.messages(d_cid.hex()) == []
    dana.modkeys.set(((8, newer.public), (7, JUDGE.public)), NOW)  # what the fetch brings
    again = dana.inbox.process(first.retry, NOW, final=True)
    assert [e.message.text for e in again.events if isinstance(e, MessageReceived)] == [
        "after the rotation"
    ]
    assert again.acks == [(batch[0][0], [batch[0][1].seq])] and again.retry == []
    # A kid nobody lists: retried once, then dropped as undecryptable and acked.
    erin.modkeys.set(((9, judge_key(b"\x09" * 32).public),), NOW)
    erin.say(e_cid, "under a key our relay never listed")
    bogus = wire(erin, dana)
    assert dana.inbox.process(bogus, NOW).retry == bogus
    last = dana.inbox.process(bogus, NOW, final=True)
    assert last.events == [ClientWarning("undecryptable", "", d_cid.hex())]
    assert last.acks == [(bogus[0][0], [bogus[0][1].seq])] and last.retry == []


def test_evidence_is_a_typed_record_with_the_stored_bytes_of_before() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    _d_cid, e_cid, _, _ = befriend(dana, erin)
    erin.say(e_cid, "report me")
    ((rid, env),) = wire(erin, dana)
    (ev,) = dana.inbox.process([(rid, env)], NOW).events
    assert isinstance(ev, MessageReceived) and ev.message.evidence is not None
    evidence = ReportEvidence.decode(ev.message.evidence)
    content = decode_content(evidence.msg)
    assert isinstance(content, TextMessage) and content.text == "report me"
    assert evidence.fc == env.fc and (evidence.ft, evidence.fx) == (env.ft, env.fx)
    assert evidence.sender == bytes(erin.book.identity.public)
    assert evidence.recipient == bytes(dana.book.identity.public)
    assert len(evidence.fk) == 32 and "report" not in repr(evidence)
    # Revision 5: the evidence keeps the sender's verified AMF signature (version 2).
    assert evidence.akid == 7 and evidence.amf is not None
    assert verify_as_judge(JUDGE, evidence.sender, evidence.recipient, 7, env.fc, evidence.amf)
    assert ReportEvidence.decode(evidence.encode()) == evidence
    assert ev.message.evidence == evidence.encode()
    # The version-1 encoding is the msgpack array earlier versions stored, so old histories
    # still read (as evidence without a signature, which cannot be reported).
    import dataclasses

    import msgpack

    evidence = dataclasses.replace(evidence, akid=None, amf=None)
    legacy = msgpack.packb(
        [1, evidence.msg, evidence.fk, evidence.fc, env.ft, env.fx, evidence.sender,
         evidence.recipient],
        use_bin_type=True,
    )  # fmt: skip
    assert legacy == evidence.encode()
    assert ReportEvidence.decode(legacy) == evidence
    fields = msgpack.unpackb(legacy)
    newer = msgpack.packb([2, *fields[1:]], use_bin_type=True)
    for bad in (b"", b"\x93\x01\x02\x03", newer, legacy[:-1]):
        with pytest.raises(LocalProtocolError):
            ReportEvidence.decode(bad)


def test_report_records_keep_their_stored_bytes() -> None:
    import msgpack

    cid = os.urandom(16)
    legacy = msgpack.packb([cid, "ab" * 16, "open", NOW], use_bin_type=True)
    rec = ReportRecord.decode(legacy)
    assert rec == ReportRecord(cid, "ab" * 16, "open", NOW) and rec.encode() == legacy
    done = rec.resolved()
    assert done.status == "resolved"
    assert done.encode() == msgpack.packb([cid, "ab" * 16, "resolved", NOW], use_bin_type=True)
    for bad in (b"\xc1", msgpack.packb([cid, "x", "maybe", NOW]), msgpack.packb([cid, "x"])):
        with pytest.raises(CorruptKeystore):
            ReportRecord.decode(bad)


def test_settings_update_the_peer_and_bad_envelopes_warn() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    d_cid, e_cid, _, _ = befriend(dana, erin)
    erin.seal(e_cid, ConversationSettings(1, 0, 0).encode())
    assert dana.inbox.process(wire(erin, dana), NOW).events == []
    assert dana.book.contacts[d_cid].peer == [1, 0, 0]
    assert dana.book.contact_view(d_cid).peer_settings is not None
    # A ciphertext our session does not open: warned, dropped, acked, session unchanged.
    erin.say(e_cid, "tampered")
    ((rid, env),) = wire(erin, dana)
    before = dana.book.contacts[d_cid].session
    flipped = bytearray(env.ct)
    flipped[100] ^= 1
    bad = StoredEnvelope(env.seq, env.eid, NOW, 0, bytes(flipped), env.fc)
    out = dana.inbox.process([(rid, bad)], NOW)
    assert out.events == [ClientWarning("undecryptable", "", d_cid.hex())]
    assert out.acks == [(rid, [env.seq])] and dana.book.contacts[d_cid].session == before


def test_unknown_mailboxes_and_online_only_envelopes() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    _, e_cid, _, _ = befriend(dana, erin)
    erin.say(e_cid, "live")
    ((rid, env),) = wire(erin, dana)
    stranger = os.urandom(16)
    out = dana.inbox.process([(stranger, env)], NOW)
    assert out.events == [] and out.acks == [(stranger, [env.seq])]
    live = StoredEnvelope(0, env.eid, NOW, 0, env.ct, env.fc)  # online-only: never acked
    out = dana.inbox.process([(rid, live)], NOW)
    assert isinstance(out.events[0], MessageReceived) and out.acks == []


def test_the_two_sides_agree_on_the_safety_number() -> None:
    dana, erin = Peer("dana"), Peer("erin")
    d_cid, _e_cid, got_request, got_accept = befriend(dana, erin)
    (req,) = got_request.events
    (added,) = got_accept.events
    assert isinstance(req, RequestReceived) and isinstance(added, ContactAdded)
    assert req.request.safety_number == added.contact.safety_number
    assert dana.book.contact_view(d_cid).safety_number == added.contact.safety_number


# --- the outbox's retry rule ---------------------------------------------------------------


def _rec(*, request: bool, pw: int = -1) -> OutboxRecord:
    hdl = os.urandom(16) if request else None
    return OutboxRecord(os.urandom(16), os.urandom(16), b"x", bytes(32), os.urandom(16), None,
                        None, hdl, pw)  # fmt: skip


@pytest.mark.parametrize("code", sorted(TRANSIENT))
def test_transient_refusals_are_retried(code: str) -> None:
    assert classify(code, _rec(request=True)) == "retry"
    assert classify(code, _rec(request=False)) == "retry"


def test_quota_pow_and_final_refusals() -> None:
    assert classify("QUOTA", _rec(request=False)) == "retry"  # a full pairwise mailbox
    assert classify("QUOTA", _rec(request=True)) == "failed"  # the address's daily limit
    assert classify("POW", _rec(request=True, pw=0)) == "pay_pow"  # work asked after queueing
    assert classify("POW", _rec(request=True, pw=12)) == "failed"
    for code in ("AUTH", "BOUNDARY", "MALFORMED"):
        assert classify(code, _rec(request=True)) == "failed"
        assert classify(code, _rec(request=False)) == "failed"
