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

A session ends at its expiry, at logout, or after ``idle_timeout_s`` without a request.
Each moderator holds at most :data:`MAX_SESSIONS_PER_MODERATOR` sessions (their oldest goes
first), so one token's logins cannot log the other moderators out.

Every POST carries a CSRF token: ``HMAC(key, "csrf" || session id)`` for a session, and for
the login form ``HMAC(key, "login" || nonce)`` where the nonce is in a short-lived
pre-login cookie (double submit). SameSite=Strict cookies already keep other sites' forms
out; the token is the second lock. A login nonce is good for one attempt.

Guessing is throttled (:class:`LoginThrottle`): a client (its address, kept only as a keyed
hash in memory, never logged) gets ``admin_login_failures_per_client`` (default
:data:`CLIENT_FAILURES`) wrong tokens per :data:`FAILURE_WINDOW_S`, and all clients together
``admin_login_failures_global`` (:data:`GLOBAL_FAILURES`); past that, a
login is refused without looking at the token until the window has room again. The global
limit means a flood of wrong guesses can keep moderators from logging in for a minute (the
admin CLI still works); it cannot make a guess succeed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CLIENT_FAILURES",
    "FAILURE_WINDOW_S",
    "GLOBAL_FAILURES",
    "MAX_SESSIONS",
    "MAX_SESSIONS_PER_MODERATOR",
    "AdminAuth",
    "AdminSession",
    "LoginThrottle",
]

#: Sessions one process keeps. A handful of moderators need a handful; the cap bounds the
#: memory a flood of logins with a stolen token could take (oldest sessions go first).
MAX_SESSIONS: Final = 256
#: Sessions one moderator keeps (browsers, devices); a new login beyond it ends their oldest.
MAX_SESSIONS_PER_MODERATOR: Final = 8
#: Wrong tokens one client may send per window, and all clients together.
CLIENT_FAILURES: Final = 5
GLOBAL_FAILURES: Final = 30
FAILURE_WINDOW_S: Final = 60.0
#: Clients whose failures are remembered (the least recent is forgotten first).
_MAX_CLIENTS: Final = 10_000
#: Used login nonces remembered (each is refused again until it expires anyway).
_MAX_USED_NONCES: Final = 8192
#: Lifetime of the pre-login nonce cookie (the login form must be sent within it).
LOGIN_NONCE_TTL_S: Final = 600
_SID_BYTES: Final = 32


@dataclass(slots=True)
class AdminSession:
    """One logged-in moderator."""

    sid: str
    moderator: str
    expires: float
    last_seen: float

    def __repr__(self) -> str:
        return f"AdminSession(moderator={self.moderator!r}, <secret>)"


class LoginThrottle:
    """Sliding-window counts of wrong tokens, per client and in all.

    Args:
        per_client, overall: wrong tokens allowed per :data:`FAILURE_WINDOW_S`.
        clock: the time source (tests).
    """

    def __init__(
        self,
        *,
        per_client: int = CLIENT_FAILURES,
        overall: int = GLOBAL_FAILURES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._per_client = per_client
        self._overall = overall
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._clients: OrderedDict[bytes, deque[float]] = OrderedDict()
        self._all: deque[float] = deque()

    def _client_key(self, client: str) -> bytes:
        return hmac.new(self._key, client.encode("utf-8", "replace"), hashlib.sha256).digest()

    def _prune(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - FAILURE_WINDOW_S:
            times.popleft()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try a token again (0: now)."""
        now = self._clock()
        self._prune(self._all, now)
        waits = [0.0]
        if len(self._all) >= self._overall:
            waits.append(self._all[0] + FAILURE_WINDOW_S - now)
        mine = self._clients.get(self._client_key(client))
        if mine is not None:
            self._prune(mine, now)
            if len(mine) >= self._per_client:
                waits.append(mine[0] + FAILURE_WINDOW_S - now)
        return max(waits)

    def failed(self, client: str) -> None:
        now = self._clock()
        key = self._client_key(client)
        mine = self._clients.pop(key, None) or deque()
        mine.append(now)
        self._clients[key] = mine
        while len(self._clients) > _MAX_CLIENTS:
            self._clients.popitem(last=False)
        self._all.append(now)

    def __repr__(self) -> str:
        return f"LoginThrottle(clients={len(self._clients)})"


class AdminAuth:
    """Token check, sessions and CSRF tokens of one admin application.

    Args:
        tokens: ``{moderator name: token}``.
        session_ttl_s: how long a login lasts.
        idle_timeout_s: a session unused this long ends.
        throttle: the login throttle (default limits when None).
        clock: the time source (tests).
    """

    def __init__(
        self,
        tokens: Mapping[str, str],
        session_ttl_s: float,
        *,
        idle_timeout_s: float | None = None,
        throttle: LoginThrottle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._digests = [
            (name, hashlib.sha256(token.encode()).digest()) for name, token in tokens.items()
        ]
        self._ttl = session_ttl_s
        self._idle = session_ttl_s if idle_timeout_s is None else idle_timeout_s
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, AdminSession] = {}
        self._used_nonces: dict[str, float] = {}
        self.throttle = throttle or LoginThrottle(clock=clock)

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
        self._evict(now, moderator)
        session = AdminSession(secrets.token_hex(_SID_BYTES), moderator, now + self._ttl, now)
        self._sessions[session.sid] = session
        expires = int(session.expires)
        return session, f"{session.sid}.{expires}.{self._mac(b'session', session.sid, expires)}"

    def session(self, cookie: str | None) -> AdminSession | None:
        """The live session a cookie names, or None (missing, forged, expired, idle too
        long, logged out); a live one counts as used now."""
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
        if now - session.last_seen > self._idle:
            del self._sessions[sid]
            return None
        session.last_seen = now
        return session

    def logout(self, session: AdminSession) -> None:
        self._sessions.pop(session.sid, None)

    def _evict(self, now: float, moderator: str) -> None:
        for sid in [
            s.sid
            for s in self._sessions.values()
            if s.expires <= now or now - s.last_seen > self._idle
        ]:
            del self._sessions[sid]
        mine = sorted(
            (s for s in self._sessions.values() if s.moderator == moderator),
            key=lambda s: s.expires,
        )
        for old in mine[: max(0, len(mine) - MAX_SESSIONS_PER_MODERATOR + 1)]:
            del self._sessions[old.sid]
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
        """Whether the login form's token matches its nonce cookie; a nonce that passes is
        used up (a second attempt needs a fresh form)."""
        if not nonce or given is None:
            return False
        _, _, expires = nonce.partition(".")
        now = self._clock()
        if not expires.isdigit() or int(expires) <= now:
            return False
        if not _same(given, self._mac(b"login", nonce, 0)):
            return False
        for used in [n for n, t in self._used_nonces.items() if t <= now]:
            del self._used_nonces[used]
        if nonce in self._used_nonces or len(self._used_nonces) >= _MAX_USED_NONCES:
            return False
        self._used_nonces[nonce] = float(expires)
        return True

    def _mac(self, purpose: bytes, value: str, number: int) -> str:
        msg = purpose + b"\x00" + value.encode("utf-8", "replace") + b"\x00" + str(number).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a received string with an expected ASCII one."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("ascii"))
