"""Handshake, ratchet, sealed sender and session records, pairing two real sessions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest

from clientlib.crypto import IdentityKeyPair, PreKeyKind, PreKeyPair
from clientlib.errors import (
    DecryptionError,
    KeystoreError,
    KeyValidationError,
    LocalProtocolError,
    SessionError,
)
from clientlib.session import (
    MAX_FORWARD_JUMP,
    MAX_SKIPPED_KEY_AGE,
    PreKeyBundle,
    Session,
    SessionRecord,
    accept,
    initiate,
    max_plaintext_size,
    open_envelope,
)
from clientlib.wire.limits import ENVELOPE_BUCKETS


def drbg(seed: bytes):
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.sha256(b"test-drbg" + seed + counter.to_bytes(8, "big")).digest()
            counter += 1
        return out[:n]

    return rng


@dataclass
class Bob:
    identity: IdentityKeyPair
    spk: PreKeyPair
    kem_ot: PreKeyPair
    kem_lr: PreKeyPair
    opk: PreKeyPair

    def bundle(self, *, one_time: bool = True, kem_one_time: bool = True) -> PreKeyBundle:
        return PreKeyBundle.build(
            self.identity.public,
            self.spk.public_record,
            (self.kem_ot if kem_one_time else self.kem_lr).public_record,
            self.opk.public_record if one_time else None,
        )


def make_bob(rng) -> Bob:
    ident = IdentityKeyPair.generate(rng)
    return Bob(
        ident,
        PreKeyPair.generate(ident, PreKeyKind.X25519_SIGNED, 1, rng),
        PreKeyPair.generate(ident, PreKeyKind.MLKEM_ONE_TIME, 100, rng),
        PreKeyPair.generate(ident, PreKeyKind.MLKEM_LAST_RESORT, 0xFFFFFFFF, rng),
        PreKeyPair.generate(ident, PreKeyKind.X25519_ONE_TIME, 200, rng),
    )


def pair(seed: bytes = b"pair", *, one_time: bool = True, kem_one_time: bool = True):
    rng = drbg(seed)
    alice = IdentityKeyPair.generate(rng)
    bob = make_bob(rng)
    sa, env = initiate(
        alice,
        bob.bundle(one_time=one_time, kem_one_time=kem_one_time).to_bytes(),
        b"hello",
        rng=rng,
        now=0,
    )
    opened = open_envelope(bob.identity, env.ct)
    assert opened.is_prekey_message and opened.sender == alice.public
    h = opened.prekey_header
    assert h is not None
    acc = accept(
        bob.identity,
        opened,
        env.fc,
        signed_prekey=bob.spk,
        kem_prekey=bob.kem_ot if h.kem_kind is PreKeyKind.MLKEM_ONE_TIME else bob.kem_lr,
        one_time_prekey=bob.opk if h.one_time_prekey_id is not None else None,
        now=0,
    )
    assert acc.message.plaintext == b"hello"
    return rng, alice, bob, sa, acc


@pytest.mark.parametrize(
    ("one_time", "kem_one_time", "consumed", "last_resort"),
    [
        (True, True, {(PreKeyKind.MLKEM_ONE_TIME, 100), (PreKeyKind.X25519_ONE_TIME, 200)}, False),
        (False, True, {(PreKeyKind.MLKEM_ONE_TIME, 100)}, False),
        (True, False, {(PreKeyKind.X25519_ONE_TIME, 200)}, True),
        (False, False, set(), True),
    ],
)
def test_handshake_variants(one_time, kem_one_time, consumed, last_resort) -> None:
    _rng, alice, _bob, sa, acc = pair(b"v", one_time=one_time, kem_one_time=kem_one_time)
    assert set(acc.established.consumed_prekeys) == consumed
    assert acc.established.used_last_resort is last_resort
    assert acc.established.remote_identity == alice.public
    assert acc.session.handshake_hash == sa.handshake_hash == acc.established.handshake_hash


def test_conversation_out_of_order_and_duplicates() -> None:
    rng, alice, bob, sa, acc = pair()
    sb = acc.session
    # Alice keeps sending prekey messages until Bob answers.
    e2 = sa.encrypt(b"second", rng=rng, now=1)
    assert len(e2.ct) == 2048 and sa.awaiting_reply
    opened = open_envelope(bob.identity, e2.ct)
    assert sb.owns(opened)
    assert sb.receive_opened(opened, e2.fc, now=1).plaintext == b"second"
    with pytest.raises(DecryptionError):  # duplicate prekey message
        sb.receive(e2.ct, e2.fc, identity=bob.identity, now=1)
    r1 = sb.encrypt(b"reply", rng=rng, now=2)
    assert len(r1.ct) == 256
    assert sa.receive(r1.ct, r1.fc, identity=alice, now=2).plaintext == b"reply"
    assert not sa.awaiting_reply
    msgs = [sa.encrypt(b"m%d" % i, rng=rng, now=3) for i in range(6)]
    for i in (5, 0, 3, 1):
        assert (
            sb.receive(msgs[i].ct, msgs[i].fc, identity=bob.identity, now=4).plaintext == b"m%d" % i
        )
    assert sb.skipped_key_count == 2
    for i in (5, 0):
        with pytest.raises(DecryptionError):
            sb.receive(msgs[i].ct, msgs[i].fc, identity=bob.identity, now=4)
    # Bob answers (new DH step), then the late messages of Alice's old chain still arrive.
    r2 = sb.encrypt(b"r2", rng=rng, now=5)
    assert sa.receive(r2.ct, r2.fc, identity=alice, now=5).plaintext == b"r2"
    a2 = sa.encrypt(b"new chain", rng=rng, now=6)
    assert sb.receive(a2.ct, a2.fc, identity=bob.identity, now=6).plaintext == b"new chain"
    for i in (4, 2):
        assert (
            sb.receive(msgs[i].ct, msgs[i].fc, identity=bob.identity, now=7).plaintext == b"m%d" % i
        )
    assert sb.skipped_key_count == 0


def test_tampering_every_byte_leaves_session_usable() -> None:
    rng, alice, bob, sa, acc = pair(b"tamper")
    sb = acc.session
    r = sb.encrypt(b"x", rng=rng, now=1)
    sa.receive(r.ct, r.fc, identity=alice, now=1)
    env = sa.encrypt(b"tamper me", rng=rng, now=2)
    before = sb.to_record().to_bytes()
    for i in range(len(env.ct)):
        bad = bytearray(env.ct)
        bad[i] ^= 0x80
        with pytest.raises(DecryptionError):
            sb.receive(bytes(bad), env.fc, identity=bob.identity, now=2)
    for i in range(32):
        bad_fc = bytearray(env.fc)
        bad_fc[i] ^= 0x01
        with pytest.raises(DecryptionError):
            sb.receive(env.ct, bytes(bad_fc), identity=bob.identity, now=2)
    for bad_ct in (env.ct[:-1], env.ct + b"\x00", b""):
        with pytest.raises(DecryptionError):
            sb.receive(bad_ct, env.fc, identity=bob.identity, now=2)
    with pytest.raises(DecryptionError):
        sb.receive(env.ct, None, identity=bob.identity, now=2)
    assert sb.to_record().to_bytes() == before
    got = sb.receive(env.ct, env.fc, identity=bob.identity, now=2, relay_tag=b"tag")
    assert got.plaintext == b"tamper me" and got.relay_tag == b"tag"


def test_wrong_recipient_and_wrong_sender() -> None:
    rng, _alice, bob, sa, acc = pair(b"wrong")
    sb = acc.session
    carol = IdentityKeyPair.generate(rng)
    env = sa.encrypt(b"for bob", rng=rng, now=1)
    with pytest.raises(DecryptionError):
        open_envelope(carol, env.ct)
    # Carol opens her own session with Bob; its envelopes do not decrypt in Alice's session.
    carol_session, cenv = initiate(carol, bob.bundle(one_time=False), b"hi", rng=rng, now=1)
    with pytest.raises(DecryptionError):
        sb.receive(cenv.ct, cenv.fc, identity=bob.identity, now=1)
    opened = open_envelope(bob.identity, cenv.ct)
    assert not sb.owns(opened)
    with pytest.raises(DecryptionError):
        sb.receive_opened(opened, cenv.fc, now=1)
    assert sb.receive(env.ct, env.fc, identity=bob.identity, now=1).plaintext == b"for bob"
    del carol_session


def test_forward_jump_limit() -> None:
    rng, alice, bob, sa, acc = pair(b"jump")
    sb = acc.session
    r = sb.encrypt(b"x", rng=rng, now=1)
    sa.receive(r.ct, r.fc, identity=alice, now=1)
    envs = [sa.encrypt(b"", rng=rng, now=1) for _ in range(MAX_FORWARD_JUMP + 2)]
    # Index MAX_FORWARD_JUMP + 1 needs one key too many.
    with pytest.raises(DecryptionError):
        sb.receive(envs[-1].ct, envs[-1].fc, identity=bob.identity, now=1)
    assert sb.skipped_key_count == 0
    assert sb.receive(envs[-2].ct, envs[-2].fc, identity=bob.identity, now=1).plaintext == b""
    assert sb.skipped_key_count == MAX_FORWARD_JUMP
    assert sb.receive(envs[-1].ct, envs[-1].fc, identity=bob.identity, now=1).plaintext == b""
    assert sb.receive(envs[7].ct, envs[7].fc, identity=bob.identity, now=1).plaintext == b""


def test_skipped_keys_expire() -> None:
    rng, alice, bob, sa, acc = pair(b"expire")
    sb = acc.session
    e = [sa.encrypt(b"%d" % i, rng=rng, now=0) for i in range(3)]
    sb.receive(e[2].ct, e[2].fc, identity=bob.identity, now=0)
    assert sb.skipped_key_count == 2
    assert (
        sb.receive(e[0].ct, e[0].fc, identity=bob.identity, now=MAX_SKIPPED_KEY_AGE).plaintext
        == b"0"
    )
    r = sb.encrypt(b"later", rng=rng, now=MAX_SKIPPED_KEY_AGE + 1)
    assert sb.skipped_key_count == 0
    with pytest.raises(DecryptionError):
        sb.receive(e[1].ct, e[1].fc, identity=bob.identity, now=MAX_SKIPPED_KEY_AGE + 2)
    assert sa.receive(r.ct, r.fc, identity=alice, now=1).plaintext == b"later"


def test_records_roundtrip_and_reject_garbage() -> None:
    rng, alice, bob, sa, acc = pair(b"rec")
    sb = acc.session
    e = [sa.encrypt(b"%d" % i, rng=rng, now=0) for i in range(3)]
    sb.receive(e[2].ct, e[2].fc, identity=bob.identity, now=0)
    raw = sb.to_record().to_bytes()
    # Version 2 since revision 5: after a receive step the ratchet private key is erased, so
    # the record has no ``dhs`` (issue 20, finding 5); a record with one stays version 1.
    assert raw[0] == 2 and "[secret]" in repr(sb.to_record())
    assert sb.to_record().dhs_private is None
    assert sa.to_record().to_bytes()[0] == 1 and sa.to_record().dhs_private is not None
    sb2 = Session.from_record(raw)
    assert sb2.to_record().to_bytes() == raw
    sa2 = Session.from_record(sa.to_record().to_bytes())
    assert sb2.receive(e[0].ct, e[0].fc, identity=bob.identity, now=0).plaintext == b"0"
    r = sb2.encrypt(b"r", rng=rng, now=0)
    assert sa2.receive(r.ct, r.fc, identity=alice, now=0).plaintext == b"r"
    # ... and a version-1 record without ``dhs`` is malformed, as is version 3.
    for bad in (b"", b"\x00" + raw[1:], b"\x01" + raw[1:], b"\x03" + raw[1:], raw[:-1], raw + b"\x00"):
        with pytest.raises(KeystoreError):
            SessionRecord.from_bytes(bad)


def test_pending_responder_session_keeps_no_signed_prekey() -> None:
    """Issue 20, finding 5: the responder's ratchet starts from the signed prekey; the
    session of a request not yet answered used to keep its private key (past the address's
    rotation of it) until the first reply. It is erased at the first receipt now."""
    rng, alice, bob, sa, acc = pair(b"spk")
    spk_private = bob.spk.keypair.private_bytes()
    raw = acc.session.to_record().to_bytes()
    assert spk_private not in raw
    pending = Session.from_record(raw)
    e = sa.encrypt(b"second prekey message", rng=rng, now=0)  # Alice still awaits a reply
    assert pending.receive(e.ct, e.fc, identity=bob.identity, now=0).plaintext == (
        b"second prekey message"
    )
    assert spk_private not in pending.to_record().to_bytes()
    r = pending.encrypt(b"accepted", rng=rng, now=0)
    assert sa.receive(r.ct, r.fc, identity=alice, now=0).plaintext == b"accepted"
    # Every later receive step erases the key it replaced, on both sides.
    for sender, receiver, me in ((sa, pending, bob.identity), (pending, sa, alice)) * 2:
        before = receiver.to_record()
        m = sender.encrypt(b"step", rng=rng, now=0)
        assert receiver.receive(m.ct, m.fc, identity=me, now=0).plaintext == b"step"
        assert before.dhs_private is not None
        assert before.dhs_private not in receiver.to_record().to_bytes()


def test_limits_and_misuse() -> None:
    rng, alice, bob, sa, acc = pair(b"limits")
    sb = acc.session
    big = max_plaintext_size()
    assert big == 65536 - 193
    env = sb.encrypt(b"\x00" * big, rng=rng, now=0)
    assert len(env.ct) == 65536
    assert sa.receive(env.ct, env.fc, identity=alice, now=0).plaintext == b"\x00" * big
    with pytest.raises(LocalProtocolError):
        sb.encrypt(b"\x00" * (big + 1), rng=rng, now=0)
    with pytest.raises(LocalProtocolError):
        sb.encrypt(b"", rng=rng, now=0, attachment_hashes=[b"short"])
    h = [hashlib.sha256(b"%d" % i).digest() for i in range(16)]
    env = sb.encrypt(b"album", rng=rng, now=0, attachment_hashes=h)
    got = sa.receive(env.ct, env.fc, identity=alice, now=0)
    assert got.attachment_hashes == tuple(h) and "album" not in repr(got)
    with pytest.raises(LocalProtocolError):  # not a prekey message
        accept(
            bob.identity,
            open_envelope(alice, env.ct),
            env.fc,
            signed_prekey=bob.spk,
            kem_prekey=bob.kem_ot,
            one_time_prekey=None,
            now=0,
        )


def test_responder_state_cannot_send_before_receiving() -> None:
    from clientlib.crypto import X25519KeyPair
    from clientlib.session.ratchet import RatchetState

    state = RatchetState.for_responder(bytes(32), X25519KeyPair(bytes(range(32))))
    with pytest.raises(SessionError):
        state.next_sending_key(drbg(b"r"))


def test_bucket_sizes_for_every_boundary() -> None:
    rng, alice, bob, sa, acc = pair(b"buckets")
    sb = acc.session
    r = sb.encrypt(b"", rng=rng, now=0)
    sa.receive(r.ct, r.fc, identity=alice, now=0)
    for bucket in ENVELOPE_BUCKETS:
        fit = bucket - 193
        for n in (fit - 1, fit, fit + 1):
            if n > max_plaintext_size():
                continue
            env = sa.encrypt(b"\x07" * n, rng=rng, now=0)
            assert len(env.ct) == (bucket if n <= fit else bucket * 2)
            assert sb.receive(env.ct, env.fc, identity=bob.identity, now=0).plaintext == b"\x07" * n


def test_accept_checks_prekeys() -> None:
    rng = drbg(b"acc")
    alice = IdentityKeyPair.generate(rng)
    bob = make_bob(rng)
    _sa, env = initiate(alice, bob.bundle(), b"hi", rng=rng, now=0)
    opened = open_envelope(bob.identity, env.ct)
    with pytest.raises(DecryptionError):  # one-time key already consumed
        accept(
            bob.identity,
            opened,
            env.fc,
            signed_prekey=bob.spk,
            kem_prekey=bob.kem_ot,
            one_time_prekey=None,
            now=0,
        )
    with pytest.raises(LocalProtocolError):
        accept(
            bob.identity,
            opened,
            env.fc,
            signed_prekey=bob.spk,
            kem_prekey=bob.kem_lr,
            one_time_prekey=bob.opk,
            now=0,
        )
    with pytest.raises(DecryptionError):  # bad franking commitment: nothing consumed
        accept(
            bob.identity,
            opened,
            bytes(32),
            signed_prekey=bob.spk,
            kem_prekey=bob.kem_ot,
            one_time_prekey=bob.opk,
            now=0,
        )
    acc = accept(
        bob.identity,
        opened,
        env.fc,
        signed_prekey=bob.spk,
        kem_prekey=bob.kem_ot,
        one_time_prekey=bob.opk,
        now=0,
    )
    assert acc.message.plaintext == b"hi"


def test_bundle_validation() -> None:
    rng = drbg(b"bundle")
    bob = make_bob(rng)
    mallory = IdentityKeyPair.generate(rng)
    raw = bob.bundle().to_bytes()
    assert PreKeyBundle.parse(raw).to_bytes() == raw
    for bad in (raw[:-1], raw + b"\x00", b"\x00" + raw[1:], raw[:33] + b"\x02" + raw[34:]):
        with pytest.raises(KeyValidationError):
            PreKeyBundle.parse(bad)
    with pytest.raises(KeyValidationError):  # swapped kinds
        PreKeyBundle.build(bob.identity.public, bob.opk.public_record, bob.kem_ot.public_record)
    with pytest.raises(KeyValidationError):  # a key signed by someone else
        forged = PreKeyPair.generate(mallory, PreKeyKind.X25519_SIGNED, 1, rng)
        PreKeyBundle.build(bob.identity.public, forged.public_record, bob.kem_ot.public_record)
    with pytest.raises(KeyValidationError):
        initiate(IdentityKeyPair.generate(rng), raw[:-1], b"", rng=rng, now=0)


def test_over_age_skipped_key_is_a_miss_on_an_idle_session() -> None:
    """Finding 5 (issue 20): on an idle session (no send or receive since the key was cached,
    so no expiry ran), an over-age skipped key still decrypted. It is now a miss at lookup,
    with the session left unchanged, and the key is deleted on load and by expire_skipped."""
    rng, _alice, bob, sa, acc = pair(b"idle")
    sb = acc.session
    e = [sa.encrypt(b"%d" % i, rng=rng, now=0) for i in range(4)]
    sb.receive(e[3].ct, e[3].fc, identity=bob.identity, now=0)  # caches keys 0, 1, 2 at t=0
    assert sb.skipped_key_count == 3
    record = sb.to_record().to_bytes()
    late = MAX_SKIPPED_KEY_AGE + 1
    # Lookup: the key is still cached (nothing expired it), but it is over age: a miss.
    with pytest.raises(DecryptionError):
        sb.receive(e[0].ct, e[0].fc, identity=bob.identity, now=late)
    assert sb.to_record().to_bytes() == record  # nothing changed on the failure
    # At exactly the age limit it still decrypts (same rule as expire_skipped).
    same = Session.from_record(record)
    assert same.receive(e[0].ct, e[0].fc, identity=bob.identity, now=MAX_SKIPPED_KEY_AGE)
    # Load with a clock: over-age keys leave the record.
    loaded = Session.from_record(record, now=late)
    assert loaded.skipped_key_count == 0
    assert not loaded.to_record().skipped
    with pytest.raises(DecryptionError):
        loaded.receive(e[1].ct, e[1].fc, identity=bob.identity, now=late)
    # The explicit periodic hook.
    idle = Session.from_record(record)
    assert idle.expire_skipped(MAX_SKIPPED_KEY_AGE) == 0
    assert idle.expire_skipped(late) == 3
    assert idle.skipped_key_count == 0
    with pytest.raises(DecryptionError):
        idle.receive(e[2].ct, e[2].fc, identity=bob.identity, now=late)
