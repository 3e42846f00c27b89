"""Files in ``blindchat`` (protocol.md §25): ``send CONTACT --file PATH [--view-once]
[--keep-metadata]``, ``/file PATH`` inside ``listen``, ``download CONTACT ID [--out DIR]``.

Received files are shown as ``[photo.jpg, 1.2 MB, id 3f2a]``; the id is what ``download``
takes. Transfers over about a megabyte draw a progress bar (tqdm) on stderr, so stdout stays
one line per result.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clientlib.chat._plumbing import EXIT_FAILED, EXIT_OK, CliError
from clientlib.chat._plumbing import Ctx as _Ctx
from clientlib.chat._plumbing import catch_up as _catch_up
from clientlib.chat._plumbing import open_client as _open
from clientlib.chat._plumbing import out as _out
from clientlib.chat._plumbing import sync as _sync
from clientlib.chat.text import clean, contact_label, file_label
from clientlib.client import Client, Contact, StoredMessage

__all__ = [
    "PROGRESS_FROM",
    "cmd_download",
    "cmd_send_file",
    "progress_bar",
    "register",
    "send_file",
]

#: Transfers from this size on show a progress bar.
PROGRESS_FROM = 1 << 20


@contextlib.contextmanager
def progress_bar(total: int, what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr for ``total`` bytes
    from :data:`PROGRESS_FROM` on (None below: small files need no bar)."""
    if total < PROGRESS_FROM:
        yield None
        return
    bar = tqdm(
        total=total,
        desc=what,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )
    shown = 0

    def update(done: int, _total: int) -> None:
        nonlocal shown
        if done > shown:
            bar.update(done - shown)
            shown = done

    try:
        yield update
    finally:
        bar.close()


def _size_of(path: str) -> tuple[Path, int]:
    p = Path(path).expanduser()
    try:
        return p, p.stat().st_size
    except OSError:
        return p, 0


def _out_dir(out: str | None) -> Path:
    d = Path(out).expanduser() if out else Path.cwd()
    if not d.is_dir():
        raise CliError(EXIT_FAILED, f"not a directory: {clean(str(d))}")
    return d


async def send_file(
    client: Client,
    contact: Contact,
    path: str,
    *,
    caption: str | None = None,
    view_once: bool = False,
    keep_metadata: bool = False,
) -> StoredMessage:
    """Upload and queue one file (a bar for large ones)."""
    p, size = _size_of(path)
    with progress_bar(size, "upload") as progress:
        return await client.send_file(
            contact,
            p,
            caption=caption,
            view_once=view_once,
            keep_metadata=keep_metadata,
            progress=progress,
        )


async def cmd_send_file(ctx: _Ctx, args: argparse.Namespace) -> int:
    """``send CONTACT --file PATH [--caption TEXT]`` (words before ``--file`` are a caption
    too)."""
    caption = " ".join(filter(None, [" ".join(args.text), args.caption or ""])) or None
    async with _open(ctx, connect=True) as client:
        await _sync(client, ctx)  # learn acceptances and the contact's media setting first
        contact = client.contact(args.contact)
        message = await send_file(
            client,
            contact,
            args.file,
            caption=caption,
            view_once=args.view_once,
            keep_metadata=args.keep_metadata,
        )
        await _sync(client, ctx)
        stored = next((m for m in client.messages(contact) if m.id == message.id), message)
    label = contact_label(contact)
    shown = file_label(message.attachment) if message.attachment is not None else "file"
    if stored.state == "sent":
        _out(f"sent {shown} to {label}")
    else:
        _out(f"uploaded {shown}; the message to {label} goes out the next time blindchat connects")
    return EXIT_OK


async def cmd_download(ctx: _Ctx, args: argparse.Namespace) -> int:
    """``download CONTACT ID [--out DIR]``."""
    out = _out_dir(args.out)
    async with _open(ctx, connect=True) as client:
        await _catch_up(client, ctx)
        contact = client.contact(args.contact)
        attachment = client.attachment(contact, args.id)
        with progress_bar(attachment.size, "download") as progress:
            path = await client.download(attachment, out, progress=progress)
    _out(f"saved {file_label(attachment)} from {contact_label(contact)} to {clean(str(path))}")
    if attachment.view_once:
        _out(
            "view-once: it is gone from the relay and from the conversation; delete the file "
            "once you have looked at it"
        )
    return EXIT_OK


def register(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """Add ``download`` to blindchat's parser (``send --file`` is in the ``send`` parser)."""
    p = add("download", cmd_download, "download a file a contact sent (decrypted, verified)")
    p.add_argument("contact", metavar="CONTACT")
    p.add_argument("id", metavar="ID", help="the file id shown with it ([name, size, id 3f2a])")
    p.add_argument("--out", metavar="DIR", help="where to save it (default: this directory)")
