"""Reports of group messages (protocol.md §26.9) on an in-process relay with its moderation
page: three real clients in a group, a genuine report verified and stored, forged ones
refused with FRANKING and nothing stored, the moderator's resolution over HTTP reaching the
reporter, and the group's admin removing the reported member."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from clientkit import befriend, make, wait_for
from reportkit import ADMIN_TOKENS, ALICE_TOKEN, AdminSession

from clientlib.client import Client, ReportResolved
from clientlib.client._group_reports import group_credential, received_evidence
from clientlib.client._reports import ReportEvidence
from clientlib.client.types import GroupEvent
from clientlib.crypto.group_frank import group_content, group_recipient
from clientlib.errors import RelayRejected
from relay.admin import admin_listener_key
from relay.app import create_app
from relay.config import RelayConfig

ABUSE = "you are worthless, leave this group <b>now</b>"


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def moderated(relay_config: RelayConfig) -> AsyncIterator[tuple[str, str]]:
    """(relay URL, admin base URL) of a relay with the admin listener on a free port."""
    config = replace(
        relay_config, admin_tokens=ADMIN_TOKENS, admin_port=0, admin_login_failures_per_client=50
    )
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        url = server.app[admin_listener_key].url
        assert url is not None
        yield str(server.make_url("/")), url.removesuffix("/admin/")
    finally:
        await server.close()


def event(kind: str, **match: object):  # type: ignore[no-untyped-def]
    def pred(e: GroupEvent) -> bool:
        return e.kind == kind and all(getattr(e, k) == v for k, v in match.items())

    return pred


async def _group(alice: Client, bob: Client, carol: Client) -> None:
    _, a_b = await befriend(bob, alice)
    _, a_c = await befriend(carol, alice)
    await alice.create_group("club")
    for who, cid in ((bob, a_b), (carol, a_c)):
        await alice.invite_to_group("club", cid)
        inv = await wait_for(who, GroupEvent, event("invited"))
        assert inv.invite_id is not None
        await who.accept_group(inv.invite_id)
        await wait_for(who, GroupEvent, event("joined"))
    await wait_for(bob, GroupEvent, event("member_added", member="carol"))


async def _file(client: Client, ev: ReportEvidence) -> bytes:
    """File ``ev`` as the owner of ``client``'s mailbox in the group (what a tampering
    client would send)."""
    gid = client._groups.resolve("club")
    cred = group_credential(client._groups.live, gid)
    assert cred is not None
    return await client._reports._file(cred, ev, "harassment", None)


async def test_report_a_group_message_resolve_and_remove(
    tmp_path: Path, moderated: tuple[str, str]
) -> None:
    relay, admin_base = moderated
    async with (
        make(tmp_path, "alice", relay) as alice,
        make(tmp_path, "bob", relay) as bob,
        make(tmp_path, "carol", relay) as carol,
    ):
        await _group(alice, bob, carol)
        await carol.send_group("club", ABUSE)
        got = await wait_for(bob, GroupEvent, event("message", member="carol"))
        assert got.text == ABUSE and got.message_id is not None
        await wait_for(alice, GroupEvent, event("message", member="carol"))

        gid = bob._groups.resolve("club")
        mid, raw = received_evidence(bob._groups.live[gid], got.message_id[:10])
        ev = ReportEvidence.decode(raw)
        live = bob._groups.live[gid]
        carol_gpk = carol._groups.live[gid].me
        alice_gpk = alice._groups.live[gid].me
        assert ev.sender == carol_gpk and ev.recipient == group_recipient(gid)
        assert ev.ft is not None and ev.fx is not None and ev.amf is not None

        # Forgeries: Bob alters the text, or claims Alice sent it, or reports it from a
        # mailbox it was not delivered to. Each is FRANKING and nothing is stored.
        altered = dataclasses.replace(ev, msg=group_content(bytes.fromhex(mid), got.ts, "I quit"))
        as_alice = dataclasses.replace(ev, sender=alice_gpk)
        for forged in (altered, as_alice):
            with pytest.raises(RelayRejected) as info:
                await _file(bob, forged)
            assert info.value.code == "FRANKING"
        with pytest.raises(RelayRejected) as info:  # Alice files Bob's copy
            await _file(alice, ev)
        assert info.value.code == "FRANKING"
        admin, http = AdminSession.open(admin_base)
        async with http:
            assert (await admin.login(ALICE_TOKEN))[0] == 303
            status, body, _ = await admin.get("/admin/reports?status=all")
            assert status == 200 and 'id="empty"' in body

            # The genuine report verifies and is stored once.
            rid = await bob.report_group_message("club", got.message_id, "harassment")
            with pytest.raises(RelayRejected) as info:
                await bob.report_group_message("club", got.message_id, "harassment")
            assert info.value.code == "DUPLICATE"
            [details] = bob.report_details()
            assert (details.id, details.kind, details.status) == (rid, "group", "open")

            # The moderation page lists it as a group report and shows what was verified.
            status, body, _ = await admin.get("/admin/reports")
            row = re.search(rf'<tr class="report">(?:(?!</tr>).)*{rid[:12]}.*?</tr>', body)
            assert status == 200 and row is not None
            assert '<span class="badge group">group</span>' in row.group(0)
            assert ">verified<" in row.group(0)
            status, body, _ = await admin.get(f"/admin/reports/{rid}")
            assert status == 200 and ">verified<" in body
            assert 'id="kind">group<' in body and "group message (gmsg)" in body
            assert "leave this group &lt;b&gt;now&lt;/b&gt;" in body  # escaped
            assert carol_gpk.hex() in body and live.rec.sid.hex() in body
            assert "sender per-group key" in body

            # The moderator resolves it; Bob learns the outcome.
            status, _, resp = await admin.post(
                f"/admin/reports/{rid}/resolve",
                {"csrf": admin.csrf, "action": "none", "note": "left to the group's admins"},
            )
            assert status == 303
            await bob.check_reports()
            done = await wait_for(bob, ReportResolved, lambda r: r.report_id == rid)
            assert done.action == "none"
            assert bob.report_details()[0].status == "resolved"
            status, body, _ = await admin.get(resp.headers["Location"])
            assert "Resolved: none." in body and 'id="resolve"' not in body

        # The group's admin removes the reported member: Carol's deposits are refused and
        # she reads nothing sent afterwards.
        await alice.remove_from_group("club", "carol")
        await wait_for(carol, GroupEvent, event("removed"))
        await wait_for(bob, GroupEvent, event("member_removed", member="carol"))
        with pytest.raises(RelayRejected) as info:
            await carol.send_group("club", "again")
        assert info.value.code == "AUTH"
        await alice.send_group("club", "carol is gone")
        await wait_for(bob, GroupEvent, event("message", text="carol is gone"))
        await carol.sync()
        assert "carol is gone" not in [m.text for m in carol.group_messages("club")]
