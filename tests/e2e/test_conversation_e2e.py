"""Acceptance for issue 13 (protocol.md §22.10-§22.13): three client processes
(``clientproc.py``) on a live relay process, on each backend.

* receipts: delivery and read receipts come back batched (one receipt for a burst) and no
  sooner than the delay's minimum nor later than its maximum (plus slack); with receipts
  switched off, none ever comes;
* typing reaches a connected peer, start and stop, and the relay stores nothing for it (the
  mailbox's last sequence does not move);
* a disappearing message is gone at its expiry from both histories, and one its recipient
  never fetched in time is never delivered (the relay honours the deposit's ``ttl``), and a copy of each
  history file taken *before* the expiry no longer yields it with anything the keystore holds
  (records decrypted per §23.4 from the files alone, the keystore opened per §23.4 too); the
  plaintext is in no byte of either client directory, the relay's storage or its log;
* unsend and edit reach a peer that was offline and catches up later; a reaction comes back;
  a message unsent before that peer fetched it is recalled at the relay (§5.10): the peer
  never sees it, and the relay holds its envelope no more.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings as sodium
from liverelay import RelayProcess
from nacl.pwhash import argon2id
from test_clients_e2e import (
    ClientProc,
    World,
    assert_no_bad_warnings,
    forms,
    respawn,
    stored_envelopes,
    world,  # noqa: F401 - the fixture
)

from clientlib.crypto.primitives import hmac_sha256

#: The receipt delay of these clients: minimum, mean, maximum (seconds).
DELAY = (1.0, 1.5, 3.0)
#: Scheduling slack on a loaded machine, on top of the delay's maximum; and how much earlier
#: than the minimum a receipt may appear to arrive (the harness reads events through pipes).
SLACK = 6.0
EARLY = 0.3
TIMER = 4  # seconds, the disappearing timer


async def spawn(w: World, name: str) -> ClientProc:
    proc = ClientProc(w, name)
    proc.extra_args = ["--receipt-delay", ",".join(str(v) for v in DELAY)]
    w.procs[name] = proc
    await proc.start(create=True)
    return proc


async def befriend(owner: ClientProc, other: ClientProc) -> tuple[str, str]:
    """``other`` asks ``owner`` (accepted); the two contact ids, and each side has the
    other's settings (sent at the start, §22.6)."""
    link = (await owner.call("invite"))["link"]
    theirs = (await other.call("request", link=link))["id"]
    req = await owner.wait_event(
        lambda e: e["event"] == "request" and e["name"] == other.display, what="request"
    )
    mine = (await owner.call("accept", request_id=req["id"]))["id"]
    await other.wait_event(lambda e: e["event"] == "contact_added", 20, "contact added")
    return mine, theirs


def events_of(p: ClientProc, kind: str, **match: Any) -> list[tuple[float, dict[str, Any]]]:
    return [
        (t, e)
        for t, e in zip(p.times, p.events, strict=True)
        if e["event"] == kind and all(e.get(k) == v for k, v in match.items())
    ]


# --- spec-only readers of the client's files (protocol.md §23.4) ---------------------------


def open_keystore(path: Path, passphrase: bytes) -> dict[str, dict[bytes, bytes]]:
    data = path.read_bytes()
    assert data[:5] == b"BRKS\x01"
    ops, mem = struct.unpack(">II", data[5:13])
    salt, nonce = data[13:29], data[29:53]
    key = argon2id.kdf(32, passphrase, salt, opslimit=ops, memlimit=mem * 1024)
    body = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(data[53:], data[:53], nonce, key)
    out: dict[str, dict[bytes, bytes]] = msgpack.unpackb(body, raw=False)
    return out


def history_plaintexts(data: bytes, ks: dict[str, dict[bytes, bytes]]) -> list[bytes]:
    """Every record of history file ``data`` that some key held in ``ks`` decrypts."""
    assert data[:8] == b"BRHIST\x00\x02"
    epoch, pos = data[8:24], 24
    keys = {v[:16]: v[16:48] for v in ks.get("history-keys", {}).values()}
    keys.update({kid: v[:32] for kid, v in ks.get("history-msgkeys", {}).items()})
    mac = ks["meta"][b"history-key"]
    chain = hmac_sha256(mac, b"blindrelay/v1/history-chain\x00" + epoch)
    out, index = [], 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        blob = data[pos + 4 : pos + 4 + n]
        pos += 4 + n
        kid, nonce, ct = blob[:16], blob[16:40], blob[40:]
        ad = b"blindrelay/v1/history-record\x00" + epoch + struct.pack(">Q", index) + chain
        if kid in keys:
            out.append(
                sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, ad + kid, nonce, keys[kid])
            )
        chain = hmac_sha256(mac, chain + struct.pack(">Q", index) + blob)
        index += 1
    return out


