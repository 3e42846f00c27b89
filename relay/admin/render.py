"""HTML of the moderation page: plain strings, every value through :func:`html.escape`.

No template engine and no JavaScript: each page is a function returning a complete
document. Anything that comes from a report, the audit log or the request is passed through
:func:`e` at the point where it is put into the page, including attribute values.

Free text (message, content type, notes, audit details) goes through :func:`shown`: control,
format (bidi overrides, zero-width), private-use, unassigned and separator characters become
visible ``U+XXXX`` marks, long values are cut, and when anything was marked or cut the raw
text is one click away (a ``<details>`` element: no script needed). Values the *sender* or
the *reporter* wrote are shown only inside marked fields (:func:`field`), never spliced into
the page's own sentences, and the stylesheet wraps long unbreakable strings.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Iterable, Sequence

from relay.admin.common import (
    CONTENT_TYPE_WORDS,
    describe_content_type,
    describe_day,
    format_time,
    verification_summary,
)
from relay.moderation import AuditEntry, ReportView

__all__ = [
    "audit_page",
    "e",
    "error_page",
    "field",
    "login_page",
    "report_page",
    "reports_page",
    "shown",
]

PREFIX = "/admin"
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("none", "No action", "close the report; nothing changes for the sender"),
    ("revoke", "Revoke capability", "the sender can no longer reach the reporter there"),
    (
        "suspend",
        "Suspend address",
        "the contact address below answers every sender as if it did not exist",
    ),
)
_PREVIEW_CHARS = 80
#: Longest content type, reason or note shown before "…" (the raw value stays one click away).
SHORT_CHARS = 64
#: Characters shown as ``U+XXXX`` marks: control, format (bidi, zero-width), surrogate,
#: private-use, unassigned, line and paragraph separators.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_WHO = {
    "sender": "written by the sender; not checked by the relay",
    "reporter": "written by the reporter",
    "moderator": "written by a moderator",
}


def e(value: object) -> str:
    """``value`` as text, escaped for HTML content and quoted attributes."""
    return html.escape(str(value), quote=True)


def _hidden(ch: str, multiline: bool) -> bool:
    return not (multiline and ch in "\n\t") and unicodedata.category(ch) in HIDDEN_CATEGORIES


def _mark(ch: str) -> str:
    code = f"U+{ord(ch):04X}"
    name = unicodedata.name(ch, "")
    title = f"{code} {name}".strip()
    return f'<span class="esc" title="{e(title)}">{code}</span>'


def shown(value: str, *, limit: int | None = None, multiline: bool = False) -> str:
    """HTML of ``value``: escaped, hidden characters as visible ``U+XXXX`` marks, at most
    ``limit`` characters then "…"; if anything was marked or cut, the raw text follows in a
    ``<details>`` (one click)."""
    cut = limit is not None and len(value) > limit
    head = value[:limit] if cut else value
    parts: list[str] = []
    marked = False
    for ch in head:
        if _hidden(ch, multiline):
            parts.append(_mark(ch))
            marked = True
        else:
            parts.append(e(ch))
    if cut:
        parts.append('<span class="cut">…</span>')
    if not (marked or cut):
        return "".join(parts)
    raw = value.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate cannot be sent
    what = "raw text as sent, may display reordered or hidden" if marked else "full text"
    return (
        "".join(parts) + f'<details class="raw"><summary>{what} ({len(value)} characters)</summary>'
        f'<pre class="raw">{e(raw)}</pre></details>'
    )


def field(value: str, who: str, *, limit: int | None = SHORT_CHARS, code: bool = False) -> str:
    """A value someone else wrote, in a marked box that says who (``sender``, ``reporter``
    or ``moderator``)."""
    inner = shown(value, limit=limit)
    if code:
        inner = f"<code>{inner}</code>"
    return f'<span class="field {e(who)}" title="{e(_WHO[who])}">{inner}</span>'


def _layout(title: str, body: str, *, moderator: str | None = None, csrf: str = "") -> str:
    nav = ""
    if moderator is not None:
        nav = (
            '<nav><a href="/admin/reports">Open reports</a>'
            '<a href="/admin/reports?status=resolved">Resolved</a>'
            '<a href="/admin/audit">Audit log</a>'
            f'<span class="who">{e(moderator)}</span>'
            '<form method="post" action="/admin/logout" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<button type="submit" id="logout">Log out</button></form></nav>'
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{e(title)} - blindrelay moderation</title>"
        '<link rel="stylesheet" href="/admin/static/admin.css"></head>'
        f"<body><header><h1>blindrelay moderation</h1>{nav}</header>"
        f"<main>{body}</main></body></html>\n"
    )


def login_page(csrf: str, *, error: str | None = None) -> str:
    message = f'<p class="error" id="error">{e(error)}</p>' if error else ""
    body = (
        "<h2>Log in</h2>"
        f"{message}"
        '<form method="post" action="/admin/login" id="login">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<label for="token">Admin token</label>'
        '<input type="password" name="token" id="token" autocomplete="current-password" '
        "required autofocus>"
        '<button type="submit">Log in</button></form>'
    )
    return _layout("Log in", body)


def _badge(report: ReportView) -> str:
    if verification_summary(report):
        return '<span class="badge ok">verified</span>'
    return '<span class="badge bad">NOT verified</span>'


def _status(report: ReportView) -> str:
    if report.status == "open":
        return '<span class="status open">open</span>'
    action = f" ({e(report.action)})" if report.action else ""
    return f'<span class="status done">{e(report.status)}{action}</span>'


def _preview(report: ReportView) -> str:
    if report.group:
        return '<span class="badge group">group</span> ' + _text_preview(report)
    return _text_preview(report)


def _text_preview(report: ReportView) -> str:
    if report.text is None:
        if report.content_type is None:
            return '<span class="muted">not a text message</span>'
        return '<span class="muted">not text; type </span>' + field(
            report.content_type, "sender", limit=24, code=True
        )
    return field(report.text, "sender", limit=_PREVIEW_CHARS)


def reports_page(
    reports: Sequence[ReportView], status: str | None, *, moderator: str, csrf: str
) -> str:
    title = {"open": "Open reports", "resolved": "Resolved reports"}.get(status or "", "Reports")
    rows = "".join(
        '<tr class="report">'
        f'<td><a class="report-link" href="/admin/reports/{e(r.id)}"><code>{e(r.id[:12])}</code>'
        "</a></td>"
        f"<td>{e(format_time(r.created))}</td><td>{shown(r.reason, limit=24)}</td>"
        f'<td class="preview">{_preview(r)}</td><td>{_badge(r)}</td><td>{_status(r)}</td></tr>'
        for r in reports
    )
    if rows:
        table = (
            '<table id="reports"><thead><tr><th>Report</th><th>Received</th><th>Reason</th>'
            "<th>Message</th><th>Check</th><th>Status</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    else:
        table = '<p id="empty">No reports here.</p>'
    tabs = (
        '<p class="tabs"><a href="/admin/reports">open</a> · '
        '<a href="/admin/reports?status=resolved">resolved</a> · '
        '<a href="/admin/reports?status=all">all</a></p>'
    )
    return _layout(title, f"<h2>{e(title)}</h2>{tabs}{table}", moderator=moderator, csrf=csrf)


def _content_type(t: str | None) -> str:
    """A known content type in the relay's words; any other only inside the sender's box."""
    if not t:
        return '<span class="muted">-</span>'
    if t in CONTENT_TYPE_WORDS:
        return e(describe_content_type(t))
    return field(t, "sender", code=True)


def _rows(pairs: Iterable[tuple[str, str]]) -> str:
    """Table rows of (label, already escaped HTML)."""
    return "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _attachment_row(report: ReportView, i: int, digest: str, size: int) -> str:
    """One revealed attachment: an image is shown blurred until clicked (a checkbox and
    CSS, no script), anything else is a download link. Both are served by this listener."""
    url = f"{PREFIX}/reports/{e(report.id)}/attachments/{i}"
    kind = report.attachment_types[i] if i < len(report.attachment_types) else None
    if size < 0:  # a report filed by hash whose reporter has not sent this file (yet)
        return (
            f"<tr><td>{i}</td><td><code>{e(digest)}</code></td><td>-</td>"
            f'<td class="attachment muted" id="attachment-{i}">not revealed yet</td></tr>'
        )
    if kind is not None:
        content = (
            f'<input type="checkbox" class="reveal" id="reveal-{i}">'
            f'<label for="reveal-{i}" class="reveal-label" title="click to show or blur">'
            f'<img class="blurred" id="attachment-{i}" src="{url}" '
            f'alt="attachment {i}: {e(kind)}, blurred until clicked"></label>'
            f'<a href="{url}" download>download</a>'
        )
    else:
        content = f'<a href="{url}" download id="attachment-{i}">download (not an image)</a>'
    return (
        f"<tr><td>{i}</td><td><code>{e(digest)}</code></td><td>{e(size)}</td>"
        f'<td class="attachment">{content}</td></tr>'
    )


def report_page(
    report: ReportView,
    *,
    moderator: str,
    csrf: str,
    error: str | None = None,
    notice: str | None = None,
) -> str:
    checks = "".join(
        f'<tr class="check"><th>{e(name)}</th><td>{e(value)}</td></tr>'
        for name, value in sorted(report.verified.items())
    )
    verification = (
        f'<section id="verification"><h3>Verification {_badge(report)}</h3>'
        f'<table class="kv">{checks}</table>'
        '<table class="kv">'
        + _rows(
            [
                ("relay key id", e(report.kid)),
                ("key window", e(describe_day(report.day))),
                (
                    "sender per-group key" if report.group else "sender identity key",
                    f"<code>{e(report.sender_key)}</code>",
                ),
                (
                    "group point (AMF recipient)" if report.group else "recipient identity key",
                    f"<code>{e(report.recipient_key)}</code>",
                ),
            ]
        )
        + "</table></section>"
    )
    if report.text is not None:
        message = (
            f'<p class="field-label">Written by the sender (not checked by the relay):</p>'
            f'<div class="field sender"><pre class="msg" id="message">'
            f"{shown(report.text, multiline=True)}</pre></div>"
        )
    else:
        message = (
            f'<p id="message" class="muted">Not a text message ({len(report.msg)} bytes); '
            "its content is not shown. Its content type is under “content type” above.</p>"
        )
    attachments = (
        '<p class="muted">Each attachment below is the plaintext the reporter revealed; its '
        "SHA-256 is under the sender's franking commitment (verified). Images are blurred: "
        "click one to see it, click again to blur it.</p>"
        '<table id="attachments"><thead><tr><th>#</th><th>SHA-256</th><th>bytes</th>'
        "<th>content</th></tr></thead><tbody>"
        + "".join(
            _attachment_row(report, i, h, size) for i, (h, size) in enumerate(report.attachments)
        )
        + "</tbody></table>"
        if report.attachments
        else "<p>None.</p>"
    )
    context = _rows(
        [
            ("report", f"<code>{e(report.id)}</code>"),
            ("received", e(format_time(report.created))),
            ("reason", shown(report.reason, limit=SHORT_CHARS)),
            (
                "reporter's note",
                field(report.note, "reporter", limit=None)
                if report.note
                else '<span class="muted">-</span>',
            ),
            ("content type", _content_type(report.content_type)),
            (
                "conversation",
                '<span class="badge group" id="kind">group</span>'
                if report.group
                else '<span id="kind">one-to-one</span>',
            ),
            ("accepted on", f"{e(report.source_kind)} <code>{e(report.source)}</code>"),
            ("mailbox send id", f'<code id="mailbox-sid">{e(report.mailbox_sid)}</code>'),
            ("status", f'<span id="status">{_status(report)}</span>'),
        ]
    )
    if report.status == "open":
        options = "".join(
            '<div class="choice">'
            f'<input type="radio" name="action" id="action-{e(value)}" value="{e(value)}"'
            f"{' checked' if value == 'none' else ''}>"
            f'<label for="action-{e(value)}">{e(label)}</label>'
            f'<span class="muted"> — {e(hint)}</span></div>'
            for value, label, hint in ACTIONS
        )
        resolution = (
            "<section><h3>Resolve</h3>"
            f'<form method="post" action="/admin/reports/{e(report.id)}/resolve" id="resolve">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<p class="acting" id="acting-as">Resolving as <strong>{e(moderator)}</strong> '
            "(the audit log records this name)</p>"
            f"<fieldset><legend>Action</legend>{options}</fieldset>"
            '<label for="suspend_sid">Send id to suspend (32 hex digits or an invitation '
            "link; for “Suspend address”)</label>"
            '<input type="text" name="suspend_sid" id="suspend_sid" autocomplete="off" '
            'spellcheck="false">'
            '<label for="note">Note for the audit log</label>'
            '<textarea name="note" id="note" rows="3" maxlength="1000"></textarea>'
            '<button type="submit" id="resolve-button">Resolve</button></form></section>'
        )
    else:
        resolution = (
            '<section id="resolution"><h3>Resolution</h3><table class="kv">'
            + _rows(
                [
                    ("action", f'<span id="action">{e(report.action or "-")}</span>'),
                    ("moderator", e(report.moderator or "-")),
                    ("resolved", e(format_time(report.resolved_at))),
                    (
                        "note",
                        field(report.resolution_note, "moderator", limit=None)
                        if report.resolution_note
                        else "-",
                    ),
                ]
            )
            + "</table></section>"
        )
    banner = f'<p class="error" id="error">{e(error)}</p>' if error else ""
    if notice:
        banner += f'<p class="notice" id="notice">{e(notice)}</p>'
    body = (
        f"<h2>Report <code>{e(report.id[:12])}</code></h2>{banner}"
        f'<table class="kv" id="context">{context}</table>'
        f"{verification}"
        f"<section><h3>Reported message</h3>{message}</section>"
        f"<section><h3>Attachments</h3>{attachments}</section>"
        f"{resolution}"
    )
    return _layout(f"Report {report.id[:12]}", body, moderator=moderator, csrf=csrf)


def audit_page(entries: Sequence[AuditEntry], *, moderator: str, csrf: str) -> str:
    rows = "".join(
        '<tr class="audit">'
        f"<td>{e(a.seq)}</td><td>{e(format_time(a.ts))}</td><td>{e(a.moderator)}</td>"
        f'<td class="action">{e(a.action)}</td><td>'
        + (
            f'<a href="/admin/reports/{e(a.report_id)}"><code>{e(a.report_id[:12])}</code></a>'
            if a.report_id
            else "-"
        )
        + f"</td><td>{shown(a.detail, limit=200)}</td></tr>"
        for a in entries
    )
    table = (
        '<table id="audit"><thead><tr><th>#</th><th>Time</th><th>Moderator</th><th>Action</th>'
        f"<th>Report</th><th>Detail</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p id="empty">The audit log is empty.</p>'
    )
    return _layout("Audit log", f"<h2>Audit log</h2>{table}", moderator=moderator, csrf=csrf)


def error_page(title: str, message: str, *, moderator: str | None = None, csrf: str = "") -> str:
    body = f'<h2>{e(title)}</h2><p class="error" id="error">{e(message)}</p>'
    return _layout(title, body, moderator=moderator, csrf=csrf)
