"""The groups inbox path with real crypto and no relay (protocol.md §26.5-§26.6): envelopes
are handed to :meth:`Groups.on_envelope` as the inbox would. A sender key that arrives before
the log names its key is kept and adopted once an ``add`` names it; one from a key the log
never names opens nothing."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any

import pytest

from clientlib.client._book import AddressBook
from clientlib.client._group_records import GroupRecord, _Live, _pack
from clientlib.client._groups import BUCKETS, OVERHEAD, Groups
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client.types import ClientEvent, ClientWarning, GroupEvent
from clientlib.crypto.group import (
    GroupKeys,
    GroupSettings,
    GroupState,
    Member,
    SenderChain,
    seal_direct,
    seal_message,
)
from clientlib.crypto.group_frank import frank_group_text, group_content
from clientlib.crypto.padding import pad
from clientlib.crypto.primitives import ed25519_public_from_seed
from clientlib.wire.frames import Boundaries, StoredEnvelope
from relay.amf import judge_key

#: Our relay's moderator key (a real AMF judge key from a random franking key).
JUDGE = judge_key(os.urandom(32))
KID = 7


def env(ct: bytes, fc: bytes | None = None) -> StoredEnvelope:
    return StoredEnvelope(seq=1, eid=os.urandom(16), ts=0, flags=0, ct=ct, fc=fc)


def member(keys: GroupKeys, role: str, name: str) -> Member:
    return Member(
        ed25519_public_from_seed(os.urandom(32)), keys.gpk, keys.xpk, os.urandom(16), role, name
    )


def direct(sender: GroupKeys, gid: bytes, to: GroupKeys, obj: list[Any]) -> bytes:
    body = pad(_pack(obj), overhead=OVERHEAD[3], buckets=BUCKETS)
    return seal_direct(sender, gid, to.xpk, body, os.urandom)


def message(sender: GroupKeys, gid: bytes, chain: SenderChain, text: str) -> StoredEnvelope:
    """A franked group text (§26.9) as the relay delivers it (with its ``fc``)."""
    content = group_content(os.urandom(16), 0, text)
    franked = frank_group_text(
        sender.sign_seed, sender.gpk, gid, content, KID, JUDGE.public, os.urandom
    )
    body = pad(franked.plain, overhead=OVERHEAD[1], buckets=BUCKETS)
    return env(seal_message(sender, gid, chain, body), franked.fc)


async def test_an_early_sender_key_waits_for_the_log() -> None:
    book = AddressBook(rng=os.urandom, boundaries=Boundaries(size=4096, att=0, day=3, pow=0))
    book.attach(book.create(None, b"", relay_url="http://x", name="c", kdf=(1, 1)))
    started: list[Coroutine[Any, Any, None]] = []
    cache = ModeratorKeyCache()
    cache.set(((KID, JUDGE.public),), 0)
    # No relay: follow-ups are collected, not run; only the moderator-key cache is there.
    link = SimpleNamespace(relays=SimpleNamespace(modkeys=lambda relay: cache))
    groups = Groups(
        book,
        link,  # type: ignore[arg-type]
        seal_pairwise=lambda cid, content: None,
        emit=lambda ev: None,
        now=lambda: 0,
        spawn=started.append,
        wake_outbox=lambda: None,
    )
    a, b, c, stranger = (GroupKeys.generate(os.urandom) for _ in range(4))
    gid, es = os.urandom(16), os.urandom(32)
    ma, mb, mc = member(a, "owner", "a"), member(b, "member", "b"), member(c, "member", "c")
    state = GroupState(gid=gid)
    log = []
    for kind, body in (
        ("create", ["g", GroupSettings().encode(), ma.encode()]),
        ("add", [mb.encode()]),
        ("add", [mc.encode()]),
    ):
        entry = state.next_entry(kind, body, a)
        state.apply(entry)
        log.append(entry.encode())
    rec = GroupRecord(
        gid, c.sign_seed, c.dh_private, os.urandom(16), mc.sid, os.urandom(32), "c", "joining"
    )
    rec.inviter = a.gpk
    groups.live[gid] = _Live(rec, GroupState(gid=gid))
    events: list[ClientEvent] = []

    # B's and a stranger's sender keys arrive before the welcome (other mailbox order).
    b_chain, s_chain = SenderChain.new(0, 0, os.urandom), SenderChain.new(0, 0, os.urandom)
    groups.on_envelope(gid, env(direct(b, gid, c, ["sk", *b_chain.distribution()])), events)
    groups.on_envelope(gid, env(direct(stranger, gid, c, ["sk", *s_chain.distribution()])), events)
    assert events == [] and set(rec.early) == {b.gpk, stranger.gpk} and rec.peers == {}

    # The welcome (in two parts) names B: its key is adopted; the stranger's stays aside.
    groups.on_envelope(gid, env(direct(a, gid, c, ["wel", 0, es, 2, log[:2]])), events)
    assert rec.status == "joining" and b.gpk in rec.peers
    groups.on_envelope(gid, env(direct(a, gid, c, ["wel", 0, es, 2, log[2:]])), events)
    assert rec.status == "active" and set(rec.early) == {stranger.gpk}
    assert [e.kind for e in events if isinstance(e, GroupEvent)] == ["joined"]
    assert len(started) == 1  # the follow-up: our capability and sender key, at the relay
    with pytest.raises(AttributeError):  # there is none here
        await started[0]

    events.clear()
    groups.on_envelope(gid, message(b, gid, b_chain, "hello from b"), events)
    groups.on_envelope(gid, message(stranger, gid, s_chain, "let me in"), events)
    got = [(e.kind, e.member, e.text) for e in events if isinstance(e, GroupEvent)]
    assert got == [("message", "b", "hello from b")]
    warned = [e.detail for e in events if isinstance(e, ClientWarning)]
    assert warned == ["not a member"]
    assert len(rec.ev) == 1  # report evidence of b's message

    # Revision 16 (§26.9): an unfranked text, a delivered fc that is not the sender's, and
    # a text franked under a moderator key our relay does not publish are dropped, and
    # nothing is shown or kept.
    events.clear()
    plain = pad(
        _pack(["text", os.urandom(16), 0, "unfranked"]), overhead=OVERHEAD[1], buckets=BUCKETS
    )
    groups.on_envelope(gid, env(seal_message(b, gid, b_chain, plain)), events)
    swapped = message(b, gid, b_chain, "swapped fc")
    groups.on_envelope(gid, env(swapped.ct, os.urandom(32)), events)
    other = judge_key(os.urandom(32))
    franked = frank_group_text(
        b.sign_seed,
        b.gpk,
        gid,
        group_content(os.urandom(16), 0, "x"),
        KID,
        other.public,
        os.urandom,
    )
    body = pad(franked.plain, overhead=OVERHEAD[1], buckets=BUCKETS)
    groups.on_envelope(gid, env(seal_message(b, gid, b_chain, body), franked.fc), events)
    assert not [e for e in events if isinstance(e, GroupEvent)]
    warned = [e.detail for e in events if isinstance(e, ClientWarning)]
    assert warned == ["bad content", "bad franking", "bad franking"]
    assert len(rec.ev) == 1 and len(rec.msgs) == 1
    # The chain did not move past a dropped message: b's next text still opens.
    groups.on_envelope(gid, message(b, gid, b_chain, "still here"), events)
    assert [e.text for e in events if isinstance(e, GroupEvent)] == ["still here"]
