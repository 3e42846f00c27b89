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
import getpass
import os
import shlex
import ssl
import sys
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from clientlib.chat.qr import render_qr
from clientlib.chat.text import (
    boundaries_lines,
    clean,
    contact_label,
    describe_warning,
    duration,
    group_safety_number,
    history_line,
    on_off,
    parse_duration,
    privacy_line,
    refusal_reason,
    request_label,
    short_id,
    utc_day,
    utc_hour,
)
from clientlib.client import (
    Client,
    ClientConfig,
    ClientWarning,
    CorruptHistory,
    InvalidInvitation,
    Invitation,
)
from clientlib.client.client import BoundaryViolation
from clientlib.client.content import MAX_INTRO_BYTES, MAX_NAME_BYTES
from clientlib.crypto.fingerprint import identity_fingerprint
from clientlib.crypto.keys import IdentityPublicKey
from clientlib.errors import (
    KeystoreError,
    KeyValidationError,
    LocalProtocolError,
    MessagingError,
    RelayRejected,
    TransportError,
)
from clientlib.keystore.errors import (
    CorruptKeystore,
    KeystoreExists,
    KeystoreLocked,
    KeystoreNotFound,
    UnsupportedKeystoreVersion,
    WeakPassphrase,
    WrongPassphrase,
)
from clientlib.keystore.file import _test_kdf_allowed
from clientlib.wire.frames import Boundaries, MailboxInfo
from clientlib.wire.limits import BOUNDARY_SIZES, MAX_POW_BITS, MAX_REQUESTS_PER_DAY

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
# One exit-status scheme for blindchat and `blindrelay admin` (README "Exit status"; the
# values follow sysexits.h where one applies; tests/unit/test_exit_codes.py keeps them equal).
EXIT_OK = 0
#: The command ran and failed or was refused: no such contact, request or message; the relay
#: refused the request; not confirmed.
EXIT_FAILED = 1
#: A bad command line or argument (including a malformed invitation link).
EXIT_USAGE = 2
#: The relay could not be reached, or its TLS certificate could not be verified (EX_UNAVAILABLE).
EXIT_UNAVAILABLE = 69
EXIT_RELAY = EXIT_UNAVAILABLE
#: The local keystore or history cannot be used: missing, locked, wrong passphrase, damaged
#: (EX_IOERR).
EXIT_KEYSTORE = 74