def files_of(p: ClientProc) -> dict[str, bytes]:
    return {
        f"{p.name}: {f.name}": f.read_bytes()
        for f in p.keystore.parent.iterdir()
        if f.is_file() and f.name.startswith(p.keystore.name)
    }


def passphrase(p: ClientProc) -> bytes:
    return f"pw-{p.name} long test passphrase".encode()


# --- the test --------------------------------------------------------------------------------


async def test_receipts_typing_disappearing_unsend_edit(
    world: World,  # noqa: F811 - the fixture
    live_relay: RelayProcess,
    relay_storage: Any,
) -> None:
    token = secrets.token_hex(6)
    # Purge every second, so "gone from the relay" is observable within the test.
    await asyncio.to_thread(live_relay.stop)
    live_relay.env["BLINDRELAY_PURGE_INTERVAL_S"] = "1"
    await asyncio.to_thread(live_relay.start)
    a, b, c = await asyncio.gather(spawn(world, "a"), spawn(world, "b"), spawn(world, "c"))
    (a_b, b_a), (a_c, c_a) = await befriend(a, b), await befriend(a, c)
    await asyncio.gather(a.call("sync"), b.call("sync"), c.call("sync"))

    # --- receipts: batched, within the delay bounds; never when switched off -------------
    await c.call("privacy", contact=c_a, receipts=False, delivery=False)
    await c.call("sync")
    burst = [(await a.call("send", contact=a_b, text=f"{token} burst {i}"))["id"] for i in range(4)]
    await b.wait_until(lambda: len(b.received[b_a]) == 4, 30, "B: the burst")
    got_at = max(t for t, _ in events_of(b, "message"))
    await a.wait_until(
        lambda: {e["id"] for _, e in events_of(a, "delivery", state="delivered")} >= set(burst),
        DELAY[2] + SLACK + 10,
        "A: delivery receipts",
    )
    ticks = [t for t, e in events_of(a, "delivery", state="delivered") if e["id"] in burst]
    assert max(ticks) - min(ticks) < 0.5, "one receipt for the burst, not one per message"
    assert min(ticks) - got_at >= DELAY[0] - EARLY, "a receipt left before the minimum delay"
    assert max(ticks) - got_at <= DELAY[2] + SLACK, "a receipt waited past the maximum"
    seen_at = asyncio.get_running_loop().time()
    assert await b.call("mark_read", contact=b_a) == 4
    await a.wait_until(
        lambda: {e["id"] for _, e in events_of(a, "delivery", state="read")} >= set(burst),
        DELAY[2] + SLACK + 10,
        "A: read receipts",
    )
    reads = [t for t, e in events_of(a, "delivery", state="read") if e["id"] in burst]
    assert max(reads) - min(reads) < 0.5 and min(reads) - seen_at >= DELAY[0] - EARLY

    quiet = [(await a.call("send", contact=a_c, text=f"{token} quiet {i}"))["id"] for i in range(2)]
    await c.wait_until(lambda: len(c.received[c_a]) == 2, 30, "C: two messages")
    assert await c.call("mark_read", contact=c_a) == 2
    await asyncio.sleep(DELAY[2] + 1.5)
    ticks_c = [e for _, e in events_of(a, "delivery") if e["id"] in quiet]
    assert {e["state"] for e in ticks_c} == {"sent"}, "a receipt came although switched off"
    assert {m["state"] for m in await a.call("history", contact=a_c)} == {"sent"}

    # --- typing: reaches the connected peer, never stored -----------------------------------
    before = await b.call("holdings")
    assert await a.call("typing", contact=a_b, on=True) is True
    await b.wait_event(lambda e: e["event"] == "typing" and e["on"], 15, "B: A is typing")
    assert await a.call("typing", contact=a_b, on=False) is True
    await b.wait_event(lambda e: e["event"] == "typing" and not e["on"], 15, "B: A stopped")
    assert await b.call("holdings") == before, "a typing indicator was stored at the relay"

    # --- disappearing: gone from both histories, the keystores and the relay ---------------
    await a.call("disappear", contact=a_b, seconds=TIMER)
    await b.wait_event(lambda e: e["event"] == "disappearing" and e["seconds"] == TIMER, 15, "B")
    secret = f"{token} this message disappears"
    gone = (await a.call("send", contact=a_b, text=secret))["id"]
    await b.wait_until(lambda: secret in b.received[b_a], 30, "B: the disappearing message")
    await b.call("mark_read", contact=b_a)  # B's timer starts at first display
    await asyncio.gather(a.call("sync"), b.call("sync"))
    snapshots = {p.name: p.keystore.with_suffix(".keystore.history").read_bytes() for p in (a, b)}
    for p in (a, b):
        await p.wait_event(lambda e: e["event"] == "expired" and e["id"] == gone, 30, "expiry")
        assert gone not in {
            m["id"] for m in await p.call("history", contact=a_b if p is a else b_a)
        }

    # An undelivered disappearing message vanishes at the relay with the sender's copy (the
    # deposit's ttl, protocol.md §5.7): B, offline meanwhile, never gets it.
    await b.quit()
    late = (await a.call("send", contact=a_b, text=f"{token} never delivered"))["id"]
    await a.call("sync")
    await a.wait_event(lambda e: e["event"] == "expired" and e["id"] == late, 30, "A: expiry")
    async with asyncio.timeout(30):  # the relay's purge (every second here) deletes it
        while await stored_envelopes(live_relay):
            await asyncio.sleep(0.2)
    b = await respawn(world, b)
    await b.call("sync")
    assert f"{token} never delivered" not in b.received[b_a]
    assert late not in {m["id"] for m in await b.call("history", contact=b_a)}

    # --- unsend and edit reach an offline peer when it catches up ---------------------------
    m_del = (await a.call("send", contact=a_c, text=f"{token} to be unsent"))["id"]
    m_ed = (await a.call("send", contact=a_c, text=f"{token} to be edited"))["id"]
    await c.wait_until(lambda: len(c.received[c_a]) == 4, 30, "C: two more")
    await c.call("sync")
    await c.quit()
    # A message C has not fetched yet is recalled at the relay by its unsend (§5.10): the
    # relay holds one envelope fewer (the message's, while the `del` is added), and C,
    # catching up, finds neither the message nor its envelope.
    m_rec = (await a.call("send", contact=a_c, text=f"{token} recalled before it arrived"))["id"]
    await a.call("sync")
    held = await stored_envelopes(live_relay)
    await a.call("unsend", contact=a_c, message=m_rec)
    await a.call("sync")
    async with asyncio.timeout(10):
        while await stored_envelopes(live_relay) != held:
            await asyncio.sleep(0.1)
    await a.call("unsend", contact=a_c, message=m_del)
    await a.call("edit", contact=a_c, message=m_ed, text=f"{token} edited while you were away")
    await a.call("sync")
    c = await respawn(world, c)
    await c.wait_event(lambda e: e["event"] == "changed" and e["change"] == "deleted", 30, "del")
    await c.wait_event(lambda e: e["event"] == "changed" and e["change"] == "edited", 30, "edit")
    hist = {m["id"]: m for m in await c.call("history", contact=c_a)}
    assert hist[m_del]["deleted"] and hist[m_del]["text"] == ""
    assert m_rec not in hist and f"{token} recalled before it arrived" not in c.received[c_a]
    assert not [e for e in c.events if e.get("id") == m_rec], "C saw the recalled message"
    assert hist[m_ed]["edited"] and hist[m_ed]["text"] == f"{token} edited while you were away"
    mine = {m["id"]: m for m in await a.call("history", contact=a_c)}
    assert mine[m_del]["deleted"] and mine[m_ed]["edited"]
    await c.call("react", contact=c_a, message=m_ed, emoji="👍", direction="in")
    await a.wait_event(lambda e: e["event"] == "changed" and e["change"] == "reaction", 30, "rx")
    assert ["peer", "👍"] in {m["id"]: m for m in await a.call("history", contact=a_c)}[m_ed][
        "reactions"
    ]
    assert_no_bad_warnings(world, a, b, c)

    # --- the scans (client processes closed: their keystores are unlocked) -----------------
    await asyncio.gather(a.call("sync"), b.call("sync"), c.call("sync"))
    for p in (a, b, c):
        await p.quit()
    assert await stored_envelopes(live_relay) == 0
    needle = secret.encode()
    for p in (a, b):
        ks = open_keystore(p.keystore, passphrase(p))
        assert needle not in msgpack.packb(ks), f"{p.name}: the keystore holds the plaintext"
        current = p.keystore.with_suffix(".keystore.history").read_bytes()
        # Positive control: the reader decrypts what the client wrote (the burst / quiet).
        assert any(token.encode() in pt for pt in history_plaintexts(current, ks))
        for label, data in (("now", current), ("before expiry", snapshots[p.name])):
            leaked = [pt for pt in history_plaintexts(data, ks) if needle in pt]
            assert not leaked, f"{p.name}: the history file ({label}) still yields it"
        # and in no byte of the client's directory (keystore, history, slot, lock)
        for source, blob in files_of(p).items():
            assert not any(v in blob for v in forms(needle).values()), source
    blobs = relay_storage.dump()
    hits = [s for s, blob in blobs.items() if any(v in blob for v in forms(needle).values())]
    assert not hits, world.report(f"the relay stored or logged the plaintext: {hits}")
