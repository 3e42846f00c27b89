"""``blindrelay admin``: the moderation queue and audit log from a shell.

Commands::

    blindrelay admin reports list [--all] [--json]
    blindrelay admin reports show ID [--json]
    blindrelay admin reports resolve ID --action none|revoke|suspend
                                        [--suspend-sid HEX | --suspend-link LINK]
                                        [--note TEXT] [--moderator NAME]
    blindrelay admin audit [--limit N] [--json]

Each command reads the same configuration as ``serve`` (``--config``, ``BLINDRELAY_*``,
``--data-dir``, ``--storage``), opens the store, runs, and closes it. A relay may be running
on the same store at the same time: SQLite runs in WAL mode and waits for the relay's write
lock (busy timeout), Redis is shared anyway. IDs may be shortened to a unique prefix of at
least 6 hex digits. Report text is printed with control characters escaped, so a reported
message cannot drive the moderator's terminal.

Exit codes: 0 ok, 1 no such report or the action was refused, 2 usage, 69 storage
unavailable, 78 configuration error.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import unicodedata
from typing import TYPE_CHECKING, Any, Final

from relay.admin.common import (
    AdminInputError,
    describe_content_type,
    describe_day,
    find_report,
    format_time,
    parse_suspend_target,
    verification_summary,
)
from relay.config import RelayConfig
from relay.storage.base import EnvelopeStore, StorageError

if TYPE_CHECKING:
    from relay.moderation import AuditEntry, ModerationService, ReportView

__all__ = ["EX_FAILED", "add_admin_parser", "run_admin"]

EX_OK: Final = 0
EX_FAILED: Final = 1
EX_USAGE: Final = 2
EX_UNAVAILABLE: Final = 69
#: The service's largest listing.
MAX_LIST: Final = 1000
_PREVIEW_CHARS: Final = 60


def add_admin_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``admin`` and its subcommands; ``common`` holds ``--config`` and friends."""
    admin = sub.add_parser("admin", help="moderation: abuse reports and the audit log")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    reports = admin_sub.add_parser("reports", help="the report queue")
    reports_sub = reports.add_subparsers(dest="reports_command", required=True)
    listing = reports_sub.add_parser("list", parents=[common], help="list open reports")
    listing.add_argument("--all", action="store_true", help="resolved reports too")
    listing.add_argument("--json", action="store_true", help="JSON output")
    show = reports_sub.add_parser("show", parents=[common], help="show one report")
    show.add_argument("id", help="report id or a unique prefix (6+ hex digits)")
    show.add_argument("--json", action="store_true", help="JSON output")
    res = reports_sub.add_parser("resolve", parents=[common], help="resolve a report")
    res.add_argument("id", help="report id or a unique prefix (6+ hex digits)")
    res.add_argument("--action", required=True, choices=("none", "revoke", "suspend"))
    target = res.add_mutually_exclusive_group()
    target.add_argument("--suspend-sid", metavar="HEX", help="send id to suspend (32 hex)")
    target.add_argument("--suspend-link", metavar="LINK", help="invitation link to suspend")
    res.add_argument("--note", default="", help="note for the audit log")
    res.add_argument("--moderator", help="name in the audit log (default cli:$USER)")
    audit = admin_sub.add_parser("audit", parents=[common], help="the moderation audit log")
    audit.add_argument("--limit", type=int, default=100, help="newest N entries (1-1000)")
    audit.add_argument("--json", action="store_true", help="JSON output")


def _default_moderator() -> str:
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    return f"cli:{user}"


