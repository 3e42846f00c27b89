"""``blindchat listen``: print events as they happen, send what is typed on stdin.

Every event is one line (continuation lines of a multi-line message are indented)::

    [14:02:11] alice: hello
    [14:02:15] * contact request 1a2b3c4d from bob: "hi, it's Bob" (/accept 1a2b3c4d)
    [14:02:20] * bob is now a contact (id 9f8e7d6c)
    [14:03:00] * connection to the relay lost; reconnecting
    [14:03:04] ! warning: dropped a message that did not decrypt
    [14:03:09] ! request to 5e5d33e6 refused by the relay: daily limit reached (try again tomorrow)

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
    MessageReceived,
    RequestReceived,
)
from clientlib.errors import LocalProtocolError, RelayRejected, TransportError

__all__ = ["format_event", "listen"]

HELP = (
    "commands: /to CONTACT (send typed lines to CONTACT), /accept ID [NAME], /decline ID, "
    "/contacts, /block CONTACT, /unblock CONTACT, /quit; start a message with // to send a "
    "leading /"
)


def _out(line: str) -> None:
    print(line, flush=True)


def format_event(client: Client, ev: ClientEvent) -> str | None:
    """The line printed for an event (``None``: not shown)."""
    if isinstance(ev, MessageReceived):
        text = clean(ev.message.text, multiline=True)
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
    if isinstance(ev, DeliveryChanged):
        if ev.state != "failed":
            return None
        return f"{clock()} ! a message to {_label_of(client, ev.contact_id)} could not be delivered"
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
            else:
                _out(f"! {HELP}")
        except LocalProtocolError as exc:
            _out(f"! {exc}")
        except RelayRejected as exc:
            _out(f"! the relay refused ({clean(exc.code)})")
        except TransportError:
            _out("! the relay is unreachable; try again in a moment")
        return True


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
