"""``blindchat invite --relay URL`` and ``blindchat relays`` (issue 16 item 1, protocol.md
§27.1): an address on a second relay, and the receive relays listed with their state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from liverelay import start_relay
from test_blindchat import LINK_RE, blindchat, ok

from clientlib.client.invite import Invitation
from clientlib.client.relayurl import normalize_relay_url


@pytest.fixture(scope="module", autouse=True)
def relay_log() -> Iterator[None]:
    """The relays here are subprocesses (see ``test_blindchat_proxy``)."""
    yield


def test_invite_on_a_second_relay_and_list_relays(tmp_path: Path) -> None:
    r1, r2 = start_relay(tmp_path, "relay-1"), start_relay(tmp_path, "relay-2")
    try:
        home = tmp_path / "alice"
        ok(home, "init", "--relay", r1.url, "--name", "alice", "--kdf", "minimum")
        out = ok(home, "invite", "--no-qr", "--relay", r2.url)
        link = LINK_RE.search(out)
        assert link, out
        assert Invitation.parse(link.group(0)).relay_url == normalize_relay_url(r2.url)
        lines = ok(home, "relays").splitlines()
        assert lines[0].split() == ["home", "connected", normalize_relay_url(r1.url)]
        assert lines[1].split() == ["receive", "connected", normalize_relay_url(r2.url)]
        r2.stop()
        lines = ok(home, "relays").splitlines()
        assert lines[1].split() == ["receive", "unreachable", normalize_relay_url(r2.url)]
        bad = blindchat(home, "invite", "--no-qr", "--relay", "ftp://x.example")
        assert bad.returncode != 0 and "relay" in bad.stderr
    finally:
        r1.stop()
        r2.stop()
