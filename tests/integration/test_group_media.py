"""Files, typing and receipts in groups through the Client API (protocol.md §25.5, §26.8),
real clients on a real in-process relay (SQLite): one upload reaches every member, media off
in the group is refused by the sender and by the receivers."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from clientkit import befriend, make, wait_for

from clientlib.chat.groups import describe
from clientlib.client import Client, ClientWarning, MediaRefused
from clientlib.client._receipts import ReceiptDelay
from clientlib.client.types import GroupEvent
from relay.config import RelayConfig

#: Receipts wait 0.4 to 1 s here (the default is 1 to 60 s, mean 10 s).
FAST_RECEIPTS = ReceiptDelay(minimum=0.4, mean=0.5, maximum=1.0)


@pytest.fixture
def backend() -> str:
    return "sqlite"


def group_event(kind: str, **match: object):  # type: ignore[no-untyped-def]
    def pred(e: GroupEvent) -> bool:
        return e.kind == kind and all(getattr(e, k) == v for k, v in match.items())

    return pred


@pytest.fixture
async def trio(tmp_path: Path, relay: str) -> AsyncIterator[tuple[Client, Client, Client]]:
    """alice (owner), bob and carol, all active members of the group ``g``."""
    async with (
        make(tmp_path, "alice", relay, receipt_delay=FAST_RECEIPTS) as alice,
        make(tmp_path, "bob", relay, receipt_delay=FAST_RECEIPTS) as bob,
        make(tmp_path, "carol", relay, receipt_delay=FAST_RECEIPTS) as carol,
    ):
        _, a_b = await befriend(bob, alice)
        _, a_c = await befriend(carol, alice)
        await alice.create_group("g")
        for who, cid in ((bob, a_b), (carol, a_c)):
            await alice.invite_to_group("g", cid)
            inv = await wait_for(who, GroupEvent, group_event("invited"))
            assert inv.invite_id is not None
            await who.accept_group(inv.invite_id)
            await wait_for(who, GroupEvent, group_event("joined"))
        await wait_for(bob, GroupEvent, group_event("member_added", member="carol"))
        for c in (alice, bob, carol):
            await c.sync()
        yield alice, bob, carol


async def test_a_group_file_is_uploaded_once_and_reaches_every_member(
    trio: tuple[Client, Client, Client], tmp_path: Path, relay_config: RelayConfig
) -> None:
    alice, bob, carol = trio
    data = os.urandom(300_000)
    src = tmp_path / "report.bin"
    src.write_bytes(data)
    sent = await bob.send_group_file("g", src, caption="the numbers")
    assert sent.state == "sent" and sent.attachment is not None
    blobs = list((Path(relay_config.data_dir) / "blobs").glob("*.blob"))
    assert len(blobs) == 1  # one upload for the whole group
    assert data not in blobs[0].read_bytes()
    for who in (alice, carol):
        got = await wait_for(who, GroupEvent, group_event("message", member="bob"))
        assert got.text == "the numbers" and got.attachment is not None
        a = got.attachment
        assert (a.name, a.size, a.group_id) == ("report.bin", len(data), sent.group_id)
        out = tmp_path / f"{who.name}-out"
        out.mkdir()
        path = await who.download(a, out)
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
        # It stays in the group's history, downloadable again.
        [kept] = [m for m in who.group_messages("g") if m.attachment is not None]
        assert kept.attachment == a
    assert len(list((Path(relay_config.data_dir) / "blobs").glob("*.blob"))) == 1


async def test_media_off_in_the_group_is_refused_by_sender_and_receivers(
    trio: tuple[Client, Client, Client], tmp_path: Path, relay_config: RelayConfig
) -> None:
    alice, bob, carol = trio
    src = tmp_path / "x.txt"
    src.write_bytes(b"x" * 5000)
    # carol got a file while media was on ...
    await bob.send_group_file("g", src)
    got = await wait_for(carol, GroupEvent, group_event("message", member="bob"))
    assert got.attachment is not None
    await alice.set_group_settings("g", media=False)
    for who in (bob, carol):
        await wait_for(who, GroupEvent, group_event("settings"))
    blob_dir = Path(relay_config.data_dir) / "blobs"
    before = sorted(blob_dir.glob("*"))
    with pytest.raises(MediaRefused):
        await bob.send_group_file("g", src)
    assert sorted(blob_dir.glob("*")) == before  # nothing uploaded
    # ... and never downloads it once the group turned media off.
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(MediaRefused):
        await carol.download(got.attachment, out)
    assert not os.listdir(out)
    # A file from a member whose client ignores the setting is dropped unread.
    live = bob._groups.live[bob._groups.resolve("g")]
    live.state.settings = dataclasses.replace(live.state.settings, media=1)
    await bob.send_group_file("g", src, caption="ignored")
    warn = await wait_for(carol, ClientWarning, lambda w: w.kind == "content_refused")
    assert "media" in warn.detail
    assert [m.text for m in carol.group_messages("g")] == [""]  # only the first file


def _stored_rows(cfg: RelayConfig) -> tuple[int, int]:
    """Envelopes and dedupe records in the relay's SQLite file (both change with every
    stored deposit, even one acknowledged since)."""
    db = sqlite3.connect(f"file:{cfg.resolved_sqlite_path()}?mode=ro", uri=True)
    try:
        return tuple(
            db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("envelopes", "dedupe")
        )  # type: ignore[return-value]
    finally:
        db.close()


async def _events_until(client: Client, pred: Callable[[object], bool]) -> list[object]:
    seen: list[object] = []
    async with asyncio.timeout(15):
        async for ev in client.events():
            seen.append(ev)
            if pred(ev):
                return seen
    raise AssertionError("closed")


async def test_group_typing_reaches_connected_members_and_is_never_stored(
    trio: tuple[Client, Client, Client], relay_config: RelayConfig
) -> None:
    alice, bob, carol = trio
    before = _stored_rows(relay_config)
    assert await carol.group_typing("g")
    for who in (alice, bob):
        await wait_for(who, GroupEvent, group_event("typing", member="carol"))
    assert not await carol.group_typing("g")  # throttled: a keep-alive at most every 5 s
    assert await carol.group_typing("g", False)
    for who in (alice, bob):
        await wait_for(who, GroupEvent, group_event("stopped_typing", member="carol"))
    stored, dedupe = _stored_rows(relay_config)
    assert dedupe == before[1] and stored <= before[0]  # online-only: nothing stored
    # Bob turns typing off for the group: he sends none and shows none.
    await bob.set_group_typing("g", False)
    assert not await bob.group_typing("g")
    assert await carol.group_typing("g")
    await wait_for(alice, GroupEvent, group_event("typing", member="carol"))
    # A message from carol ends her indicator.
    await carol.send_group("g", "done")
    seen = await _events_until(alice, group_event("message", member="carol"))
    assert any(isinstance(e, GroupEvent) and e.kind == "stopped_typing" for e in seen)
    seen = await _events_until(bob, group_event("message", member="carol"))
    assert not any(isinstance(e, GroupEvent) and "typing" in e.kind for e in seen)


def test_listen_shows_group_typing() -> None:
    assert describe(GroupEvent("ab", "typing", member="carol"), "g") == "[g] carol is typing…"
    assert describe(GroupEvent("ab", "stopped_typing", member="carol"), "g") == (
        "[g] carol stopped typing"
    )
    ev = GroupEvent("ab", "receipt", member="bob", text="read", message_id="3f2a" * 8)
    assert describe(ev, "g") == "[g] bob: read (your message 3f2a)"


def _deposits_to(cfg: RelayConfig, client: Client) -> int:
    """Envelopes ever stored (dedupe records) in ``client``'s one group mailbox."""
    [live] = client._groups.live.values()
    db = sqlite3.connect(f"file:{cfg.resolved_sqlite_path()}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT COUNT(*) FROM dedupe JOIN mailboxes ON mailboxes.id = dedupe.mbox"
            " WHERE mailboxes.rid = ?",
            (live.rec.rid,),
        ).fetchone()
        return int(row[0])
    finally:
        db.close()


