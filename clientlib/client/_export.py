"""The readable JSON archive of :meth:`Client.export` (no key material)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from clientlib.client.types import Contact, ContactRequest, StoredMessage

__all__ = ["export_document", "write_new_private"]


def export_document(
    *,
    exported_at: int,
    relay: str,
    fingerprint: bytes,
    contacts: Sequence[Contact],
    messages: Callable[[Contact], list[StoredMessage]],
    requests: Sequence[ContactRequest],
) -> dict[str, Any]:
    """The archive: our identity fingerprint, every contact with its messages, and the
    requests still waiting."""
    return {
        "format": "blindrelay-export",
        "version": 1,
        "exported_at": exported_at,
        "relay": relay,
        "identity_fingerprint": fingerprint.hex(),
        "contacts": [
            {
                "id": c.id,
                "name": c.name,
                "state": c.state,
                "safety_number": c.safety_number,
                "verified": c.verified,
                "blocked": c.blocked,
                "settings": {
                    "receipts": c.settings.receipts,
                    "typing": c.settings.typing,
                    "media": c.settings.media,
                },
                "messages": [_message(m) for m in messages(c)],
            }
            for c in contacts
        ],
        "requests": [
            {
                "id": r.id,
                "name": r.name,
                "intro": r.intro,
                "safety_number": r.safety_number,
                "received_at": r.received_at,
            }
            for r in requests
        ],
    }


def _message(m: StoredMessage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id,
        "direction": m.direction,
        "text": m.text,
        "sent_at": m.sent_at,
        "received_at": m.received_at,
        "state": m.state,
    }
    a = m.attachment
    if a is not None:  # what the file was, never its key or read token
        out["file"] = {"name": a.name, "mime": a.mime, "size": a.size, "view_once": a.view_once}
    return out


def write_new_private(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Write ``doc`` as indented UTF-8 JSON to a new file of mode 0600, fsynced.

    Raises:
        FileExistsError: ``path`` exists (it is not touched).
    """
    write_new_file(path, json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8"))


def write_new_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a new file of mode 0600, fsynced.

    Raises:
        FileExistsError: ``path`` exists (it is not touched).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
