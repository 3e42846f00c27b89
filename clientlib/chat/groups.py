"""blindchat commands for groups (protocol.md §26): ``group create/invite/requests/accept/
decline/send/members/messages/report/remove/leave/list`` and ``listen --group``. Registered by
:func:`register` from :func:`clientlib.chat.cli.build_parser`.

A group is named by its name or an id prefix; a member by contact name, display name or id
prefix. Commands that change a group sync with the relay first and afterwards, so the
follow-ups (a welcome for someone who accepted, sender keys, a rekey) go out before exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import Any

from clientlib.chat._plumbing import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    catch_up,
    err,
    open_client,
    out,
    sync,
)
from clientlib.chat.account import REPORT_REASONS
from clientlib.chat.text import clean, file_label
from clientlib.client.types import ClientWarning, GroupEvent
from clientlib.errors import RelayRejected

__all__ = ["describe", "listen_group", "register"]


def describe(ev: GroupEvent, group_name: str) -> str:
    """One line for a group event."""
    where = f"[{group_name}]"
    match ev.kind:
        case "message" if ev.attachment is not None:
            caption = f" {ev.text}" if ev.text else ""
            return f"{where} {ev.member}:{caption} {file_label(ev.attachment)}"
        case "message":
            return f"{where} {ev.member}: {ev.text}"
        case "invited":
            return f"{where} invitation from {ev.member} (id {ev.invite_id})"
        case "joined":
            return f"{where} you joined"
        case "member_added":
            return f"{where} {ev.member} joined"
        case "member_removed":
            return f"{where} {ev.member} was removed"
        case "member_left":
            return f"{where} {ev.member} left"
        case "removed":
            return f"{where} you were removed; nothing more arrives"
        case "role":
            return f"{where} {ev.member} is now {ev.text}"
        case "settings":
            return f"{where} settings: {ev.text}"
        case "receipt":
            mid = (ev.message_id or "")[:4]
            return f"{where} {ev.member}: {ev.text} (your message {mid})"
        case "typing":
            return f"{where} {ev.member} is typing…"
        case "stopped_typing":
            return f"{where} {ev.member} stopped typing"
        case _:
            return f"{where} {ev.member} declined the invitation"


async def _with_client(ctx: Any, run: Callable[[Any], Any]) -> int:

    async with open_client(ctx, connect=True) as client:
        await sync(client, ctx)
        result = await run(client)
        await sync(client, ctx)
    return int(result) if isinstance(result, int) else EXIT_OK


async def cmd_create(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        g = await client.create_group(args.name)
        out(f"created group {g.name} (id {g.id[:12]})")

    return await _with_client(ctx, run)


async def cmd_invite(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        await client.invite_to_group(args.group, args.contact)
        out(f"invited {args.contact}: they see nothing of the group until they accept")

    return await _with_client(ctx, run)


async def cmd_requests(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        pending = client.group_invitations()
        if not pending:
            out("no group invitations")
        for iid, name, inviter in pending:
            out(f"{iid[:12]}  {name}  (from {inviter})")

    return await _with_client(ctx, run)


async def cmd_accept(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        g = await client.accept_group(args.id)
        out(f"accepted: joining {g.name}; the welcome arrives once the inviter is online")

    return await _with_client(ctx, run)


async def cmd_decline(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        await client.decline_group(args.id)
        out("declined")

    return await _with_client(ctx, run)


async def cmd_send(ctx: Any, args: argparse.Namespace) -> int:

    from clientlib.chat.files import _size_of, progress_bar

    text = " ".join(args.text)
    if not text and not args.file:
        raise CliError(EXIT_FAILED, "give a message, or a file with --file PATH")

    async def run(client: Any) -> None:
        g = client.group(args.group)
        try:
            if args.file:
                path, size = _size_of(args.file)
                with progress_bar(size, "upload") as progress:
                    ev = await client.send_group_file(
                        args.group, path, caption=text or None, progress=progress
                    )
                out(f"sent {file_label(ev.attachment)} to {g.name}")
                return
            await client.send_group(args.group, text)
        except RelayRejected as exc:
            if exc.code != "AUTH":
                raise
            raise CliError(
                EXIT_FAILED, f"the relay refused the message ({exc.code}): you are not a member"
            ) from None
        out(f"sent to {g.name}")

    return await _with_client(ctx, run)


async def cmd_download(ctx: Any, args: argparse.Namespace) -> int:
    """``group download GROUP ID [--out DIR]``: a file of a group message, by its short id."""
    from clientlib.chat.files import _out_dir, progress_bar

    dest = _out_dir(args.out)
    async with open_client(ctx, connect=True) as client:
        await catch_up(client, ctx)
        g = client.group(args.group)
        k = args.id.strip().lower()
        found = [
            ev.attachment
            for ev in client.group_messages(args.group)
            if ev.attachment is not None and len(k) >= 4 and ev.attachment.message_id.startswith(k)
        ]
        if len(found) != 1:
            raise CliError(
                EXIT_FAILED, "no such file in this group" if not found else "ambiguous id"
            )
        with progress_bar(found[0].size, "download") as progress:
            path = await client.download(found[0], dest, progress=progress)
    out(f"saved {file_label(found[0])} from {g.name} to {clean(str(path))}")
    return EXIT_OK


async def cmd_members(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        g = client.group(args.group)
        out(f"{g.name}: {g.members} members, you are {g.role} ({g.status})")
        for m in client.group_members(args.group):
            tag = " (you)" if m.me else ""
            out(f"  {m.name}  {m.role}  {m.id[:12]}{tag}")

    return await _with_client(ctx, run)


async def cmd_messages(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        g = client.group(args.group)
        for ev in client.group_messages(args.group)[-args.n :]:
            line = describe(ev, g.name)
            out(f"{(ev.message_id or '')[:8]}  {line}" if args.ids else line)

    return await _with_client(ctx, run)


async def cmd_remove(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        await client.remove_from_group(args.group, args.member)
        out(f"removed {args.member}: the relay now refuses their messages to the group")

    return await _with_client(ctx, run)


async def cmd_report(ctx: Any, args: argparse.Namespace) -> int:
    """Report a received group message (protocol.md §26.9) by the id prefix that
    ``group messages --ids`` shows."""

    async def run(client: Any) -> None:
        if len(args.message.strip()) < 4:
            raise CliError(EXIT_FAILED, "give at least 4 digits of the message id")
        rid = await client.report_group_message(
            args.group, args.message, args.reason, note=args.note
        )
        out(
            f"reported group message {args.message[:8]} as {args.reason}; report {rid[:12]}",
            "the relay verified that this exact message reached your group mailbox from the "
            "sender's per-group key; moderators see only this message. The group's admins, "
            "not the relay, can remove the sender",
        )

    return await _with_client(ctx, run)


async def cmd_leave(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        await client.leave_group(args.group)
        out("left the group")

    return await _with_client(ctx, run)


async def cmd_list(ctx: Any, args: argparse.Namespace) -> int:

    async def run(client: Any) -> None:
        for g in client.groups():
            out(f"{g.id[:12]}  {g.name}  {g.members} members  {g.role}  {g.status}")

    return await _with_client(ctx, run)


async def listen_group(client: Any, group: str, prog: str) -> int:
    """Print the group's events as they arrive; each line on stdin is sent to the group.
    Ends at end of input (or when interrupted)."""

    g = client.group(group)
    gid = g.id
    out(
        f"listening to {g.name}; type a line to send it (/typing [off]: the indicator), "
        "end of input to stop"
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def show() -> None:
        async for ev in client.events():
            if isinstance(ev, GroupEvent) and ev.group_id == gid and not ev.mine:
                out(describe(ev, g.name))
                if ev.kind == "message" and ev.message_id is not None:
                    # Shown: read (a receipt to its author alone, delayed, §26.8).
                    await client.mark_group_read(gid, [ev.message_id])
            elif isinstance(ev, ClientWarning) and ev.kind == "group_dropped":
                err(f"warning: a group envelope was dropped ({ev.detail})")

    shower = loop.create_task(show())
    try:
        while line := await reader.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if text.split(" ", 1)[0] == "/typing":
                await client.group_typing(gid, text[8:].strip().lower() not in ("off", "stop", "0"))
            elif text:
                await client.send_group(gid, text)
        await client.sync()
    finally:
        shower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shower
    return EXIT_OK


def register(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """Add ``group`` and its actions to blindchat's parser (``add`` as in ``build_parser``)."""

    async def usage(ctx: Any, args: argparse.Namespace) -> int:
        return await cmd_list(ctx, args)

    p = add("group", usage, "group conversations (list them without an action)")
    gsub = p.add_subparsers(title="actions", metavar="ACTION")
    q = add("create", cmd_create, "create a group (you are its owner)", gsub)
    q.add_argument("name", metavar="NAME")
    q = add("invite", cmd_invite, "invite a contact (they must accept)", gsub)
    q.add_argument("group", metavar="GROUP")
    q.add_argument("contact", metavar="CONTACT")
    add("requests", cmd_requests, "list group invitations you received", gsub)
    q = add("accept", cmd_accept, "accept a group invitation", gsub)
    q.add_argument("id", metavar="ID")
    q = add("decline", cmd_decline, "decline a group invitation", gsub)
    q.add_argument("id", metavar="ID")
    q = add("send", cmd_send, "send one message (or a file) to a group", gsub)
    q.add_argument("group", metavar="GROUP")
    q.add_argument("text", metavar="TEXT", nargs="*", help="the message (a caption with --file)")
    q.add_argument("--file", metavar="PATH", help="send this file (uploaded once)")
    q = add("download", cmd_download, "download a file of a group message", gsub)
    q.add_argument("group", metavar="GROUP")
    q.add_argument("id", metavar="ID", help="the file id shown with it ([name, size, id 3f2a])")
    q.add_argument("--out", metavar="DIR", help="where to save it (default: this directory)")
    q = add("members", cmd_members, "list a group's members", gsub)
    q.add_argument("group", metavar="GROUP")
    q = add("messages", cmd_messages, "show a group's recent messages", gsub)
    q.add_argument("group", metavar="GROUP")
    q.add_argument("-n", type=int, default=20, metavar="N", help="last N (default 20)")
    q.add_argument("--ids", action="store_true", help="show message ids (to report one)")
    q = add("report", cmd_report, "report a received group message to the moderators", gsub)
    q.add_argument("group", metavar="GROUP")
    q.add_argument("message", metavar="MESSAGE_ID", help="id prefix from `group messages --ids`")
    q.add_argument(
        "reason", choices=REPORT_REASONS, metavar="REASON", help=", ".join(REPORT_REASONS)
    )
    q.add_argument("--note", metavar="TEXT", help="a comment for the moderators")
    q = add("remove", cmd_remove, "remove a member (admins; everyone rotates keys)", gsub)
    q.add_argument("group", metavar="GROUP")
    q.add_argument("member", metavar="MEMBER")
    q = add("leave", cmd_leave, "leave a group", gsub)
    q.add_argument("group", metavar="GROUP")
    add("list", cmd_list, "list your groups", gsub)
