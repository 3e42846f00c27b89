"""Groups end to end (protocol.md §26, issue 14): three client processes on a live relay
(both backends): create, invite, decline, accept, talk, report a group message and resolve it,
offline catch-up across a relay restart, remove (the removed member gets nothing readable afterwards and the relay refuses its
deposits), leave.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from typing import Any

from liverelay import RelayProcess
from test_clients_e2e import BAD_WARNINGS, ClientProc, World, restart_relay
from test_clients_e2e import world as world  # noqa: PLC0414 - the fixture

GROUP_WARNINGS = BAD_WARNINGS | {"group_dropped"}


def group_event(kind: str, **match: Any) -> Any:
    def pred(e: dict[str, Any]) -> bool:
        return (
            e["event"] == "group"
            and e["kind"] == kind
            and all(e.get(k) == v for k, v in match.items())
        )

    return pred


def said(p: ClientProc, text: str) -> bool:
    return any(group_event("message", text=text)(e) for e in p.events)


async def befriend(a: ClientProc, other: ClientProc) -> tuple[str, str]:
    link = (await a.call("invite"))["link"]
    mine = (await other.call("request", link=link, intro="hi"))["id"]
    req = await a.wait_event(
        lambda e: e["event"] == "request" and e["name"] == other.display, what="request"
    )
    theirs = (await a.call("accept", request_id=req["id"]))["id"]
    await other.wait_event(lambda e: e["event"] == "contact_added", what="contact added")
    return theirs, mine


async def admin(relay: RelayProcess, *args: str) -> tuple[int, str, str]:
    """``blindrelay admin ARGS`` as its own process, on the live relay's store."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "admin", *args[:2], "--data-dir", str(relay.data_dir),
        "--moderator", "e2e", *args[2:], env=relay.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def sync(*procs: ClientProc) -> None:
    await asyncio.gather(*(p.call("sync") for p in procs))


async def test_group_lifecycle(world: World, live_relay: RelayProcess) -> None:
    token = secrets.token_hex(4)
    a, b, c = await asyncio.gather(world.spawn("a"), world.spawn("b"), world.spawn("c"))
    a_b, _ = await befriend(a, b)
    a_c, _ = await befriend(a, c)
    group = f"team-{token}"
    await a.call("group_create", name=group)

    # Consent: an invitation gives nothing until accepted; B declines the first one.
    await a.call("group_invite", group=group, contact=a_b)
    inv = await b.wait_event(group_event("invited", text=group), what="invitation")
    await b.call("group_decline", invite=inv["invite"])
    await a.wait_event(group_event("declined"), what="decline")
    assert await b.call("group_invitations") == []

    for p, cid in ((b, a_b), (c, a_c)):
        await a.call("group_invite", group=group, contact=cid)
        inv = await p.wait_event(
            lambda e, old=inv: group_event("invited")(e) and e["invite"] != old["invite"],
            what="second invitation",
        )
        assert (await p.call("group_accept", invite=inv["invite"]))["status"] == "joining"
        await p.wait_event(group_event("joined"), 30, "joined")
        await sync(a, b, c)
    names = [m[0] for m in await a.call("group_members", group=group)]
    assert names == [a.display, b.display, c.display]
    assert len(await c.call("group_members", group=group)) == 3

    # Talk: one upload from each reaches the two others.
    for sender, text in ((a, f"hello {token}"), (c, f"hi from c {token}")):
        assert (await sender.call("group_send", group=group, text=text))["refused"] is None
        for p in {a, b, c} - {sender}:
            await p.wait_until(lambda p=p, t=text: said(p, t), 20, f"{p.name} gets {text}")

    # B reports C's message (protocol.md §26.9); the relay verifies it; a moderator resolves
    # it with the admin CLI against the relay's store; B learns the outcome.
    rid = await b.call("group_report", group=group, text=f"hi from c {token}")
    assert [(r["id"], r["kind"], r["status"]) for r in await b.call("reports")] == [
        (rid, "group", "open")
    ]
    code, out, err = await admin(live_relay, "reports", "resolve", rid, "--action", "none")
    assert code == 0 and f"resolved {rid}" in out, (out, err)
    [done] = await b.call("reports")
    assert (done["status"], done["action"]) == ("resolved", "none")

    # C goes offline; B writes; the relay restarts; C comes back and catches up.
    c_name = c.display
    await c.quit()
    away = f"while c was away {token}"
    await b.call("group_send", group=group, text=away)
    await restart_relay(live_relay, kill=False)
    c = await world.spawn("c", create=False)
    c.display = c_name
    await c.wait_until(lambda: said(c, away), 30, "C catches up after the restart")

    # Remove B: B learns it, its deposits are refused, it gets nothing readable afterwards.
    await sync(a, b, c)
    await a.call("group_remove", group=group, member=a_b)
    await b.wait_event(group_event("removed"), 20, "B removed")
    await c.wait_event(group_event("member_removed", member=b.display), 20, "C sees it")
    await sync(a, c)
    assert (await b.call("group_info", group=group))["status"] == "removed"
    assert (await b.call("group_send", group=group, text="let me in"))["refused"] == "AUTH"
    after = f"after b {token}"
    await a.call("group_send", group=group, text=after)
    await c.wait_until(lambda: said(c, after), 20, "C gets the message after the removal")
    reply = f"c after b {token}"
    await c.call("group_send", group=group, text=reply)
    await a.wait_until(lambda: said(a, reply), 20, "A gets C's reply")
    await sync(b)
    assert not said(b, after) and not said(b, reply)
    assert not said(a, "let me in") and not said(c, "let me in")

    # C leaves; A is alone.
    await c.call("group_leave", group=group)
    await a.wait_event(group_event("member_left", member=c_name), 20, "C left")
    assert [m[0] for m in await a.call("group_members", group=group)] == [a.display]
    assert (await c.call("group_info", group=group))["status"] == "left"

    bad = [(p.name, w) for p in (a, b, c) for w in p.warnings() if w["kind"] in GROUP_WARNINGS]
    assert not bad, world.report(f"unexpected warnings: {bad}")
    for p in (a, b, c):
        await p.quit()
