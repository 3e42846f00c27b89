"""The files part of :class:`~clientlib.client.Client` (protocol.md §25): sending,
downloading, thumbnails. A mixin, so that the facade stays short; the logic is in
``_media`` (and ``_images``, the blob transport in :mod:`clientlib.transport.blobs`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable
from pathlib import Path

from clientlib.client._book import ContactRef
from clientlib.client._groups import Groups
from clientlib.client._media import Media, Progress
from clientlib.client.types import Attachment, GroupEvent, StoredMessage

__all__ = ["FilesMixin"]


class FilesMixin:
    """Methods of :class:`~clientlib.client.Client` (documented here); the attributes are
    the client's."""

    _media: Media
    _groups: Groups

    async def send_file(
        self,
        ref: ContactRef,
        source: str | os.PathLike[str] | bytes | AsyncIterable[bytes],
        *,
        caption: str | None = None,
        view_once: bool = False,
        mime: str | None = None,
        progress: Progress | None = None,
        keep_metadata: bool = False,
        name: str | None = None,
    ) -> StoredMessage:
        """Send a file (protocol.md §25): a path, bytes, or an async stream of bytes.

        The file is encrypted under a fresh key and uploaded to the relay as padded
        ciphertext under a random id while it is read (a cut upload resumes where the relay
        says); the message that follows carries the key, the digest, the name, the type and
        a thumbnail, so the relay never sees any of them. Returns once the file is uploaded
        and the message is sealed and queued (like :meth:`send`). Nothing holds the whole
        file in memory except an image being stripped (below); a stream of unknown length
        is spooled, encrypted under a throwaway key, to a temporary file first.

        ``caption``: text shown with it. ``view_once``: the relay allows one download and
        the contact's client keeps nothing afterwards; our own copy keeps no key.
        ``mime``: the media type (default: from the image, or the name, or
        ``application/octet-stream``). ``progress(done, total)``: called as bytes go out.
        ``keep_metadata``: send an image as it is; by default a JPEG, PNG or WebP is
        re-encoded from its pixels (orientation applied), which removes EXIF (GPS
        included), XMP, IPTC, maker notes and comments. ``name``: the file name the
        contact sees (default: the path's last component; a stream has none).

        The blob expires with the conversation's disappearing timer when one is set, else
        with the relay's envelope TTL.

        Raises:
            MediaRefused: the contact turned media off, or has not accepted yet (its
                contact address takes no attachments). Nothing was uploaded.
            LocalProtocolError: unknown or blocked contact, not a file, caption too long, an
                image too large to strip, or the file changed while it was read.
            RelayRejected: ``TOO_LARGE`` (over the relay's limit), ``QUOTA``, ``BOUNDARY``
                (the relay enforces the contact's media off), ``MALFORMED`` (a relay before
                revision 8 stores no files).
            TransportError: the relay could not be reached (nothing was queued).
        """
        return await self._media.send_file(
            ref,
            source,
            caption=caption,
            view_once=view_once,
            mime=mime,
            progress=progress,
            keep_metadata=keep_metadata,
            name=name,
        )

    async def send_group_file(
        self,
        group: str,
        source: str | os.PathLike[str] | bytes | AsyncIterable[bytes],
        *,
        caption: str | None = None,
        mime: str | None = None,
        progress: Progress | None = None,
        keep_metadata: bool = False,
        name: str | None = None,
    ) -> GroupEvent:
        """Send a file to a group (protocol.md §25.5, §26.5): uploaded once, to a blob
        created for our own group mailbox, and referenced by one ``file`` message encrypted
        once under our sender key and fanned out to every member. The options are those of
        :meth:`send_file` (no view-once in groups yet); the blob expires with the group's
        disappearing timer, else with the relay's envelope TTL. Members download it with
        :meth:`download` (``GroupEvent.attachment``).

        Raises:
            MediaRefused: the group's settings say media is off. Nothing was uploaded.
            LocalProtocolError: not allowed to post, not an active member, caption too long.
            RelayRejected: ``TOO_LARGE``, ``QUOTA`` (our group mailbox holds too many blobs).
            TransportError: the relay could not be reached.
        """
        return await self._media.send_group_file(
            self._groups.resolve(group),
            source,
            caption=caption,
            mime=mime,
            progress=progress,
            keep_metadata=keep_metadata,
            name=name,
        )

    async def download(
        self,
        attachment: Attachment,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download, decrypt and verify a file into ``dest`` and return its path.

        ``dest`` is a directory (the file gets its safe name there, with `` (1)`` and so
        on added rather than replacing anything) or a path that must not exist. The
        plaintext is written as it is decrypted to a temporary file beside it, checked
        (every chunk, the padding, the ciphertext digest and the plaintext hash under the
        franking commitment) and only then linked into place; on any error nothing is left.
        A cut download resumes with a range request (not a view-once one: the relay deletes
        it as its one download starts). After a view-once download the message keeps only
        the file's name, type and size.

        A group's file (``group_id`` set) is fetched the same way; it is refused while the
        group has media off.

        Raises:
            MediaRefused: our media setting for this contact is off (or the group's).
            AttachmentCorrupt: the file does not verify (tampered, truncated, substituted).
            FileExistsError: ``dest`` is a file that exists.
            LocalProtocolError: nothing to download (an opened view-once file), the message
                or contact is gone, or the destination's directory does not exist.
            RelayRejected: ``AUTH``: the blob expired, was used up, or never existed.
            TransportError: the relay could not be reached, or the download was cut too often.
        """
        return await self._media.download(attachment, dest, progress=progress)

    def thumbnail(self, attachment: Attachment) -> bytes | None:
        """A received file's thumbnail (JPEG) as it should be shown now: blurred until the
        contact's safety number is verified (:meth:`mark_verified`), sharp afterwards."""
        return self._media.thumbnail(attachment)

    def attachment(self, ref: ContactRef, file_id: str) -> Attachment:
        """A file of a conversation by its short id (:attr:`Attachment.id`, or any prefix
        of the message id of at least 4 hex digits).

        Raises:
            LocalProtocolError: no such file, or the id is ambiguous.
        """
        return self._media.find(ref, file_id)
