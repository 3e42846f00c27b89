"""blindchat commands about what the relay keeps and the account as a whole:
``boundaries`` (and ``boundaries set``), ``holdings``, ``report``, ``reports``, ``export``,
``delete-account``. Registered by :func:`register` from :func:`clientlib.chat.cli.build_parser`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clientlib.chat._plumbing import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    Ctx,
    catch_up,
    explain,
    on_off_arg,
    online,
    open_client,
    out,
)
from clientlib.chat.text import (
    boundaries_lines,
    clean,
    contact_label,
    on_off,
    short_id,
    utc_day,
    utc_hour,
)
from clientlib.client import Client
from clientlib.errors import LocalProtocolError, RelayRejected, TransportError
from clientlib.wire.frames import Boundaries, MailboxInfo
from clientlib.wire.limits import BOUNDARY_SIZES, MAX_POW_BITS, MAX_REQUESTS_PER_DAY

__all__ = ["REPORT_REASONS", "register"]


async def _published(client: Client, ctx: Ctx) -> tuple[list[Boundaries], bool]:
    """The boundaries our contact addresses publish (as the relay reports them, unless
    offline), and whether we have any address at all."""
    if ctx.offline:
        return [client.boundaries()], True
    try:
        holdings = await client.relay_holdings()
    except RelayRejected:  # a mailbox is gone (expired): fall back to what we set
        return [client.boundaries()], True
    infos = [info for _, info in holdings if info.kind == "addr"]
    found = [info.bnd for info in infos if info.bnd is not None]
    unique = list(dict.fromkeys(found))
    return (unique or [client.boundaries()]), bool(infos)


async def cmd_boundaries(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    async with open_client(ctx, connect=True) as client:
        published, have = await _published(client, ctx)
    if ctx.offline:
        out("boundaries of your contact addresses (as stored locally):")
    elif not have:
        out(f"no contact address yet; `{ctx.prog} invite` creates one that publishes:")
    else:
        out("your contact addresses publish (what the relay lets through to you):")
    for i, b in enumerate(published):
        if len(published) > 1:
            out(f"  set {i + 1}:")
        out(*boundaries_lines(b, "    " if len(published) > 1 else "  "))
    return EXIT_OK


async def cmd_boundaries_set(ctx: Ctx, args: argparse.Namespace) -> int:
    online(ctx, "boundaries set")
    if all(v is None for v in (args.size, args.attachments, args.per_day, args.pow)):
        raise CliError(
            EXIT_USAGE, "nothing to change: give --size, --attachments, --per-day or --pow"
        )
    async with open_client(ctx, connect=True) as client:
        published, have = await _published(client, ctx)
        cur = published[0]
        new = Boundaries(
            size=cur.size if args.size is None else args.size,
            att=cur.att if args.attachments is None else int(args.attachments),
            day=cur.day if args.per_day is None else args.per_day,
            pow=cur.pow if args.pow is None else args.pow,
        )
        await client.set_boundaries(new)
    if have:
        out("your contact addresses now publish:")
    else:
        out("no contact address yet; new ones publish:")
    out(*boundaries_lines(new))
    return EXIT_OK


async def cmd_push(ctx: Ctx, args: argparse.Namespace) -> int:
    prog = ctx.prog
    raise CliError(EXIT_USAGE, f"say `{prog} push register URL` or `{prog} push unregister`")


async def cmd_push_register(ctx: Ctx, args: argparse.Namespace) -> int:
    online(ctx, "push register")
    token: bytes | None = None
    if args.token is not None:
        try:
            token = bytes.fromhex(args.token)
        except ValueError:
            token = b""
        if len(token) != 32:
            raise CliError(EXIT_USAGE, "--token takes 64 hex digits (32 bytes)")
    async with open_client(ctx, connect=True) as client:
        try:
            tok = await client.register_push(args.url, token)
        except LocalProtocolError as exc:
            raise CliError(EXIT_USAGE, str(exc)) from None
        except RelayRejected as exc:
            if exc.code != "MALFORMED":
                raise
            raise CliError(
                EXIT_FAILED, "the relay refuses that endpoint (it takes https:// only)"
            ) from None
    out("the relay now wakes that endpoint when a message arrives while you are offline;")
    out(f"each wake-up carries only this token: {tok.hex()}")
    return EXIT_OK


async def cmd_push_unregister(ctx: Ctx, args: argparse.Namespace) -> int:
    online(ctx, "push unregister")
    async with open_client(ctx, connect=True) as client:
        await client.unregister_push()
    out("push wake-ups are off")
    return EXIT_OK


def _holding_lines(info: MailboxInfo) -> list[str]:
    kinds = {"addr": "contact address", "pair": "conversation mailbox", "open": "open mailbox"}
    oldest = utc_day(info.oldest_ts // 86400) if info.oldest_ts is not None else "-"
    if info.prekey_hour is not None:
        handed = f"{info.prekeys_handed} in the hour of {utc_hour(info.prekey_hour)}"
    else:
        handed = "none yet"
    if info.requests_day is not None:
        requests = f"{info.requests} on {utc_day(info.requests_day)} ({info.requests_today} today)"
    else:
        requests = "none yet"
    lines = [
        f"  kind:                {info.kind} ({kinds.get(info.kind, 'mailbox')})",
        f"  send id:             {info.sid.hex()[:8]}...",
        f"  owner key:           {info.owner_key.hex()[:8]}...",
        f"  created:             {utc_day(info.created_day)}",
        f"  last active:         {utc_day(info.active_day)}",
        f"  last sequence:       {info.last_seq}",
        f"  envelopes stored:    {info.envelopes} ({info.stored_bytes} bytes)",
        f"  oldest envelope:     {oldest}",
        f"  dedupe records:      {info.dedupe_records}",
        f"  one-time prekeys:    {info.prekeys_left}",
        f"  static prekey:       {'stored' if info.prekey_static else 'none'}",
        f"  prekeys handed out:  {handed}",
        f"  capabilities:        {info.caps}",
        f"  banned handles:      {info.bans}",
        f"  contact requests:    {requests}",
    ]
    if info.bnd is not None:
        b = info.bnd
        pow_ = f"{b.pow} bits" if b.pow else "none"
        lines.append(
            f"  boundaries:          up to {b.size} bytes, attachments {on_off(b.att)}, "
            f"{b.day} a day, proof of work {pow_}"
        )
    return lines


async def cmd_holdings(ctx: Ctx, args: argparse.Namespace) -> int:
    online(ctx, "holdings")
    async with open_client(ctx, connect=True) as client:
        holdings = await client.relay_holdings()
        labels: list[str] = []
        for label, _ in holdings:
            kind, _, ident = label.partition(" ")
            if kind == "contact":
                try:
                    c = client.contact(ident)
                except LocalProtocolError:
                    labels.append(f"conversation {short_id(ident)}")
                else:
                    labels.append(f"conversation with {contact_label(c)} ({short_id(c.id)})")
            else:
                labels.append(clean(label))
    if not holdings:
        out(f"the relay holds no mailbox of yours yet (`{ctx.prog} invite` creates one)")
        return EXIT_OK
    out(
        f"what the relay at {ctx.relay_url} keeps for your {len(holdings)} "
        f"mailbox{'es' if len(holdings) != 1 else ''} (days in UTC):"
    )
    for label, (_, info) in zip(labels, holdings, strict=True):
        out("", f"{label}:", *_holding_lines(info))
    return EXIT_OK


REPORT_REASONS = (
    "harassment",
    "threats",
    "non_consensual_content",
    "minor_safety",
    "spam",
    "impersonation",
    "other",
)


async def cmd_report(ctx: Ctx, args: argparse.Namespace) -> int:
    """Report one received message (by the id prefix ``history --ids`` shows)."""
    async with open_client(ctx, connect=True) as client:
        await catch_up(client, ctx)
        contact = client.contact(args.contact)
        prefix = args.message.strip().lower()
        found = [
            m
            for m in client.messages(contact)
            if m.direction == "in" and len(prefix) >= 4 and m.id.startswith(prefix)
        ]
        if len(found) != 1:
            what = "no received message" if not found else "more than one message"
            raise CliError(
                EXIT_FAILED, f"{what} with id {args.message} from {contact_label(contact)}"
            )
        report_id = await client.report(found[0], args.reason, note=args.note)
    out(
        f"reported message {found[0].id[:8]} from {contact_label(contact)} "
        f"as {args.reason}; report {report_id[:12]}",
        "the relay verified that this exact message reached you from this contact's identity "
        "key; moderators see only this message",
    )
    return EXIT_OK


async def cmd_reports(ctx: Ctx, args: argparse.Namespace) -> int:
    """List our reports and their status (asks the relay about open ones)."""
    async with open_client(ctx, connect=True) as client:
        await catch_up(client, ctx)
        await client.check_reports()
        rows = client.report_details()
    if not rows:
        out("no reports")
    for r in rows:
        what = {"request": "request on address", "group": "message in group"}.get(
            r.kind, "message from contact"
        )
        outcome = (
            f"resolved: {_ACTION_WORDS.get(r.action or '', r.action or 'unknown action')}"
            if r.status == "resolved"
            else "open: waiting for a moderator"
        )
        out(
            f"{r.id[:12]}  {format_day(r.filed)}  {r.reason or '-':<22}  {what} "
            f"{r.contact_id[:8]}  {outcome}"
        )
    return EXIT_OK


#: What a moderator's action did, in words (protocol.md §4.11).
_ACTION_WORDS = {
    "none": "no action taken",
    "revoke": "the sender can no longer reach you there",
    "suspend": "the sender's address was suspended",
}


def format_day(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


async def cmd_export(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    path = Path(args.path)
    if await asyncio.to_thread(os.path.lexists, path):
        raise CliError(EXIT_FAILED, f"{path} already exists; refusing to overwrite it")
    async with open_client(ctx, connect=True) as client:
        await catch_up(client, ctx)
        contacts = client.contacts()
        count = sum(len(client.messages(c)) for c in contacts)
        requests = len(client.requests())
        try:
            client.export(path)
        except FileExistsError:
            raise CliError(
                EXIT_FAILED, f"{path} already exists; refusing to overwrite it"
            ) from None
    out(
        f"exported {len(contacts)} conversation{'s' if len(contacts) != 1 else ''} "
        f"({count} message{'s' if count != 1 else ''}) and {requests} pending "
        f"request{'s' if requests != 1 else ''} to {path}",
        "the file is not encrypted (no keys are in it): keep it somewhere safe",
    )
    return EXIT_OK


#: protocol.md §4.11 / §18: reports outlive the mailboxes (the operator's moderation data).
_REPORTS_STAY = (
    "Reports you filed are not deleted: they stay with the relay's moderators for the "
    "relay's report retention period (90 days unless its operator set another)"
)


def _confirm_delete(ctx: Ctx, contacts: int) -> None:
    """Ask for the word ``delete`` on stdin (a terminal only)."""
    print(
        f"This deletes, for good: every mailbox of yours at {ctx.relay_url} (your contact "
        f"addresses and {contacts} conversation{'s' if contacts != 1 else ''}: invitation "
        f"links stop working, contacts can no longer reach you) and the keystore and message "
        f"history in {ctx.home}.\n{_REPORTS_STAY}.\nType delete to confirm: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    answer = sys.stdin.readline()
    if answer.strip() != "delete":
        raise CliError(EXIT_FAILED, "not confirmed; nothing was deleted")


async def cmd_delete_account(ctx: Ctx, args: argparse.Namespace) -> int:
    online(ctx, "delete-account")
    if not args.yes and not sys.stdin.isatty():
        raise CliError(
            EXIT_USAGE,
            "delete-account asks for confirmation on a terminal; add --yes to delete "
            "without asking",
        )
    async with open_client(ctx, connect=False) as client:
        contacts = len(client.contacts())
        if not args.yes:
            _confirm_delete(ctx, contacts)
        try:
            await client.connect()
            await client.delete_account()
        except TransportError as exc:
            code, message = explain(exc, ctx)
            raise CliError(
                code, f"{message}; nothing local was deleted (run it again later)"
            ) from None
    out(
        f"deleted every mailbox of yours at {ctx.relay_url}, with its prekeys and stored "
        f"messages ({contacts} conversation{'s' if contacts != 1 else ''} and your contact "
        "addresses)",
        _REPORTS_STAY,
        f"deleted the keystore {ctx.keystore} and its message history",
    )
    return EXIT_OK


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value not in BOUNDARY_SIZES:
        choices = ", ".join(str(n) for n in BOUNDARY_SIZES)
        raise argparse.ArgumentTypeError(f"expected one of {choices}, not {text!r}")
    return value


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a number from {low} to {high}, not {text!r}"
            )
        return value

    return parse


def register(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """Add this module's commands to blindchat's parser (``add`` as in ``build_parser``)."""
    p = add("boundaries", cmd_boundaries, "show what your contact addresses accept")
    bsub = p.add_subparsers(title="actions", metavar="ACTION")
    sizes = "|".join(str(n) for n in BOUNDARY_SIZES)
    q = add("set", cmd_boundaries_set, "change what your contact addresses accept", bsub)
    q.add_argument("--size", type=_size, metavar=sizes, help="largest contact request, in bytes")
    q.add_argument(
        "--attachments", type=on_off_arg, metavar="on|off", help="requests may carry attachments"
    )
    q.add_argument(
        "--per-day",
        type=_bounded(1, MAX_REQUESTS_PER_DAY),
        metavar="N",
        help="contact requests accepted per day (UTC)",
    )
    q.add_argument(
        "--pow",
        type=_bounded(0, MAX_POW_BITS),
        metavar="BITS",
        help="proof of work asked of requesters, in bits (0: none; each bit doubles it)",
    )

    add("holdings", cmd_holdings, "show what the relay keeps for each of your mailboxes")

    p = add("push", cmd_push, "wake a push endpoint (UnifiedPush) when you are offline")
    psub = p.add_subparsers(title="actions", metavar="ACTION")
    q = add("register", cmd_push_register, "register an endpoint on every mailbox", psub)
    q.add_argument("url", metavar="URL", help="the https:// endpoint your distributor gave")
    q.add_argument("--token", metavar="HEX", help="the 32-byte token to send (default: random)")
    add("unregister", cmd_push_unregister, "stop push wake-ups", psub)

    p = add("report", cmd_report, "report a received message to the relay's moderators")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument("message", metavar="MESSAGE_ID", help="id prefix from `history --ids`")
    p.add_argument(
        "reason", choices=REPORT_REASONS, metavar="REASON", help=", ".join(REPORT_REASONS)
    )
    p.add_argument("--note", metavar="TEXT", help="a comment for the moderators")
    add("reports", cmd_reports, "list your reports and what moderators decided")

    p = add("export", cmd_export, "write your conversations to a (plain) JSON file")
    p.add_argument("path", metavar="PATH", help="a new file (never overwritten)")

    p = add(
        "delete-account",
        cmd_delete_account,
        "delete everything at the relay, then the keystore and history",
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
