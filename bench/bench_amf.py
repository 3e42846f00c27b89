"""Cost of asymmetric message franking (docs/amf.md).

Usage: ``python bench/bench_amf.py [--quick] [-n N]``.

Prints the median, over ``N`` single calls each (after a warm-up), in microseconds of:

* ``frank``: the sender's whole signature (what sending one message adds);
* ``prepare`` and ``PreparedFrank.sign``: the same split in its message-independent part
  (per-message scalars, ``E_J``, ``J`` and the seven commitments, computable per recipient
  before the message exists, e.g. when a conversation is opened or the client is idle) and
  the part that needs ``fc`` (one SHA-512 and three scalar multiply-adds);
* ``verify_as_recipient``: the recipient's check on receipt;
* ``verify_as_judge``: the relay's check of a report, with a cached ``(j, M)`` and with
  ``j`` alone (``M`` recomputed);
* ``judge_key``: deriving ``(j, M)`` from a franking key (once per key and process).

Then the client's send path without I/O, as ``Client.send`` runs it (``--no-send`` skips it):
load the session record (``Session.from_record``, with the validated-identity cache cold and
warm), seal one franked 1 KiB message with the whole signature or with one prepared ahead,
and save the record.

Single-threaded, in this process, libsodium through PyNaCl; no I/O.
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

import clientlib.crypto.keys as keys_module
from clientlib.crypto import PreKeyKind, PreKeyPair
from clientlib.crypto.amf import AMF_SIGNATURE_SIZE, frank, prepare, verify_as_recipient
from clientlib.crypto.keys import IdentityKeyPair
from clientlib.session import ModeratorKey, PreKeyBundle, Session, accept, initiate, open_envelope
from relay.amf import judge_key, verify_as_judge

#: ``--clock cpu`` measures this thread's CPU time instead of wall time: on a shared,
#: loaded machine it leaves out the time the process waited for a core.
CLOCK: list[Callable[[], float]] = [time.perf_counter]


def median_us(fn: Callable[[], object], n: int) -> float:
    clock = CLOCK[0]
    for _ in range(max(3, n // 20)):
        fn()
    samples = []
    for _ in range(n):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 calls per figure")
    parser.add_argument("-n", type=int, default=500, help="calls per figure (default 500)")
    parser.add_argument("--no-send", action="store_true", help="skip the client send path")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="wall time or thread CPU time"
    )
    args = parser.parse_args()
    n = 50 if args.quick else args.n
    if args.clock == "cpu":
        CLOCK[0] = time.thread_time

    alice, bob = IdentityKeyPair(os.urandom(32)), IdentityKeyPair(os.urandom(32))
    a, r = bytes(alice.public), bytes(bob.public)
    franking_key = os.urandom(32)
    jk = judge_key(franking_key)
    kid, fc = 1, os.urandom(32)
    sig = frank(alice, a, r, jk.public, kid, fc, rng=os.urandom)

    pool = [prepare(alice, a, r, jk.public, kid, rng=os.urandom) for _ in range(n + n // 20 + 3)]
    it = iter(pool)

    m = jk.public

    def do_frank() -> object:
        return frank(alice, a, r, m, kid, fc, rng=os.urandom)

    def do_prepare() -> object:
        return prepare(alice, a, r, m, kid, rng=os.urandom)

    def do_recipient() -> None:
        verify_as_recipient(a, r, m, kid, fc, sig)

    cases: list[tuple[str, Callable[[], object]]] = [
        ("frank (whole signature)", do_frank),
        ("  prepare (message-independent)", do_prepare),
        ("  PreparedFrank.sign (needs fc)", lambda: next(it).sign(fc)),
        ("verify_as_recipient", do_recipient),
        ("verify_as_judge, cached (j, M)", lambda: verify_as_judge(jk, a, r, kid, fc, sig)),
        ("verify_as_judge, j only", lambda: verify_as_judge(jk.secret, a, r, kid, fc, sig)),
        ("judge_key (per franking key)", lambda: judge_key(franking_key)),
    ]
    rows = [(name, median_us(fn, n)) for name, fn in cases]
    assert verify_as_judge(jk, a, r, kid, fc, sig)
    what = "thread CPU time" if args.clock == "cpu" else "wall time"
    print(f"AMF, signature {AMF_SIGNATURE_SIZE} bytes, median {what} of {n} calls each")
    for name, us in rows:
        print(f"  {name:<36} {us:>9.1f} us")
    if not args.no_send:
        send_path(alice, bob, m, kid, n)


def send_path(alice: IdentityKeyPair, bob: IdentityKeyPair, m: bytes, kid: int, n: int) -> None:
    """The CPU of ``Client.send`` without its I/O: record in, sealed envelope, record out."""
    rng = os.urandom
    spk = PreKeyPair.generate(bob, PreKeyKind.X25519_SIGNED, 1, rng)
    kem = PreKeyPair.generate(bob, PreKeyKind.MLKEM_LAST_RESORT, 2, rng)
    bundle = PreKeyBundle.build(bob.public, spk.public_record, kem.public_record, None)
    mod = ModeratorKey(kid, m)

    def lookup(k: int) -> bytes | None:
        return m if k == kid else None

    sa, env = initiate(alice, bundle.to_bytes(), b"hi", rng=rng, now=0, moderator=mod)
    opened = open_envelope(bob, env.ct)
    acc = accept(
        bob,
        opened,
        env.fc,
        signed_prekey=spk,
        kem_prekey=kem,
        one_time_prekey=None,
        now=0,
        moderator_keys=lookup,
    )
    r = acc.session.encrypt(b"ack", rng=rng, now=0, identity=bob, moderator=mod)
    sa.receive(r.ct, r.fc, identity=alice, now=0, moderator_keys=lookup)
    record = [sa.to_record().to_bytes()]
    text = os.urandom(1024)
    count = n + n // 20 + 3
    pool = [prepare(alice, alice.public, bob.public, m, kid, rng=rng) for _ in range(count)]
    it = iter(pool)

    def cold_load() -> object:
        keys_module._validated.clear()
        return Session.from_record(record[0], now=0)

    def send(prepared: bool, cold: bool = False) -> Callable[[], object]:
        def run() -> object:
            if cold:
                keys_module._validated.clear()
            s = Session.from_record(record[0], now=0)
            p = next(it) if prepared else None
            sealed = s.encrypt(text, rng=rng, now=0, identity=alice, moderator=mod, prepared=p)
            record[0] = s.to_record().to_bytes()
            return sealed

        return run

    cases: list[tuple[str, Callable[[], object]]] = [
        ("Session.from_record, cold key cache", cold_load),
        ("Session.from_record, cached keys", lambda: Session.from_record(record[0], now=0)),
        ("send path as before (no key cache)", send(False, cold=True)),
        ("send path, whole frank", send(False)),
        ("send path, prepared ahead", send(True)),
    ]
    rows = [(name, median_us(fn, n)) for name, fn in cases]
    print(f"client send path (1 KiB text, franked; no I/O), median of {n} calls each")
    for name, us in rows:
        print(f"  {name:<36} {us:>9.1f} us")


if __name__ == "__main__":
    main()
