"""Relay URLs (protocol.md §27.1): re-exported from :mod:`clientlib.wire.relayurl`, where
the relay can use the same check (it never imports ``clientlib.client``)."""

from __future__ import annotations

from clientlib.wire.relayurl import MAX_RELAY_URL_BYTES, InvalidRelayUrl, normalize_relay_url

__all__ = ["MAX_RELAY_URL_BYTES", "InvalidRelayUrl", "normalize_relay_url"]
