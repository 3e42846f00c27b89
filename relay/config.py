"""Relay configuration: defaults < TOML file < ``BLINDRELAY_*`` environment variables.

Parsed once into a frozen :class:`RelayConfig` and validated before the server starts. Every
setting has the same name in the file (a flat table, or under ``[relay]``) and, upper-cased
with the ``BLINDRELAY_`` prefix, in the environment. Secrets (``redis_url``) can also be read
from a file: ``redis_url_file`` / ``BLINDRELAY_REDIS_URL_FILE`` (systemd ``LoadCredential=``,
Docker secrets). ``RelayConfig.redacted()`` shows secrets as ``"***"``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from clientlib.wire.limits import MAX_ENVELOPE_SIZE, MAX_FRAME_SIZE
from clientlib.wire.relay_frames import RelayLimits
from relay.errors import ConfigError
from relay.storage.base import StoreLimits

__all__ = ["ENV_PREFIX", "SECRET_FIELDS", "RelayConfig", "default_data_dir", "load_config"]

ENV_PREFIX = "BLINDRELAY_"
SECRET_FIELDS = frozenset({"redis_url", "admin_tokens", "route_key"})
DAY = 86_400
#: Shortest admin token: 32 characters (e.g. 24 random bytes in base64, 16 in hex) put it
#: beyond guessing over a network.
MIN_ADMIN_TOKEN_CHARS = 32
_ADMIN_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
#: Estimated entropy an admin token must carry (its characters' Shannon entropy times its
#: length): 32 random hex digits score 90-115 (never below 89 in 200,000 draws), 43 random
#: base64url characters about 200; 32 repeats of one letter score 0.
MIN_ADMIN_TOKEN_BITS = 80
#: The moderation page's default host name: *.localhost resolves to loopback in browsers.
ADMIN_LOCAL_HOST = "blindrelay-admin.localhost"
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)
_ORIGIN = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9a-f:.]+\](:[0-9]{1,5})?")


def default_data_dir() -> str:
    """``$XDG_DATA_HOME/blindrelay``, else ``~/.local/share/blindrelay``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "blindrelay")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Every relay setting, with its default. See README "Configuration" for each."""

    host: str = "127.0.0.1"
    port: int = 7480
    data_dir: str = ""  # empty: default_data_dir()
    storage: str = "sqlite"  # sqlite | redis
    sqlite_path: str = ""  # empty: <data_dir>/relay.sqlite3
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_durability: str = "strict"  # strict (appendfsync always) | relaxed (everysec)
    redis_key_prefix: str = "br:"
    redis_cluster: bool = False  # redis_url is a seed node of a Redis Cluster
    # Replicas every acknowledged write waits for (WAIT); 0: do not wait (protocol.md §8).
    redis_wait_replicas: int = 0
    # Sizes. A frame is checked before any decoding; an HTTP body before it is read.
    max_frame_bytes: int = MAX_FRAME_SIZE
    max_envelope_bytes: int = MAX_ENVELOPE_SIZE
    body_read_timeout_s: float = 10.0  # an HTTP body, or one WebSocket message, from its first byte
    header_read_timeout_s: float = (
        10.0  # a request head, from the connection's start or its first byte
    )
    keepalive_timeout_s: float = 180.0  # an idle HTTP connection between requests
    # The longest a request waits for storage (Redis stalled, a disk that does not answer):
    # then UNAVAILABLE, and a deposit may still have been stored (protocol.md §6).
    storage_timeout_s: float = 8.0
    # SQLite: MiB kept in reserve beside the database, given up when the disk fills so that
    # acks, fetches and deletes still work (README "Storage full"); 0: no reserve.
    sqlite_reserve_mib: int = 16
    # Connections.
    max_connections: int = 10_000
    max_subscriptions: int = 1024  # mailboxes one connection may subscribe to
    max_pending_challenges: int = 64  # unanswered challenges one connection may hold
    max_inflight_requests: int = 256  # requests one connection may have in progress
    push_window: int = 128  # unacked pushed envelopes per subscription
    heartbeat_s: float = 30.0
    # Mailboxes and envelopes.
    mailbox_max_envelopes: int = 10_000
    mailbox_max_bytes: int = 64 << 20
    envelope_ttl_s: int = 21 * DAY
    dedupe_window_s: int = DAY
    mailbox_idle_ttl_s: int = 180 * DAY
    challenge_ttl_s: int = 60
    purge_interval_s: float = 300.0
    # Prekey hosting (protocol.md §4.7).
    prekey_max_items: int = 200  # one-time prekey items one mailbox may hold
    prekey_fetches_per_hour: int = 120  # one-time items handed out per mailbox per hour
    # Consent (protocol.md §4.8-§4.9).
    max_caps: int = 64  # send capability hashes one pair mailbox may hold
    max_bans: int = 10_000  # banned handles one contact address may hold
    pow_ttl_s: int = 300  # lifetime of a proof-of-work nonce
    requests_per_connection_minute: int = 30  # contact requests + pow nonces per socket/min
    # Franking and reports (protocol.md §4.11).
    franking_rotation_s: int = 7 * DAY  # a new relay franking key this often
    report_window_s: int = 30 * DAY  # a retired franking key verifies reports this long
    report_retention_s: int = 90 * DAY  # a verified report is kept this long
    audit_retention_s: int = 365 * DAY  # a moderation audit entry is kept this long
    reports_per_day: int = 20  # reports one mailbox may file per UTC day
    # Attachment blobs (protocol.md §5.9): files under blob_dir (empty: <data_dir>/blobs),
    # on every backend; every relay process of a Redis deployment must see the same one.
    blob_dir: str = ""
    max_blob_bytes: int = 100 << 20  # the largest blob an upload may announce
    mailbox_max_blobs: int = 64  # blobs live per destination mailbox
    mailbox_max_blob_bytes: int = 512 << 20  # blob bytes live per destination mailbox
    blob_upload_ttl_s: int = DAY  # an upload not completed this long after creation is deleted
    # Operations.
    log_level: str = "info"  # debug | info | warning | error
    log_format: str = "auto"  # auto (JSON unless a terminal) | json | console
    metrics: bool = True
    event_loop: str = "auto"  # auto (uvloop when installed) | uvloop | asyncio
    # Browser apps (README "Browser apps"): origins allowed to call the HTTP API (CORS) and
    # to open the WebSocket: "*" (any; safe, as nothing is authenticated by cookie), a
    # comma-separated list of origins, or empty (none).
    allowed_origins: str = "*"
    # Moderation web page (README "Moderation"): a second listener, off without tokens.
    admin_host: str = "127.0.0.1"
    admin_port: int = 7481
    admin_tokens: str = ""  # secret: comma-separated name:token pairs
    admin_session_ttl_s: int = 8 * 3600  # lifetime of a moderator's login
    admin_idle_timeout_s: int = 30 * 60  # a login unused this long ends
    # Wrong admin tokens per minute before logins are refused for a while: from one client,
    # and from all clients together.
    admin_login_failures_per_client: int = 5
    admin_login_failures_global: int = 30
    # Host names the moderation page answers to (Host header; the port is not compared).
    # Its own name keeps its cookie from every other service on 127.0.0.1 / localhost.
    admin_hosts: str = ADMIN_LOCAL_HOST
    # Addresses of reverse proxies whose X-Forwarded-Proto / X-Forwarded-For the admin
    # listener believes (comma-separated IPs); from anyone else they are ignored.
    admin_trusted_proxies: str = ""
    # Two-hop private routing (protocol.md §27.3). Forward clients' sealed packets to other
    # relays (off: every route frame is refused with ROUTE).
    forwarding: bool = True
    # Forward to private, loopback and link-local addresses too (tests, closed networks).
    forward_allow_private: bool = False
    # Push wake-ups (protocol.md §28). Also POST to private, loopback and link-local
    # addresses, and accept http:// endpoints on loopback (tests, closed networks).
    push_allow_private: bool = False
    push_interval_s: float = 60.0  # at most one wake-up per endpoint this often
    push_delay_max_s: float = 2.0  # a wake-up waits a random delay up to this long
    push_timeout_s: float = 10.0  # one wake-up POST, answer included
    push_queue: int = 4096  # wake-ups waiting at once, whole process (more are dropped)
    forward_per_connection_minute: int = 120  # route frames per client TCP connection/min
    forward_max_inflight: int = 64  # forwards in progress at once, whole process
    forward_pow_bits: int = 0  # proof of work a route frame needs (0: none)
    forward_timeout_s: float = 10.0  # one forward to another relay, answer included
    # Secret: 64 hex digits from which the relay identity and route keys derive; empty:
    # <data_dir>/route-key (SQLite; made at first start) or a per-process key (Redis).
    route_key: str = ""
    route_key_rotation_s: int = 7 * DAY  # a new route key this often; the old one stays
    # valid one more period (the overlap window)

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir or default_data_dir())

    def resolved_sqlite_path(self) -> Path:
        return (
            Path(self.sqlite_path)
            if self.sqlite_path
            else self.resolved_data_dir() / "relay.sqlite3"
        )

    def resolved_blob_dir(self) -> Path:
        return Path(self.blob_dir) if self.blob_dir else self.resolved_data_dir() / "blobs"

    @property
    def admin_enabled(self) -> bool:
        """Whether ``serve`` starts the admin listener (at least one admin token is set)."""
        return bool(self.admin_tokens.strip())

    def admin_token_map(self) -> dict[str, str]:
        """``{moderator name: token}`` from ``admin_tokens``.

        Raises:
            ConfigError: a malformed pair, a bad name, a short or repeated token.
        """
        out: dict[str, str] = {}
        for pair in self.admin_tokens.split(","):
            if not pair.strip():
                continue
            name, sep, token = pair.strip().partition(":")
            if not sep or not _ADMIN_NAME.fullmatch(name) or name == "relay":
                raise ConfigError(
                    "admin_tokens: each entry is name:token, the name 1-64 of A-Z a-z 0-9 . _ @ -"
                    ' (not "relay", the name of the relay\'s own audit entries)'
                )
            if len(token) < MIN_ADMIN_TOKEN_CHARS or not token.isprintable() or " " in token:
                raise ConfigError(
                    f"admin_tokens: tokens are at least {MIN_ADMIN_TOKEN_CHARS} printable "
                    "characters without spaces"
                )
            if not token_is_random_enough(token):
                raise ConfigError(
                    f"admin_tokens: the token of {name} looks guessable (repeated or too few "
                    "distinct characters); generate one with "
                    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
                )
            if name in out or token in out.values():
                raise ConfigError("admin_tokens: names and tokens must be unique")
            out[name] = token
        return out

    def origin_allowed(self, origin: str) -> bool:
        """Whether a browser page of ``origin`` may call the API (``allowed_origins``)."""
        allowed = _split(self.allowed_origins)
        return "*" in allowed or origin.lower() in allowed

    def admin_host_names(self) -> frozenset[str]:
        """The host names of ``admin_hosts``, lower-case."""
        return frozenset(_split(self.admin_hosts))

    def admin_proxy_addresses(self) -> frozenset[str]:
        """The proxy addresses of ``admin_trusted_proxies``, in canonical form."""
        return frozenset(str(ipaddress.ip_address(a)) for a in _split(self.admin_trusted_proxies))

    def store_limits(self) -> StoreLimits:
        return StoreLimits(
            max_envelopes=self.mailbox_max_envelopes,
            max_bytes=self.mailbox_max_bytes,
            envelope_ttl_s=self.envelope_ttl_s,
            dedupe_window_s=self.dedupe_window_s,
            mailbox_idle_ttl_s=self.mailbox_idle_ttl_s,
            franking_rotation_s=self.franking_rotation_s,
            report_window_s=self.report_window_s,
            report_retention_s=self.report_retention_s,
            audit_retention_s=self.audit_retention_s,
        )

    def wire_limits(self) -> RelayLimits:
        """The limits the relay announces in ``hello`` and ``GET /v1/info`` (protocol.md §3.1)."""
        return RelayLimits(
            max_frame=self.max_frame_bytes,
            max_envelope=self.max_envelope_bytes,
            max_subscriptions=self.max_subscriptions,
            challenge_ttl_s=self.challenge_ttl_s,
            envelope_ttl_s=self.envelope_ttl_s,
            push_window=self.push_window,
        )

    def redacted(self) -> dict[str, Any]:
        """The effective settings with secrets replaced by ``"***"``."""
        out = asdict(self)
        for name in SECRET_FIELDS:
            out[name] = "***" if getattr(self, name) else ""
        out["data_dir"] = str(self.resolved_data_dir())
        out["sqlite_path"] = str(self.resolved_sqlite_path())
        out["blob_dir"] = str(self.resolved_blob_dir())
        return out

    def __repr__(self) -> str:
        return f"RelayConfig({self.redacted()!r})"

    def validate(self) -> None:
        """Check every setting.

        Raises:
            ConfigError: naming the first invalid setting and the rule it breaks.
        """
        _choice("storage", self.storage, ("sqlite", "redis"))
        _choice("redis_durability", self.redis_durability, ("strict", "relaxed"))
        _range("redis_wait_replicas", self.redis_wait_replicas, 0, 16)
        _choice("log_level", self.log_level, ("debug", "info", "warning", "error"))
        _choice("log_format", self.log_format, ("auto", "json", "console"))
        _choice("event_loop", self.event_loop, ("auto", "uvloop", "asyncio"))
        _range("port", self.port, 0, 65535)
        if not self.host:
            raise ConfigError("host: must not be empty")
        _range("max_frame_bytes", self.max_frame_bytes, 1024, MAX_FRAME_SIZE)
        _range("max_envelope_bytes", self.max_envelope_bytes, 256, MAX_ENVELOPE_SIZE)
        if self.max_envelope_bytes + 256 > self.max_frame_bytes:
            raise ConfigError("max_envelope_bytes: must be at least 256 below max_frame_bytes")
        _range("body_read_timeout_s", self.body_read_timeout_s, 0.1, 600)
        _range("header_read_timeout_s", self.header_read_timeout_s, 0.1, 600)
        _range("keepalive_timeout_s", self.keepalive_timeout_s, 1, 3600)
        _range("storage_timeout_s", self.storage_timeout_s, 0.5, 120)
        _range("sqlite_reserve_mib", self.sqlite_reserve_mib, 0, 4096)
        _range("max_connections", self.max_connections, 1, 1_000_000)
        _range("max_subscriptions", self.max_subscriptions, 1, 100_000)
        _range("max_pending_challenges", self.max_pending_challenges, 1, 10_000)
        _range("max_inflight_requests", self.max_inflight_requests, 1, 100_000)
        _range("push_window", self.push_window, 1, 10_000)
        _range("heartbeat_s", self.heartbeat_s, 1, 3600)
        _range("mailbox_max_envelopes", self.mailbox_max_envelopes, 1, 10_000_000)
        _range("mailbox_max_bytes", self.mailbox_max_bytes, 256, 1 << 40)
        _range("envelope_ttl_s", self.envelope_ttl_s, 60, 365 * DAY)
        _range("dedupe_window_s", self.dedupe_window_s, 60, 365 * DAY)
        _range("mailbox_idle_ttl_s", self.mailbox_idle_ttl_s, DAY, 3650 * DAY)
        _range("challenge_ttl_s", self.challenge_ttl_s, 5, 3600)
        _range("purge_interval_s", self.purge_interval_s, 1, DAY)
        _range("prekey_max_items", self.prekey_max_items, 0, 100_000)
        _range("prekey_fetches_per_hour", self.prekey_fetches_per_hour, 0, 1_000_000)
        _range("max_caps", self.max_caps, 1, 100_000)
        _range("max_bans", self.max_bans, 0, 10_000_000)
        _range("pow_ttl_s", self.pow_ttl_s, 10, 3600)
        _range("requests_per_connection_minute", self.requests_per_connection_minute, 1, 100_000)
        _range("franking_rotation_s", self.franking_rotation_s, 3600, 365 * DAY)
        _range("report_window_s", self.report_window_s, DAY, 3650 * DAY)
        _range("report_retention_s", self.report_retention_s, DAY, 3650 * DAY)
        _range("audit_retention_s", self.audit_retention_s, DAY, 3650 * DAY)
        _range("reports_per_day", self.reports_per_day, 1, 100_000)
        _range("max_blob_bytes", self.max_blob_bytes, 1, 1 << 40)
        _range("mailbox_max_blobs", self.mailbox_max_blobs, 1, 1_000_000)
        _range("mailbox_max_blob_bytes", self.mailbox_max_blob_bytes, 1, 1 << 50)
        _range("blob_upload_ttl_s", self.blob_upload_ttl_s, 60, 30 * DAY)
        _range("forward_per_connection_minute", self.forward_per_connection_minute, 1, 100_000)
        _range("forward_max_inflight", self.forward_max_inflight, 1, 100_000)
        _range("forward_pow_bits", self.forward_pow_bits, 0, 24)
        _range("forward_timeout_s", self.forward_timeout_s, 0.5, 120)
        _range("push_interval_s", self.push_interval_s, 0, 86400)
        _range("push_delay_max_s", self.push_delay_max_s, 0, 60)
        _range("push_timeout_s", self.push_timeout_s, 0.5, 60)
        _range("push_queue", self.push_queue, 1, 1_000_000)
        _range("route_key_rotation_s", self.route_key_rotation_s, 3600, 365 * DAY)
        if self.route_key and not re.fullmatch(r"[0-9a-fA-F]{64}", self.route_key):
            raise ConfigError("route_key: 64 hex digits (32 random bytes)")
        _range("admin_port", self.admin_port, 0, 65535)
        _range("admin_session_ttl_s", self.admin_session_ttl_s, 60, 7 * DAY)
        _range("admin_idle_timeout_s", self.admin_idle_timeout_s, 60, 7 * DAY)
        _range("admin_login_failures_per_client", self.admin_login_failures_per_client, 1, 1000)
        _range("admin_login_failures_global", self.admin_login_failures_global, 1, 100_000)
        origins = _split(self.allowed_origins)
        if "*" in origins and len(origins) > 1:
            raise ConfigError('allowed_origins: "*" or a list of origins, not both')
        for origin in origins - {"*"}:
            if not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    "allowed_origins: each entry is scheme://host[:port] (http or https, no path)"
                )
        hosts = self.admin_host_names()
        if not hosts or not all(_HOST_NAME.fullmatch(h) for h in hosts):
            raise ConfigError("admin_hosts: one or more host names (no port), comma-separated")
        for address in _split(self.admin_trusted_proxies):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError("admin_trusted_proxies: IP addresses, comma-separated") from None
        if not self.admin_host:
            raise ConfigError("admin_host: must not be empty")
        self.admin_token_map()
        if (
            self.admin_enabled
            and self.admin_port != 0
            and (self.admin_host, self.admin_port) == (self.host, self.port)
        ):
            raise ConfigError("admin_port: must differ from port")
        if self.storage == "redis" and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError("redis_url: must start with redis://, rediss:// or unix://")


def _split(value: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in value.split(",") if part.strip())


def token_is_random_enough(token: str) -> bool:
    """Whether ``token`` looks drawn at random: enough estimated entropy (Shannon entropy
    of its characters times its length) and no repeating period."""
    counts = Counter(token)
    n = len(token)
    bits = -sum(c * math.log2(c / n) for c in counts.values())
    periodic = any(token == (token[:p] * (n // p + 1))[:n] for p in range(1, n // 2 + 1))
    return bits >= MIN_ADMIN_TOKEN_BITS and not periodic


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}")


def _range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}")


def _coerce(name: str, kind: type, raw: object, source: str) -> object:
    """Convert ``raw`` (from TOML or an env string) to the field's type."""
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise ValueError
            return int(raw)
        if kind is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except ValueError:
        raise ConfigError(f"{name} ({source}): expected {kind.__name__}") from None


