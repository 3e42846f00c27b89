"""History records and the in-memory index (protocol.md §23.4), shared by both history stores.

A message record is the list ``[0, contact, id, direction, text, sent_at, received_at, state,
evidence?, extras?]``; a state record ``[1, contact, id, state]``; a patch record ``[2,
contact, direction, id, patch]``. The parsers raise :class:`ValueError` on any malformed record
(the file store turns that into :class:`~clientlib.client.history.CorruptHistory`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from clientlib.client.types import Attachment, DeliveryState, StoredMessage

STATES = ("queued", "sent", "received", "failed", "delivered", "read")
_EXTRAS = {"tm", "ex", "sn", "ed", "dl", "rx", "at"}
_AT_KEYS = {"n", "m", "s", "t", "d", "h", "vo", "v"}


def attachment_record(a: Attachment) -> dict[str, Any]:
    """The ``at`` extra of a message with a file (protocol.md §23.4): ``n`` name, ``m``
    media type, ``s`` size, ``t`` thumbnail as shown, ``d`` the file content (the
    descriptor with key and read token) and ``h`` the plaintext hash while downloadable,
    ``vo`` view-once, ``v`` viewed."""
    out: dict[str, Any] = {"n": a.name, "m": a.mime, "s": a.size}
    if a.thumbnail is not None:
        out["t"] = a.thumbnail
    if a.descriptor and not a.viewed:
        out["d"] = a.descriptor
        out["h"] = a.plaintext_hash
    if a.view_once:
        out["vo"] = 1
    if a.viewed:
        out["v"] = 1
    return out


def parse_attachment(cid: str, mid: str, x: object) -> Attachment:
    if type(x) is not dict or not set(x) <= _AT_KEYS or not {"n", "m", "s"} <= set(x):
        raise ValueError("bad record")
    name, mime, size = x["n"], x["m"], x["s"]
    thumb, desc, ph = x.get("t"), x.get("d", b""), x.get("h", b"")
    if (
        (name is not None and type(name) is not str)
        or type(mime) is not str
        or (thumb is not None and type(thumb) is not bytes)
        or type(desc) is not bytes
        or type(ph) is not bytes
        or (desc and len(ph) != 32)
    ):
        raise ValueError("bad record")
    return Attachment(
        cid,
        mid,
        name,
        mime,
        _int(size),
        thumbnail=thumb,
        view_once=bool(_int(x.get("vo", 0))),
        viewed=bool(_int(x.get("v", 0))),
        descriptor=desc,
        plaintext_hash=ph,
    )


def _extras(m: StoredMessage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.timer:
        out["tm"] = m.timer
    if m.expires_at is not None:
        out["ex"] = m.expires_at
    if m.seen:
        out["sn"] = 1
    if m.edited_at is not None:
        out["ed"] = m.edited_at
    if m.deleted:
        out["dl"] = 1
    if m.reactions:
        out["rx"] = [list(r) for r in m.reactions]
    if m.attachment is not None:
        out["at"] = attachment_record(m.attachment)
    return out


def to_wire(m: StoredMessage) -> list[Any]:
    """The message record of ``m``."""
    rec = [0, m.contact_id, m.id, m.direction, m.text, m.sent_at, m.received_at, m.state]
    extras = _extras(m)
    if extras:
        return [*rec, m.evidence, extras]
    return rec if m.evidence is None else [*rec, m.evidence]


def _int(v: object) -> int:
    if type(v) is not int or v < 0:
        raise ValueError("bad record")
    return v


def _reaction(v: object) -> tuple[str, str]:
    if type(v) is not list or len(v) != 2 or v[0] not in ("me", "peer") or type(v[1]) is not str:
        raise ValueError("bad record")
    return (v[0], v[1])


def patched(m: StoredMessage, patch: dict[str, Any]) -> StoredMessage:
    """``m`` with a patch record applied (keys as in protocol.md §23.4; ValueError if bad)."""
    if type(patch) is not dict or not set(patch) <= {"text", "ed", "dl", "ex", "sn", "rx", "at"}:
        raise ValueError("bad record")
    changes: dict[str, Any] = {}
    if "text" in patch:
        if type(patch["text"]) is not str:
            raise ValueError("bad record")
        changes["text"] = patch["text"]
    if "ed" in patch:
        changes["edited_at"] = _int(patch["ed"])
    if "ex" in patch:
        changes["expires_at"] = _int(patch["ex"])
    if "sn" in patch:
        changes["seen"] = bool(_int(patch["sn"]))
    if "rx" in patch:
        who, emoji = _reaction(patch["rx"])
        rest = tuple(r for r in m.reactions if r[0] != who)
        changes["reactions"] = (*rest, (who, emoji)) if emoji else rest
    if "at" in patch:
        changes["attachment"] = (
            None if patch["at"] is None else parse_attachment(m.contact_id, m.id, patch["at"])
        )
    if patch.get("dl"):
        changes.update(
            deleted=True, text="", evidence=None, reactions=(), edited_at=None, attachment=None
        )
    return replace(m, **changes)


def parse_message(rec: list[Any]) -> StoredMessage:
    _, cid, mid, direction, text, sent_at, received_at, state = rec[:8]
    evidence = rec[8] if len(rec) >= 9 else None
    if direction not in ("in", "out") or state not in STATES:
        raise ValueError("bad record")
    if evidence is not None and type(evidence) is not bytes:
        raise ValueError("bad record")
    m = StoredMessage(cid, mid, direction, text, sent_at, received_at, state, evidence)
    if len(rec) == 10:
        x = rec[9]
        if type(x) is not dict or not set(x) <= _EXTRAS:
            raise ValueError("bad record")
        if type(x.get("rx", [])) is not list:
            raise ValueError("bad record")
        m = replace(
            m,
            timer=_int(x.get("tm", 0)),
            expires_at=_int(x["ex"]) if "ex" in x else None,
            seen=bool(_int(x.get("sn", 0))),
            edited_at=_int(x["ed"]) if "ed" in x else None,
            deleted=bool(_int(x.get("dl", 0))),
            reactions=tuple(_reaction(r) for r in x.get("rx", [])),
            attachment=parse_attachment(cid, mid, x["at"]) if "at" in x else None,
        )
    return m


def record_cid(rec: object) -> str:
    """The contact id a (version-2) record belongs to; ValueError if it is malformed."""
    if type(rec) is not list or not rec or type(rec[0]) is not int:
        raise ValueError("bad record")
    if (
        (rec[0] == 0 and len(rec) in (8, 9, 10))
        or (rec[0] == 1 and len(rec) == 4)
        or (rec[0] == 2 and len(rec) == 5)
    ):
        if type(rec[1]) is not str:
            raise ValueError("bad record")
        return rec[1]
    raise ValueError("bad record")


def record_msg(rec: list[Any]) -> tuple[str, str, str]:
    """``(contact, direction, id)`` of the message a record is about."""
    if rec[0] == 0:
        return (rec[1], rec[3], rec[2])
    if rec[0] == 1:
        return (rec[1], "out", rec[2])
    return (rec[1], rec[2], rec[3])


class Table:
    """The in-memory index both implementations share."""

    def __init__(self) -> None:
        self.convs: dict[str, dict[tuple[str, str], StoredMessage]] = {}

    def add(self, m: StoredMessage) -> bool:
        conv = self.convs.setdefault(m.contact_id, {})
        key = (m.direction, m.id)
        if key in conv:
            return False
        conv[key] = m
        return True

    def set_state(self, contact_id: str, message_id: str, state: DeliveryState) -> None:
        conv = self.convs.get(contact_id, {})
        old = conv.get(("out", message_id))
        if old is not None:
            conv[("out", message_id)] = replace(old, state=state)

    def patch(
        self, contact_id: str, direction: str, message_id: str, patch: dict[str, Any]
    ) -> StoredMessage | None:
        conv = self.convs.get(contact_id, {})
        key = (direction, message_id)
        old = conv.get(key)
        if old is None:
            return None
        new = patched(old, patch)
        conv[key] = new
        return new

    def get(self, contact_id: str, direction: str, message_id: str) -> StoredMessage | None:
        return self.convs.get(contact_id, {}).get((direction, message_id))

    def due(self, now: int) -> list[StoredMessage]:
        return [
            m
            for conv in self.convs.values()
            for m in conv.values()
            if m.expires_at is not None and m.expires_at <= now
        ]

    def next_expiry(self) -> int | None:
        times = [
            m.expires_at
            for conv in self.convs.values()
            for m in conv.values()
            if m.expires_at is not None
        ]
        return min(times) if times else None

    def remove(self, m: StoredMessage) -> None:
        conv = self.convs.get(m.contact_id, {})
        conv.pop((m.direction, m.id), None)
        if not conv:
            self.convs.pop(m.contact_id, None)

    def messages(self, contact_id: str, limit: int | None) -> list[StoredMessage]:
        out = list(self.convs.get(contact_id, {}).values())  # insertion order = arrival order
        return out if limit is None else out[-limit:] if limit > 0 else []
