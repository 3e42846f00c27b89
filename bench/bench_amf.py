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

Single-threaded, in this process, libsodium through PyNaCl; no I/O.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from clientlib.crypto.amf import AMF_SIGNATURE_SIZE, frank, prepare, verify_as_recipient
from clientlib.crypto.keys import IdentityKeyPair
from relay.amf import judge_key, verify_as_judge


def median_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(max(3, n // 20)):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 calls per figure")
    parser.add_argument("-n", type=int, default=500, help="calls per figure (default 500)")
    args = parser.parse_args()
    n = 50 if args.quick else args.n

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
    print(f"AMF, signature {AMF_SIGNATURE_SIZE} bytes, median of {n} calls each")
    for name, us in rows:
        print(f"  {name:<36} {us:>9.1f} us")


if __name__ == "__main__":
    main()