_TYPES: dict[str, type] = {
    f.name: {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]
    for f in fields(RelayConfig)
}


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> RelayConfig:
    """Build and validate the configuration.

    Args:
        path: a TOML file, or None for none.
        environ: the environment to read ``BLINDRELAY_*`` from (default ``os.environ``).

    Raises:
        ConfigError: unreadable file, unknown setting, wrong type or invalid value.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"config file: cannot read ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file: invalid TOML ({exc})") from None
        table = doc.get("relay", doc)
        if not isinstance(table, dict):
            raise ConfigError("config file: [relay] must be a table")
        for key, raw in table.items():
            name = key
            if name.endswith("_file") and name[: -len("_file")] in SECRET_FIELDS:
                values[name[: -len("_file")]] = _read_secret(name, str(raw))
                continue
            if name not in _TYPES:
                raise ConfigError(f"{name} (config file): unknown setting")
            values[name] = _coerce(name, _TYPES[name], raw, "config file")
    for name, kind in _TYPES.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = _coerce(name, kind, env[env_name], env_name)
        if name in SECRET_FIELDS and env_name + "_FILE" in env:
            values[name] = _read_secret(env_name + "_FILE", env[env_name + "_FILE"])
    known = {ENV_PREFIX + n.upper() for n in _TYPES} | {
        ENV_PREFIX + n.upper() + "_FILE" for n in SECRET_FIELDS
    }
    for env_name in env:
        if env_name.startswith(ENV_PREFIX) and env_name not in known:
            raise ConfigError(f"{env_name}: unknown setting")
    config = replace(RelayConfig(), **values)  # type: ignore[arg-type]
    config.validate()
    return config


def _read_secret(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read secret file ({exc.strerror})") from None
