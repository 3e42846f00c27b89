"""``blindchat listen``: print events as they happen, send what is typed on stdin.

Every event is one line (continuation lines of a multi-line message are indented)::

    [14:02:11] alice: hello
    [14:02:15] * contact request 1a2b3c4d from bob: "hi, it's Bob" (/accept 1a2b3c4d)
    [14:02:20] * bob is now a contact (id 9f8e7d6c)
    [14:03:00] * connection to the relay lost; reconnecting
    [14:03:04] ! warning: dropped a message that did not decrypt
    [14:03:09] ! request to 5e5d33e6 refused by the relay: daily limit reached (try again tomorrow)
    [14:03:12] * alice is typing…
    [14:03:15] * alice read "hello"
    [14:03:20] * alice set disappearing messages to 1 hour

Messages are marked read as they are printed (that sends a read receipt, if both sides have
receipts on, and starts a disappearing message's timer).

Lines typed on stdin go to the ``--to`` contact; lines starting with ``/`` are commands
(``/help``). Stdin is read in a thread, so a slow terminal never blocks the event loop, and
the session ends on end of input, ``/quit``, Ctrl-C or SIGTERM, after waiting (bounded) for
what was typed to reach the relay.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shlex
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence

from clientlib.chat.text import (
    clean,
    clock,
    contact_label,
    describe_warning,
    duration,
    file_label,
    parse_duration,
    refusal_reason,
    request_label,
    short_id,
)
from clientlib.client import (
    Client,
    ClientEvent,
    ClientWarning,
    ConnectionChanged,
    Contact,
    ContactAdded,
    ContactRequest,
    DeliveryChanged,
    DeviceLinked,
    DeviceRemoved,
    DevicesChanged,
    DisappearingChanged,
    MessageChanged,
    MessageExpired,
    MessageReceived,
    MessageSynced,
    RequestReceived,
    SessionRenewed,
    StoredMessage,
    TypingChanged,
)
from clientlib.errors import LocalProtocolError, RelayRejected, TransportError

__all__ = ["format_event", "listen"]

HELP = (
    "commands: /to CONTACT (send typed lines to CONTACT), /accept ID [NAME], /decline ID, "
    "/contacts, /block CONTACT, /unblock CONTACT, /unsend [ID], /edit [ID] TEXT, "
    "/react [ID] EMOJI (empty: remove), /disappear 1h|1d|1w|off, /typing [on|off], "
    "/file PATH [CAPTION], /quit; "
    "ID: a message id prefix (default: your last message; for /react their last); start a "
    "message with // to send a leading /"
)


def _out(line: str) -> None:
    print(line, flush=True)


def format_event(client: Client, ev: ClientEvent) -> str | None:
    """The line printed for an event (``None``: not shown)."""
    if isinstance(ev, MessageReceived):
        text = clean(ev.message.text, multiline=True)
        if ev.message.attachment is not None:
            text = f"{file_label(ev.message.attachment)} {text}".rstrip()
        return f"{clock(ev.message.received_at)} {contact_label(ev.contact)}: {text}"
    if isinstance(ev, RequestReceived):
        r = ev.request
        rid = short_id(r.id)
        intro = f': "{clean(r.intro)}"' if r.intro else ""
        return (
            f"{clock(r.received_at)} * contact request {rid} from {request_label(r)}{intro} "
            f"(/accept {rid} or /decline {rid})"
        )
    if isinstance(ev, ContactAdded):
        c = ev.contact
        return f"{clock()} * {contact_label(c)} is now a contact (id {short_id(c.id)})"
    if isinstance(ev, MessageSynced):
        text = clean(ev.message.text, multiline=True)
        return (
            f"{clock(ev.message.sent_at)} you (other device) to {contact_label(ev.contact)}: {text}"
        )
    if isinstance(ev, SessionRenewed):
        return f"{clock()} * {contact_label(ev.contact)}: safety number unchanged, new session"
    if isinstance(ev, DevicesChanged):
        return (
            f"{clock()} * {contact_label(ev.contact)} now has {ev.devices} device(s): "
            "safety number unchanged, marked unverified until you compare it again (/verify)"
        )
    if isinstance(ev, DeviceLinked):
        who = "this device" if ev.device.this_device else f"device {short_id(ev.device.id)}"
        return f"{clock()} * a new device was linked to your identity: {who} ({ev.device.name})"
    if isinstance(ev, DeviceRemoved):
        who = "this device" if ev.device.this_device else f"device {short_id(ev.device.id)}"
        return f"{clock()} * {who} ({ev.device.name}) was removed from your devices"
    if isinstance(ev, DeliveryChanged):
        if ev.state in ("delivered", "read"):
            label = _label_of(client, ev.contact_id)
            how = "got" if ev.state == "delivered" else "read"
            return f'{clock()} * {label} {how} "{_snippet(client, ev.contact_id, ev.message_id)}"'
        if ev.state != "failed":
            return None
        return f"{clock()} ! a message to {_label_of(client, ev.contact_id)} could not be delivered"
    if isinstance(ev, TypingChanged):
        label = _label_of(client, ev.contact_id)
        return f"{clock()} * {label} {'is typing…' if ev.typing else 'stopped typing'}"
    if isinstance(ev, DisappearingChanged):
        who = "you" if ev.by == "me" else _label_of(client, ev.contact_id)
        what = (
            f"set disappearing messages to {duration(ev.seconds)}"
            if ev.seconds
            else ("turned disappearing messages off")
        )
        return f"{clock()} * {who} {what}"
    if isinstance(ev, MessageChanged):
        m = ev.message
        label = _label_of(client, m.contact_id)
        who = "you" if m.direction == "out" else label
        if ev.change == "deleted":
            return f"{clock()} * {who} deleted a message"
        if ev.change == "read":
            return f"{clock()} * read on another device: a message from {label}"
        text = clean(m.text)
        if ev.change == "edited":
            return f'{clock()} * {who} edited a message, now "{text}"'
        shown = ", ".join(f"{clean(e)} {'you' if w == 'me' else label}" for w, e in m.reactions)
        return f'{clock()} * reactions on "{text}": {shown or "none"}'
    if isinstance(ev, MessageExpired):
        return f"{clock()} * a disappearing message with {_label_of(client, ev.contact_id)} is gone"
    if isinstance(ev, ClientWarning) and ev.kind == "request_refused":
        to = _label_of(client, ev.contact_id) if ev.contact_id else "a contact address"
        return f"{clock()} ! request to {to} refused by the relay: {refusal_reason(ev.detail)}"
    if isinstance(ev, ClientWarning):
        who = f" ({_label_of(client, ev.contact_id)})" if ev.contact_id else ""
        return f"{clock()} ! warning{who}: {describe_warning(ev)}"
    if isinstance(ev, ConnectionChanged):
        if ev.online:
            return f"{clock()} * connected to the relay again"
        return f"{clock()} * connection to the relay lost; reconnecting"
    return None  # CaughtUp


def _snippet(client: Client, contact_id: str, message_id: str, n: int = 40) -> str:
    for m in client.messages(contact_id):
        if m.id == message_id and m.direction == "out":
            text = "(message deleted)" if m.deleted else clean(m.text)
            return text if len(text) <= n else text[: n - 1] + "…"
    return "(a message no longer here)"


def _label_of(client: Client, contact_id: str) -> str:
    try:
        return contact_label(client.contact(contact_id))
    except LocalProtocolError:
        return short_id(contact_id)


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Thread body: read fd 0 unbuffered (no Python-level lock is held while blocked), split
    into lines, hand them to the loop; ``None`` at end of input."""

    def push(item: str | None) -> bool:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody listens any more
            return False
        return True

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buf = ""
    while True:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            buf += decoder.decode(b"", final=True)
            if buf:
                push(buf.rstrip("\r"))
            push(None)
            return
        buf += decoder.decode(chunk)
        *complete, buf = buf.split("\n")
        for line in complete:
            if not push(line.rstrip("\r")):
                return


