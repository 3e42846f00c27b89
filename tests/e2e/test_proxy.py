"""Acceptance (issue 16, protocol.md §27.2): every connection through a SOCKS5 proxy.

* Through ``pproxy`` (its own process): two users on two relays become contacts and talk;
  every TCP connection either relay has while they do is the proxy's, never the clients'
  (the test process); relay URLs with a host name reach the proxy as that name (DNS at the
  proxy, never locally).
* Through a recording SOCKS5 server: stream isolation. No SOCKS credentials are shared by
  two connection groups (our relay, a contact relay, deposits; with ``spread`` each mailbox),
  so Tor would put them on different circuits.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import befriend, make, wait_for
from liverelay import RelayProcess, start_relay
from socksproxy import PProxy, RecordingSocks, connections_to

from clientlib.client import ClientConfig, MessageReceived


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RelayProcess, RelayProcess]]:
    tmp = tmp_path_factory.mktemp("relays")
    a, b = start_relay(tmp, "relay-a"), start_relay(tmp, "relay-b")
    yield a, b
    a.stop()
    b.stop()


async def test_clients_reach_two_relays_only_through_the_proxy(
    tmp_path: Path, relays: tuple[RelayProcess, RelayProcess]
):
    relay_a, relay_b = relays
    proxy = PProxy(tmp_path / "pproxy.log")
    proxy.start()
    try:
        # Host names, not addresses: the proxy resolves them (socks5h semantics).
        url_a = f"http://localhost:{relay_a.port}"
        url_b = f"http://localhost:{relay_b.port}"
        alice = make(tmp_path, "alice", url_a, proxy=proxy.url)
        bob = make(tmp_path, "bob", url_b, proxy=proxy.url)
        async with alice, bob:
            a_bob, b_alice = await befriend(alice, bob)
            await bob.send(b_alice, "through the proxy")
            ev = await wait_for(alice, MessageReceived)
            assert ev.message.text == "through the proxy"
            await alice.send(a_bob, "and back")
            ev = await wait_for(bob, MessageReceived)
            assert ev.message.text == "and back"
            for relay in (relay_a, relay_b):
                peers = connections_to(relay.port)
                assert peers, "the clients hold connections to both relays"
                assert set(peers) == {proxy.proc.pid}, peers
                assert os.getpid() not in peers
        log = proxy.log_text()
        assert f"-> localhost:{relay_a.port}" in log
        assert f"-> localhost:{relay_b.port}" in log
    finally:
        proxy.stop()


async def test_stream_isolation_by_socks_credentials(
    tmp_path: Path, relays: tuple[RelayProcess, RelayProcess]
):
    relay_a, relay_b = relays
    socks = RecordingSocks()
    await socks.start()
    try:
        # Alice spreads her mailboxes over connections (spread=True), Bob does not.
        alice = make(tmp_path, "alice", relay_a.url, proxy=socks.url, spread=True)
        bob = make(tmp_path, "bob", relay_b.url, proxy=socks.url)
        async with alice, bob:
            await befriend(alice, bob)
            await asyncio.sleep(0.2)
        by_user: dict[str, set[int]] = defaultdict(set)
        for user, host, port in socks.streams:
            assert host == "127.0.0.1"
            by_user[user].add(port)
        assert all(len(user) == 32 for user in by_user)
        # No credentials are used towards two relays.
        assert all(len(ports) == 1 for ports in by_user.values()), by_user
        users_a = {u for u, p in by_user.items() if relay_a.port in p}
        users_b = {u for u, p in by_user.items() if relay_b.port in p}
        assert users_a and users_b and not users_a & users_b
        # At A: Alice's own session, her address's and her pairwise mailbox's sockets
        # (spread), and Bob's session for A (his request and messages): four groups.
        assert len(users_a) >= 4, users_a
        # At B: Bob's own session, and Alice's session for B: two groups.
        assert len(users_b) >= 2, users_b
    finally:
        await socks.stop()


def test_proxy_setting_is_checked():
    assert ClientConfig(proxy="socks5://127.0.0.1:9050").proxy
    assert ClientConfig(proxy="socks5h://tor.internal:9050").proxy
    for bad in (
        "http://127.0.0.1:8080",
        "socks4://127.0.0.1:9050",
        "socks5://127.0.0.1",
        "socks5://user:pw@127.0.0.1:9050",
        "socks5://127.0.0.1:9050/path",
        "socks5://127.0.0.1:99999",
        "socks5://:9050",
        "",
    ):
        with pytest.raises(ValueError):
            ClientConfig(proxy=bad)
