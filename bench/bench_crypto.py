"""Client crypto benchmarks (DESIGN.md §6): seal + ratchet-encrypt / open of 1 KiB, handshake.

Run: ``python bench/bench_crypto.py [--rounds N]``. Prints median and p99 in microseconds.
Uses ``os.urandom`` as the injected rng (production setting).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clientlib.crypto import IdentityKeyPair, PreKeyKind, PreKeyPair
from clientlib.session import PreKeyBundle, accept, initiate, open_envelope

BUDGET_US = {
    "seal+encrypt 1 KiB": 200.0,
    "open 1 KiB": 200.0,
    "full handshake (both sides)": 5000.0,
}


def measure(fn: Callable[[], object], rounds: int) -> list[float]:
    for _ in range(min(50, rounds)):
        fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def report(name: str, samples: list[float]) -> None:
    samples.sort()
    med = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    budget = BUDGET_US[name]
    verdict = "OK" if med < budget else "OVER"
    print(
        f"{name:30s} median {med:9.1f} us   p99 {p99:9.1f} us   budget {budget:7.0f} us  {verdict}"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    rng = os.urandom
    alice, bob = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    spk = PreKeyPair.generate(bob, PreKeyKind.X25519_SIGNED, 1, rng)
    kem = PreKeyPair.generate(bob, PreKeyKind.MLKEM_LAST_RESORT, 2, rng)
    opk = PreKeyPair.generate(bob, PreKeyKind.X25519_ONE_TIME, 3, rng)
    bundle_bytes = PreKeyBundle.build(
        bob.public, spk.public_record, kem.public_record, opk.public_record
    ).to_bytes()

    def handshake() -> object:
        sa, env = initiate(alice, bundle_bytes, b"hello", rng=rng, now=0)
        opened = open_envelope(bob, env.ct)
        return accept(
            bob, opened, env.fc, signed_prekey=spk, kem_prekey=kem, one_time_prekey=opk, now=0
        ), sa

    acc, sa = handshake()
    sb = acc.session  # type: ignore[attr-defined]
    r = sb.encrypt(b"ack", rng=rng, now=0)
    sa.receive(r.ct, r.fc, identity=alice, now=0)
    msg = os.urandom(1024)

    # Steady state: a run of messages in one direction (one chain step each, no DH step).
    envs: list = []
    enc = measure(lambda: envs.append(sa.encrypt(msg, rng=rng, now=0)), args.rounds)
    report("seal+encrypt 1 KiB", enc)
    it = iter(envs[min(50, args.rounds) :])
    dec = []
    for _ in range(args.rounds):
        e = next(it)
        t0 = time.perf_counter_ns()
        sb.receive(e.ct, e.fc, identity=bob, now=0)
        dec.append((time.perf_counter_ns() - t0) / 1000)
    report("open 1 KiB", dec)

    # Worst case: each message changes direction (DH ratchet step on both sides).
    ping = []
    pong = []
    for i in range(args.rounds // 2):
        a, b, ia = (sa, sb, bob) if i % 2 == 0 else (sb, sa, alice)
        t0 = time.perf_counter_ns()
        e = a.encrypt(msg, rng=rng, now=0)
        t1 = time.perf_counter_ns()
        b.receive(e.ct, e.fc, identity=ia, now=0)
        t2 = time.perf_counter_ns()
        ping.append((t1 - t0) / 1000)
        pong.append((t2 - t1) / 1000)
    ping.sort()
    pong.sort()
    print(
        f"{'  with DH step every message':30s} encrypt median {statistics.median(ping):.1f} us, "
        f"open median {statistics.median(pong):.1f} us"
    )
    hs = measure(handshake, max(200, args.rounds // 10))
    report("full handshake (both sides)", hs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