class _Session:
    def __init__(self, client: Client, target: Contact | None) -> None:
        self.client = client
        self.target = target
        self.sent = False

    async def handle(self, line: str) -> bool:
        """Act on one typed line; False to end the session."""
        if not line.strip():
            return True
        if line.startswith("/") and not line.startswith("//"):
            return await self.command(line)
        text = line[1:] if line.startswith("//") else line
        if self.target is None:
            _out("! nobody to send to: start with --to CONTACT or type /to CONTACT")
            return True
        try:
            await self.client.send(self.target, text)
            self.sent = True
        except LocalProtocolError as exc:
            _out(f"! not sent: {exc}")
        return True

    async def command(self, line: str) -> bool:
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        cmd, rest = words[0].lower(), words[1:]
        try:
            if cmd in ("/quit", "/exit", "/q"):
                return False
            if cmd == "/to" and len(rest) == 1:
                self.target = self.client.contact(rest[0])
                _out(f"* lines you type now go to {contact_label(self.target)}")
            elif cmd == "/accept" and len(rest) in (1, 2):
                await self.client.accept_request(rest[0], name=rest[1] if len(rest) == 2 else None)
                self.sent = True
            elif cmd == "/decline" and len(rest) == 1:
                await self.client.decline_request(rest[0])
                _out(f"* declined request {clean(rest[0])} (the sender is not told)")
            elif cmd == "/contacts" and not rest:
                for c in self.client.contacts():
                    mark = "  (blocked)" if c.blocked else ""
                    _out(f"* {short_id(c.id)}  {c.state:<8}  {contact_label(c)}{mark}")
            elif cmd == "/block" and len(rest) == 1:
                c = await self.client.block(rest[0])
                _out(f"* blocked {contact_label(c)}: the relay refuses their messages (/unblock)")
            elif cmd == "/unblock" and len(rest) == 1:
                c = await self.client.unblock(rest[0])
                _out(f"* unblocked {contact_label(c)}: their messages arrive again")
            elif cmd == "/file" and rest:
                await self.file(rest[0], " ".join(rest[1:]) or None)
            elif cmd in ("/unsend", "/edit", "/react", "/disappear", "/typing"):
                await self.conversation(cmd, line)
            else:
                _out(f"! {HELP}")
        except LocalProtocolError as exc:
            _out(f"! {exc}")
        except RelayRejected as exc:
            _out(f"! the relay refused ({clean(exc.code)})")
        except TransportError:
            _out("! the relay is unreachable; try again in a moment")
        return True

    async def file(self, path: str, caption: str | None) -> None:
        """``/file PATH [CAPTION]``: send a file to the target."""
        if self.target is None:
            _out("! nobody to send to: start with --to CONTACT or type /to CONTACT")
            return
        from clientlib.chat.files import send_file

        message = await send_file(self.client, self.target, path, caption=caption)
        self.sent = True
        if message.attachment is not None:
            _out(f"* sent {file_label(message.attachment)} to {contact_label(self.target)}")

    async def conversation(self, cmd: str, line: str) -> None:
        """``/unsend``, ``/edit``, ``/react``, ``/disappear``, ``/typing`` on the target."""
        if self.target is None:
            _out("! no conversation: start with --to CONTACT or type /to CONTACT")
            return
        client, target = self.client, self.target
        rest = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
        if cmd == "/disappear":
            try:
                seconds = parse_duration(rest or "?")
            except ValueError as exc:
                _out(f"! {exc}")
                return
            await client.set_disappearing(target, seconds)
            self.sent = True
            return
        if cmd == "/typing":
            await client.typing(target, rest.strip().lower() not in ("off", "stop", "0"))
            return
        words = rest.split(None, 1)
        pick, text = self._pick(words, "in" if cmd == "/react" else "out")
        if pick is None:
            _out("! no such message (use an id prefix from `history --ids`)")
            return
        if cmd == "/unsend":
            if text:
                _out("! /unsend takes at most a message id")
                return
            await client.unsend(target, pick.id)
        elif cmd == "/edit":
            if not text:
                _out("! /edit [ID] TEXT")
                return
            await client.edit(target, pick.id, text)
        else:
            await client.react(target, pick.id, text.strip(), direction=pick.direction)
        self.sent = True

    def _pick(self, words: list[str], default: str) -> tuple[StoredMessage | None, str]:
        """The message a command names (an id prefix of 4+ hex digits first, else the last
        of ``default`` direction) and the rest of the line."""
        assert self.target is not None
        msgs = [m for m in self.client.messages(self.target) if not m.deleted]
        if words and len(words[0]) >= 4 and all(ch in "0123456789abcdef" for ch in words[0]):
            found = [m for m in msgs if m.id.startswith(words[0])]
            if len(found) == 1:
                return found[0], words[1] if len(words) > 1 else ""
        mine = [m for m in msgs if m.direction == default]
        return (mine[-1] if mine else None), " ".join(words)


