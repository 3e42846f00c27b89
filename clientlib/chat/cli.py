"""``blindchat``: the command-line chat program.

One keystore per home directory (``--home``, ``$BLINDCHAT_HOME``, default
``~/.local/share/blindchat``): ``<home>/keystore`` and, beside it, ``keystore.history``.
The passphrase comes from ``$BLINDCHAT_PASSPHRASE``, else ``--passphrase-file``, else a
prompt. Every command opens the keystore, does its work (connecting to the relay and
catching up first when it needs to) and closes it; ``listen`` stays connected.

Exit status (shared with ``blindrelay admin``): 0 ok; 1 failed or refused (no such contact,
the relay refused); 2 usage; 69 relay unreachable or its TLS certificate not verified; 74
keystore or history unusable.
Expected errors are one line on stderr, never a traceback, never a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import getpass
import os
import shlex
import sys
from collections.abc import (
    Callable,
    Coroutine,
    Sequence,
)
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from clientlib.chat._plumbing import (
    EXIT_FAILED,
    EXIT_KEYSTORE,
    EXIT_OK,
    EXIT_RELAY,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    explain,
)
from clientlib.chat._plumbing import Ctx as _Ctx
from clientlib.chat._plumbing import catch_up as _catch_up
from clientlib.chat._plumbing import err as _err
from clientlib.chat._plumbing import on_off_arg as _on_off
from clientlib.chat._plumbing import online as _online
from clientlib.chat._plumbing import open_client as _open
from clientlib.chat._plumbing import out as _out
from clientlib.chat._plumbing import sync as _sync
from clientlib.chat.account import REPORT_REASONS
from clientlib.chat.qr import render_qr, wants_colour
from clientlib.chat.text import (
    clean,
    contact_label,
    duration,
    group_safety_number,
    history_line,
    parse_duration,
    privacy_line,
    refusal_reason,
    request_label,
    short_id,
)
from clientlib.client import (
    Client,
    ClientConfig,
    Invitation,
)
from clientlib.client.client import BoundaryViolation
from clientlib.client.config import parse_proxy
from clientlib.client.content import MAX_INTRO_BYTES, MAX_NAME_BYTES
from clientlib.crypto.fingerprint import identity_fingerprint
from clientlib.crypto.keys import IdentityPublicKey
from clientlib.errors import (
    MessagingError,
    RelayRejected,
    TransportError,
)
from clientlib.keystore.errors import (
    KeystoreExists,
    KeystoreNotFound,
)
from clientlib.keystore.file import _test_kdf_allowed

__all__ = [
    "DEFAULT_RELAY",
    "EXIT_FAILED",
    "EXIT_KEYSTORE",
    "EXIT_OK",
    "EXIT_RELAY",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "default_home",
    "main",
]

DEFAULT_RELAY = "http://127.0.0.1:7480"
DEFAULT_TIMEOUT = 15.0
KEYSTORE_NAME = "keystore"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors return EXIT_USAGE through main() instead of exiting."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: {message}")


def _check_send(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``send``: TEXT, or ``--file`` (the file options only with it)."""
    if args.file is None and (args.view_once or args.keep_metadata or args.caption is not None):
        parser.error("--view-once, --keep-metadata and --caption go with --file")
    if args.file is None and not args.text:
        parser.error("nothing to send: give TEXT, or --file PATH")


def default_home() -> Path:
    env = os.environ.get("BLINDCHAT_HOME")
    return Path(env) if env else Path.home() / ".local" / "share" / "blindchat"


# --- passphrase ---------------------------------------------------------------------------


