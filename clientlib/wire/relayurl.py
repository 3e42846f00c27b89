"""Relay URLs: the one check and normal form every relay URL goes through (protocol.md §27.1),
shared by the client and the relay (a forwarding relay checks destinations with it).

A relay URL names a relay's base: ``http(s)://host[:port][/prefix]``. It arrives from
invitation links, from a contact's ``req`` content (§22.1) and from the application; all three
are checked by :func:`normalize_relay_url` before a client connects anywhere, so a peer
cannot make a client open a connection to something that is not a relay URL (a ``file:`` or
``ws:`` scheme, credentials in the URL, a query, odd characters).

The normal form lowercases the scheme and host, drops a default port (80 for ``http``, 443
for ``https``) and a trailing ``/``; two URLs of one relay then compare equal, which is how a
client tells whether a contact is on its own relay.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from clientlib.errors import LocalProtocolError

__all__ = ["MAX_RELAY_URL_BYTES", "InvalidRelayUrl", "normalize_relay_url"]

#: Longest relay URL accepted (bytes of ASCII): a 253-character DNS name, a port and a short
#: path prefix fit; an ``.onion`` v3 name is 62 characters.
MAX_RELAY_URL_BYTES = 255
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: A DNS host name (IDNs arrive as punycode, ``xn--``), letters, digits, hyphens, dots.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
#: A path prefix: segments of unreserved characters only.
_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)*/?$")


class InvalidRelayUrl(LocalProtocolError):
    """Not a relay URL of the form ``http(s)://host[:port][/prefix]`` (protocol.md §27.1)."""


def normalize_relay_url(url: str) -> str:
    """The normal form of a relay URL (see the module docstring).

    Raises:
        InvalidRelayUrl: not text, too long, not ASCII, another scheme than ``http`` or
            ``https``, user info, a query or fragment, a bad host, port or path.
    """
    if type(url) is not str or not url or len(url) > MAX_RELAY_URL_BYTES or not url.isascii():
        raise InvalidRelayUrl("a relay URL is http(s)://host[:port][/prefix], ASCII")
    if any(ch.isspace() or ord(ch) < 0x21 or ch in "\\\x7f" for ch in url):
        raise InvalidRelayUrl("a relay URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRelayUrl("the relay URL's port is not a number in 1..65535") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidRelayUrl("a relay URL starts with http:// or https://")
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in url or "#" in url:
        raise InvalidRelayUrl("a relay URL has no user info, query or fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidRelayUrl("the relay URL names no host")
    if port is not None and not 1 <= port <= 65535:
        raise InvalidRelayUrl("the relay URL's port is not a number in 1..65535")
    if ":" in host:  # an IPv6 literal: [addr] in the netloc
        try:
            host = "[" + str(ipaddress.IPv6Address(host)) + "]"
        except ValueError:
            raise InvalidRelayUrl("the relay URL's IPv6 address is malformed") from None
    elif not _HOST.match(host):
        raise InvalidRelayUrl("the relay URL's host is not a valid name or address")
    if not _PATH.match(parts.path):
        raise InvalidRelayUrl("the relay URL's path prefix has unexpected characters")
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"
