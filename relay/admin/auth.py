"""Moderator login: token check, signed session cookies and CSRF tokens.

Theory of operation
-------------------
A moderator logs in with the token configured for their name (``admin_tokens``). Tokens are
compared in constant time: both sides are hashed with SHA-256 and every configured token is
compared, so neither the length nor the position of a near miss shows in the timing.

A successful login creates a *session*: 32 random bytes, kept in this process's memory with
the moderator's name and an expiry. The cookie carries ``id.expiry.mac`` where ``mac`` is
HMAC-SHA256 under a key drawn at start-up, so a forged or altered cookie is refused before
any lookup; logging out deletes the session, and a restart logs everybody out.

Every POST carries a CSRF token: ``HMAC(key, "csrf" || session id)`` for a session, and for
the login form ``HMAC(key, "login" || nonce)`` where the nonce is in a short-lived
pre-login cookie (double submit). SameSite=Strict cookies already keep other sites' forms
out; the token is the second lock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_SESSIONS", "AdminAuth", "AdminSession"]

#: Sessions one process keeps. A handful of moderators need a handful; the cap bounds the
#: memory a flood of logins with a stolen token could take (oldest sessions go first).
MAX_SESSIONS: Final = 256
#: Lifetime of the pre-login nonce cookie (the login form must be sent within it).
LOGIN_NONCE_TTL_S: Final = 600
_SID_BYTES: Final = 32


@dataclass(slots=True)
class AdminSession:
    """One logged-in moderator."""

    sid: str
    moderator: str
    expires: float

    def __repr__(self) -> str:
        return f"AdminSession(moderator={self.moderator!r}, <secret>)"


class AdminAuth:
    """Token check, sessions and CSRF tokens of one admin application.

    Args:
        tokens: ``{moderator name: token}``.
        session_ttl_s: how long a login lasts.
        clock: the time source (tests).
    """

    def __init__(
        self,
        tokens: Mapping[str, str],
        session_ttl_s: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._digests = [
            (name, hashlib.sha256(token.encode()).digest()) for name, token in tokens.items()
        ]
        self._ttl = session_ttl_s
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, AdminSession] = {}

    def __repr__(self) -> str:
        return f"AdminAuth(moderators={len(self._digests)}, <secret>)"

    @property
    def session_ttl_s(self) -> float:
        return self._ttl

    # --- tokens --------------------------------------------------------------------------

    def check_token(self, given: str) -> str | None:
        """The moderator whose token ``given`` is, or None; constant time."""
        digest = hashlib.sha256(given.encode("utf-8", "replace")).digest()
        found: str | None = None
        for name, expected in self._digests:
            if hmac.compare_digest(digest, expected):
                found = name
        return found

    # --- sessions ------------------------------------------------------------------------

    def login(self, moderator: str) -> tuple[AdminSession, str]:
        """A new session for ``moderator`` and the cookie value that names it."""
        now = self._clock()
        self._evict(now)
        session = AdminSession(secrets.token_hex(_SID_BYTES), moderator, now + self._ttl)
        self._sessions[session.sid] = session
        expires = int(session.expires)
        return session, f"{session.sid}.{expires}.{self._mac(b'session', session.sid, expires)}"

    def session(self, cookie: str | None) -> AdminSession | None:
        """The live session a cookie names, or None (missing, forged, expired, logged out)."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        sid, expires_text, mac = parts
        expires = int(expires_text)
        if not _same(mac, self._mac(b"session", sid, expires)):
            return None
        now = self._clock()
        session = self._sessions.get(sid)
        if session is None or expires <= now or session.expires <= now:
            return None
        return session

    def logout(self, session: AdminSession) -> None:
        self._sessions.pop(session.sid, None)

    def _evict(self, now: float) -> None:
        for sid in [s.sid for s in self._sessions.values() if s.expires <= now]:
            del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.sid]

    # --- CSRF ----------------------------------------------------------------------------

    def csrf_token(self, session: AdminSession) -> str:
        return self._mac(b"csrf", session.sid, 0)

    def check_csrf(self, session: AdminSession, given: str | None) -> bool:
        return given is not None and _same(given, self.csrf_token(session))

    def login_nonce(self) -> tuple[str, str]:
        """A pre-login nonce (for a cookie) and the CSRF token the login form carries."""
        expires = int(self._clock() + LOGIN_NONCE_TTL_S)
        nonce = f"{secrets.token_hex(16)}.{expires}"
        return nonce, self._mac(b"login", nonce, 0)

    def check_login_csrf(self, nonce: str | None, given: str | None) -> bool:
        if not nonce or given is None:
            return False
        _, _, expires = nonce.partition(".")
        if not expires.isdigit() or int(expires) <= self._clock():
            return False
        return _same(given, self._mac(b"login", nonce, 0))

    def _mac(self, purpose: bytes, value: str, number: int) -> str:
        msg = purpose + b"\x00" + value.encode("utf-8", "replace") + b"\x00" + str(number).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a received string with an expected ASCII one."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))