def _read_passphrase(args: argparse.Namespace, *, confirm: bool) -> str:
    env = os.environ.get("BLINDCHAT_PASSPHRASE")
    if env is not None:
        value = env
    elif args.passphrase_file is not None:
        try:
            raw = Path(args.passphrase_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise CliError(
                EXIT_USAGE, f"cannot read passphrase file {args.passphrase_file}: {reason}"
            ) from None
        value = raw.removesuffix("\n").removesuffix("\r")
    else:
        if not sys.stdin.isatty():
            raise CliError(
                EXIT_USAGE,
                "no passphrase: set BLINDCHAT_PASSPHRASE or use --passphrase-file FILE",
            )
        value = getpass.getpass("keystore passphrase: ")
        if confirm and getpass.getpass("same passphrase again: ") != value:
            raise CliError(EXIT_USAGE, "the two passphrases differ; nothing was created")
    if not value:
        raise CliError(EXIT_USAGE, "the passphrase is empty")
    return value


def _fingerprint_digits(identity: IdentityPublicKey) -> str:
    """Our half of every safety number: 30 digits in 6 groups (protocol.md §16)."""
    fp = identity_fingerprint(identity)
    return " ".join(f"{int.from_bytes(fp[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def _quote(text: str) -> str:
    return shlex.quote(text)


# --- commands -----------------------------------------------------------------------------


async def cmd_init(ctx: _Ctx, args: argparse.Namespace) -> int:
    relay = args.relay.strip().rstrip("/")
    parts = urlsplit(relay)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise CliError(EXIT_USAGE, f"not a relay URL: {relay!r} (expected http(s)://host:port)")
    name = args.name or ""
    if len(name.encode()) > MAX_NAME_BYTES or clean(name) != name:
        raise CliError(EXIT_USAGE, f"the name must be one line of at most {MAX_NAME_BYTES} bytes")
    ctx.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    async with Client.create(
        ctx.keystore,
        ctx.passphrase,
        relay_url=relay,
        name=name or None,
        config=ClientConfig(kdf_strength=args.kdf, connect=False, proxy=ctx.proxy),
        allow_weak_passphrase=args.force,
    ) as client:
        digits = _fingerprint_digits(client.identity)
    p = ctx.prog
    _out(
        f"created keystore: {ctx.keystore}",
        f"name:     {name or '(none)'}",
        f"relay:    {relay}",
        f"identity: {digits}",
        "",
        "next steps:",
        f"  {p} invite          print a link (and QR code) to give to someone",
        f"  {p} accept LINK     send a contact request to someone else's link",
        f"  {p} requests        see requests you received, then `requests accept ID`",
        f"  {p} listen --to NAME    chat",
    )
    return EXIT_OK


async def cmd_whoami(ctx: _Ctx, args: argparse.Namespace) -> int:
    async with _open(ctx, connect=False) as client:
        contacts = client.contacts()
        pending = sum(1 for c in contacts if c.state == "pending")
        _out(
            f"name:     {clean(client.name) or '(none)'}",
            f"relay:    {client.relay_url}",
            f"identity: {_fingerprint_digits(client.identity)}",
            f"keystore: {ctx.keystore}",
            f"contacts: {len(contacts)} ({pending} pending)",
            f"requests: {len(client.requests())} (as of the last sync)",
        )
    return EXIT_OK


async def cmd_invite(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "invite")
    async with _open(ctx, connect=True) as client:
        invitation = await client.create_invitation(new_address=args.new, relay=args.relay)
    _out("your invitation link (whoever has it can send you a contact request):", "")
    _out(invitation.link, "")
    if not args.no_qr:
        _out(render_qr(invitation.qr_payload, colour=wants_colour(sys.stdout)), "")
    _out(
        f"they run:  blindchat accept {_quote(invitation.link)}",
        f"then you:  {ctx.prog} requests",
    )
    return EXIT_OK


async def cmd_relays(ctx: _Ctx, args: argparse.Namespace) -> int:
    """The relays we receive on (protocol.md §27.1), home first, with their state now."""
    _online(ctx, "relays")
    async with _open(ctx, connect=True) as client:
        # Further receive relays connect in the background: give them a moment.
        for _ in range(30):
            if all(up for _, up in client.receive_relays()):
                break
            await asyncio.sleep(0.1)
        for i, (url, up) in enumerate(client.receive_relays()):
            role = "home" if i == 0 else "receive"
            _out(f"{role:8} {'connected' if up else 'unreachable':12} {url}")
    return EXIT_OK


async def cmd_accept(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "accept")
    invitation = Invitation.parse(args.link)
    if not invitation.commits_to_identity:  # a version-1 link (protocol.md §21.2)
        _err(
            "warning: an old link that does not bind the inviter's identity: compare safety numbers"
        )
    intro = args.intro
    if intro is not None and len(intro.encode()) > MAX_INTRO_BYTES:
        raise CliError(EXIT_USAGE, f"the introduction is longer than {MAX_INTRO_BYTES} bytes")
    ctx.quiet = frozenset({"request_refused"})  # reported below, as the error
    async with _open(ctx, connect=True) as client:
        try:
            contact = await client.send_request(invitation, intro=intro)
        except BoundaryViolation as exc:
            raise CliError(EXIT_FAILED, f"cannot send this request: {exc}") from None
        except RelayRejected as exc:
            if exc.code == "AUTH":
                raise CliError(
                    EXIT_FAILED, "this invitation is no longer valid (the relay does not know it)"
                ) from None
            raise
        sent = await _sync(client, ctx)
        await asyncio.sleep(0)  # let the watcher record what the outbox reported
        refused = next(
            (w for w in ctx.warnings if w.kind == "request_refused" and w.contact_id == contact.id),
            None,
        )
        if refused is not None:
            await client.remove_contact(contact)  # nothing of the failed request stays
            raise CliError(
                EXIT_FAILED,
                f"the relay refused the contact request: {refusal_reason(refused.detail)}",
            )
    cid = short_id(contact.id)
    if sent:
        _out(f"contact request sent; contact id: {cid}")
    else:
        _out(
            f"contact request queued; contact id: {cid}",
            "the relay did not confirm in time; it goes out the next time blindchat connects",
        )
    _out(f"once they accept, `{ctx.prog} contacts` shows their name; until then use {cid}")
    return EXIT_OK


async def cmd_requests(ctx: _Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
        requests = client.requests()
    if not requests:
        _out("no pending contact requests")
        return EXIT_OK
    _out(f"{len(requests)} pending contact request{'s' if len(requests) != 1 else ''}:")
    for r in requests:
        rid = short_id(r.id)
        _out("", f"request {rid}  from {request_label(r)}")
        if r.intro:
            _out(f"  intro: {clean(r.intro, multiline=True)}")
        _out(
            f"  safety number: {r.safety_number}",
            f"  accept:  {ctx.prog} requests accept {rid}",
            f"  decline: {ctx.prog} requests decline {rid}",
            f"  report:  {ctx.prog} requests report {rid} REASON",
        )
    return EXIT_OK


async def cmd_requests_accept(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "requests accept")
    name = args.name
    if name is not None and (len(name.encode()) > MAX_NAME_BYTES or clean(name) != name):
        raise CliError(EXIT_USAGE, f"the name must be one line of at most {MAX_NAME_BYTES} bytes")
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
        contact = await client.accept_request(args.id, name=name)
        sent = await _sync(client, ctx)
    label = contact_label(contact)
    _out(f"accepted {label}; contact id: {short_id(contact.id)}")
    if not sent:
        _out("the relay did not confirm in time; they are told the next time blindchat connects")
    _out(f"chat: {ctx.prog} listen --to {_quote(contact.name or short_id(contact.id))}")
    return EXIT_OK


async def cmd_requests_decline(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "requests decline")  # the decline is a ban at the relay (protocol.md §22.3)
    async with _open(ctx, connect=False) as client:
        try:  # resolves the id first: "no such request" needs no relay
            await client.decline_request(args.id)
        except TransportError:  # not connected yet: the ban needs the relay
            await client.connect()
            await client.decline_request(args.id)
    _out(f"declined request {clean(args.id)} (the sender is not told)")
    return EXIT_OK


async def cmd_requests_report(ctx: _Ctx, args: argparse.Namespace) -> int:
    """Report a contact request (its name and intro) to the relay's moderators, then
    decline it (unless --keep)."""
    _online(ctx, "requests report")
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
        report_id = await client.report_request(args.id, args.reason, note=args.note)
        if not args.keep:
            await client.decline_request(args.id)
    _out(
        f"reported request {clean(args.id)} as {args.reason}; report {report_id[:12]}",
        "the relay verified that this exact request reached your address from the identity "
        "key it names; moderators see this request (its name, intro and the requester's keys)",
    )
    if not args.keep:
        _out("declined it too (the sender is not told)")
    return EXIT_OK


async def cmd_send(ctx: _Ctx, args: argparse.Namespace) -> int:
    if args.file is not None:
        _online(ctx, "send --file")
        from clientlib.chat.files import cmd_send_file

        return await cmd_send_file(ctx, args)
    ctx.offline_hint = True
    text = " ".join(args.text)
    async with _open(ctx, connect=True) as client:
        await _sync(client, ctx)  # learn acceptances (and names) first
        contact = client.contact(args.contact)
        message = await client.send(contact, text)
        await _sync(client, ctx)
        contact = client.contact(contact.id)
        stored = next(
            (m for m in reversed(client.messages(contact)) if m.id == message.id), message
        )
    label = contact_label(contact)
    if stored.state == "sent":
        _out(f"sent to {label}")
    elif stored.state == "failed":
        raise CliError(
            EXIT_FAILED, f"the relay refused the message: {label}'s mailbox no longer exists"
        )
    elif contact.state == "pending":
        _out(f"queued for {label}: it is delivered once they accept your contact request")
    elif ctx.offline:
        _out(f"queued for {label}: it goes out the next time blindchat connects to the relay")
    else:
        _out(
            f"queued for {label}: the relay did not confirm within {ctx.timeout:g} s; "
            "it goes out the next time blindchat connects"
        )
    return EXIT_OK


async def cmd_contacts(ctx: _Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
        contacts = client.contacts()
    if not contacts:
        _out(f"no contacts yet: `{ctx.prog} invite` or `{ctx.prog} accept LINK`")
        return EXIT_OK
    _out(f"{'id':<8}  {'state':<8}  {'verified':<10}  {'blocked':<7}  name")
    for c in contacts:
        verified = "verified" if c.verified else "unverified"
        blocked = "blocked" if c.blocked else "-"
        _out(
            f"{short_id(c.id):<8}  {c.state:<8}  {verified:<10}  {blocked:<7}  "
            f"{clean(c.name) or '-'}"
        )
    return EXIT_OK


async def cmd_history(ctx: _Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    if args.n < 1:
        raise CliError(EXIT_USAGE, "-n must be at least 1")
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
        contact = client.contact(args.contact)
        messages = client.messages(contact, limit=args.n)
        # Shown now: read (a read receipt if both sides send them; disappearing timers start).
        unseen = [m.id for m in messages if m.direction == "in" and not m.seen]
        if unseen:
            await client.mark_read(contact, unseen)
    label = contact_label(contact)
    if not messages:
        _out(f"no messages with {label} yet")
    for m in messages:
        line = history_line(m, label)
        _out(f"[{m.id[:8]}] {line}" if args.ids else line)
    return EXIT_OK


async def cmd_verify(ctx: _Ctx, args: argparse.Namespace) -> int:
    async with _open(ctx, connect=False) as client:
        contact = client.contact(args.contact)
        number = client.safety_number(contact)
        payload = client.safety_qr_payload(contact)
        if args.confirm:
            contact = await client.mark_verified(contact)
    label = contact_label(contact)
    _out(f"safety number with {label}:")
    _out(*(f"  {row}" for row in group_safety_number(number)))
    if args.confirm:
        _out("", f"{label} is now marked as verified")
        return EXIT_OK
    if not args.no_qr:
        _out("", render_qr(payload, colour=wants_colour(sys.stdout)))
    ref = _quote(contact.name or short_id(contact.id))
    _out(
        "",
        f"Compare these 60 digits with {label} in person or on a call you trust.",
        f"If they are the same on both sides: {ctx.prog} verify {ref} --confirm",
        "If they differ, someone may be intercepting: do not mark the contact verified.",
    )
    return EXIT_OK


async def cmd_block(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "block")
    async with _open(ctx, connect=True) as client:
        await _sync(client, ctx)  # learn names of contacts that accepted meanwhile
        contact = await client.block(args.contact)
    label = contact_label(contact)
    ref = _quote(contact.name or short_id(contact.id))
    _out(
        f"blocked {label}: the relay now refuses their messages, as if you had deleted the "
        "conversation (they are not told)",
        f"undo: {ctx.prog} unblock {ref}",
    )
    return EXIT_OK


async def cmd_unblock(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "unblock")
    async with _open(ctx, connect=True) as client:
        await _sync(client, ctx)
        contact = await client.unblock(args.contact)
    _out(f"unblocked {contact_label(contact)}: their messages reach you again")
    return EXIT_OK


async def cmd_privacy(ctx: _Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    changes = {
        "receipts": args.receipts,
        "typing": args.typing,
        "media": args.media,
        "delivery_receipts": args.delivery,
    }
    change = any(v is not None for v in changes.values())
    async with _open(ctx, connect=True) as client:
        await _sync(client, ctx)  # the contact's latest settings
        contact = client.contact(args.contact)
        if change:
            contact = await client.set_privacy(contact, **changes)
            sent = await _sync(client, ctx)
    label = contact_label(contact)
    if change:
        _out(f"your privacy settings with {label}: {privacy_line(contact.settings)}")
        if contact.state == "pending":
            _out(f"{label} is told once they accept your contact request")
        elif sent:
            _out(f"{label} was told")
        else:
            _out(f"{label} is told the next time blindchat reaches the relay")
        return EXIT_OK
    theirs = (
        privacy_line(contact.peer_settings)
        if contact.peer_settings is not None
        else "not received yet"
    )
    _out(
        f"privacy settings with {label}:",
        f"  yours:  {privacy_line(contact.settings)}",
        f"  theirs: {theirs}",
        "(receipts: read receipts; typing: typing indicators; media off: text only; "
        "each flows only while both sides have it on)",
    )
    return EXIT_OK


async def cmd_disappear(ctx: _Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    try:
        seconds = parse_duration(args.duration)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None
    async with _open(ctx, connect=True) as client:
        await _sync(client, ctx)
        contact = client.contact(args.contact)
        await client.set_disappearing(contact, seconds)
        sent = await _sync(client, ctx)
    label = contact_label(contact)
    what = f"disappear {duration(seconds)} after sending (or reading)" if seconds else "stay"
    _out(f"messages with {label} now {what}")
    if not sent:
        _out(f"{label} is told the next time blindchat reaches the relay")
    return EXIT_OK


async def cmd_listen(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "listen")
    from clientlib.chat.listen import listen

    async with _open(ctx, connect=False, watch=False) as client:
        waiting = client.requests()  # stored earlier; new ones arrive as events
        await client.connect()
        if args.group:
            from clientlib.chat.groups import listen_group

            await _sync(client, ctx)
            return await listen_group(client, args.group, ctx.prog)
        return await listen(
            client, args.to, ctx.prog, pending=waiting, sync=lambda: _sync(client, ctx)
        )


# --- parser -------------------------------------------------------------------------------

Command = Callable[[_Ctx, argparse.Namespace], Coroutine[Any, Any, int]]


def _common() -> _Parser:
    """Global options, also accepted after the command (``blindchat invite --home X``)."""
    p = _Parser(add_help=False)
    p.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where the keystore lives (default: $BLINDCHAT_HOME or ~/.local/share/blindchat)",
    )
    p.add_argument(
        "--passphrase-file",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="read the passphrase from FILE (default: $BLINDCHAT_PASSPHRASE, else a prompt)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"how long to wait for the relay to catch up (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        default=argparse.SUPPRESS,
        help="do not connect: show what is stored locally, queue messages",
    )
    p.add_argument(
        "--proxy",
        default=argparse.SUPPRESS,
        metavar="socks5://HOST:PORT",
        help="reach every relay through this SOCKS5 proxy, names resolved there, one circuit "
        "per relay (Tor: socks5://127.0.0.1:9050; default: $BLINDCHAT_PROXY)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    # Two copies: ``set_defaults`` on the main parser changes its (shared) action objects.
    common = _common()
    parser = _Parser(
        prog="blindchat",
        description="End-to-end encrypted chat through a blindrelay relay.",
        epilog="exit status: 0 ok, 1 failed or refused, 2 usage, 69 relay unreachable "
        "(or its TLS certificate not verified), 74 keystore unusable",
        parents=[_common()],
    )
    parser.set_defaults(
        home=None,
        passphrase_file=None,
        timeout=DEFAULT_TIMEOUT,
        offline=False,
        proxy=None,
        func=None,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def add(
        name: str,
        func: Command,
        help_: str,
        parent: argparse._SubParsersAction[_Parser] = sub,
    ) -> _Parser:
        p = parent.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "create your keystore (a new identity)")
    p.add_argument("--relay", default=DEFAULT_RELAY, help=f"relay URL (default {DEFAULT_RELAY})")
    p.add_argument("--name", help="the display name your contacts see (optional)")
    p.add_argument(
        "--kdf",
        choices=("interactive", "moderate") + (("minimum",) if _test_kdf_allowed() else ()),
        default="moderate",
        help=argparse.SUPPRESS,
    )
    p.add_argument(
        "--force", action="store_true", help="accept a passphrase the strength check rates weak"
    )

    p = add("invite", cmd_invite, "print your invitation link and its QR code")
    p.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    p.add_argument("--new", action="store_true", help="a new, unlinkable address")
    p.add_argument(
        "--relay",
        metavar="URL",
        help="put the address on this relay and receive there too (default: your home relay)",
    )

    add("relays", cmd_relays, "list the relays you receive on and whether they answer")

    p = add("accept", cmd_accept, "send a contact request to an invitation link")
    p.add_argument("link", metavar="LINK")
    p.add_argument("--intro", metavar="TEXT", help="a short introduction they see first")

    p = add("requests", cmd_requests, "list contact requests you received")
    rsub = p.add_subparsers(title="actions", metavar="ACTION")
    q = add("accept", cmd_requests_accept, "accept a contact request", rsub)
    q.add_argument("id", metavar="ID")
    q.add_argument("--name", help="what to call them (default: the name they sent)")
    q = add("decline", cmd_requests_decline, "decline a contact request silently", rsub)
    q.add_argument("id", metavar="ID")
    q = add("report", cmd_requests_report, "report a contact request to the moderators", rsub)
    q.add_argument("id", metavar="ID")
    q.add_argument(
        "reason", choices=REPORT_REASONS, metavar="REASON", help=", ".join(REPORT_REASONS)
    )
    q.add_argument("--note", metavar="TEXT", help="a comment for the moderators")
    q.add_argument("--keep", action="store_true", help="do not decline it afterwards")

    p = add("send", cmd_send, "send one message, or a file with --file")
    p.add_argument("contact", metavar="CONTACT", help="name or id prefix")
    p.add_argument("text", metavar="TEXT", nargs="*", help="the message (with --file: caption)")
    p.add_argument("--file", metavar="PATH", help="send this file (encrypted; metadata removed)")
    p.add_argument("--caption", metavar="TEXT", help="with --file: text shown with the file")
    p.add_argument("--view-once", action="store_true", help="the contact can open the file once")
    p.add_argument(
        "--keep-metadata",
        action="store_true",
        help="send an image as it is (default: EXIF/GPS, XMP, IPTC removed)",
    )
    p.set_defaults(check=functools.partial(_check_send, p))

    p = add("listen", cmd_listen, "print messages as they arrive; chat with --to")
    p.add_argument("--to", metavar="CONTACT", help="send every line typed on stdin to CONTACT")
    p.add_argument(
        "--group", metavar="GROUP", help="listen to GROUP; every line on stdin goes to it"
    )

    add("contacts", cmd_contacts, "list your contacts")

    p = add("history", cmd_history, "show a conversation")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument("-n", type=int, default=20, metavar="N", help="last N messages (default 20)")
    p.add_argument("--ids", action="store_true", help="show message ids (for `report`)")

    p = add("verify", cmd_verify, "show the safety number of a contact; --confirm to mark it")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument("--confirm", action="store_true", help="the numbers matched: mark verified")
    p.add_argument("--no-qr", action="store_true", help="do not draw the QR code")

    add("whoami", cmd_whoami, "show your name, relay and identity")

    p = add("block", cmd_block, "block a contact: the relay refuses their messages")
    p.add_argument("contact", metavar="CONTACT")
    p = add("unblock", cmd_unblock, "unblock a contact")
    p.add_argument("contact", metavar="CONTACT")

    p = add("privacy", cmd_privacy, "show or change your privacy settings with a contact")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument("--receipts", type=_on_off, metavar="on|off", help="read receipts")
    p.add_argument("--typing", type=_on_off, metavar="on|off", help="typing indicators")
    p.add_argument("--media", type=_on_off, metavar="on|off", help="off: text only")
    p.add_argument("--delivery", type=_on_off, metavar="on|off", help="delivery receipts")

    p = add("disappear", cmd_disappear, "set disappearing messages with a contact (both sides)")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument("duration", metavar="1h|1d|1w|off", help="also 30s, 5m, 2d, ...; off: keep")

    from clientlib.chat import account, devices, security

    account.register(add, sub)
    security.register(add, sub)
    from clientlib.chat import groups

    groups.register(add, sub)
    devices.register(add, sub)
    from clientlib.chat import files

    files.register(add, sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``blindchat`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    check = getattr(args, "check", None)
    if check is not None:
        try:
            check(args)
        except _UsageError as exc:
            _err(str(exc))
            return EXIT_USAGE
    if args.func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    home = Path(args.home).expanduser() if args.home is not None else default_home()
    prog = "blindchat" if args.home is None else f"blindchat --home {_quote(args.home)}"
    ctx = _Ctx(
        home=home,
        keystore=home / KEYSTORE_NAME,
        prog=prog,
        timeout=max(0.1, args.timeout),
        offline=args.offline,
        proxy=args.proxy or os.environ.get("BLINDCHAT_PROXY") or None,
    )
    if ctx.proxy is not None:
        try:
            parse_proxy(ctx.proxy)
        except ValueError:
            _err(f"not a SOCKS5 proxy: {ctx.proxy!r} (expected socks5://host:port)")
            return EXIT_USAGE
    func: Command = args.func
    try:
        creates = func is cmd_init or getattr(func, "creates_keystore", False)
        if creates:
            if ctx.keystore.exists():
                raise KeystoreExists
        elif not ctx.keystore.exists():
            raise KeystoreNotFound
        ctx.passphrase = _read_passphrase(args, confirm=creates)
        return asyncio.run(func(ctx, args))
    except (CliError, MessagingError) as exc:
        code, message = explain(exc, ctx)
        _err(f"blindchat: {message}")
        return code
    except KeyboardInterrupt:
        _err("blindchat: interrupted")
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_USAGE
    except OSError as exc:  # e.g. the home directory cannot be created
        where = f": {exc.filename}" if exc.filename else ""
        _err(f"blindchat: {exc.strerror or type(exc).__name__}{where}")
        return EXIT_USAGE
    finally:
        ctx.passphrase = ""