async def listen(
    client: Client,
    to: str | None,
    prog: str,
    *,
    pending: Sequence[ContactRequest] = (),
    sync: Callable[[], Awaitable[bool]],
) -> int:
    """Run the live session on a connected client; returns the exit status.

    ``pending``: requests received before this session (shown first, like new ones).
    """
    loop = asyncio.get_running_loop()
    await sync()  # catch up first, so that --to can name a contact that just accepted
    session = _Session(client, client.contact(to) if to is not None else None)
    me = clean(client.name) or "(no name)"
    goes = f"; lines you type go to {contact_label(session.target)}" if session.target else ""
    _out(f"* listening as {me} on {client.relay_url}{goes} (/help, Ctrl-C to quit)")
    for request in pending:
        if any(r.id == request.id for r in client.requests()):
            _out(format_event(client, RequestReceived(request)) or "")

    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(loop, lines), daemon=True).start()

    async def print_events() -> None:
        async for ev in client.events():
            line = format_event(client, ev)
            if line is not None:
                _out(line)
            if isinstance(ev, MessageReceived):  # printed: displayed, so read
                with contextlib.suppress(LocalProtocolError):
                    await client.mark_read(ev.contact.id, [ev.message.id])

    async def read_input() -> None:
        while (line := await lines.get()) is not None:
            if not await session.handle(line):
                return

    printer = loop.create_task(print_events())
    reader = loop.create_task(read_input())
    stopper = loop.create_task(stop.wait())
    try:
        await asyncio.wait({printer, reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        reader.cancel()
        stopper.cancel()
        for task in (reader, stopper):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if printer.done():  # the client stopped on its own (storage failure)
        printer.result()  # a bug in printing: raise it
        _out(f"! the client stopped; run `{prog} listen` again")
        return 2
    if session.sent and not await sync():
        _out("* some messages are still queued; they go out the next time blindchat connects")
    printer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await printer
    return 0
