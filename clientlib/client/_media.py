"""Files: sending, receiving, downloading (protocol.md §25, §5.9), with consent, view-once,
disappearing timers, stripped metadata and reportable plaintext.

Sending (:meth:`Media.send_file`): the consent checks first (the contact's ``media``
setting, §22.6; a contact that has not accepted yet is reached only through its contact
address, which takes no attachments); an image is re-encoded from its pixels
(:mod:`clientlib.client._images`) unless ``keep_metadata``; the blob is created for the
contact's mailbox with its capability (``ttl`` the conversation's disappearing timer,
``dl`` = 1 for view-once), then the file is encrypted and uploaded in one streamed pass
(:class:`~clientlib.crypto.attachment.AttachmentEncryptor`, deterministic in its key, so a
cut upload is resumed by encrypting again and skipping what the relay holds); only then is
the ``file`` content sealed, with the plaintext hash under the franking commitment, and
queued with ``att`` = [blob id]. A source that is a stream of unknown length is spooled
first, encrypted under a throwaway key, to a temporary file: no plaintext reaches the disk.

Receiving (:meth:`Media.on_file`, inside the inbox): dropped (``content_refused``) when our
own ``media`` setting for the contact is off; otherwise stored with its descriptor.
Downloading (:meth:`Media.download`) decrypts as the ciphertext arrives into a temporary
file beside the destination, verifies (§25.2) and links it into place only then; on any
error the temporary file is deleted. A view-once file is downloaded once (the relay deletes
the blob as the download starts) and its descriptor leaves the history at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import mimetypes
import os
import tempfile
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from clientlib.client._book import AddressBook, ContactRef
from clientlib.client._contacts import ContactOps
from clientlib.client._history_records import attachment_record
from clientlib.client._images import ImageTooLarge, blur_thumbnail, sniff_image, strip_image
from clientlib.client._link import Link
from clientlib.client._outbox import Outbox
from clientlib.client._reports import ReportEvidence
from clientlib.client.config import ClientConfig
from clientlib.client.content import (
    MAX_CAPTION_BYTES,
    MAX_FILENAME_BYTES,
    MAX_MIME_BYTES,
    MESSAGE_ID_SIZE,
    FileMessage,
    Receipt,
    decode_content,
)
from clientlib.client.history import HistoryStore
from clientlib.client.state import ContactRecord
from clientlib.client.types import (
    Attachment,
    ClientEvent,
    ClientWarning,
    Contact,
    GroupEvent,
    StoredMessage,
)
from clientlib.crypto.attachment import (
    DEFAULT_CHUNK_SIZE,
    AttachmentDecryptor,
    AttachmentEncryptor,
    ciphertext_size,
)
from clientlib.errors import LocalProtocolError, TransportError, WireError
from clientlib.keystore.file import fsync_dir
from clientlib.session.events import MessageReceived as SessionMessage
from clientlib.transport.blobs import BlobTransport
from clientlib.wire.frames import StoredEnvelope
from clientlib.wire.relay_frames import BlobCreated

if TYPE_CHECKING:
    from clientlib.client._groups import Groups

__all__ = ["MAX_REPORTED_FILE", "Media", "MediaRefused", "Progress", "safe_filename"]

log = logging.getLogger("clientlib.client")

#: ``progress(done, total)``: plaintext bytes moved so far, of ``total``.
Progress = Callable[[int, int], None]
#: Plaintext read (and encrypted) at a time: one piece in memory per direction.
_PIECE: Final = 1 << 20
#: Files a report can reveal inside one owner command (protocol.md §25.6); larger ones
#: wait for a streamed reveal (not specified yet).
MAX_REPORTED_FILE: Final = 48 * 1024
_OCTET: Final = "application/octet-stream"


class MediaRefused(LocalProtocolError):
    """The file was not sent (or not downloaded) because consent is missing: the contact
    turned media off, the contact has not accepted (its contact address takes no
    attachments), or our own media setting for the contact is off. Nothing was uploaded."""


def safe_filename(name: str | None) -> str | None:
    """The last path component of a name from a contact, without control or format
    characters, never ``.``/``..`` nor hidden; None if nothing is left."""
    if not name:
        return None
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in last if unicodedata.category(ch)[0] != "C").strip()
    cleaned = cleaned.lstrip(".").strip()
    while len(cleaned.encode()) > MAX_FILENAME_BYTES:
        cleaned = cleaned[:-1]
    return cleaned or None


# --- plaintext sources ---------------------------------------------------------------------


class _Plain:
    """A plaintext of known size that can be read from the start again (each upload pass)."""

    size: int

    def open(self) -> IO[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PathPlain(_Plain):
    def __init__(self, path: Path) -> None:
        self.path = path
        st = path.stat()
        self.size = st.st_size
        self._stamp = (st.st_size, st.st_mtime_ns)

    def open(self) -> IO[bytes]:
        f = self.path.open("rb")
        st = os.fstat(f.fileno())
        if (st.st_size, st.st_mtime_ns) != self._stamp:
            f.close()
            raise LocalProtocolError("the file changed while it was being sent")
        return f


class _BytesPlain(_Plain):
    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    def open(self) -> IO[bytes]:
        return io.BytesIO(self._data)


class _Spool(_Plain):
    """A stream written to an anonymous temporary file under a throwaway ChaCha20 key, so
    that it can be read twice without plaintext on disk."""

    def __init__(self) -> None:
        # Anonymous (unlinked at once) and closed by close(): not a context manager's job.
        self._f = tempfile.TemporaryFile()  # noqa: SIM115
        self._key = os.urandom(32)
        self._nonce = os.urandom(16)
        self._enc = Cipher(algorithms.ChaCha20(self._key, self._nonce), None).encryptor()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._f.write(self._enc.update(data))
        self.size += len(data)

    def open(self) -> IO[bytes]:
        self._f.flush()
        self._f.seek(0)
        dec = Cipher(algorithms.ChaCha20(self._key, self._nonce), None).decryptor()
        f = self._f

        class _Reader(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                data = dec.update(f.read(len(b)))
                b[: len(data)] = data
                return len(data)

            def close(self) -> None:  # the spool stays open for the next pass
                super().close()

        return io.BufferedReader(_Reader())

    def close(self) -> None:
        self._f.close()


@dataclass
class _Prepared:
    plain: _Plain
    mime: str
    name: str | None
    thumb: bytes | None


def _read_encrypt(f: IO[bytes], enc: AttachmentEncryptor, left: int) -> tuple[bytes, int, bool]:
    """One piece (in a worker thread): read, encrypt; at the end, finish."""
    data = f.read(min(_PIECE, left)) if left else b""
    if left and not data:
        raise LocalProtocolError("the file changed while it was being sent")
    if data:
        return enc.update(data), left - len(data), False
    if f.read(1):
        raise LocalProtocolError("the file changed while it was being sent")
    return enc.finish(), 0, True


class Media:
    """Files of a client (:class:`~clientlib.client.Client` documents the methods)."""

    def __init__(
        self,
        book: AddressBook,
        ops: ContactOps,
        outbox: Outbox,
        link: Link,
        config: ClientConfig,
        *,
        history: Callable[[], HistoryStore],
        emit: Callable[[ClientEvent], None],
        now: Callable[[], int],
    ) -> None:
        self._book = book
        self._ops = ops
        self._outbox = outbox
        self._link = link
        self._config = config
        self._history = history
        self._emit = emit
        self._now = now
        #: The client's groups (set by the client): files in groups (§25.5).
        self.groups: Groups | None = None

    # --- the relay's blob store -------------------------------------------------------------

    def _blobs(self, relay: str | None, *, own: bool = False) -> BlobTransport:
        """The blob store of a relay (None: home; ``own``: one of our receive relays)."""
        link, cfg = self._link, self._config
        # Blob requests go the way deposits go: with ``spread``, each on a new connection.
        session = link.deposit_session if cfg.spread else link.http_session
        if session is None:
            raise TransportError("the client is not connected")
        if relay is None:
            return BlobTransport(session, self._book.relay_url, request_timeout=cfg.request_timeout)
        if cfg.private_routing and not own:
            raise LocalProtocolError(
                "files to and from contacts on another relay are not sent through private "
                "routing yet (protocol.md §27.3)"
            )
        t = link.relays.direct(relay)
        return BlobTransport(t.session, t.base_url, request_timeout=cfg.request_timeout)

    # --- consent ----------------------------------------------------------------------------

    def _check_can_send(self, c: ContactRecord) -> None:
        if c.blocked:
            raise LocalProtocolError("the contact is blocked; unblock it first")
        if c.me:
            raise LocalProtocolError("not a contact")
        if c.state != "accepted" or c.send is None or not c.session:
            raise MediaRefused(
                "the contact has not accepted yet: until then it is reached through its "
                "contact address, which takes no attachments"
            )
        if c.peer is not None and len(c.peer) >= 3 and not c.peer[2]:
            raise MediaRefused("the contact does not accept media (its media setting is off)")

    async def ensure_capabilities(self) -> None:
        """Bring the attachment capability hash of every contact in line with our media
        setting for it (on connect: contacts from before revision 8 get theirs)."""
        for cid, c in list(self._book.contacts.items()):
            if c.me or not c.mycap:
                continue
            want = (bool(c.settings[2]) if len(c.settings) > 2 else True) and not c.blocked
            if want != c.hatt:
                try:
                    await self._ops.set_media_capability(cid, want)
                except TransportError:  # RelayRejected included: tried again next connect
                    log.debug("attachment capability not updated")

    # --- sending ----------------------------------------------------------------------------

    async def send_file(
        self,
        ref: ContactRef,
        source: str | os.PathLike[str] | bytes | AsyncIterable[bytes],
        *,
        caption: str | None,
        view_once: bool,
        mime: str | None,
        progress: Progress | None,
        keep_metadata: bool,
        name: str | None,
    ) -> StoredMessage:
        book = self._book
        cid = book.resolve_contact(ref)
        self._check_can_send(book.contacts[cid])
        _check_caption_mime(caption, mime)
        prepared = await self._prepare(source, mime=mime, name=name, keep=keep_metadata)
        try:
            return await self._send_prepared(cid, prepared, caption, view_once, progress)
        finally:
            prepared.plain.close()

    async def _prepare(
        self,
        source: str | os.PathLike[str] | bytes | AsyncIterable[bytes],
        *,
        mime: str | None,
        name: str | None,
        keep: bool,
    ) -> _Prepared:
        plain: _Plain
        head = b""
        if isinstance(source, str | os.PathLike):
            plain, head = await asyncio.to_thread(_open_path, Path(source))
            name = name if name is not None else Path(source).name
        elif isinstance(source, bytes | bytearray | memoryview):
            plain = _BytesPlain(bytes(source))
            head = bytes(source[:16])
        else:
            plain, head = await self._spool(source, keep=keep, mime=mime)
        name = safe_filename(name)
        guessed = mimetypes.guess_type(name)[0] if name else None
        kind = mime or guessed or _OCTET
        thumb: bytes | None = None
        if not keep and sniff_image(head):
            try:
                stripped = await asyncio.to_thread(_strip, plain)
            except ImageTooLarge:
                plain.close()
                raise LocalProtocolError(
                    "the image is too large to remove its metadata; send it with "
                    "keep_metadata=True to send it as it is"
                ) from None
            if stripped is not None:
                data, kind, thumb = stripped
                plain.close()
                plain = _BytesPlain(data)
        if len(kind.encode()) > MAX_MIME_BYTES:
            kind = _OCTET
        return _Prepared(plain, kind, name, thumb or None)

    async def _spool(
        self, source: AsyncIterable[bytes], *, keep: bool, mime: str | None
    ) -> tuple[_Plain, bytes]:
        """Read a stream: an image (to be stripped) into memory, anything else into an
        encrypted spool file."""
        spool = _Spool()
        head = b""
        try:
            async for piece in source:
                if not isinstance(piece, bytes | bytearray | memoryview):
                    raise LocalProtocolError("a file stream must yield bytes")
                if len(head) < 16:
                    head += bytes(piece[: 16 - len(head)])
                await asyncio.to_thread(spool.write, bytes(piece))
        except BaseException:
            spool.close()
            raise
        return spool, head

    async def _upload(
        self,
        blobs: BlobTransport,
        sid: bytes,
        cap: bytes | None,
        p: _Prepared,
        key: bytes,
        *,
        ttl: int | None,
        dl: int | None,
        progress: Progress | None,
    ) -> tuple[BlobCreated, AttachmentEncryptor]:
        """Create the blob for mailbox ``sid`` and upload ``p`` encrypted under ``key``."""
        size, cs = p.plain.size, DEFAULT_CHUNK_SIZE
        total = ciphertext_size(size, cs)
        created = await blobs.create(sid, total, cap=cap, ttl=ttl, dl=dl)
        finished: list[AttachmentEncryptor] = []

        async def body(offset: int) -> AsyncIterator[bytes]:
            enc = AttachmentEncryptor(key, size, cs)
            f = await asyncio.to_thread(p.plain.open)
            try:
                pos, left, done = 0, size, False
                while not done:
                    ct, left, done = await asyncio.to_thread(_read_encrypt, f, enc, left)
                    end = pos + len(ct)
                    if end > offset:
                        yield ct[max(0, offset - pos) :] if pos < offset else ct
                    pos = end
                finished.append(enc)
            finally:
                f.close()

        def moved(done: int, _total: int) -> None:
            if progress is not None:
                progress(min(size, done * size // total) if total else size, size)

        await blobs.upload(created.blob, created.ut, total, body, progress=moved)
        if not finished:  # completed by an earlier pass whose answer was cut: hash locally
            async for _ in body(total):
                pass
        return created, finished[-1]

    async def send_group_file(
        self,
        gid: bytes,
        source: str | os.PathLike[str] | bytes | AsyncIterable[bytes],
        *,
        caption: str | None,
        mime: str | None,
        progress: Progress | None,
        keep_metadata: bool,
        name: str | None,
    ) -> GroupEvent:
        """A file to a group (protocol.md §25.5, §26.5): one upload, to a blob created for
        our own group mailbox; one ``file`` message fanned out to every member."""
        groups = self.groups
        assert groups is not None
        groups.check_can_post(gid, media=True)
        _check_caption_mime(caption, mime)
        prepared = await self._prepare(source, mime=mime, name=name, keep=keep_metadata)
        try:
            sid, cap, ttl = await groups.extras.media_target(gid)
            key = self._book.rng(32)
            created, enc = await self._upload(
                self._blobs(None), sid, cap, prepared, key, ttl=ttl, dl=None, progress=progress
            )
        finally:
            prepared.plain.close()
        mid = self._book.rng(MESSAGE_ID_SIZE)
        descriptor = FileMessage(
            id=mid,
            ts=self._now(),
            blob=created.blob,
            tok=created.rt,
            key=key,
            cd=enc.ciphertext_sha256,
            size=prepared.plain.size,
            cs=DEFAULT_CHUNK_SIZE,
            mime=prepared.mime,
            name=prepared.name,
            text=caption or None,
            thumb=prepared.thumb,
            exp=ttl,
        ).encode()
        return await groups.extras.send_file(gid, descriptor, enc.plaintext_sha256, mid)

    async def _send_prepared(
        self,
        cid: bytes,
        p: _Prepared,
        caption: str | None,
        view_once: bool,
        progress: Progress | None,
    ) -> StoredMessage:
        book = self._book
        c = book.contacts[cid]
        assert c.send is not None
        size, cs = p.plain.size, DEFAULT_CHUNK_SIZE
        key = book.rng(32)
        # The blob lives as long as the message may (protocol.md §25.4 step 3): the
        # conversation's disappearing timer if any, else the relay's envelope TTL.
        created, enc = await self._upload(
            self._blobs(c.relay),
            c.send,
            c.sendcap,
            p,
            key,
            ttl=c.dis or None,
            dl=1 if view_once else None,
            progress=progress,
        )
        ph, cd = enc.plaintext_sha256, enc.ciphertext_sha256
        await self._ops.refresh_moderator_keys(c.relay)
        async with book.lock:
            if cid not in book.contacts:
                raise LocalProtocolError("the contact was removed")
            now = self._now()
            mid = book.rng(MESSAGE_ID_SIZE)
            extra, stored = self._ops.decorate(cid, now) if self._ops.decorate else ({}, {})
            if extra.get("dlv") or extra.get("rd"):
                # Receipts owed to the contact ride on text messages; a file carries none,
                # so they leave just before it, in their own message (§22.11).
                self._ops.seal_and_queue(
                    cid, Receipt(dlv=extra.get("dlv"), rd=extra.get("rd")).encode(), now=now
                )
            content = FileMessage(
                id=mid,
                ts=now,
                blob=created.blob,
                tok=created.rt,
                key=key,
                cd=cd,
                size=size,
                cs=cs,
                mime=p.mime,
                name=p.name,
                text=caption or None,
                thumb=p.thumb,
                vo=1 if view_once else None,
                exp=extra.get("exp"),
            ).encode()
            # Our own copy: a view-once file keeps no descriptor (downloading it would use
            # the contact's one download).
            att = Attachment(
                cid.hex(),
                mid.hex(),
                p.name,
                p.mime,
                size,
                thumbnail=p.thumb,
                view_once=view_once,
                descriptor=b"" if view_once else content,
                plaintext_hash=b"" if view_once else ph,
            )
            msg = StoredMessage(
                cid.hex(),
                mid.hex(),
                "out",
                caption or "",
                now,
                now,
                "queued",
                attachment=att,
                **stored,
            )
            self._ops.seal_and_queue(
                cid,
                content,
                now=now,
                history=msg,
                attachment_hashes=[ph],
                att=[created.blob],
            )
            await book.save()
        self._outbox.wake()
        return msg

    # --- receiving --------------------------------------------------------------------------

    def on_file(
        self,
        cid: bytes,
        c: ContactRecord,
        content: FileMessage,
        received: SessionMessage,
        env: StoredEnvelope,
        now: int,
        events: list[ClientEvent],
        new_messages: list[tuple[Contact, StoredMessage]],
    ) -> None:
        """A ``file`` content arrived (inbox, lock held): store it, or drop it when our
        media setting for the contact is off (nothing is ever fetched from it)."""
        book = self._book
        if len(received.attachment_hashes) != 1 or received.amf_signature is None:
            events.append(ClientWarning("unreportable", "", cid.hex()))
            return
        if len(c.settings) > 2 and not c.settings[2]:
            events.append(ClientWarning("content_refused", "media is off", cid.hex()))
            return
        evidence = ReportEvidence.of(
            received, env, sender=c.identity, recipient=bytes(book.identity.public)
        )
        thumb = content.thumb
        if thumb is not None and not c.verified:
            thumb = blur_thumbnail(thumb)
        att = Attachment(
            cid.hex(),
            content.id.hex(),
            safe_filename(content.name),
            content.mime,
            content.size,
            thumbnail=thumb,
            view_once=bool(content.vo),
            descriptor=received.plaintext,
            plaintext_hash=received.attachment_hashes[0],
        )
        msg = StoredMessage(
            cid.hex(),
            content.id.hex(),
            "in",
            content.text or "",
            content.ts,
            now,
            "received",
            evidence.encode(),
            timer=content.exp or 0,
            attachment=att,
        )
        new_messages.append((book.contact_view(cid), msg))

    def thumbnail(self, a: Attachment) -> bytes | None:
        """The thumbnail as it should be shown now: sharp once the contact is verified."""
        stored = self._stored(a)
        if stored is None or stored.attachment is None:
            return None
        cur = stored.attachment
        c = self._book.contacts.get(bytes.fromhex(a.contact_id))
        if c is not None and c.verified and cur.descriptor:
            fm = _descriptor(cur)
            return fm.thumb
        return cur.thumbnail

    def _stored(self, a: Attachment) -> StoredMessage | None:
        h = self._history()
        return h.get(a.contact_id, "in", a.message_id) or h.get(a.contact_id, "out", a.message_id)

    def find(self, ref: ContactRef, short_id: str) -> Attachment:
        """The file of a message of a conversation by its short id (message id prefix of
        at least 4 hex digits), newest first among equal prefixes is refused as ambiguous."""
        cid = self._book.resolve_contact(ref)
        k = short_id.strip().lower()
        if len(k) < 4:
            raise LocalProtocolError("a file id is at least 4 hex digits")
        found = [
            m.attachment
            for m in self._history().messages(cid.hex())
            if m.attachment is not None and m.id.startswith(k)
        ]
        if not found:
            raise LocalProtocolError("no such file in this conversation")
        if len(found) > 1:
            raise LocalProtocolError("ambiguous file id; give more digits")
        return found[0]

    # --- downloading ------------------------------------------------------------------------

    async def download(
        self,
        a: Attachment,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None,
    ) -> Path:
        book = self._book
        stored: StoredMessage | None = None
        if a.group_id:
            # A group's file (§25.5): its blob is on the group's relay (ours), under the
            # sender's group mailbox; never fetched while the group has media off.
            assert self.groups is not None
            desc, ph, media = self.groups.extras.find_file(
                bytes.fromhex(a.group_id), bytes.fromhex(a.message_id)
            )
            if not media:
                raise MediaRefused("media is off in this group: its files are not downloaded")
            cur = replace(a, descriptor=desc, plaintext_hash=ph)
            blobs = self._blobs(None)
        else:
            cid = bytes.fromhex(a.contact_id)
            c = book.contacts.get(cid)
            if c is None:
                raise LocalProtocolError("the contact was removed")
            stored = self._stored(a)
            kept = stored.attachment if stored is not None else None
            if stored is None or kept is None:
                raise LocalProtocolError("the message is gone")
            cur = kept
            if stored.direction == "in" and len(c.settings) > 2 and not c.settings[2]:
                raise MediaRefused("media from this contact is off: its files are not downloaded")
            if not cur.downloadable:
                raise LocalProtocolError(
                    "nothing to download: a view-once file that was opened, or our own view-once"
                )
            # Where the blob is: on the relay of the mailbox it was sent to (ours for files
            # we received, the contact's for files we sent).
            blobs = self._blobs(
                c.rr if stored.direction == "in" else c.relay, own=stored.direction == "in"
            )
        fm = _descriptor(cur)
        base, in_dir = await asyncio.to_thread(
            _destination, Path(dest), cur.name or f"file-{cur.id}"
        )
        total = ciphertext_size(fm.size, fm.cs)
        dec = AttachmentDecryptor(
            fm.key, fm.size, fm.cs, ciphertext_sha256=fm.cd, plaintext_sha256=cur.plaintext_hash
        )
        fd, tmp = tempfile.mkstemp(prefix=".blindrelay-", suffix=".part", dir=base.parent)
        pending: list[bytes] = []
        held = 0
        try:

            async def flush() -> None:
                nonlocal held
                data = b"".join(pending)
                pending.clear()
                held = 0
                await asyncio.to_thread(_write_all, fd, data)

            async def sink(piece: bytes) -> None:
                nonlocal held
                out = dec.update(piece)
                if out:
                    pending.append(out)
                    held += len(out)
                    if held >= _PIECE:
                        await flush()

            def moved(done: int, _total: int) -> None:
                if progress is not None:
                    progress(min(fm.size, done * fm.size // total), fm.size)

            if fm.vo and stored is not None:
                # The relay deletes a view-once blob as its download starts: the
                # descriptor leaves our history first, whatever happens next.
                await self._mark_viewed(stored)
            await blobs.download(fm.blob, fm.tok, total, sink, resumable=not fm.vo, progress=moved)
            pending.append(dec.finish())
            await flush()
            await asyncio.to_thread(os.fsync, fd)
            os.close(fd)
            fd = -1
            final = await asyncio.to_thread(_place, Path(tmp), base, unique=in_dir)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if progress is not None:
            progress(fm.size, fm.size)
        return final

    async def _mark_viewed(self, m: StoredMessage) -> None:
        """A view-once file was opened: only its name, type and size stay, and the old
        records (key, read token, thumbnail) are shredded from the history file."""
        assert m.attachment is not None
        viewed = replace(m.attachment, thumbnail=None, viewed=True, descriptor=b"")
        async with self._book.lock:
            self._history().update(
                m.contact_id,
                m.direction,
                m.id,
                {"at": attachment_record(viewed), "text": ""},
                shred=True,
            )
            await self._book.save()

    # --- reports ----------------------------------------------------------------------------

    def reportable(self, m: StoredMessage) -> Attachment | None:
        """The file a report of ``m`` must reveal (None: it carries none).

        Raises:
            LocalProtocolError: the file is no longer held (an opened view-once file).
        """
        a = m.attachment
        if a is None:
            return None
        stored = self._stored(a)
        cur = stored.attachment if stored is not None else None
        if cur is None or not cur.downloadable:
            raise LocalProtocolError(
                "the file is no longer held (a view-once file that was opened): the report "
                "cannot reveal it"
            )
        return cur

    async def report_attachments(self, m: StoredMessage) -> list[bytes]:
        """The plaintext of a received message's small file (at most
        :data:`MAX_REPORTED_FILE`), for the ``atts`` of a report (protocol.md §25.6):
        fetched again from the relay and verified; the relay checks it against the hash
        under the franking commitment. Larger files go by hash and :meth:`reveal`."""
        cur = self.reportable(m)
        if cur is None:
            return []
        if cur.size > MAX_REPORTED_FILE:
            raise LocalProtocolError("too large to reveal inside the report command")
        fm = _descriptor(cur)
        dec = AttachmentDecryptor(
            fm.key, fm.size, fm.cs, ciphertext_sha256=fm.cd, plaintext_sha256=cur.plaintext_hash
        )
        out = bytearray()

        async def sink(piece: bytes) -> None:
            out.extend(dec.update(piece))

        relay = self._receive_relay(m)
        await self._blobs(relay, own=True).download(
            fm.blob, fm.tok, ciphertext_size(fm.size, fm.cs), sink, resumable=not fm.vo
        )
        out.extend(dec.finish())
        return [bytes(out)]

    def _receive_relay(self, m: StoredMessage) -> str | None:
        """The receive relay of the conversation a received message is in (None: home)."""
        c = self._book.contacts.get(bytes.fromhex(m.contact_id))
        return c.rr if c is not None else None

    async def reveal(self, cur: Attachment, report: bytes, relay: str | None = None) -> None:
        """Stream the plaintext of a reported file to the relay (``PUT
        /v1/report/<report>/0``, protocol.md §5.9 "Reports"): fetched from the blob store,
        decrypted as it arrives and sent on, never held whole; the relay keeps it only if
        its SHA-256 is the committed one.

        Raises:
            AttachmentCorrupt: the blob does not verify (the relay then keeps nothing).
            RelayRejected: ``FRANKING``, ``AUTH``, ``TOO_LARGE``, ``STORAGE_FULL``.
            TransportError: a relay could not be reached.
        """
        link = self._link if relay is None else self._link.receiver(relay)
        http = link.http
        if http is None:
            raise TransportError("the client is not connected")
        failed: list[Exception] = []

        async def body() -> AsyncIterator[bytes]:
            try:
                async for piece in self._plaintext(cur, relay):
                    yield piece
            except Exception as exc:  # aiohttp reports it as a connection error: keep it
                failed.append(exc)
                raise

        try:
            await http.reveal_attachment(report, 0, body())
        except TransportError:
            if failed:
                raise failed[0] from None
            raise

    async def _plaintext(self, cur: Attachment, relay: str | None) -> AsyncIterator[bytes]:
        """The verified plaintext of a file, as an async stream (at most a few pieces
        buffered). The last piece comes only once everything verified."""
        fm = _descriptor(cur)
        dec = AttachmentDecryptor(
            fm.key, fm.size, fm.cs, ciphertext_sha256=fm.cd, plaintext_sha256=cur.plaintext_hash
        )
        q: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=4)

        async def sink(piece: bytes) -> None:
            out = dec.update(piece)
            if out:
                await q.put(out)

        async def run() -> None:
            try:
                await self._blobs(relay, own=True).download(
                    fm.blob, fm.tok, ciphertext_size(fm.size, fm.cs), sink, resumable=not fm.vo
                )
                await q.put(dec.finish())
                await q.put(None)
            except Exception as exc:  # handed to the reader, which raises it
                await q.put(exc)

        task = asyncio.create_task(run())
        try:
            while (item := await q.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _check_caption_mime(caption: str | None, mime: str | None) -> None:
    if caption is not None and (len(caption.encode()) > MAX_CAPTION_BYTES or "\x00" in caption):
        raise LocalProtocolError(f"a caption is at most {MAX_CAPTION_BYTES} bytes of UTF-8")
    if mime is not None and (len(mime.encode()) > MAX_MIME_BYTES or "/" not in mime):
        raise LocalProtocolError("mime must be a media type such as image/jpeg")


def _descriptor(a: Attachment) -> FileMessage:
    try:
        fm = decode_content(a.descriptor)
    except WireError:
        fm = None
    if not isinstance(fm, FileMessage):
        raise LocalProtocolError("the file's descriptor is damaged")
    return fm


def _strip(plain: _Plain) -> tuple[bytes, str, bytes] | None:
    with plain.open() as f:
        return strip_image(f)


def _open_path(path: Path) -> tuple[_Plain, bytes]:
    if not path.is_file():
        raise LocalProtocolError("not a file")
    plain = _PathPlain(path)
    with path.open("rb") as f:
        return plain, f.read(16)


def _destination(target: Path, name: str) -> tuple[Path, bool]:
    """``(path to link the file at, whether a free name may be chosen)``."""
    in_dir = target.is_dir()
    if not in_dir and target.exists():
        raise FileExistsError("the destination exists")
    base = target / name if in_dir else target
    if not base.parent.is_dir():
        raise LocalProtocolError("the destination's directory does not exist")
    return base, in_dir


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _place(tmp: Path, base: Path, *, unique: bool) -> Path:
    """Link the verified temporary file into place without ever replacing a file (a name
    taken gets `` (1)``, `` (2)``... when downloading into a directory), then remove the
    temporary name and fsync the directory."""
    stem, suffix = base.stem, base.suffix
    n = 0
    while True:
        final = base if n == 0 else base.with_name(f"{stem} ({n}){suffix}")
        try:
            os.link(tmp, final)
            break
        except FileExistsError:
            if not unique or n > 999:
                raise
            n += 1
    os.unlink(tmp)
    with contextlib.suppress(OSError):
        fsync_dir(final.parent)
    return final