async def run_admin(args: argparse.Namespace, config: RelayConfig) -> int:
    """Run one ``admin`` command against the configured store; returns the exit code."""
    usage = _usage_problem(args)
    if usage is not None:
        print(f"blindrelay admin: {usage}", file=sys.stderr)
        return EX_USAGE
    store = _build_store(config)
    if store is None:
        print(
            f"blindrelay admin: storage unavailable: no database at "
            f"{config.resolved_sqlite_path()} (has the relay run with this configuration?)",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE
    try:
        await store.open()
    except StorageError as exc:
        print(f"blindrelay admin: storage unavailable: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    from relay.moderation import ModerationService

    try:
        return await _dispatch(args, ModerationService(store, config))
    except StorageError as exc:
        print(f"blindrelay admin: storage unavailable: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        await store.aclose()


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.admin_command == "audit" and not 1 <= args.limit <= MAX_LIST:
        return f"--limit: must be between 1 and {MAX_LIST}"
    if args.admin_command == "reports" and args.reports_command == "resolve":
        has_target = args.suspend_sid is not None or args.suspend_link is not None
        if args.action == "suspend" and not has_target:
            return "--action suspend needs --suspend-sid or --suspend-link"
        if args.action != "suspend" and has_target:
            return "--suspend-sid and --suspend-link go with --action suspend only"
        moderator = args.moderator
        if moderator is not None and not (0 < len(moderator) <= 64 and moderator.isprintable()):
            return "--moderator: 1-64 printable characters"
        if len(args.note) > 1000:
            return "--note: at most 1000 characters"
    return None


def _build_store(config: RelayConfig) -> EnvelopeStore | None:
    """The configured store, unopened; None if the SQLite database does not exist yet."""
    from relay.backend import build_backend

    if config.storage == "sqlite" and not config.resolved_sqlite_path().exists():
        return None
    store, _ = build_backend(config)
    return store


async def _dispatch(args: argparse.Namespace, service: ModerationService) -> int:
    from relay.moderation import ModerationError

    if args.admin_command == "audit":
        entries = await service.audit(limit=args.limit)
        if args.json:
            _print_json([_audit_json(a) for a in entries])
        else:
            _print_audit(entries)
        return EX_OK
    if args.reports_command == "list":
        found = await service.list_reports(status=None if args.all else "open", limit=MAX_LIST)
        if args.json:
            _print_json([_report_json(r) for r in found])
        else:
            _print_list(found)
        return EX_OK
    try:
        report = await find_report(service, args.id)
        if args.reports_command == "show":
            if args.json:
                _print_json(_report_json(report))
            else:
                _print_report(report)
            return EX_OK
        sid: bytes | None = None
        if args.suspend_sid is not None or args.suspend_link is not None:
            sid = parse_suspend_target(args.suspend_sid or args.suspend_link)
        resolved = await service.resolve(
            report.id,
            action=args.action,
            moderator=args.moderator or _default_moderator(),
            note=args.note,
            suspend_sid=sid,
        )
    except (AdminInputError, ModerationError) as exc:
        print(f"blindrelay admin: {exc}", file=sys.stderr)
        return EX_FAILED
    print(f"resolved {resolved.id}: action {resolved.action or args.action}")
    return EX_OK


# --- output ------------------------------------------------------------------------------


def safe(text: str) -> str:
    """``text`` with control and format characters (ANSI escapes, bidi overrides) escaped;
    newlines and tabs are kept."""
    out = []
    for ch in text:
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _one_line(text: str | None, width: int) -> str:
    if text is None:
        return "-"
    flat = " ".join(safe(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _report_json(r: ReportView) -> dict[str, Any]:
    return {
        "id": r.id,
        "created": r.created,
        "status": r.status,
        "reason": r.reason,
        "note": r.note,
        "text": r.text,
        "content_type": r.content_type,
        "msg_b64": base64.b64encode(r.msg).decode("ascii"),
        "attachments": [{"sha256": h, "size": size} for h, size in r.attachments],
        "sender_key": r.sender_key,
        "recipient_key": r.recipient_key,
        "source_kind": r.source_kind,
        "source": r.source,
        "mailbox_sid": r.mailbox_sid,
        "day": r.day,
        "kid": r.kid,
        "verified": dict(r.verified),
        "verified_all": verification_summary(r),
        "action": r.action,
        "moderator": r.moderator,
        "resolved_at": r.resolved_at,
        "resolution_note": r.resolution_note,
    }


def _audit_json(a: AuditEntry) -> dict[str, Any]:
    return {
        "seq": a.seq,
        "ts": a.ts,
        "moderator": a.moderator,
        "action": a.action,
        "report_id": a.report_id,
        "detail": a.detail,
    }


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _print_list(reports: list[ReportView]) -> None:
    if not reports:
        print("no reports")
        return
    print(f"{'ID':12}  {'RECEIVED':20}  {'STATUS':16}  {'CHECK':8}  {'REASON':14}  MESSAGE")
    for r in reports:
        check = "verified" if verification_summary(r) else "FAILED"
        status = r.status if r.action is None else f"{r.status}:{r.action}"
        print(
            f"{r.id[:12]:12}  {format_time(r.created):20}  {_one_line(status, 16):16}  "
            f"{check:8}  {_one_line(r.reason, 14):14}  {_one_line(r.text, _PREVIEW_CHARS)}"
        )


def _print_report(r: ReportView) -> None:
    rows = [
        ("report", r.id),
        ("received", format_time(r.created)),
        ("status", r.status),
        ("reason", r.reason),
        ("reporter's note", r.note or "-"),
        ("content type", describe_content_type(r.content_type)),
        ("accepted on", f"{r.source_kind} {r.source}".rstrip()),
        ("mailbox send id", r.mailbox_sid),
        ("sender key", r.sender_key),
        ("recipient key", r.recipient_key),
        ("relay key id", str(r.kid)),
        ("key window", describe_day(r.day)),
        ("verified", "yes" if verification_summary(r) else "NO"),
    ]
    rows += [(f"  {name}", str(value)) for name, value in sorted(r.verified.items())]
    rows += [
        (f"attachment {i + 1}", f"{h} ({size} bytes)" if size >= 0 else f"{h} (not revealed yet)")
        for i, (h, size) in enumerate(r.attachments)
    ]
    if r.status != "open":
        rows += [
            ("action", r.action or "-"),
            ("moderator", r.moderator or "-"),
            ("resolved", format_time(r.resolved_at)),
            ("resolution note", r.resolution_note or "-"),
        ]
    for label, value in rows:
        print(f"{label + ':':20} {_one_line(value, 10_000)}")
    print("message:")
    if r.text is None:
        print(f"  (not text: {len(r.msg)} bytes)")
    else:
        for line in safe(r.text).splitlines() or [""]:
            print(f"  | {line}")


def _print_audit(entries: list[AuditEntry]) -> None:
    if not entries:
        print("the audit log is empty")
        return
    for a in entries:
        report = a.report_id[:12] if a.report_id else "-"
        print(
            f"{a.seq:>6}  {format_time(a.ts)}  {_one_line(a.moderator, 24):24}  "
            f"{_one_line(a.action, 16):16}  {report:12}  {_one_line(a.detail, 300)}"
        )
