"""Two real sessions over a link that drops, reorders, duplicates and corrupts (protocol.md §12).

Invariants: every envelope delivered for the first time decrypts, exactly once, to what was
sent; a second delivery, or any corrupted envelope, fails with the one DecryptionError and
leaves both sessions byte-for-byte unchanged; the skipped-key cache stays within its bound;
sessions survive a round trip through their record at any point.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from clientlib.crypto import IdentityKeyPair, PreKeyKind, PreKeyPair
from clientlib.errors import DecryptionError
from clientlib.session import (
    MAX_SKIPPED_KEYS,
    PreKeyBundle,
    Session,
    accept,
    initiate,
    open_envelope,
)
from clientlib.wire.limits import ENVELOPE_BUCKETS


def drbg(seed: bytes):
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.sha256(b"prop-drbg" + seed + counter.to_bytes(8, "big")).digest()
            counter += 1
        return out[:n]

    return rng


@dataclass
class InFlight:
    ident: int
    to: str
    ct: bytes
    fc: bytes
    plaintext: bytes


class SessionPair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rng = drbg(b"stateful")
        self.now = 1_800_000_000
        alice = IdentityKeyPair.generate(self.rng)
        bob = IdentityKeyPair.generate(self.rng)
        spk = PreKeyPair.generate(bob, PreKeyKind.X25519_SIGNED, 1, self.rng)
        kem = PreKeyPair.generate(bob, PreKeyKind.MLKEM_LAST_RESORT, 2, self.rng)
        bundle = PreKeyBundle.build(bob.public, spk.public_record, kem.public_record)
        sa, env = initiate(alice, bundle, b"hi", rng=self.rng, now=self.now)
        acc = accept(
            bob,
            open_envelope(bob, env.ct),
            env.fc,
            signed_prekey=spk,
            kem_prekey=kem,
            one_time_prekey=None,
            now=self.now,
        )
        self.ids = {"alice": alice, "bob": bob}
        self.sessions: dict[str, Session] = {"alice": sa, "bob": acc.session}
        self.link: list[InFlight] = []
        self.delivered: set[int] = set()
        self.sent = 0
        self.decrypted: dict[int, int] = {}

    def _records(self) -> dict[str, bytes]:
        return {k: s.to_record().to_bytes() for k, s in self.sessions.items()}

    @rule(
        sender=st.sampled_from(["alice", "bob"]), size=st.integers(0, 300), copies=st.integers(1, 2)
    )
    def send(self, sender: str, size: int, copies: int) -> None:
        to = "bob" if sender == "alice" else "alice"
        pt = self.rng(size)
        env = self.sessions[sender].encrypt(pt, rng=self.rng, now=self.now)
        assert len(env.ct) in ENVELOPE_BUCKETS
        self.sent += 1
        for _ in range(copies):  # the link may duplicate
            self.link.append(InFlight(self.sent, to, env.ct, env.fc, pt))

    @precondition(lambda self: self.link)
    @rule(index=st.integers(0, 10**6))
    def deliver(self, index: int) -> None:
        msg = self.link.pop(index % len(self.link))  # any order: reordering
        session = self.sessions[msg.to]
        if msg.ident in self.delivered:
            before = self._records()
            with pytest.raises(DecryptionError):
                session.receive(msg.ct, msg.fc, identity=self.ids[msg.to], now=self.now)
            assert self._records() == before
            return
        got = session.receive(msg.ct, msg.fc, identity=self.ids[msg.to], now=self.now)
        assert got.plaintext == msg.plaintext
        self.delivered.add(msg.ident)
        self.decrypted[msg.ident] = self.decrypted.get(msg.ident, 0) + 1

    @precondition(lambda self: self.link)
    @rule(index=st.integers(0, 10**6))
    def drop(self, index: int) -> None:
        self.link.pop(index % len(self.link))

    @precondition(lambda self: self.link)
    @rule(
        index=st.integers(0, 10**6),
        pos=st.integers(0, 10**6),
        mask=st.integers(1, 255),
        which=st.sampled_from(["ct", "fc"]),
    )
    def corrupt(self, index: int, pos: int, mask: int, which: str) -> None:
        msg = self.link[index % len(self.link)]
        ct, fc = bytearray(msg.ct), bytearray(msg.fc)
        buf = ct if which == "ct" else fc
        buf[pos % len(buf)] ^= mask
        before = self._records()
        with pytest.raises(DecryptionError):
            self.sessions[msg.to].receive(
                bytes(ct), bytes(fc), identity=self.ids[msg.to], now=self.now
            )
        assert self._records() == before

    @rule()
    def restore_from_records(self) -> None:
        self.sessions = {k: Session.from_record(r) for k, r in self._records().items()}

    @rule(seconds=st.integers(0, 3600))
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds

    @invariant()
    def limits_hold(self) -> None:
        for s in self.sessions.values():
            assert s.skipped_key_count <= MAX_SKIPPED_KEYS
        assert all(v == 1 for v in self.decrypted.values())


TestSessionPair = SessionPair.TestCase
