"""Issue 20, finding 5, through real clients and a live relay: what a pending contact request
leaks, and what its session keeps.

Messages written while a request is pending used to be sealed at once with the pending
session, as prekey messages of 2,048 bytes or more, and reached the acceptor's new pairwise
mailbox in that size class: the relay could link the new mailbox to the request (which went
to the address in the same class) against protocol.md §22.4. They are kept unsealed in the
encrypted keystore now and sealed as ratchet messages when the acceptance arrives.

The responder's session of a request not yet answered used to hold the signed prekey's
private key (the ratchet's first ``DHs``) past the address's rotation of it.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from clientkit import FAST, make, wait_for

from clientlib.client import (
    Client,
    ClientWarning,
    ContactAdded,
    MessageReceived,
    ReportResolved,
    RequestReceived,
)
from clientlib.client._book import credential
from clientlib.client._reports import ReportEvidence
from clientlib.client.content import ContactRequestContent
from clientlib.client.state import AddressRecord, OutboxRecord
from clientlib.crypto import PreKeyKind
from clientlib.crypto.amf import forge_as_recipient, verify_as_recipient
from clientlib.crypto.franking import franking_commit
from clientlib.errors import LocalProtocolError, RelayRejected
from clientlib.session import PREKEY_MESSAGE_OVERHEAD, SessionRecord
from clientlib.transport import HTTPTransport
from clientlib.wire.pow import solve as solve_pow
from relay.appkeys import service_key, store_key
from relay.config import RelayConfig

PASS = b"pw-alice long test passphrase"


async def test_messages_written_while_pending_reach_the_new_mailbox_as_ratchet_messages(
    tmp_path: Path,
    make_relay,  # type: ignore[no-untyped-def]
    relay_config: RelayConfig,
) -> None:
    url, server = await make_relay(relay_config)
    store = server.app[store_key]
    texts = ["are you there?", "it's me, from the meeting", "x" * 300]
    async with make(tmp_path, "bob", url) as bob:
        async with make(tmp_path, "alice", url) as alice:
            inv = await alice.create_invitation()
            pending = await bob.send_request(inv.link, intro="hello")
            req = await wait_for(alice, RequestReceived)
            for text in texts:  # Alice has not answered yet
                await bob.send(pending.id, text)
            # Nothing is sealed while pending: the plaintext waits in Bob's keystore.
            queued = [OutboxRecord.from_bytes(v) for _, v in bob._book.ks.items("outbox")]
            waiting = [r for r in queued if r.pt is not None]
            # The three texts and, queued with the request, Bob's privacy settings (§22.6).
            assert len(waiting) == 4 and all(r.ct == b"" and r.sid is None for r in waiting)
            contact = await alice.accept_request(req.request)
            a1 = alice._book.contacts[bytes.fromhex(contact.id)].rid
        # Alice is offline: what Bob flushes on the acceptance stays stored in her mailbox A1.
        await wait_for(bob, ContactAdded)
        await bob.sync()
        await bob.send(pending.id, "x" * 300)  # the same text, sent after acceptance
        await bob.sync()
    now = int(time.time())
    stored = await store.fetch(a1, 0, 10, 10**6, now)
    sizes = [len(e.ct) for e in stored]
    assert len(sizes) == 5  # the settings, the three texts, the later text
    # The attack was: sizes[:3] in the request's class, that of prekey messages (the smallest
    # holds a 1,134-byte handshake header: 2,048 bytes or more), on the new mailbox.
    assert PREKEY_MESSAGE_OVERHEAD > 1024
    assert all(s < 2048 for s in sizes), sizes
    assert sizes[3] == sizes[4]  # the pending one is indistinguishable from a later one
    async with Client.open(tmp_path / "alice.keystore", PASS, config=FAST) as alice:
        got = [(await wait_for(alice, MessageReceived)).message.text for _ in range(4)]
        assert got == [*texts, "x" * 300]


async def test_pending_request_session_holds_no_signed_prekey(tmp_path: Path, relay: str) -> None:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        inv = await alice.create_invitation()
        await bob.send_request(inv.link)
        req = await wait_for(alice, RequestReceived)
        address = next(iter(alice._book.addresses.values()))
        spk = alice._prekeys.load(PreKeyKind.X25519_SIGNED, address.spk)
        assert spk is not None
        qid = bytes.fromhex(req.request.id)
        record = alice._book.requests[qid].session
        # The attack: a keystore read while the request waits yields the SPK private key
        # (even once the address rotated and deleted it). Not any more:
        assert spk.keypair.private_bytes() not in record
        assert SessionRecord.from_bytes(record).dhs_private is None
    async with Client.open(
        tmp_path / "alice.keystore", PASS, config=replace(FAST, connect=False)
    ) as again:
        held = [v for ns in ("requests", "contacts") for _, v in again._book.ks.items(ns)]
        assert held and all(spk.keypair.private_bytes() not in v for v in held)


# --- contact requests can be reported (issue 20, finding 5) ----------------------------


async def _plant_request(http: HTTPTransport, sid: bytes, fc: bytes) -> None:
    """Deposit an envelope with ``fc`` to the address ``sid`` as any requester can (paying
    the address's proof of work): what a recipient who invents a request does."""
    eid = os.urandom(16)
    chal = await http.pow_challenge(sid)
    pow_ = None
    if chal.bits:
        pow_ = (chal.nonce, await asyncio.to_thread(solve_pow, sid, chal.nonce, eid, chal.bits))
    await http.deposit(sid, os.urandom(2048), eid=eid, fc=fc, hdl=os.urandom(16), pow=pow_)


async def test_a_request_report_verifies_and_forged_ones_do_not(
    tmp_path: Path,
    make_relay,  # type: ignore[no-untyped-def]
    relay_config: RelayConfig,
) -> None:
    url, server = await make_relay(relay_config)
    moderation = server.app[service_key].moderation
    intro = "send me your address or I will find it"
    async with (
        make(tmp_path, "alice", url) as alice,
        make(tmp_path, "mal", url) as mallory,
        make(tmp_path, "carol", url) as carol,
    ):
        inv = await alice.create_invitation()
        await mallory.send_request(inv.link, intro=intro, name="a friend")
        req = (await wait_for(alice, RequestReceived)).request
        qid = bytes.fromhex(req.id)
        raw_evidence = alice._book.requests[qid].ev
        assert raw_evidence is not None
        genuine = ReportEvidence.decode(raw_evidence)
        report_id = await alice.report_request(req, "threats", note="on my public address")
        view = await moderation.get_report(report_id)
        assert view is not None and view.content_type == "req" and view.reason == "threats"
        assert view.text is not None and intro in view.text and "a friend" in view.text
        assert view.sender_key == bytes(mallory.identity).hex()
        assert view.recipient_key == bytes(alice.identity).hex()
        assert view.source_kind == "handle" and "request" in view.verified
        assert view.verified["sender"].startswith("AMF signature verified")
        with pytest.raises(RelayRejected) as dup:
            await alice.report_request(req, "threats")
        assert dup.value.code == "DUPLICATE"
        (address,) = alice._book.addresses.values()
        aid = alice._book.requests[qid].address
        assert alice.reports() == [(report_id, aid.hex(), "open")]
        # The moderator bans the handle on the address; Alice learns the outcome.
        await moderation.resolve(report_id, action="revoke", moderator="test")
        await alice.check_reports()
        resolved = await wait_for(alice, ReportResolved)
        assert resolved.report_id == report_id and resolved.action == "revoke"
        assert alice.reports() == [(report_id, aid.hex(), "resolved")]
        await alice.decline_request(req)
        with pytest.raises(LocalProtocolError):
            await alice.report_request(req, "threats")  # declined: its evidence is gone
        # Mallory cannot ask again there (the handle is banned).
        await mallory.send_request(inv.link, intro="again")
        warn = await wait_for(mallory, ClientWarning, lambda w: w.kind == "request_refused")
        assert warn.detail == "AUTH"

        # The forgeries, by the recipient. Alice invents a request from Carol (whose
        # identity key she knows), plants it in her own address like any requester, reads
        # back the relay's tag as the address's owner and reports it.
        second = await alice.create_invitation(new_address=True)
        other = next(a for a in alice._book.addresses.values() if a.sid == second.sid)
        invented = ContactRequestContent(
            reply=os.urandom(16), cap=os.urandom(32), name="carol", intro="something vile"
        ).encode()
        fk = os.urandom(32)
        fc = franking_commit(
            fk, sender=bytes(carol.identity), recipient=bytes(alice.identity), message=invented
        )
        kid, m = alice._ops._modkeys.current()
        forged = forge_as_recipient(
            alice._book.identity, carol.identity, m, kid, fc, rng=os.urandom
        )
        verify_as_recipient(carol.identity, alice.identity, m, kid, fc, forged)  # fools Alice only
        await alice.close()
        async with aiohttp.ClientSession() as s:
            http = HTTPTransport(s, url)
            await _plant_request(http, address.sid, fc)
            (planted,), _ = await http.fetch(credential(address.rid, address.owner))
            assert planted.ft is not None and planted.fx is not None
            before = await moderation.list_reports(status=None)

            async def attempt(mailbox: AddressRecord = address, **change: object) -> str:
                args: dict[str, object] = {
                    "msg": invented,
                    "fk": fk,
                    "fc": fc,
                    "ft": planted.ft,
                    "fx": planted.fx,
                    "sender": bytes(carol.identity),
                    "recipient": bytes(alice.identity),
                    "amf": forged,
                    "akid": kid,
                    "reason": "harassment",
                }
                args.update(change)
                with pytest.raises(RelayRejected) as refused:
                    await http.report(credential(mailbox.rid, mailbox.owner), **args)  # type: ignore[arg-type]
                return refused.value.code

            assert await attempt() == "FRANKING"  # the recipient's own AMF signature
            assert await attempt(amf=os.urandom(448)) == "FRANKING"
            assert await attempt(amf=None, akid=None) == "FRANKING"
            assert await attempt(amf=genuine.amf, akid=genuine.akid) == "FRANKING"
            real = {
                "msg": genuine.msg,
                "fk": genuine.fk,
                "fc": genuine.fc,
                "ft": genuine.ft,
                "fx": genuine.fx,
                "sender": genuine.sender,
                "amf": genuine.amf,
                "akid": genuine.akid,
            }
            # The genuine request, its intro altered: the commitment does not open.
            altered = genuine.msg.replace(b"find it", b"hurt u!")
            assert altered != genuine.msg
            assert await attempt(**{**real, "msg": altered}) == "FRANKING"
            # The genuine request reported from another address of Alice: the tag names the
            # address it was delivered to.
            assert await attempt(other, **real) == "FRANKING"
            # The genuine request "from Carol": the commitment and the AMF name Mallory.
            assert await attempt(**{**real, "sender": bytes(carol.identity)}) == "FRANKING"
            assert await moderation.list_reports(status=None) == before
