"""Acceptance (issue 16, protocol.md §27.3): two-hop private routing between two relays.

Alice uses relay A, Bob relay B, both with ``private_routing``: every request a client makes
to the other's relay (boundaries, bundle, proof of work, the request, messages) is sealed to
that relay's route key and handed to the client's own relay, which forwards it. A message
Bob sends arrives, is reported by Alice and verified by A (franking tags made by A). Scans:
A (the destination of Bob's deposits) never stores or logs the connection addresses of Bob's
client (its source ports), and B (the forwarder) never stores or logs the destination
mailbox id, in any form.
"""

from __future__ import annotations

import base64
import os
import urllib.request
from pathlib import Path

from clientkit import befriend, make, wait_for
from liverelay import RelayProcess, start_relay
from socksproxy import connections_to

from clientlib.client import MessageReceived

PRIVATE = {"BLINDRELAY_FORWARD_ALLOW_PRIVATE": "true"}  # loopback relays, operator allowed


def _stored(relay: RelayProcess) -> bytes:
    blobs = [relay.log_path.read_bytes()]
    blobs += [p.read_bytes() for p in sorted(relay.data_dir.rglob("*")) if p.is_file()]
    return b"\n".join(blobs)


def _forms(value: bytes) -> list[bytes]:
    return [
        value,
        value.hex().encode(),
        value.hex().upper().encode(),
        base64.b64encode(value).rstrip(b"="),
        base64.urlsafe_b64encode(value).rstrip(b"="),
    ]


def _metric(relay: RelayProcess, family: str, kind: str) -> float:
    with urllib.request.urlopen(f"{relay.url}metrics", timeout=5) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(f'blindrelay_{family}_total{{kind="{kind}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _local_ports(relay: RelayProcess) -> set[int]:
    """Source ports of this process's established connections to ``relay``."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "01" and int(cols[2].rsplit(":", 1)[1], 16) == relay.port:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


async def test_two_hop_delivery_report_and_scans(tmp_path: Path) -> None:
    relay_a = start_relay(tmp_path, "relay-a", **PRIVATE)
    relay_b = start_relay(tmp_path, "relay-b", **PRIVATE)
    try:
        token = os.urandom(6).hex()
        alice = make(tmp_path, "alice", relay_a.url, private_routing=True)
        bob = make(tmp_path, "bob", relay_b.url, private_routing=True)
        async with alice, bob:
            a_bob, b_alice = await befriend(alice, bob)
            # Alice's link (version 3) pinned relay A's identity: Bob learned it through B
            # and checked it against the link, with no direct request to A.
            url_a = relay_a.url.rstrip("/")
            assert (await alice.create_invitation()).version == 3
            assert bob._link._get_pin(url_a) is not None
            assert url_a + "#pin" not in bob._link.relays._sessions
            await bob.send(b_alice, f"two hops {token}")
            got = (await wait_for(alice, MessageReceived)).message
            assert got.text == f"two hops {token}"
            await alice.send(a_bob, "and back, two hops")
            assert (await wait_for(bob, MessageReceived)).message.text == "and back, two hops"
            # Bob's client is connected to B (his relay) and to nothing else of his own.
            bob_ports = _local_ports(relay_b)
            assert bob_ports
            assert os.getpid() in connections_to(relay_b.port)
            # The reported message was franked by A (the destination) and verifies there.
            await alice.sync()
            report_id = await alice.report(got, "spam")
            assert len(bytes.fromhex(report_id)) == 16
            # Mailbox ids: Alice's mailbox for Bob (on A), Bob's for Alice (on B).
            a_mailbox = bob._book.contacts[bytes.fromhex(b_alice)].send
            b_mailbox = alice._book.contacts[bytes.fromhex(a_bob)].send
            assert a_mailbox is not None and b_mailbox is not None
        assert _metric(relay_b, "forwarded", "ok") >= 3  # bundle, boundaries, pow, request...
        assert _metric(relay_a, "forwarded_in", "ok") >= 3
        assert _metric(relay_a, "forwarded", "ok") >= 1  # Alice's acceptance and message
        assert _metric(relay_b, "forwarded_in", "ok") >= 1
    finally:
        relay_a.stop()
        relay_b.stop()
    at_a, at_b = _stored(relay_a), _stored(relay_b)
    # F = B for Bob's deposits: B never holds the mailbox on A they went to.
    for form in _forms(a_mailbox):
        assert form not in at_b
    # F = A for Alice's deposits: A never holds the mailbox on B.
    for form in _forms(b_mailbox):
        assert form not in at_a
    # D = A: no source port of Bob's connections appears in A's log or storage as text.
    for port in bob_ports:
        assert f":{port}".encode() not in at_a and f'"{port}"'.encode() not in at_a
