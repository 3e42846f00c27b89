"""Our implementation reproduces tests/vectors/crypto-v1.json byte for byte (valid and invalid)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from clientlib.crypto import kdf, primitives
from clientlib.crypto.fingerprint import identity_fingerprint, qr_payload, safety_number
from clientlib.crypto.franking import commitment_input, franking_commit
from clientlib.crypto.keys import IdentityKeyPair, IdentityPublicKey, MLKEMKeyPair, X25519KeyPair
from clientlib.crypto.padding import pad, unpad
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair
from clientlib.errors import DecryptionError, KeyValidationError
from clientlib.session import PreKeyBundle, Session, accept, initiate, open_envelope
from clientlib.session.handshake import PreKeyHeader, initiator_handshake, responder_handshake
from clientlib.wire.limits import ENVELOPE_BUCKETS

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"
sys.path.insert(0, str(VECTORS_DIR))
import mlkem_ref  # noqa: E402

V = json.loads((VECTORS_DIR / "crypto-v1.json").read_text())["v1"]
VALID, INVALID = V["valid"], V["invalid"]
x = bytes.fromhex


class Replay:
    """An rng that returns the recorded draws, in order, and checks their sizes."""

    def __init__(self, draws: list[str]) -> None:
        self.draws = [x(d) for d in draws]

    def __call__(self, n: int) -> bytes:
        out = self.draws.pop(0)
        assert len(out) == n
        return out

    def done(self) -> None:
        assert not self.draws


def ref_encapsulate(rng: Replay):
    def encapsulate(pk):
        return mlkem_ref.encaps(bytes(pk), rng(32))

    return encapsulate


def prekey(d: dict) -> PreKeyPair:
    kind = PreKeyKind(d["kind"])
    kp = MLKEMKeyPair(x(d["private"])) if kind.is_kem else X25519KeyPair(x(d["private"]))
    pk = PreKeyPair(kind, d["key_id"], kp, x(d["record"])[-64:])
    assert pk.public_record.raw == x(d["record"])
    return pk


BOB = VALID["bob"]
BOB_ID = IdentityKeyPair(x(BOB["identity_seed"]))
BOB_KEYS = {
    name: prekey(BOB[name])
    for name in (
        "signed_prekey",
        "kem_one_time_prekey",
        "kem_last_resort_prekey",
        "one_time_prekey",
    )
}


def test_kdfs() -> None:
    for c in VALID["kdf_root"]:
        assert kdf.kdf_root(x(c["root_key"]), x(c["dh_output"])) == (
            x(c["new_root_key"]),
            x(c["chain_key"]),
        )
    for c in VALID["kdf_chain"]:
        assert kdf.kdf_chain(x(c["chain_key"])) == (x(c["next_chain_key"]), x(c["message_key"]))
    for c in VALID["kdf_message_keys"]:
        assert kdf.kdf_message_keys(x(c["message_key"])) == (x(c["aead_key"]), x(c["aead_nonce"]))
    for c in VALID["hkdf"]:
        assert primitives.hkdf(
            x(c["ikm"]), salt=x(c["salt"]), info=x(c["info"]), length=c["length"]
        ) == x(c["okm"])


def test_bob_keys() -> None:
    assert bytes(BOB_ID.public) == x(BOB["identity_public"])
    assert BOB_ID.public.x25519 == x(BOB["identity_x25519_public"])


@pytest.mark.parametrize("case", VALID["handshake"], ids=lambda c: c["note"])
def test_handshake(case: dict) -> None:
    alice = IdentityKeyPair(x(case["alice_identity_seed"]))
    bundle = PreKeyBundle.parse(x(case["bundle"]))
    rng = Replay([case["ephemeral_private"], case["kem_encaps_m"]])
    res = initiator_handshake(alice, bundle, rng=rng, encapsulate=ref_encapsulate(rng))
    rng.done()
    assert res.header == x(case["prekey_header"])
    assert res.th == x(case["transcript_hash"])
    assert res.sk == x(case["sk"])
    header = PreKeyHeader.parse(res.header)
    kem = BOB_KEYS[
        "kem_one_time_prekey"
        if header.kem_kind is PreKeyKind.MLKEM_ONE_TIME
        else "kem_last_resort_prekey"
    ]
    opk = BOB_KEYS["one_time_prekey"] if header.one_time_prekey_id is not None else None
    bob_res = responder_handshake(
        BOB_ID,
        alice.public,
        header,
        signed_prekey=BOB_KEYS["signed_prekey"],
        kem_prekey=kem,
        one_time_prekey=opk,
    )
    assert (bob_res.sk, bob_res.th) == (res.sk, res.th)


def _deliver(sessions: dict, identities: dict, to: str, ct: bytes, fc: bytes | None):
    opened = open_envelope(identities[to], ct)
    session = sessions.get(to)
    if session is not None and session.owns(opened):
        return session.receive_opened(opened, fc, now=0).plaintext
    if opened.prekey_header is None or session is not None:
        raise DecryptionError
    acc = accept(
        identities[to],
        opened,
        fc,
        signed_prekey=BOB_KEYS["signed_prekey"],
        kem_prekey=BOB_KEYS["kem_one_time_prekey"],
        one_time_prekey=BOB_KEYS["one_time_prekey"],
        now=0,
    )
    sessions[to] = acc.session
    return acc.message.plaintext


def _replay_phase_1():
    conv = VALID["conversation"]
    alice = IdentityKeyPair(x(conv["alice_identity_seed"]))
    identities = {"alice": alice, "bob": BOB_ID}
    sessions: dict[str, Session] = {}
    msgs = conv["messages"]
    for i, m in enumerate(msgs):
        rng = Replay(m["rng"])
        atts = [x(a) for a in m["attachment_hashes"]]
        if i == 0:
            s, env = initiate(
                alice,
                x(conv["bundle"]),
                x(m["plaintext"]),
                rng=rng,
                now=m["now"],
                attachment_hashes=atts,
                encapsulate=ref_encapsulate(rng),
            )
            sessions["alice"] = s
        else:
            env = sessions[m["from"]].encrypt(
                x(m["plaintext"]), rng=rng, now=m["now"], attachment_hashes=atts
            )
        rng.done()
        assert env.ct == x(m["ct"]), f"message {i}"
        assert env.fc == x(m["fc"])
        assert len(env.ct) in ENVELOPE_BUCKETS
        if i < 3:
            to = "bob" if m["from"] == "alice" else "alice"
            assert _deliver(sessions, identities, to, env.ct, env.fc) == x(m["plaintext"])
    return conv, sessions, identities


def test_conversation() -> None:
    conv, sessions, identities = _replay_phase_1()
    for i in conv["deliveries"]:
        m = conv["messages"][i]
        to = "bob" if m["from"] == "alice" else "alice"
        assert _deliver(sessions, identities, to, x(m["ct"]), x(m["fc"])) == x(m["plaintext"])


def test_invalid_session_messages_fail_and_leave_state() -> None:
    conv, sessions, identities = _replay_phase_1()
    for case in INVALID["session_messages"]:
        assert case["after"] == 3
        before = {k: s.to_record().to_bytes() for k, s in sessions.items()}
        fc = x(case["fc"]) if case["fc"] is not None else None
        with pytest.raises(DecryptionError):
            _deliver(sessions, identities, case["to"], x(case["ct"]), fc)
        assert {k: s.to_record().to_bytes() for k, s in sessions.items()} == before, case["note"]
    for i in conv["deliveries"]:
        m = conv["messages"][i]
        to = "bob" if m["from"] == "alice" else "alice"
        assert _deliver(sessions, identities, to, x(m["ct"]), x(m["fc"])) == x(m["plaintext"])


def test_padding() -> None:
    p = VALID["padding"]
    for c in p["cases"]:
        padded = pad(b"\xaa" * c["data_length"], overhead=c["overhead"], buckets=ENVELOPE_BUCKETS)
        assert len(padded) == c["padded_length"]
        assert c["envelope_length"] in ENVELOPE_BUCKETS
    ex = p["example"]
    assert pad(x(ex["data"]), overhead=ex["overhead"], buckets=ENVELOPE_BUCKETS) == x(ex["padded"])
    assert unpad(x(ex["padded"])) == x(ex["data"])
    for c in INVALID["padding"]:
        with pytest.raises(DecryptionError):
            unpad(x(c["padded"]))


def test_franking() -> None:
    for c in VALID["franking"]:
        atts = [x(a) for a in c["attachment_hashes"]]
        args = (x(c["sender"]), x(c["recipient"]), x(c["message"]), atts)
        assert commitment_input(*args) == x(c["commitment_input"])
        assert franking_commit(
            x(c["franking_key"]),
            sender=args[0],
            recipient=args[1],
            message=args[2],
            attachment_hashes=atts,
        ) == x(c["commitment"])


def test_safety_numbers() -> None:
    for c in VALID["safety_number"]:
        a = IdentityPublicKey.from_bytes(x(c["identity_a"]))
        b = IdentityPublicKey.from_bytes(x(c["identity_b"]))
        assert identity_fingerprint(a) == x(c["fingerprint_a"])
        assert identity_fingerprint(b) == x(c["fingerprint_b"])
        assert safety_number(a, b) == c["safety_number"] == safety_number(b, a)
        assert qr_payload(b, a) == x(c["qr_payload"])


@pytest.mark.parametrize("case", INVALID["x25519_public"], ids=lambda c: c["note"])
def test_invalid_x25519(case: dict) -> None:
    with pytest.raises(KeyValidationError):
        primitives.validate_x25519_public(x(case["key"]))


@pytest.mark.parametrize("case", INVALID["ed25519_public"], ids=lambda c: c["note"])
def test_invalid_ed25519(case: dict) -> None:
    with pytest.raises(KeyValidationError):
        IdentityPublicKey.from_bytes(x(case["key"]))


@pytest.mark.parametrize("case", INVALID["bundle"], ids=lambda c: c["note"])
def test_invalid_bundle(case: dict) -> None:
    with pytest.raises(KeyValidationError):
        PreKeyBundle.parse(x(case["bundle"]))