class CliError(Exception):
    """An expected failure: ``message`` goes to stderr, ``code`` is the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors return EXIT_USAGE through main() instead of exiting."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: {message}")


def default_home() -> Path:
    env = os.environ.get("BLINDCHAT_HOME")
    return Path(env) if env else Path.home() / ".local" / "share" / "blindchat"


@dataclass
class _Ctx:
    home: Path
    keystore: Path
    prog: str  # how to call us again in hints ("blindchat --home ./alice")
    timeout: float
    offline: bool
    passphrase: str = ""
    relay_url: str = ""
    offline_hint: bool = False
    #: Warnings seen while the command ran; kinds in ``quiet`` are recorded, not printed.
    warnings: list[ClientWarning] = field(default_factory=list)
    quiet: frozenset[str] = frozenset()


def _out(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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


# --- client plumbing ----------------------------------------------------------------------


async def _print_warnings(client: Client, ctx: _Ctx) -> None:
    async for ev in client.events():
        if isinstance(ev, ClientWarning):
            ctx.warnings.append(ev)
            if ev.kind not in ctx.quiet:
                _err(f"warning: {describe_warning(ev)}")


@contextlib.asynccontextmanager
async def _open(ctx: _Ctx, *, connect: bool, watch: bool = True) -> AsyncIterator[Client]:
    """Open the keystore; connect and subscribe if ``connect`` (and not ``--offline``)."""
    client = Client.open(ctx.keystore, ctx.passphrase, config=ClientConfig(connect=False))
    async with client:
        ctx.relay_url = client.relay_url
        watcher: asyncio.Task[None] | None = None
        if watch:
            watcher = asyncio.get_running_loop().create_task(_print_warnings(client, ctx))
        try:
            if connect and not ctx.offline:
                await client.connect()
            yield client
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


def _online(ctx: _Ctx, command: str) -> None:
    if ctx.offline:
        raise CliError(EXIT_USAGE, f"`{command}` needs the relay; run it without --offline")


async def _sync(client: Client, ctx: _Ctx) -> bool:
    """Catch up with the relay and flush the outbox, for at most ``--timeout`` seconds."""
    if ctx.offline:
        return False
    try:
        async with asyncio.timeout(ctx.timeout):
            await client.sync()
    except TimeoutError:
        return False
    return True


async def _catch_up(client: Client, ctx: _Ctx) -> None:
    if not ctx.offline and not await _sync(client, ctx):
        _err(
            f"warning: the relay did not deliver everything within {ctx.timeout:g} s; "
            "this may be incomplete"
        )


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
        config=ClientConfig(kdf_strength=args.kdf, connect=False),
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
        invitation = await client.create_invitation(new_address=args.new)
    _out("your invitation link (whoever has it can send you a contact request):", "")
    _out(invitation.link, "")
    if not args.no_qr:
        _out(render_qr(invitation.qr_payload), "")
    _out(
        f"they run:  blindchat accept {_quote(invitation.link)}",
        f"then you:  {ctx.prog} requests",
    )
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
        _out("", render_qr(payload))
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


async def _published(client: Client, ctx: _Ctx) -> tuple[list[Boundaries], bool]:
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


async def cmd_boundaries(ctx: _Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    async with _open(ctx, connect=True) as client:
        published, have = await _published(client, ctx)
    if ctx.offline:
        _out("boundaries of your contact addresses (as stored locally):")
    elif not have:
        _out(f"no contact address yet; `{ctx.prog} invite` creates one that publishes:")
    else:
        _out("your contact addresses publish (what the relay lets through to you):")
    for i, b in enumerate(published):
        if len(published) > 1:
            _out(f"  set {i + 1}:")
        _out(*boundaries_lines(b, "    " if len(published) > 1 else "  "))
    return EXIT_OK


async def cmd_boundaries_set(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "boundaries set")
    if all(v is None for v in (args.size, args.attachments, args.per_day, args.pow)):
        raise CliError(
            EXIT_USAGE, "nothing to change: give --size, --attachments, --per-day or --pow"
        )
    async with _open(ctx, connect=True) as client:
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
        _out("your contact addresses now publish:")
    else:
        _out("no contact address yet; new ones publish:")
    _out(*boundaries_lines(new))
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


async def cmd_holdings(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "holdings")
    async with _open(ctx, connect=True) as client:
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
        _out(f"the relay holds no mailbox of yours yet (`{ctx.prog} invite` creates one)")
        return EXIT_OK
    _out(
        f"what the relay at {ctx.relay_url} keeps for your {len(holdings)} "
        f"mailbox{'es' if len(holdings) != 1 else ''} (days in UTC):"
    )
    for label, (_, info) in zip(labels, holdings, strict=True):
        _out("", f"{label}:", *_holding_lines(info))
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


async def cmd_report(ctx: _Ctx, args: argparse.Namespace) -> int:
    """Report one received message (by the id prefix ``history --ids`` shows)."""
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
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
    _out(
        f"reported message {found[0].id[:8]} from {contact_label(contact)} "
        f"as {args.reason}; report {report_id[:12]}",
        "the relay verified that this exact message reached you from this contact's identity "
        "key; moderators see only this message",
    )
    return EXIT_OK


async def cmd_reports(ctx: _Ctx, args: argparse.Namespace) -> int:
    """List our reports and their status (asks the relay about open ones)."""
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
        await client.check_reports()
        rows = client.report_details()
    if not rows:
        _out("no reports")
    for r in rows:
        what = "request on address" if r.kind == "request" else "message from contact"
        outcome = (
            f"resolved: {_ACTION_WORDS.get(r.action or '', r.action or 'unknown action')}"
            if r.status == "resolved"
            else "open: waiting for a moderator"
        )
        _out(
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


async def cmd_export(ctx: _Ctx, args: argparse.Namespace) -> int:
    ctx.offline_hint = True
    path = Path(args.path)
    if await asyncio.to_thread(os.path.lexists, path):
        raise CliError(EXIT_FAILED, f"{path} already exists; refusing to overwrite it")
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
        contacts = client.contacts()
        count = sum(len(client.messages(c)) for c in contacts)
        requests = len(client.requests())
        try:
            client.export(path)
        except FileExistsError:
            raise CliError(
                EXIT_FAILED, f"{path} already exists; refusing to overwrite it"
            ) from None
    _out(
        f"exported {len(contacts)} conversation{'s' if len(contacts) != 1 else ''} "
        f"({count} message{'s' if count != 1 else ''}) and {requests} pending "
        f"request{'s' if requests != 1 else ''} to {path}",
        "the file is not encrypted (no keys are in it): keep it somewhere safe",
    )
    return EXIT_OK


def _confirm_delete(ctx: _Ctx, contacts: int) -> None:
    """Ask for the word ``delete`` on stdin (a terminal only)."""
    print(
        f"This deletes, for good: every mailbox of yours at {ctx.relay_url} (your contact "
        f"addresses and {contacts} conversation{'s' if contacts != 1 else ''}: invitation "
        f"links stop working, contacts can no longer reach you) and the keystore and message "
        f"history in {ctx.home}.\nType delete to confirm: ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    answer = sys.stdin.readline()
    if answer.strip() != "delete":
        raise CliError(EXIT_FAILED, "not confirmed; nothing was deleted")


async def cmd_delete_account(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "delete-account")
    if not args.yes and not sys.stdin.isatty():
        raise CliError(
            EXIT_USAGE,
            "delete-account asks for confirmation on a terminal; add --yes to delete "
            "without asking",
        )
    async with _open(ctx, connect=False) as client:
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
    _out(
        f"deleted every mailbox of yours at {ctx.relay_url}, with its prekeys and stored "
        f"messages ({contacts} conversation{'s' if contacts != 1 else ''} and your contact "
        "addresses)",
        f"deleted the keystore {ctx.keystore} and its message history",
    )
    return EXIT_OK


async def cmd_listen(ctx: _Ctx, args: argparse.Namespace) -> int:
    _online(ctx, "listen")
    from clientlib.chat.listen import listen

    async with _open(ctx, connect=False, watch=False) as client:
        waiting = client.requests()  # stored earlier; new ones arrive as events
        await client.connect()
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
        home=None, passphrase_file=None, timeout=DEFAULT_TIMEOUT, offline=False, func=None
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

    p = add("send", cmd_send, "send one message")
    p.add_argument("contact", metavar="CONTACT", help="name or id prefix")
    p.add_argument("text", metavar="TEXT", nargs="+")

    p = add("listen", cmd_listen, "print messages as they arrive; chat with --to")
    p.add_argument("--to", metavar="CONTACT", help="send every line typed on stdin to CONTACT")

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

    p = add("boundaries", cmd_boundaries, "show what your contact addresses accept")
    bsub = p.add_subparsers(title="actions", metavar="ACTION")
    sizes = "|".join(str(n) for n in BOUNDARY_SIZES)
    q = add("set", cmd_boundaries_set, "change what your contact addresses accept", bsub)
    q.add_argument("--size", type=_size, metavar=sizes, help="largest contact request, in bytes")
    q.add_argument(
        "--attachments", type=_on_off, metavar="on|off", help="requests may carry attachments"
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

    from clientlib.chat import security

    security.register(add, sub)
    return parser


def _on_off(text: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, not {text!r}")


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


# --- errors -------------------------------------------------------------------------------


def _tls_failure(exc: BaseException) -> str | None:
    """The reason, if a certificate verification failure is in ``exc``'s cause chain."""
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            inner = getattr(seen, "certificate_error", seen)  # aiohttp wraps the ssl error
            reason = getattr(inner, "verify_message", None)
            return clean(str(reason or "certificate verify failed"))
        if isinstance(seen, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None


def explain(exc: BaseException, ctx: _Ctx) -> tuple[int, str]:
    """The exit status and the one line to print for an expected error."""
    relay = ctx.relay_url or "the relay"
    if isinstance(exc, CliError):
        return exc.code, exc.message
    if isinstance(exc, KeystoreNotFound):
        return EXIT_KEYSTORE, f"no keystore at {ctx.keystore}; run `{ctx.prog} init`"
    if isinstance(exc, KeystoreExists):
        return EXIT_KEYSTORE, f"a keystore already exists at {ctx.keystore}; refusing to overwrite"
    if isinstance(exc, KeystoreLocked):
        return (
            EXIT_KEYSTORE,
            "keystore is in use by another blindchat process (is `listen` running?)",
        )
    if isinstance(exc, WrongPassphrase):
        return EXIT_KEYSTORE, "wrong passphrase or damaged keystore"
    if isinstance(exc, UnsupportedKeystoreVersion):
        return (
            EXIT_KEYSTORE,
            "keystore was written by a newer version of blindchat; upgrade to open it",
        )
    if isinstance(exc, CorruptKeystore):
        return EXIT_KEYSTORE, f"damaged keystore at {ctx.keystore}: {exc}"
    if isinstance(exc, CorruptHistory):
        return EXIT_KEYSTORE, f"refusing to open the message history: {exc}"
    if isinstance(exc, WeakPassphrase):
        return EXIT_FAILED, f"{exc}. Nothing was changed; add --force to use it anyway"
    if isinstance(exc, KeystoreError):
        return EXIT_KEYSTORE, f"keystore error: {exc}"
    if isinstance(exc, InvalidInvitation):
        return EXIT_USAGE, f"not a valid invitation link: {exc}"
    if isinstance(exc, RelayRejected):
        return EXIT_FAILED, f"the relay at {relay} refused the request ({exc.code})"
    if isinstance(exc, TransportError):
        tls = _tls_failure(exc)
        if tls is not None:
            return EXIT_UNAVAILABLE, (
                f"cannot verify the TLS certificate of {relay} ({tls}); nothing was sent. "
                "Check the URL; an expired or self-signed certificate, or a proxy that "
                "intercepts TLS, also causes this"
            )
        hint = " (add --offline to use what is stored locally)" if ctx.offline_hint else ""
        return EXIT_UNAVAILABLE, f"relay unreachable at {relay}{hint}"
    if isinstance(exc, KeyValidationError):
        return EXIT_FAILED, "the relay handed out keys that do not check out; nothing was sent"
    if isinstance(exc, LocalProtocolError):
        return EXIT_FAILED, str(exc)
    return EXIT_FAILED, f"{type(exc).__name__}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``blindchat`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
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
    )
    func: Command = args.func
    try:
        if func is cmd_init:
            if ctx.keystore.exists():
                raise KeystoreExists
        elif not ctx.keystore.exists():
            raise KeystoreNotFound
        ctx.passphrase = _read_passphrase(args, confirm=func is cmd_init)
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
