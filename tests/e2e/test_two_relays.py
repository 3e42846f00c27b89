"""Acceptance (issue 16, protocol.md §27.1): contacts on different relays.

Two relay processes on loopback, each with its own SQLite data. Alice and Carol use relay A,
Bob relay B. Bob answers Alice's invitation (which names relay A): his request goes to A,
his mailbox for Alice's answer stays on B, and from then on each side deposits on the other's
relay. Covered: messages both ways, offline catch-up, a restart of either relay (the other
relay's traffic goes on; what waited for the restarted relay leaves once it is back), and the
relay URL a peer names in its request is checked like any other.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from clientkit import befriend, make, wait_for
from liverelay import RelayProcess, start_relay

from clientlib.client import Client, DeliveryChanged, MessageReceived
from clientlib.client.content import ContactRequestContent, decode_content
from clientlib.client.invite import InvalidInvitation, Invitation
from clientlib.client.relayurl import InvalidRelayUrl, normalize_relay_url
from clientlib.errors import WireError


@pytest.fixture
def relays(tmp_path: Path):
    a, b = start_relay(tmp_path, "relay-a"), start_relay(tmp_path, "relay-b")
    yield a, b
    a.stop()
    b.stop()


async def _texts(client: Client, n: int, timeout: float = 20) -> list[str]:
    got: list[str] = []
    while len(got) < n:
        ev = await wait_for(client, MessageReceived, timeout=timeout)
        got.append(ev.message.text)
    return got


async def _sent(client: Client, mid: str, timeout: float = 20) -> None:
    await wait_for(
        client, DeliveryChanged, lambda e: e.message_id == mid and e.state == "sent", timeout
    )


async def test_contacts_on_two_relays(tmp_path: Path, relays: tuple[RelayProcess, RelayProcess]):
    relay_a, relay_b = relays
    alice = make(tmp_path, "alice", relay_a.url)
    bob = make(tmp_path, "bob", relay_b.url)
    carol = make(tmp_path, "carol", relay_a.url)
    async with alice, carol:
        async with bob:
            inv = await alice.create_invitation()
            assert normalize_relay_url(Invitation.parse(inv.link).relay_url) == normalize_relay_url(
                relay_a.url
            )
            a_bob, b_alice = await befriend(alice, bob)
            a_carol, _ = await befriend(alice, carol)
            # Both ways, each deposit on the receiver's relay.
            await bob.send(b_alice, "hello from relay B")
            assert await _texts(alice, 1) == ["hello from relay B"]
            await alice.send(a_bob, "hello from relay A")
            assert await _texts(bob, 1) == ["hello from relay A"]
        # Bob offline: Alice's messages wait at relay B; Bob catches up when he returns.
        for i in range(3):
            await alice.send(a_bob, f"while away {i}")
        async with asyncio.timeout(20):
            await alice.sync()
        bob2 = Client.open(tmp_path / "bob.keystore", b"pw-bob long test passphrase")
        async with bob2:
            assert await _texts(bob2, 3) == [f"while away {i}" for i in range(3)]

            # Relay B restarts: Alice's message for Bob waits in her outbox; her message for
            # Carol (relay A) is not held up by it.
            relay_b.stop()
            held = await alice.send(a_bob, "during B's restart")
            to_carol = await alice.send(a_carol, "to Carol meanwhile")
            await _sent(alice, to_carol.id)
            assert await _texts(carol, 1) == ["to Carol meanwhile"]
            assert alice.messages(a_bob)[-1].state == "queued"
            relay_b.start()
            await _sent(alice, held.id, timeout=40)
            assert await _texts(bob2, 1, timeout=40) == ["during B's restart"]

            # Relay A restarts: Bob's message waits, then reaches Alice, whose connection to
            # A comes back and catches up.
            relay_a.stop()
            await bob2.send(b_alice, "during A's restart")
            await asyncio.sleep(0.5)
            relay_a.start()
            assert await _texts(alice, 1, timeout=40) == ["during A's restart"]
            await bob2.send(b_alice, "after")
            assert await _texts(alice, 1) == ["after"]
            await alice.send(a_bob, "both relays back")
            assert await _texts(bob2, 1) == ["both relays back"]
            out = [m for m in alice.messages(a_bob) if m.direction == "out"]
            assert len(out) == 6
            assert all(m.state in ("sent", "delivered", "read") for m in out)


def test_relay_urls_are_checked():
    good = {
        "http://127.0.0.1:7480/": "http://127.0.0.1:7480",
        "HTTPS://Relay.Example.org:443/r/": "https://relay.example.org/r",
        "http://[::1]:8080": "http://[::1]:8080",
        "http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion": (
            "http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion"
        ),
    }
    for url, norm in good.items():
        assert normalize_relay_url(url) == norm
    bad = [
        "",
        "relay.example.org",
        "ftp://relay.example.org",
        "ws://relay.example.org",
        "file:///etc/passwd",
        "http://user:pw@relay.example.org",
        "http://relay.example.org/?q=1",
        "http://relay.example.org/#x",
        "http://relay.example.org:0",
        "http://relay.example.org:99999",
        "http://relay .example.org",
        "http://relay..example.org",
        "http://rélay.example.org",
        "http://relay.example.org/%2e%2e",
        "http://" + "a" * 250 + ".org",
        "http://[::zz]",
    ]
    for url in bad:
        with pytest.raises(InvalidRelayUrl):
            normalize_relay_url(url)
    # An invitation link with a bad relay URL is no invitation.
    sid, key = bytes(16), bytes(32)
    for url in ("http://user@relay.example.org", "http://relay..example.org"):
        with pytest.raises(InvalidInvitation):
            Invitation.parse(Invitation(url, sid, key).link)


def test_a_request_naming_a_bad_relay_is_malformed():
    ok = ContactRequestContent(
        reply=bytes(16), cap=bytes(32), relay="http://relay.example.org:7480/"
    ).encode()
    decoded = decode_content(ok)
    assert isinstance(decoded, ContactRequestContent)
    assert decoded.relay == "http://relay.example.org:7480"
    import msgpack

    for relay in ("file:///etc/passwd", "http://u@x.org", 7, b"http://x.org", "x" * 300):
        raw = b"\x01" + msgpack.packb(
            {"t": "req", "reply": bytes(16), "cap": bytes(32), "relay": relay}, use_bin_type=True
        )
        with pytest.raises(WireError):
            decode_content(raw)
