"""Body version 2: the AMF signature inside the ratchet body (protocol.md §12.4, §12.5, §15.5)."""

from __future__ import annotations

import hashlib

import nacl.bindings as _b
import pytest
from test_session_core import drbg, pair

from clientlib.crypto import amf
from clientlib.errors import DecryptionError, LocalProtocolError
from clientlib.session import ModeratorKey, max_plaintext_size
from relay.amf import judge_key, verify_as_judge

JUDGE = judge_key(hashlib.sha256(b"franking key 7").digest())
OTHER = judge_key(hashlib.sha256(b"another relay").digest())
MOD = ModeratorKey(7, JUDGE.public)


def keys(kid: int) -> bytes | None:
    return JUDGE.public if kid == 7 else None


def test_franked_message_round_trip_and_judge_verifies() -> None:
    rng, alice, bob, sa, acc = pair(b"amf-rt")
    sb = acc.session
    env = sa.encrypt(b"hi bob", rng=rng, now=1, identity=alice, moderator=MOD)
    msg = sb.receive(env.ct, env.fc, identity=bob.identity, now=1, moderator_keys=keys)
    assert msg.plaintext == b"hi bob" and msg.akid == 7 and msg.reportable
    assert msg.amf_signature is not None and len(msg.amf_signature) == 448
    assert verify_as_judge(
        JUDGE, bytes(alice.public), bytes(bob.identity.public), 7, env.fc, msg.amf_signature
    )


def test_legacy_and_franked_bodies_do_not_mix() -> None:
    rng, alice, bob, sa, acc = pair(b"amf-mix")
    sb = acc.session
    legacy = sa.encrypt(b"old", rng=rng, now=1)
    before = sb.to_record().to_bytes()
    with pytest.raises(DecryptionError):  # a revision-5 receiver refuses body version 1
        sb.receive(legacy.ct, legacy.fc, identity=bob.identity, now=1, moderator_keys=keys)
    assert sb.to_record().to_bytes() == before
    old = sb.receive(legacy.ct, legacy.fc, identity=bob.identity, now=1)
    assert not old.reportable and old.akid is None
    franked = sa.encrypt(b"new", rng=rng, now=1, identity=alice, moderator=MOD)
    before = sb.to_record().to_bytes()
    with pytest.raises(DecryptionError):  # no key lookup: cannot check sigma, refuse
        sb.receive(franked.ct, franked.fc, identity=bob.identity, now=1)
    assert sb.to_record().to_bytes() == before


@pytest.mark.parametrize("case", ["unknown kid", "other moderator", "random sigma", "forged"])
def test_unreportable_message_is_dropped_with_state_unchanged(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng, alice, bob, sa, acc = pair(b"amf-bad-" + case.encode())
    sb = acc.session
    if case == "unknown kid":
        env = sa.encrypt(
            b"x", rng=rng, now=1, identity=alice, moderator=ModeratorKey(8, MOD.public)
        )
    elif case == "other moderator":
        env = sa.encrypt(
            b"x", rng=rng, now=1, identity=alice, moderator=ModeratorKey(7, OTHER.public)
        )
    else:
        # A malicious sender's client: sigma random, or a simulated proof (the recipient's
        # forgery made with the sender's own key as "recipient": not a proof for Bob).
        def bad(identity, sender, recipient, m, kid, fc, *, rng):  # type: ignore[no-untyped-def]
            if case == "random sigma":
                return rng(448)
            return amf.forge_as_recipient(identity, bob.identity.public, m, kid, fc, rng=rng)

        monkeypatch.setattr("clientlib.session.session.frank", bad)
        env = sa.encrypt(b"x", rng=rng, now=1, identity=alice, moderator=MOD)
    before = sb.to_record().to_bytes()
    with pytest.raises(DecryptionError):
        sb.receive(env.ct, env.fc, identity=bob.identity, now=1, moderator_keys=keys)
    assert sb.to_record().to_bytes() == before


def test_sender_with_non_dh_tuple_is_dropped() -> None:
    """A sender that makes sigma valid except for clause C (J not alpha*M) is caught: it
    cannot make the proof verify, so the recipient drops it (finding 2)."""
    rng, alice, bob, sa, acc = pair(b"amf-nodh")
    sb = acc.session
    # Sign against a moderator key whose tuple differs from the one the recipient checks.
    fake = _b.crypto_scalarmult_ed25519_base_noclamp(amf._h2s(b"fake judge"))
    env = sa.encrypt(b"x", rng=rng, now=1, identity=alice, moderator=ModeratorKey(7, fake))
    before = sb.to_record().to_bytes()
    with pytest.raises(DecryptionError):
        sb.receive(env.ct, env.fc, identity=bob.identity, now=1, moderator_keys=keys)
    assert sb.to_record().to_bytes() == before


def test_encrypt_argument_rules_and_size() -> None:
    rng, alice, bob, sa, _ = pair(b"amf-args")
    with pytest.raises(LocalProtocolError):
        sa.encrypt(b"x", rng=rng, now=1, identity=alice)
    with pytest.raises(LocalProtocolError):
        sa.encrypt(b"x", rng=rng, now=1, identity=bob.identity, moderator=MOD)
    big = max_plaintext_size(prekey=True, franked=True)
    assert big == max_plaintext_size(prekey=True) - 452
    sa.encrypt(b"a" * big, rng=drbg(b"big"), now=1, identity=alice, moderator=MOD)
    with pytest.raises(LocalProtocolError):
        sa.encrypt(b"a" * (big + 1), rng=rng, now=1, identity=alice, moderator=MOD)


def test_prepared_signature_is_used_once_and_only_for_its_inputs() -> None:
    """protocol.md §15.5.5 "Precomputation" on the send path: a signature prepared for the
    peer under the moderator key finishes the message's sigma (no hedge drawn); one made for
    other inputs is ignored and the signature is made in full; a used one refuses."""
    rng, alice, bob, sa, acc = pair(b"amf-prep")
    sb = acc.session
    ready = amf.prepare(alice, alice.public, bob.identity.public, MOD.public, MOD.kid, rng=rng)
    drawn: list[int] = []

    def counting(n: int) -> bytes:
        drawn.append(n)
        return rng(n)

    env = sa.encrypt(b"fast", rng=counting, now=1, identity=alice, moderator=MOD, prepared=ready)
    assert ready.used and drawn == [32, 32]  # fk and the sealed ephemeral: no AMF hedge
    msg = sb.receive(env.ct, env.fc, identity=bob.identity, now=1, moderator_keys=keys)
    assert msg.plaintext == b"fast" and msg.amf_signature is not None
    assert verify_as_judge(
        JUDGE, bytes(alice.public), bytes(bob.identity.public), 7, env.fc, msg.amf_signature
    )
    with pytest.raises(LocalProtocolError):  # single use
        sa.encrypt(b"again", rng=rng, now=1, identity=alice, moderator=MOD, prepared=ready)
    # Prepared for another moderator key (the relay rotated) or another recipient: ignored.
    for other in (
        amf.prepare(alice, alice.public, bob.identity.public, OTHER.public, 8, rng=rng),
        amf.prepare(alice, alice.public, alice.public, MOD.public, MOD.kid, rng=rng),
    ):
        drawn.clear()
        env = sa.encrypt(
            b"full", rng=counting, now=1, identity=alice, moderator=MOD, prepared=other
        )
        assert not other.used and drawn == [32, 32, 32]  # fk, the AMF hedge, the ephemeral
        got = sb.receive(env.ct, env.fc, identity=bob.identity, now=1, moderator_keys=keys)
        assert got.plaintext == b"full"
