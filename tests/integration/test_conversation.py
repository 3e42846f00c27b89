"""Conversation features between two real :class:`Client`s on a relay (both backends):
receipts (batched, delayed, piggy-backed, switched off), typing indicators, disappearing
messages (timer set by either side, expiry in both histories, crypto-shredded), unsend,
edit, reactions and forged references (issue 13)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from clientkit import FAST, befriend, make, wait_for
from test_recall import stored_cts

from clientlib.client import (
    Client,
    ClientWarning,
    DeliveryChanged,
    DisappearingChanged,
    MessageChanged,
    MessageExpired,
    MessageReceived,
    ReceiptDelay,
    StoredMessage,
    TypingChanged,
)
from clientlib.client.content import Unsend
from clientlib.errors import LocalProtocolError
from relay.config import RelayConfig

PW_ALICE = b"pw-alice long test passphrase"
PW_BOB = b"pw-bob long test passphrase"

#: Fast receipts for tests: 0.2 s to 1.5 s, mean 0.5 s.
QUICK = ReceiptDelay(minimum=0.2, mean=0.5, maximum=1.5)


@pytest.fixture
async def pair(tmp_path: Path, relay: str) -> AsyncIterator[tuple[Client, Client, str, str]]:
    opts = {"receipt_delay": QUICK, "receipt_rng": random.Random(7)}
    async with (
        make(tmp_path, "alice", relay, **opts) as alice,
        make(tmp_path, "bob", relay, **opts) as bob,
    ):
        a_bob, b_alice = await befriend(alice, bob)
        yield alice, bob, a_bob, b_alice


def msg(client: Client, contact: str, mid: str, direction: str = "out") -> StoredMessage:
    found = [m for m in client.messages(contact) if m.id == mid and m.direction == direction]
    assert len(found) == 1
    return found[0]


async def until(pred: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


async def test_receipts_batched_delayed_and_read(pair: tuple[Client, Client, str, str]) -> None:
    alice, bob, a_bob, b_alice = pair
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = [await alice.send(a_bob, f"m{i}") for i in range(3)]
    for _ in sent:
        await wait_for(bob, MessageReceived)
    got = [
        await wait_for(alice, DeliveryChanged, lambda e: e.state == "delivered") for _ in range(3)
    ]
    assert {e.message_id for e in got} == {m.id for m in sent}
    # One receipt covered them all, after the minimum delay and within the maximum.
    assert 0.2 <= loop.time() - t0 <= QUICK.maximum + 5
    assert all(msg(alice, a_bob, m.id).state == "delivered" for m in sent)
    # Reading: the read receipt follows the same rule.
    assert await bob.mark_read(b_alice) == 3
    assert await bob.mark_read(b_alice) == 0
    for _ in sent:
        await wait_for(alice, DeliveryChanged, lambda e: e.state == "read")
    assert all(msg(alice, a_bob, m.id).state == "read" for m in sent)


async def test_receipts_piggy_back_on_a_reply(tmp_path: Path, relay: str) -> None:
    slow = ReceiptDelay(minimum=30, mean=40, maximum=50)  # would not leave on its own in time
    async with (
        make(tmp_path, "alice", relay, receipt_delay=slow) as alice,
        make(tmp_path, "bob", relay, receipt_delay=slow) as bob,
    ):
        a_bob, b_alice = await befriend(alice, bob)
        m = await alice.send(a_bob, "ping")
        await wait_for(bob, MessageReceived)
        await bob.send(b_alice, "pong")  # carries the delivery receipt
        ev = await wait_for(alice, DeliveryChanged, lambda e: e.state == "delivered", timeout=10)
        assert ev.message_id == m.id


async def test_receipts_never_when_switched_off(pair: tuple[Client, Client, str, str]) -> None:
    alice, bob, a_bob, b_alice = pair
    # Bob turns delivery and read receipts off: reciprocal, so neither side sends them.
    await bob.set_privacy(b_alice, receipts=False, delivery_receipts=False)
    await bob.sync()
    # (the defaults arrive at acceptance: wait for the change itself)
    await until(lambda: not getattr(alice.contact(a_bob).peer_settings, "receipts", True))
    peer = alice.contact(a_bob).peer_settings
    assert peer is not None and not peer.receipts and not peer.delivery_receipts
    m = await alice.send(a_bob, "no ticks")
    await wait_for(bob, MessageReceived)
    await bob.mark_read(b_alice)
    back = await bob.send(b_alice, "still talking")
    await wait_for(alice, MessageReceived)
    await alice.mark_read(a_bob)
    await asyncio.sleep(QUICK.maximum + 1)
    assert msg(alice, a_bob, m.id).state == "sent"
    assert msg(bob, b_alice, back.id).state == "sent"  # alice sends none to bob either


async def test_typing_reaches_a_connected_peer(pair: tuple[Client, Client, str, str]) -> None:
    alice, bob, a_bob, b_alice = pair
    assert await alice.typing(a_bob) is True
    assert await alice.typing(a_bob) is False  # throttled: the keep-alive comes later
    ev = await wait_for(bob, TypingChanged)
    assert ev == TypingChanged(b_alice, True)
    assert await alice.typing(a_bob, False) is True
    assert await wait_for(bob, TypingChanged) == TypingChanged(b_alice, False)
    # A typing peer's message clears the indicator too.
    await alice.typing(a_bob)
    await wait_for(bob, TypingChanged, lambda e: e.typing)
    await alice.send(a_bob, "done typing")
    assert await wait_for(bob, TypingChanged) == TypingChanged(b_alice, False)
    # Switched off on the receiving side: nothing is sent any more (reciprocal).
    await bob.set_privacy(b_alice, typing=False)
    await bob.sync()

    def typing_off() -> bool:
        peer = alice.contact(a_bob).peer_settings
        return peer is not None and not peer.typing

    await until(typing_off)
    assert await alice.typing(a_bob) is False


async def test_disappearing_messages_vanish_from_both_histories(
    tmp_path: Path, pair: tuple[Client, Client, str, str]
) -> None:
    alice, bob, a_bob, b_alice = pair
    await bob.set_disappearing(b_alice, 2)
    ev = await wait_for(alice, DisappearingChanged)
    assert ev == DisappearingChanged(a_bob, 2, "peer")
    assert alice.contact(a_bob).disappearing == 2
    keep = await alice.send(a_bob, "before")  # sent with the timer: disappears too
    got = await wait_for(bob, MessageReceived)
    assert got.message.timer == 2 and got.message.expires_at is None  # not displayed yet
    await bob.mark_read(b_alice)
    assert msg(bob, b_alice, keep.id, "in").expires_at is not None
    await wait_for(alice, MessageExpired, timeout=10)
    await wait_for(bob, MessageExpired, timeout=10)
    assert alice.messages(a_bob) == [] and bob.messages(b_alice) == []
    # Timer off (set by the other side this time): messages stay.
    await alice.set_disappearing(a_bob, 0)
    await wait_for(bob, DisappearingChanged, lambda e: e.seconds == 0)
    stay = await alice.send(a_bob, "stays")
    await wait_for(bob, MessageReceived)
    assert msg(alice, a_bob, stay.id).timer == 0


async def test_concurrent_timer_changes_converge(pair: tuple[Client, Client, str, str]) -> None:
    alice, bob, a_bob, b_alice = pair
    await asyncio.gather(alice.set_disappearing(a_bob, 3600), bob.set_disappearing(b_alice, 60))
    await wait_for(alice, DisappearingChanged, lambda e: e.by == "peer")
    await asyncio.sleep(0.5)
    assert alice.contact(a_bob).disappearing == bob.contact(b_alice).disappearing == 60


async def test_unsend_edit_react(pair: tuple[Client, Client, str, str]) -> None:
    alice, bob, a_bob, b_alice = pair
    m = await alice.send(a_bob, "typo heer")
    await wait_for(bob, MessageReceived)
    await alice.edit(a_bob, m.id, "typo here")
    ev = await wait_for(bob, MessageChanged)
    assert ev.change == "edited" and ev.message.text == "typo here"
    assert msg(bob, b_alice, m.id, "in").edited_at is not None
    await bob.react(b_alice, m.id, "👍")
    rx = await wait_for(alice, MessageChanged, lambda e: e.change == "reaction")
    assert rx.message.reactions == (("peer", "👍"),)
    await bob.react(b_alice, m.id, "🎉")  # replaces
    rx = await wait_for(alice, MessageChanged, lambda e: e.change == "reaction")
    assert rx.message.reactions == (("peer", "🎉"),)
    await alice.unsend(a_bob, m.id)
    ev = await wait_for(bob, MessageChanged, lambda e: e.change == "deleted")
    gone = msg(bob, b_alice, m.id, "in")
    assert gone.deleted and gone.text == "" and gone.evidence is None
    assert msg(alice, a_bob, m.id).deleted


async def test_forged_references_are_ignored(pair: tuple[Client, Client, str, str]) -> None:
    alice, bob, a_bob, b_alice = pair
    mine = await bob.send(b_alice, "bob's own")
    await wait_for(alice, MessageReceived)
    # Alice's client refuses to unsend Bob's message ...
    with pytest.raises(LocalProtocolError, match="no such message of ours"):
        await alice.unsend(a_bob, mine.id)
    # ... so she crafts the content herself: Bob's client ignores it with a warning.
    ops = alice._ops
    await ops.refresh_moderator_keys()
    async with alice._book.lock:
        ops.seal_and_queue(bytes.fromhex(a_bob), Unsend(ref=bytes.fromhex(mine.id)).encode())
        await alice._book.save()
    alice._outbox.wake()
    w = await wait_for(bob, ClientWarning, lambda e: e.kind == "forged_reference")
    assert w.detail == "not the author message" and w.contact_id == b_alice
    assert msg(bob, b_alice, mine.id).text == "bob's own"


async def test_unsend_of_a_queued_message_never_leaves(tmp_path: Path, relay: str) -> None:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        a_bob, b_alice = await befriend(alice, bob)
        await alice.sync()
    # Offline alice queues a message and unsends it before it ever leaves.
    offline = replace(FAST, connect=False)
    async with Client.open(tmp_path / "alice.keystore", PW_ALICE, config=offline) as alice:
        m = await alice.send(a_bob, "never sent")
        await alice.unsend(a_bob, m.id)
        assert alice._outbox.ready() == []
        assert msg(alice, a_bob, m.id).deleted
    async with Client.open(tmp_path / "alice.keystore", PW_ALICE, config=FAST) as alice:
        await alice.sync()
    async with Client.open(tmp_path / "bob.keystore", PW_BOB, config=FAST) as bob:
        await bob.sync()
        assert bob.messages(b_alice) == []


async def test_unsend_recalls_the_undelivered_envelope(
    tmp_path: Path, relay: str, relay_config: RelayConfig
) -> None:
    """protocol.md §5.10, §22.13: unsending a message its recipient has not fetched yet
    deletes its envelope at the relay (a count of the envelopes in the relay's own storage);
    the recipient, catching up, gets only the ``del``, which it drops without a warning."""
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        a_bob, b_alice = await befriend(alice, bob)
        await asyncio.gather(alice.sync(), bob.sync())
        kept = await alice.send(a_bob, "seen before the unsend")
        await wait_for(bob, MessageReceived)
        await bob.sync()
    async with Client.open(tmp_path / "alice.keystore", PW_ALICE, config=FAST) as alice:
        await alice.sync()
        before = len(stored_cts(relay_config))
        m = await alice.send(a_bob, "recall me before bob looks")
        await alice.sync()
        assert len(stored_cts(relay_config)) == before + 1
        assert alice._book.ks.items("recall"), "the sent envelope is remembered for a recall"
        await alice.unsend(a_bob, m.id)
        await alice.sync()
        # The message's envelope is gone; only the `del` waits for Bob.
        assert len(stored_cts(relay_config)) == before + 1
        assert not [k for k, _ in alice._book.ks.items("recall") if k[16:32].hex() == m.id]
        # An unsend of a message Bob already fetched: its recall finds nothing, the del goes.
        await alice.unsend(a_bob, kept.id)
        await alice.sync()
        assert len(stored_cts(relay_config)) == before + 2
    async with Client.open(tmp_path / "bob.keystore", PW_BOB, config=FAST) as bob:
        warnings: list[ClientWarning] = []

        async def watch() -> None:
            async for ev in bob.events():
                if isinstance(ev, ClientWarning):
                    warnings.append(ev)

        watcher = asyncio.get_running_loop().create_task(watch())
        await asyncio.sleep(0)  # the watcher is reading events before anything arrives
        await bob.sync()
        await until(lambda: msg(bob, b_alice, kept.id, "in").deleted)
        watcher.cancel()
        assert m.id not in {x.id for x in bob.messages(b_alice)}
        assert msg(bob, b_alice, kept.id, "in").deleted
        assert not [w for w in warnings if w.kind == "forged_reference"]
        await bob.sync()
    assert len(stored_cts(relay_config)) == before
