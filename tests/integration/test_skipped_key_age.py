"""Issue 20, finding 5, through real clients and a live relay: a skipped message key older
than ``MAX_SKIPPED_KEY_AGE`` does not decrypt, and sessions without traffic lose such keys
when the client opens its keystore and, while it runs, every ``EXPIRE_INTERVAL_S``.

The attack: an envelope withheld (by the relay, or by whoever holds a copy of it) for longer
than the skipped-key age is delivered late; before the fix its key still opened it, and an
idle session kept that key in the keystore for ever, for whoever later reads the keystore.
Here Bob's client queues envelopes while offline, the test takes some out of his outbox
before they leave (what a relay that withholds them would hold), and deposits them later
with his capability, exactly as his client would have.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from clientkit import FAST, befriend, make, wait_for

import clientlib.client._background as background
from clientlib.client import Client, ClientWarning, MessageReceived
from clientlib.client.state import ContactRecord, OutboxRecord
from clientlib.session import MAX_SKIPPED_KEY_AGE, Session
from clientlib.transport import HTTPTransport

DAY = 86_400


def skipped(client: Client, cid: str) -> int:
    """Skipped keys the session record in the keystore holds."""
    raw = client._book.ks.get("contacts", bytes.fromhex(cid))
    assert raw is not None
    return Session.from_record(ContactRecord.from_bytes(raw).session).skipped_key_count


async def withhold(bob: Client, texts: list[str]) -> list[OutboxRecord]:
    """Bob (offline) writes ``texts``; their sealed envelopes are taken out of his outbox."""
    b_alice = bob.contacts()[0].id
    for text in texts:
        await bob.send(b_alice, text)
    out = []
    async with bob._book.lock:
        for key, raw in bob._book.ks.items("outbox"):
            out.append(OutboxRecord.from_bytes(raw))
            bob._book.ks.delete("outbox", key)
        await bob._book.save()
    assert len(out) == len(texts)
    return out


async def deliver(url: str, rec: OutboxRecord) -> None:
    """Deposit a withheld envelope as Bob's client would (same capability, same eid)."""
    assert rec.sid is not None
    async with aiohttp.ClientSession() as s:
        await HTTPTransport(s, url).deposit(rec.sid, rec.ct, eid=rec.eid, fc=rec.fc, cap=rec.cap)


async def test_an_over_age_skipped_key_does_not_decrypt_and_idle_sessions_drop_them(
    tmp_path: Path, relay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    offset = [0.0]
    clock = {"clock": lambda: time.time() + offset[0]}
    bob_path = tmp_path / "bob.keystore"
    bob_pass = b"pw-bob long test passphrase"
    alice_pass = b"pw-alice long test passphrase"
    async with (
        make(tmp_path, "alice", relay, **clock) as alice,
        make(tmp_path, "bob", relay) as bob,
    ):
        a_bob, _ = await befriend(alice, bob)
        await bob.sync()
    async with Client.open(bob_path, bob_pass, config=replace(FAST, connect=False)) as bob:
        late = await withhold(bob, ["m2", "m3", "m4"])
    async with (
        Client.open(
            tmp_path / "alice.keystore", alice_pass, config=replace(FAST, **clock)
        ) as alice,
        Client.open(bob_path, bob_pass, config=FAST) as bob,
    ):
        await bob.send(bob.contacts()[0].id, "m5")
        got = await wait_for(alice, MessageReceived, lambda e: e.message.text == "m5")
        assert got.message.text == "m5"
        assert skipped(alice, a_bob) == 3  # m2..m4 are on their way (or withheld)
        # Control: within the age a late envelope decrypts (this is what skipped keys are for).
        await deliver(relay, late[0])
        await wait_for(alice, MessageReceived, lambda e: e.message.text == "m2")
        # 28 days and a bit later, in Alice's running client, m3 arrives: a miss.
        offset[0] = MAX_SKIPPED_KEY_AGE + DAY
        await deliver(relay, late[1])
        warn = await wait_for(alice, ClientWarning, lambda w: w.kind == "undecryptable")
        assert warn.contact_id == a_bob
        assert [m.text for m in alice.messages(a_bob) if m.direction == "in"] == ["m5", "m2"]
        assert skipped(alice, a_bob) == 0  # and the m4 key went with it
    # An idle session: keys expire when the client opens the keystore...
    offset[0] = 0.0
    async with Client.open(bob_path, bob_pass, config=replace(FAST, connect=False)) as bob:
        late = await withhold(bob, ["m6", "m7"])
    async with (
        Client.open(
            tmp_path / "alice.keystore", alice_pass, config=replace(FAST, **clock)
        ) as alice,
        Client.open(bob_path, bob_pass, config=FAST) as bob,
    ):
        await bob.send(bob.contacts()[0].id, "m8")
        await wait_for(alice, MessageReceived, lambda e: e.message.text == "m8")
        assert skipped(alice, a_bob) == 2
    offset[0] = MAX_SKIPPED_KEY_AGE + DAY
    async with Client.open(
        tmp_path / "alice.keystore", alice_pass, config=replace(FAST, connect=False, **clock)
    ) as alice:
        assert skipped(alice, a_bob) == 0
    # ... and, in a running client, periodically (every EXPIRE_INTERVAL_S).
    offset[0] = 0.0
    async with Client.open(bob_path, bob_pass, config=replace(FAST, connect=False)) as bob:
        late += await withhold(bob, ["m9"])
    monkeypatch.setattr(background, "EXPIRE_INTERVAL_S", 0.2)
    async with (
        Client.open(
            tmp_path / "alice.keystore", alice_pass, config=replace(FAST, **clock)
        ) as alice,
        Client.open(bob_path, bob_pass, config=FAST) as bob,
    ):
        await bob.send(bob.contacts()[0].id, "m10")
        await wait_for(alice, MessageReceived, lambda e: e.message.text == "m10")
        assert skipped(alice, a_bob) == 1
        offset[0] = MAX_SKIPPED_KEY_AGE + DAY  # no traffic from now on
        async with asyncio.timeout(10):
            while skipped(alice, a_bob):
                await asyncio.sleep(0.1)
        await deliver(relay, late[-1])
        await wait_for(alice, ClientWarning, lambda w: w.kind == "undecryptable")
        assert "m9" not in [m.text for m in alice.messages(a_bob)]
