"""Groups through the Client API (protocol.md §26): real clients on a real in-process relay
(SQLite; tests/e2e/test_groups_e2e.py runs both backends in separate processes, with offline
catch-up across a relay restart)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from clientkit import befriend, make, wait_for

from clientlib.client import Client, ClientWarning
from clientlib.client.types import GroupEvent
from clientlib.errors import LocalProtocolError, RelayRejected


def group_event(kind: str, **match: object):  # type: ignore[no-untyped-def]
    def pred(e: GroupEvent) -> bool:
        return e.kind == kind and all(getattr(e, k) == v for k, v in match.items())

    return pred


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_invite_accept_talk_remove_leave(tmp_path: Path, relay: str) -> None:
    async with (
        make(tmp_path, "alice", relay) as alice,
        make(tmp_path, "bob", relay) as bob,
        make(tmp_path, "carol", relay) as carol,
        make(tmp_path, "dave", relay) as dave,
    ):
        _, a_b = await befriend(bob, alice)
        _, a_c = await befriend(carol, alice)
        _, a_d = await befriend(dave, alice)
        g = await alice.create_group("friends")
        assert (g.role, g.members, g.status) == ("owner", 1, "active")

        # Consent: an invitation alone gives nothing; dave declines.
        await alice.invite_to_group("friends", a_d)
        inv = await wait_for(dave, GroupEvent, group_event("invited"))
        assert inv.text == "friends" and inv.invite_id is not None
        assert dave.groups() == []
        await dave.decline_group(inv.invite_id)
        await wait_for(alice, GroupEvent, group_event("declined"))
        assert dave.group_invitations() == []

        for who, cid in ((bob, a_b), (carol, a_c)):
            await alice.invite_to_group("friends", cid)
            inv = await wait_for(who, GroupEvent, group_event("invited"))
            assert inv.invite_id is not None
            joining = await who.accept_group(inv.invite_id)
            assert joining.status == "joining"
            await wait_for(who, GroupEvent, group_event("joined"))
        assert [m.name for m in alice.group_members("friends")] == ["alice", "bob", "carol"]
        assert len(carol.group_members("friends")) == 3
        await wait_for(bob, GroupEvent, group_event("member_added", member="carol"))

        # Talk: one upload reaches both others.
        await alice.send_group("friends", "hello group")
        for who in (bob, carol):
            got = await wait_for(who, GroupEvent, group_event("message", member="alice"))
            assert got.text == "hello group"
        await carol.send_group("friends", "hi from carol")
        for who in (alice, bob):
            got = await wait_for(who, GroupEvent, group_event("message", member="carol"))
            assert got.text == "hi from carol"

        # Remove bob: he learns it, then gets nothing readable and his deposits are refused.
        await alice.remove_from_group("friends", "bob")
        await wait_for(bob, GroupEvent, group_event("removed"))
        await wait_for(carol, GroupEvent, group_event("member_removed", member="bob"))
        assert bob.group("friends").status == "removed"
        with pytest.raises(RelayRejected) as info:
            await bob.send_group("friends", "still here?")
        assert info.value.code == "AUTH"
        await alice.send_group("friends", "after bob")
        got = await wait_for(carol, GroupEvent, group_event("message", text="after bob"))
        assert got.member == "alice"
        await carol.send_group("friends", "carol after bob")
        await wait_for(alice, GroupEvent, group_event("message", text="carol after bob"))
        assert [m.text for m in bob.group_messages("friends")] == ["hello group", "hi from carol"]

        # Carol leaves; alice alone.
        await carol.leave_group("friends")
        await wait_for(alice, GroupEvent, group_event("member_left", member="carol"))
        assert [m.name for m in alice.group_members("friends")] == ["alice"]
        assert carol.group("friends").status == "left"
        with pytest.raises(LocalProtocolError):
            await carol.send_group("friends", "gone")


async def test_forged_and_replayed_input_is_dropped(tmp_path: Path, relay: str) -> None:
    """A log entry signed by a non-admin and a replayed message are dropped with a warning."""
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        _, a_b = await befriend(bob, alice)
        await alice.create_group("g")
        await alice.invite_to_group("g", a_b)
        inv = await wait_for(bob, GroupEvent, group_event("invited"))
        assert inv.invite_id is not None
        await bob.accept_group(inv.invite_id)
        await wait_for(bob, GroupEvent, group_event("joined"))
        # Bob (a member, not an admin) tries to remove alice's role or add settings.
        with pytest.raises(LocalProtocolError):
            await bob.set_group_settings("g", post="admins")
        # A member's forged entry, sent anyway at the crypto layer, is refused by alice.
        groups = bob._groups
        gid = groups.resolve("g")
        live = groups.live[gid]
        forged = live.state.next_entry("set", [["admins", 1, 0]], live.rec.keys)
        await groups._control_with(live, forged, groups._others(live))
        warn = await wait_for(alice, ClientWarning, lambda w: w.kind == "group_dropped")
        assert warn.detail == "not an admin"
        assert alice.group("g").post == "all"
        # A replayed message (the same envelope deposited again under a new eid) is dropped.
        ag = alice._groups
        sent: list[bytes] = []
        upload = ag._fan

        async def keep(entries, ct, eid=None, **kw):  # type: ignore[no-untyped-def]
            sent.append(ct)
            return await upload(entries, ct, eid, **kw)

        ag._fan = keep  # type: ignore[method-assign]
        await alice.send_group("g", "once")
        ag._fan = upload  # type: ignore[method-assign]
        await wait_for(bob, GroupEvent, group_event("message", text="once"))
        bob_sid = live.rec.sid
        await upload([(bob_sid, ag._cap(ag.live[gid], bob_sid))], sent[-1])
        warn = await wait_for(bob, ClientWarning, lambda w: w.kind == "group_dropped")
        assert warn.detail == "replayed or too old"
        assert [m[2] for m in groups.live[gid].rec.msgs].count("once") == 1


async def test_a_message_written_offline_goes_out_on_connect(tmp_path: Path, relay: str) -> None:
    """Group messages are durable before the upload: written offline, they go out in order
    on the next connect (same eids, so nothing twice)."""
    async with make(tmp_path, "bob", relay) as bob:
        alice = make(tmp_path, "alice", relay)
        config = alice._config
        async with alice:
            _, a_b = await befriend(bob, alice)
            await alice.create_group("g")
            await alice.invite_to_group("g", a_b)
            inv = await wait_for(bob, GroupEvent, group_event("invited"))
            assert inv.invite_id is not None
            await bob.accept_group(inv.invite_id)
            await wait_for(bob, GroupEvent, group_event("joined"))
            await alice.sync()
        offline = dataclasses.replace(config, connect=False)
        path, pw = tmp_path / "alice.keystore", b"pw-alice long test passphrase"
        async with Client.open(path, pw, config=offline) as alice:
            sent = [await alice.send_group("g", f"offline {i}") for i in range(3)]
            assert {e.state for e in sent} == {"queued"}
        async with Client.open(path, pw, config=config) as alice:
            got = [await wait_for(bob, GroupEvent, group_event("message")) for _ in range(3)]
            assert [e.text for e in got] == ["offline 0", "offline 1", "offline 2"]
            await alice.sync()
            assert alice._groups.live[alice._groups.resolve("g")].rec.out == []
            assert (await alice.send_group("g", "online")).state == "sent"