async def test_group_receipts_go_to_the_author_alone_batched(
    trio: tuple[Client, Client, Client], relay_config: RelayConfig
) -> None:
    alice, bob, carol = trio
    before = _deposits_to(relay_config, alice)
    c_before = _deposits_to(relay_config, carol)
    sent = [await alice.send_group("g", f"m{i}") for i in range(3)]
    ids = {e.message_id for e in sent}
    for who in (bob, carol):
        for _ in range(3):
            await wait_for(who, GroupEvent, group_event("message", member="alice"))
    got = set()
    while len(got) < 6:  # a delivery receipt per message from each of bob and carol
        ev = await wait_for(alice, GroupEvent, group_event("receipt", text="delivered"))
        assert ev.message_id in ids
        got.add((ev.member, ev.message_id))
    # Batched: one direct message from each member for the three ids (not one per message).
    assert _deposits_to(relay_config, alice) - before == 2
    assert await bob.mark_group_read("g") == 3
    assert await bob.mark_group_read("g") == 0  # each message is read once
    for _ in range(3):
        ev = await wait_for(alice, GroupEvent, group_event("receipt", member="bob", text="read"))
        assert ev.message_id in ids
    first = sent[0].message_id
    assert first is not None
    assert sorted(alice.group_receipts("g", first)) == [("bob", "read"), ("carol", "delivered")]
    # Carol's mailbox got alice's three messages and none of bob's receipts: receipts go to
    # the author alone.
    assert _deposits_to(relay_config, carol) - c_before == 3
    # Receipts off: carol sends none, neither delivery nor read.
    await carol.set_group_receipts("g", False)
    to_alice, to_bob = _deposits_to(relay_config, alice), _deposits_to(relay_config, bob)
    await bob.send_group("g", "from bob")
    await wait_for(carol, GroupEvent, group_event("message", member="bob"))
    assert await carol.mark_group_read("g") == 4
    await asyncio.sleep(1.3)  # past the longest receipt delay
    assert _deposits_to(relay_config, alice) == to_alice + 1  # bob's message only
    assert _deposits_to(relay_config, bob) == to_bob + 1  # alice's delivery receipt only
