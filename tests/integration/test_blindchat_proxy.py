"""``blindchat --proxy`` (issue 16, protocol.md §27.2): the CLI reaches its relay through a
SOCKS5 proxy process (pproxy), and refuses a proxy setting that is not ``socks5://host:port``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from liverelay import is_banner, start_relay
from socksproxy import PProxy
from test_blindchat import LINK_RE, blindchat, ok

from clientlib.chat.cli import EXIT_USAGE


@pytest.fixture(scope="module", autouse=True)
def relay_log() -> Iterator[None]:
    """The relay here is a subprocess: the package's in-process log check does not apply
    (its output holds no address but its banner; see ``test_blindchat``)."""
    yield


def test_blindchat_through_a_socks5_proxy(tmp_path: Path) -> None:
    relay = start_relay(tmp_path, "relay")
    proxy = PProxy(tmp_path / "pproxy.log")
    proxy.start()
    try:
        url = f"http://localhost:{relay.port}"
        home = tmp_path / "alice"
        ok(home, "init", "--relay", url, "--name", "alice", "--kdf", "minimum")
        out = ok(home, "--proxy", proxy.url, "invite", "--no-qr")
        assert LINK_RE.search(out), out
        # The relay's name went to the proxy, unresolved.
        assert re.search(rf"-> localhost:{relay.port}\b", proxy.log_text())
        bad = blindchat(home, "--proxy", "http://127.0.0.1:1", "contacts")
        assert bad.returncode == EXIT_USAGE
        assert "socks5://host:port" in bad.stderr
    finally:
        proxy.stop()
        relay.stop()
    lines = [ln for ln in relay.log_text().splitlines() if not is_banner(ln)]
    assert not re.search(r"\b127\.0\.0\.1\b|localhost", "\n".join(lines))
