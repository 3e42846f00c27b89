"""Group vectors (``tests/vectors/group-v1.json``, protocol.md §26.3-§26.5).

Two implementations meet here: the client's (``clientlib.crypto.group``) and one written
below from protocol.md alone (``cryptography``'s Ed25519, X25519 and HKDF, libsodium's
XChaCha20-Poly1305 through PyNaCl, stdlib ``hmac``/``hashlib``, ``msgpack``). Forged,
reordered and replayed inputs must fail in the client with :class:`GroupError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clientlib.crypto.group import (
    GroupError,
    GroupState,
    LogEntry,
    ReceiverChain,
    open_control,
    open_direct,
    open_message,
)
from clientlib.crypto.group import GroupKeys as ClientKeys

V = json.loads((Path(__file__).parents[1] / "vectors" / "group-v1.json").read_text())["group-v1"]
RAW = serialization.Encoding.Raw


def x(s: str) -> bytes:
    return bytes.fromhex(s)


# --- from protocol.md §26 alone ----------------------------------------------------------------


def spec_hkdf(ikm: bytes, salt: bytes, info: bytes, n: int) -> bytes:
    return HKDF(hashes.SHA256(), n, salt, info).derive(ikm)


def spec_sign(seed: bytes, context: bytes, data: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(context + data)


def spec_verify(gpk: bytes, context: bytes, data: bytes, sig: bytes) -> None:
    Ed25519PublicKey.from_public_bytes(gpk).verify(sig, context + data)


def spec_xchacha_open(key: bytes, nonce: bytes, ct: bytes, ad: bytes) -> bytes:
    out: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, ad, nonce, key)
    return out


def test_keys() -> None:
    for k in V["keys"]:
        pub = Ed25519PrivateKey.from_private_bytes(x(k["sign_seed"])).public_key()
        assert pub.public_bytes(RAW, serialization.PublicFormat.Raw) == x(k["gpk"])
        xp = X25519PrivateKey.from_private_bytes(x(k["dh_private"])).public_key()
        assert xp.public_bytes(RAW, serialization.PublicFormat.Raw) == x(k["xpk"])
        client = ClientKeys(x(k["sign_seed"]), x(k["dh_private"]))
        assert (client.gpk, client.xpk) == (x(k["gpk"]), x(k["xpk"]))


def test_log_from_the_spec() -> None:
    gid = x(V["gid"])
    prev = bytes(32)
    seeds = {x(k["gpk"]): x(k["sign_seed"]) for k in V["keys"]}
    epoch = 0
    for seq, e in enumerate(V["log"]):
        signed = x(e["signed"])
        fields = msgpack.unpackb(signed, raw=False)
        assert fields[:5] == [1, gid, seq, prev, e["epoch"]]
        assert fields[5] == e["kind"]
        if e["kind"] in ("remove", "leave"):
            epoch += 1
        assert fields[4] == epoch
        # Canonical: re-encoding gives the same bytes.
        assert msgpack.packb(fields, use_bin_type=True) == signed
        signer = fields[7]
        context = b"blindrelay/v1/group/log\x00"
        spec_verify(signer, context, signed, x(e["sig"]))
        assert spec_sign(seeds[signer], context, signed) == x(e["sig"])  # Ed25519 is deterministic
        encoded = msgpack.packb([signed, x(e["sig"])], use_bin_type=True)
        assert encoded == x(e["encoded"])
        assert hashlib.sha256(encoded).digest() == x(e["hash"])
        prev = x(e["hash"])
    assert prev == x(V["final"]["head"])


def test_log_through_the_client() -> None:
    gid = x(V["gid"])
    entries = [LogEntry.decode(x(e["encoded"])) for e in V["log"]]
    state = GroupState.from_log(gid, entries)
    assert state.head == x(V["final"]["head"])
    assert state.epoch == V["final"]["epoch"]
    assert [g.hex() for g in state.members] == V["final"]["members"]
    assert state.settings.post == "admins" and state.settings.ttl == 3600
    assert state.role_of(x(V["keys"][1]["gpk"])) == "admin"


def _state_after(n: int) -> GroupState:
    gid = x(V["gid"])
    return GroupState.from_log(gid, [LogEntry.decode(x(e["encoded"])) for e in V["log"][:n]])


def test_forged_reordered_and_unauthorised_entries_change_nothing() -> None:
    entries = [LogEntry.decode(x(e["encoded"])) for e in V["log"]]
    member = ClientKeys(x(V["keys"][2]["sign_seed"]), x(V["keys"][2]["dh_private"]))
    cases: dict[str, LogEntry] = {}
    cases["bad signature"] = dataclasses.replace(entries[3], sig=bytes(64))
    cases["reordered"] = entries[4]  # applied after entry 2, skipping 3
    cases["replayed"] = entries[2]
    cases["another group"] = dataclasses.replace(entries[3], gid=bytes(16)).signed_by(
        ClientKeys(x(V["keys"][0]["sign_seed"]), x(V["keys"][0]["dh_private"]))
    )
    state = _state_after(3)
    cases["not an admin"] = state.next_entry("set", [["all", 1, 0]], member)
    cases["wrong epoch"] = dataclasses.replace(
        state.next_entry("add", [], member), epoch=5
    ).signed_by(member)
    for name, entry in cases.items():
        s = _state_after(3)
        before = (s.head, s.seq, s.epoch, dict(s.members), s.settings)
        with pytest.raises(GroupError):
            s.apply(entry)
        assert (s.head, s.seq, s.epoch, dict(s.members), s.settings) == before, name
    # The whole encoding is checked: a non-canonical re-encoding is refused.
    raw = x(V["log"][0]["encoded"])
    signed, sig = msgpack.unpackb(raw, raw=False)
    loose = bytes([0xDD]) + struct.pack(">I", 2) + msgpack.packb(signed) + msgpack.packb(sig)
    with pytest.raises(GroupError):
        LogEntry.decode(loose)


def test_epoch_derivations() -> None:
    es, gid = x(V["epoch"]["es"]), x(V["gid"])
    zero = bytes(32)
    for c in V["epoch"]["caps"]:
        assert spec_hkdf(es, zero, b"blindrelay/v1/group/cap" + x(c["sid"]), 32) == x(c["cap"])
    assert spec_hkdf(es, zero, b"blindrelay/v1/group/ctl-key" + gid, 32) == x(
        V["epoch"]["control_key"]
    )


def _spec_open_message(ck: bytes, env: bytes, index: int) -> tuple[bytes, bytes]:
    head_size = 1 + 1 + 16 + 4 + 32 + 4 + 4
    body, sig = env[:-64], env[-64:]
    ver, typ, gid, epoch, gpk, gen, i = struct.unpack(">BB16sI32sII", body[:head_size])
    assert (ver, typ, gid) == (1, 1, x(V["gid"]))
    assert (epoch, gen, i) == (V["chain"]["epoch"], V["chain"]["gen"], index)
    spec_verify(gpk, b"blindrelay/v1/group/msg\x00", body, sig)
    mk = hmac.digest(ck, b"\x01", "sha256")
    okm = spec_hkdf(mk, bytes(32), b"blindrelay/v1/group/message-key", 56)
    pt = spec_xchacha_open(okm[:32], okm[32:], body[head_size:], body[:head_size])
    return pt, hmac.digest(ck, b"\x02", "sha256")


def test_sender_chain_from_the_spec() -> None:
    c = V["chain"]
    ck = x(c["ck0"])
    for step, msg in zip(c["steps"], c["messages"], strict=True):
        assert ck == x(step["ck"])
        pt, ck = _spec_open_message(ck, x(msg["envelope"]), step["index"])
        assert pt == x(msg["plaintext"])


def test_sender_chain_through_the_client_reordered_and_replayed() -> None:
    c = V["chain"]
    envs = [x(m["envelope"]) for m in c["messages"]]
    chain = ReceiverChain.from_distribution([c["epoch"], c["gen"], 0, x(c["ck0"])])
    # Out of order: 2 first (0 and 1 are kept as skipped keys), then 0, then 1.
    for i in (2, 0, 1):
        pt, chain = open_message(envs[i], chain)
        assert pt == x(c["messages"][i]["plaintext"])
    for i in range(3):  # every one again: a replay
        with pytest.raises(GroupError, match="replayed"):
            open_message(envs[i], chain)
    # A chain distributed from index 2 cannot read 0 or 1 (forward secrecy for newcomers).
    late = ReceiverChain.from_distribution([c["epoch"], c["gen"], 2, x(c["steps"][2]["ck"])])
    with pytest.raises(GroupError):
        open_message(envs[0], late)
    assert open_message(envs[2], late)[0] == x(c["messages"][2]["plaintext"])
    # A flipped byte anywhere fails the signature; another generation is an unknown key.
    bad = bytearray(envs[0])
    bad[70] ^= 1
    fresh = ReceiverChain.from_distribution([c["epoch"], c["gen"], 0, x(c["ck0"])])
    with pytest.raises(GroupError):
        open_message(bytes(bad), fresh)
    other = ReceiverChain.from_distribution([c["epoch"], c["gen"] + 1, 0, x(c["ck0"])])
    with pytest.raises(GroupError):
        open_message(envs[0], other)


def test_control_and_direct_from_the_spec() -> None:
    gid, es = x(V["gid"]), x(V["epoch"]["es"])
    env = x(V["control"]["envelope"])
    body, sig = env[:-64], env[-64:]
    ver, typ, g, epoch, gpk, nonce = struct.unpack(">BB16sI32s24s", body[:78])
    assert (ver, typ, g, epoch) == (1, 2, gid, V["control"]["epoch"])
    spec_verify(gpk, b"blindrelay/v1/group/ctl\x00", body, sig)
    key = spec_hkdf(es, bytes(32), b"blindrelay/v1/group/ctl-key" + gid, 32)
    assert spec_xchacha_open(key, nonce, body[78:], body[:78]) == x(V["control"]["plaintext"])
    assert open_control(env, es) == (gpk, x(V["control"]["plaintext"]))
    with pytest.raises(GroupError):
        open_control(env, bytes(32))  # another epoch's secret

    env = x(V["direct"]["envelope"])
    body, sig = env[:-64], env[-64:]
    ver, typ, g, gpk, eph, to = struct.unpack(">BB16s32s32s32s", body[:114])
    assert (ver, typ, g, to) == (1, 3, gid, x(V["direct"]["to"]))
    spec_verify(gpk, b"blindrelay/v1/group/direct\x00", body, sig)
    admin = V["keys"][1]
    shared = X25519PrivateKey.from_private_bytes(x(admin["dh_private"])).exchange(
        X25519PublicKey.from_public_bytes(eph)
    )
    key = spec_hkdf(shared, eph + to, b"blindrelay/v1/group/direct-key", 32)
    pt = spec_xchacha_open(key, bytes(24), body[114:], body[:114])
    assert pt == x(V["direct"]["plaintext"])
    keys = ClientKeys(x(admin["sign_seed"]), x(admin["dh_private"]))
    assert open_direct(env, keys) == (gpk, pt)
    other = V["keys"][2]
    with pytest.raises(GroupError):
        open_direct(env, ClientKeys(x(other["sign_seed"]), x(other["dh_private"])))


def test_group_report_franking_from_the_spec() -> None:
    """§26.9: the group point, the committed content, ``fc`` and the type-1 plaintext from
    the spec alone; the signature verifies as recipient (client) and as judge (relay), and
    the judge refuses another sender, another content, another group point."""
    from clientlib.crypto.amf import verify_as_recipient
    from clientlib.crypto.group_frank import group_recipient
    from relay.amf import judge_key, verify_as_judge

    r = V["report"]
    gid = x(V["gid"])
    point = nacl.bindings.crypto_core_ed25519_from_uniform(
        hashlib.sha256(b"blindrelay/v1/group/amf-rcp\x00" + gid).digest()
    )
    assert point == x(r["recipient"]) == group_recipient(gid)
    assert nacl.bindings.crypto_core_ed25519_is_valid_point(point)
    content = b"\x01" + msgpack.packb(
        {"t": "gmsg", "id": x(r["mid"]), "ts": r["ts"], "text": r["text"]}, use_bin_type=True
    )
    assert content == x(r["content"])
    sender = x(r["sender"])
    assert sender == x(V["keys"][0]["gpk"])  # the owner's per-group key
    fc_input = (
        b"blindrelay/v1/franking\x00"
        + sender
        + point
        + struct.pack(">I", len(content))
        + content
        + b"\x00"
    )
    fc = hmac.new(x(r["fk"]), fc_input, hashlib.sha256).digest()
    assert fc == x(r["fc"])
    plain = msgpack.packb(
        ["ftext", content, x(r["fk"]), r["kid"], x(r["sigma"])], use_bin_type=True
    )
    assert plain == x(r["plaintext"])
    judge = judge_key(x(r["franking_key"]))
    assert (judge.secret, judge.public) == (x(r["judge_secret"]), x(r["moderator"]))
    sigma, kid = x(r["sigma"]), r["kid"]
    verify_as_recipient(sender, point, judge.public, kid, fc, sigma)
    assert verify_as_judge(judge, sender, point, kid, fc, sigma)
    other_gpk = x(V["keys"][1]["gpk"])
    other_fc = hmac.new(x(r["fk"]), fc_input.replace(b"reportable", b"REPORTABLE"), hashlib.sha256)
    assert not verify_as_judge(judge, other_gpk, point, kid, fc, sigma)
    assert not verify_as_judge(judge, sender, point, kid, other_fc.digest(), sigma)
    assert not verify_as_judge(judge, sender, group_recipient(bytes(16)), kid, fc, sigma)


def test_vectors_are_reproducible() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "vectors"))
    from generate_group_vectors import build

    assert build() == json.loads(
        (Path(__file__).parents[1] / "vectors" / "group-v1.json").read_text()
    )


_ = Any
