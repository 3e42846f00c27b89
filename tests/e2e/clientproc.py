"""A client process for end-to-end tests: one real :class:`clientlib.client.Client`, driven
over JSON lines, so that tests run clients exactly as an app would (own process, file
keystore, encrypted history file, WebSocket to a live relay).

Usage::

    python tests/e2e/clientproc.py --keystore P --relay URL --name N [--create]

Commands arrive on stdin, one JSON object a line: ``{"cmd": NAME, "id": N, ...}``. Each gets
exactly one reply line on stdout, ``{"reply": N, "ok": true, "result": ...}`` or
``{"reply": N, "ok": false, "error": "..."}``; commands run concurrently, so a long
``send_many`` does not hold up ``history``. Commands:

* ``identity``: ``{"ed25519": hex, "x25519": hex, "name": str}``
* ``invite``: ``{"link": str}``
* ``request {link, intro}``: the pending contact
* ``accept {request_id}`` / ``decline {request_id}``
* ``send {contact, text}`` / ``send_many {contact, prefix, count[, start]}`` (sends
  ``f"{prefix}{i:05d}"`` for ``i`` in ``range(start, start + count)``, in order)
* ``sync [{timeout}]``: wait until caught up and the outbox is flushed
* ``contacts``, ``requests``, ``history {contact}``
* groups (protocol.md §26): ``group_create {name}``, ``group_invite {group, contact}``,
  ``group_invitations``, ``group_accept {invite}``, ``group_decline {invite}``,
  ``group_send {group, text}``, ``group_members {group}``, ``group_info {group}``,
  ``group_messages {group}``, ``group_remove {group, member}``, ``group_leave {group}``
* conversation features (issue 13): ``privacy {contact, receipts?, delivery?, typing?}``,
  ``disappear {contact, seconds}``, ``mark_read {contact}``, ``typing {contact, on}``,
  ``unsend {contact, message}``, ``edit {contact, message, text}``, ``react {contact,
  message, emoji, direction}``, ``holdings`` (``last_seq`` per mailbox, from the relay)
* ``quit``: reply, close the client (flushing what it can), exit 0

Events are written as they happen, one a line: ``{"event": "ready", ...}`` once started, then
``request``, ``contact_added``, ``message``, ``delivery``, ``warning``, ``connection``,
``caught_up``, ``typing``, ``disappearing``, ``changed``, ``expired`` (see
:func:`event_json`). ``--receipt-delay MIN,MEAN,MAX`` sets the receipt delay (seconds).
Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clientlib.client import (  # noqa: E402
    CaughtUp,
    Client,
    ClientConfig,
    ClientEvent,
    ClientWarning,
    ConnectionChanged,
    Contact,
    ContactAdded,
    ContactRequest,
    DeliveryChanged,
    DisappearingChanged,
    MessageChanged,
    MessageExpired,
    MessageReceived,
    ReceiptDelay,
    RequestReceived,
    StoredMessage,
    TypingChanged,
)
from clientlib.client.types import GroupEvent  # noqa: E402
from clientlib.errors import RelayRejected  # noqa: E402

MAX_LINE = 1 << 20
FAST = ClientConfig(kdf_strength="minimum")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def contact_json(c: Contact) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "state": c.state}


def request_json(r: ContactRequest) -> dict[str, Any]:
    return {"id": r.id, "name": r.name, "intro": r.intro}


def message_json(m: StoredMessage) -> dict[str, Any]:
    return {"id": m.id, "direction": m.direction, "text": m.text, "state": m.state,
            "deleted": m.deleted, "edited": m.edited_at is not None, "timer": m.timer,
            "reactions": [list(r) for r in m.reactions]}  # fmt: skip


def event_json(ev: ClientEvent) -> dict[str, Any]:
    if isinstance(ev, MessageReceived):
        return {"event": "message", "contact": ev.contact.id, "id": ev.message.id,
                "text": ev.message.text}  # fmt: skip
    if isinstance(ev, RequestReceived):
        return {"event": "request", **request_json(ev.request)}
    if isinstance(ev, ContactAdded):
        return {"event": "contact_added", **contact_json(ev.contact)}
    if isinstance(ev, DeliveryChanged):
        return {"event": "delivery", "contact": ev.contact_id, "id": ev.message_id,
                "state": ev.state}  # fmt: skip
    if isinstance(ev, ClientWarning):
        return {"event": "warning", "kind": ev.kind, "detail": ev.detail,
                "contact": ev.contact_id}  # fmt: skip
    if isinstance(ev, ConnectionChanged):
        return {"event": "connection", "online": ev.online}
    if isinstance(ev, CaughtUp):
        return {"event": "caught_up"}
    if isinstance(ev, GroupEvent):
        return {"event": "group", "group": ev.group_id, "kind": ev.kind, "member": ev.member,
                "text": ev.text, "invite": ev.invite_id, "mine": ev.mine}  # fmt: skip
    if isinstance(ev, TypingChanged):
        return {"event": "typing", "contact": ev.contact_id, "on": ev.typing}
    if isinstance(ev, DisappearingChanged):
        return {"event": "disappearing", "contact": ev.contact_id, "seconds": ev.seconds,
                "by": ev.by}  # fmt: skip
    if isinstance(ev, MessageChanged):
        return {"event": "changed", "change": ev.change, **message_json(ev.message)}
    if isinstance(ev, MessageExpired):
        return {"event": "expired", "contact": ev.contact_id, "id": ev.message_id,
                "direction": ev.direction}  # fmt: skip
    return {"event": "unknown", "type": type(ev).__name__}


async def pump_events(client: Client) -> None:
    async for ev in client.events():
        emit(event_json(ev))
    emit({"event": "closed"})


def commands(client: Client) -> dict[str, Callable[..., Awaitable[Any]]]:
    async def identity() -> dict[str, Any]:
        return {
            "ed25519": bytes(client.identity).hex(),
            "x25519": client.identity.x25519.hex(),
            "name": client.name,
        }

    async def invite() -> dict[str, Any]:
        return {"link": (await client.create_invitation()).link}

    async def request(link: str, intro: str | None = None) -> dict[str, Any]:
        return contact_json(await client.send_request(link, intro=intro))

    async def accept(request_id: str) -> dict[str, Any]:
        return contact_json(await client.accept_request(request_id))

    async def decline(request_id: str) -> None:
        await client.decline_request(request_id)

    async def send(contact: str, text: str) -> dict[str, Any]:
        return message_json(await client.send(contact, text))

    async def send_many(contact: str, prefix: str, count: int, start: int = 0) -> dict[str, Any]:
        for i in range(start, start + count):
            await client.send(contact, f"{prefix}{i:05d}")
        return {"sent": count}

    async def sync(timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            await client.sync()

    async def contacts() -> list[dict[str, Any]]:
        return [contact_json(c) for c in client.contacts()]

    async def requests() -> list[dict[str, Any]]:
        return [request_json(r) for r in client.requests()]

    async def history(contact: str) -> list[dict[str, Any]]:
        return [message_json(m) for m in client.messages(contact)]

    async def privacy(
        contact: str,
        receipts: bool | None = None,
        delivery: bool | None = None,
        typing: bool | None = None,
    ) -> None:
        await client.set_privacy(
            contact, receipts=receipts, delivery_receipts=delivery, typing=typing
        )

    async def disappear(contact: str, seconds: int) -> None:
        await client.set_disappearing(contact, seconds)

    async def mark_read(contact: str) -> int:
        return await client.mark_read(contact)

    async def typing(contact: str, on: bool) -> bool:
        return await client.typing(contact, on)

    async def unsend(contact: str, message: str) -> dict[str, Any]:
        return message_json(await client.unsend(contact, message))

    async def edit(contact: str, message: str, text: str) -> dict[str, Any]:
        return message_json(await client.edit(contact, message, text))

    async def react(contact: str, message: str, emoji: str, direction: str) -> dict[str, Any]:
        return message_json(
            await client.react(contact, message, emoji, direction=direction)  # type: ignore[arg-type]
        )

    async def holdings() -> dict[str, int]:
        return {label: info.last_seq for label, info in await client.relay_holdings()}

    async def group_create(name: str) -> dict[str, Any]:
        return {"id": (await client.create_group(name)).id}

    async def group_invite(group: str, contact: str) -> None:
        await client.invite_to_group(group, contact)

    async def group_invitations() -> list[list[str]]:
        return [list(i) for i in client.group_invitations()]

    async def group_accept(invite: str) -> dict[str, Any]:
        return {"status": (await client.accept_group(invite)).status}

    async def group_decline(invite: str) -> None:
        await client.decline_group(invite)

    async def group_send(group: str, text: str) -> dict[str, Any]:
        try:
            await client.send_group(group, text)
        except RelayRejected as exc:
            return {"refused": exc.code}
        return {"refused": None}

    async def group_members(group: str) -> list[list[Any]]:
        return [[m.name, m.role, m.me] for m in client.group_members(group)]

    async def group_info(group: str) -> dict[str, Any]:
        g = client.group(group)
        return {"status": g.status, "members": g.members, "epoch": g.epoch, "role": g.role}

    async def group_messages(group: str) -> list[list[Any]]:
        return [[e.member, e.text] for e in client.group_messages(group)]

    async def group_report(group: str, text: str, reason: str = "harassment") -> str:
        found = [e for e in client.group_messages(group) if e.text == text and not e.mine]
        assert found and found[-1].message_id is not None, f"no received message {text!r}"
        return await client.report_group_message(group, found[-1].message_id, reason)

    async def reports() -> list[dict[str, Any]]:
        await client.check_reports()
        return [{"id": d.id, "kind": d.kind, "status": d.status, "action": d.action}
                for d in client.report_details()]  # fmt: skip

    async def group_remove(group: str, member: str) -> None:
        await client.remove_from_group(group, member)

    async def group_leave(group: str) -> None:
        await client.leave_group(group)

    return {
        "group_create": group_create,
        "group_invite": group_invite,
        "group_invitations": group_invitations,
        "group_accept": group_accept,
        "group_decline": group_decline,
        "group_send": group_send,
        "group_members": group_members,
        "group_info": group_info,
        "group_messages": group_messages,
        "group_report": group_report,
        "reports": reports,
        "group_remove": group_remove,
        "group_leave": group_leave,
        "privacy": privacy,
        "disappear": disappear,
        "mark_read": mark_read,
        "typing": typing,
        "unsend": unsend,
        "edit": edit,
        "react": react,
        "holdings": holdings,
        "identity": identity,
        "invite": invite,
        "request": request,
        "accept": accept,
        "decline": decline,
        "send": send,
        "send_many": send_many,
        "sync": sync,
        "contacts": contacts,
        "requests": requests,
        "history": history,
    }


async def run_command(table: dict[str, Callable[..., Awaitable[Any]]], cmd: dict[str, Any]) -> None:
    cid = cmd.pop("id", None)
    name = cmd.pop("cmd", None)
    try:
        fn = table[name]
        result = await fn(**cmd)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        emit({"reply": cid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
    else:
        emit({"reply": cid, "ok": True, "result": result})


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keystore", required=True, type=Path)
    parser.add_argument("--relay", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--passphrase", default=None)
    parser.add_argument("--create", action="store_true")
    parser.add_argument("--receipt-delay", default=None)
    args = parser.parse_args(argv)
    config = FAST
    if args.receipt_delay:
        lo, mean, hi = (float(v) for v in args.receipt_delay.split(","))
        config = replace(FAST, receipt_delay=ReceiptDelay(lo, mean, hi))
    passphrase = args.passphrase or f"pw-{args.name} long test passphrase"
    client = (
        Client.create(
            args.keystore, passphrase, relay_url=args.relay, name=args.name, config=config
        )
        if args.create
        else Client.open(args.keystore, passphrase, relay_url=args.relay, config=config)
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with client:
        table = commands(client)
        pump = asyncio.create_task(pump_events(client))
        emit({"event": "ready", "ed25519": bytes(client.identity).hex(), "name": client.name})
        running: set[asyncio.Task[None]] = set()
        quit_id: object = None
        while line := await reader.readline():
            cmd = json.loads(line)
            if cmd.get("cmd") == "quit":
                quit_id = cmd.get("id")
                break
            task = asyncio.create_task(run_command(table, cmd))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.wait(running)
    await pump  # ends once the client is closed
    emit({"reply": quit_id, "ok": True, "result": None})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
