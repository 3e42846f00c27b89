"""A client's WebSocket reconnects back off only up to ``ClientConfig.reconnect_cap``
(issue 22, snag 8: an 11 s outage cost up to 28 s with the transport's 30 s cap); blindchat
uses a cap for interactive use."""

from __future__ import annotations

from pathlib import Path

import pytest
from clientkit import make

from clientlib.chat._plumbing import RECONNECT_CAP
from clientlib.client import ClientConfig


async def test_the_clients_socket_uses_the_configured_cap(relay: str, tmp_path: Path) -> None:
    async with make(tmp_path, "alice", relay, reconnect_cap=1.5) as alice:
        ws = alice._link.ws
        assert ws is not None
        assert max(ws._backoff(n) for n in range(64)) <= 1.5
        assert ws._backoff_cap == 1.5


def test_the_cap_is_checked_and_blindchat_keeps_it_short() -> None:
    assert ClientConfig().reconnect_cap == 30.0
    assert 0 < RECONNECT_CAP <= 5
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="reconnect_cap"):
            ClientConfig(reconnect_cap=bad)
