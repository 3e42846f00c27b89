"""The relay's only logging configuration (structlog; JSON unless on a terminal).

What the relay logs is an allow-list (protocol.md §8): ``event``, ``level``, ``timestamp``,
``request_id``, ``conn_id``, ``route``, ``method``, ``status``, ``error_code``,
``duration_ms``, ``size_bucket``, ``backend``, ``protocol_version``, ``frames``, ``count``,
``listen``, ``data``, ``reason``, ``exception``, ``problems``. Any other key is dropped by
:func:`allow_list` before rendering, so an accidental ``log.info(..., rid=...)`` never
reaches the output. Never logged: IP addresses, ``X-Forwarded-For``, User-Agent, mailbox or
envelope ids, keys, challenges, signatures, tokens, exact sizes, envelope bytes. aiohttp's
access log is disabled.

Exceptions are logged by type and traceback only (:func:`scrub_exceptions`), never by their
message: a third-party message can quote what the relay must not log (redis-py names the
server's address, a socket error the peer's), so no exception text reaches the output, ours
included (their messages are fixed per code and say nothing the type does not).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any, TextIO

import structlog

__all__ = [
    "ALLOWED_KEYS",
    "allow_list",
    "configure_logging",
    "exception_summary",
    "get_logger",
    "is_json",
    "scrub_addresses",
    "scrub_exceptions",
]

ALLOWED_KEYS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "request_id",
        "conn_id",
        "route",
        "method",
        "status",
        "error_code",
        "duration_ms",
        "size_bucket",
        "backend",
        "protocol_version",
        "frames",
        "count",
        "listen",
        "data",
        "reason",
        "exception",
        "problems",
    }
)


def allow_list(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop every key that is not in :data:`ALLOWED_KEYS`."""
    for key in [k for k in event_dict if k not in ALLOWED_KEYS]:
        del event_dict[key]
    return event_dict


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# IPv4 and IPv6 literals, scrubbed from third-party log messages (aiohttp may name a peer).
_ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\b")


def scrub_addresses(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace anything that looks like an IP address in the message with ``<addr>``."""
    event = event_dict.get("event")
    if isinstance(event, str):
        event_dict["event"] = _ADDRESS.sub("<addr>", event)
    return event_dict


def exception_summary(exc: BaseException) -> str:
    """``exc`` as its traceback frames (file, line, function) and the type names of its chain
    (causes and contexts, outermost last), without any exception message or source line."""
    parts: list[str] = []
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    for item in reversed(chain):
        tb: TracebackType | None = item.__traceback__
        for frame in traceback.extract_tb(tb):
            parts.append(f"  {frame.filename}:{frame.lineno} in {frame.name}")
        kind = type(item)
        parts.append(f"{kind.__module__}.{kind.__qualname__}")
    return "\n".join(parts)


def scrub_exceptions(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace ``exc_info`` by ``exception``: :func:`exception_summary` (no message)."""
    info = event_dict.pop("exc_info", None)
    if not info:
        return event_dict
    exc: BaseException | None
    if isinstance(info, BaseException):
        exc = info
    elif isinstance(info, tuple):
        exc = info[1]
    else:
        exc = sys.exc_info()[1]
    if exc is not None:
        event_dict["exception"] = exception_summary(exc)
    return event_dict


def is_json(fmt: str, stream: TextIO | None = None) -> bool:
    """Whether ``log_format`` ``fmt`` renders JSON on ``stream`` (``auto``: unless a terminal)."""
    out = stream or sys.stdout
    return fmt == "json" or (fmt == "auto" and not out.isatty())


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog (our logs) and route stdlib logging (aiohttp, redis) through it."""
    out = stream or sys.stdout
    as_json = is_json(fmt, out)
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            # Tracebacks carry no local variables and no exception message (either could
            # hold an address, an id or key material): frames and type names only.
            scrub_exceptions,
            allow_list,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                scrub_addresses,
                scrub_exceptions,
                allow_list,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.INFO))
    # aiohttp's access logger would print the peer address: it stays off.
    logging.getLogger("aiohttp.access").disabled = True


def get_logger() -> Any:
    return structlog.get_logger("blindrelay")
