"""Files through clientlib.Client against a real relay (both backends, protocol.md §25):
consent (a contact's media off, a request not yet accepted, the attachment capability at
the relay), and with the relay's blob store: round trips, view-once, disappearing blobs,
stripped images, tampering and reports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clientkit import befriend, make

from clientlib.client import Client, MediaRefused


@pytest.fixture
async def pair(tmp_path: Path, relay: str) -> Any:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        yield alice, bob


async def _until(cond: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def _peer_media(client: Client, contact: str) -> bool | None:
    peer = client.contact(contact).peer_settings
    return None if peer is None else peer.media


async def _caps(client: Client) -> int:
    [(_, info)] = [(label, i) for label, i in await client.relay_holdings() if "contact" in label]
    return info.caps


async def test_media_off_is_refused_by_the_sender_and_unregistered_at_the_relay(
    pair: tuple[Client, Client], tmp_path: Path
) -> None:
    alice, bob = pair
    a_bob, b_alice = await befriend(alice, bob)
    assert await _caps(bob) == 2  # Alice's capability and her attachment capability
    await bob.set_privacy(b_alice, media=False)
    assert await _caps(bob) == 1  # "media off" is enforced by the relay too (§4.8 rev. 8)
    await bob.sync()
    await alice.sync()
    f = tmp_path / "note.txt"
    f.write_bytes(b"hello")
    await _until(lambda: _peer_media(alice, a_bob) is False)  # Bob's setting reached Alice
    with pytest.raises(MediaRefused):
        await alice.send_file(a_bob, f)
    assert alice.messages(a_bob) == []  # nothing stored, nothing queued
    await bob.set_privacy(b_alice, media=True)
    assert await _caps(bob) == 2


async def test_a_contact_that_has_not_accepted_gets_no_file(tmp_path: Path, relay: str) -> None:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        inv = await alice.create_invitation()
        pending = await bob.send_request(inv.link, intro="hi")
        f = tmp_path / "x.bin"
        f.write_bytes(b"x" * 100)
        with pytest.raises(MediaRefused, match="contact address"):
            await bob.send_file(pending.id, f)
        assert bob.messages(pending.id) == []
