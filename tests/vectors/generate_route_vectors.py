"""Generate ``route-v1.json``: vectors for two-hop private routing (protocol.md §27.3): the
relay identity and route keys derived from a seed, a route key's signature, a sealed packet,
a sealed answer and a route proof of work. Deterministic: every random byte comes from the
DRBG of ``generate_vectors.py`` seeded with ``"route-v1"``. Checked by
``tests/conformance/test_route_vectors.py`` through the client (``clientlib/client/_route``),
the relay (``relay/routing``) and a derivation from protocol.md alone.

Run: ``python tests/vectors/generate_route_vectors.py`` (rewrites the file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from generate_vectors import DRBG  # noqa: E402

from clientlib.client._route import seal_packet, solve_route_pow  # noqa: E402
from clientlib.crypto.primitives import aead_encrypt  # noqa: E402
from clientlib.wire.client_frames import Deposit  # noqa: E402
from clientlib.wire.relay_frames import Ok  # noqa: E402
from relay.routing import RouteKeys  # noqa: E402

OUT = HERE / "route-v1.json"
ROTATION = 604_800
NOW = 1_796_000_000


def build() -> dict[str, Any]:
    rng = DRBG(b"route-v1")
    seed = rng(32)
    keys = RouteKeys(seed, ROTATION)
    kid = keys.current_kid(NOW)
    entries = keys.published(NOW)
    inner = Deposit(id=5, sid=rng(16), eid=rng(16), flags=0, ct=rng(256)).encode()
    draws: list[bytes] = []

    def logged(n: int) -> bytes:
        out = rng(n)
        draws.append(out)
        return out

    pkt, reply_key, epk = seal_packet(kid, keys.public(kid), inner, logged)
    esk, nonce = draws
    reply = Ok(id=5).encode()
    answer_nonce = rng(24)
    ans = answer_nonce + aead_encrypt(
        reply_key, answer_nonce, reply, b"blindrelay/v1/route-answer\x00" + epk
    )
    return {
        "route-v1": {
            "seed": seed.hex(),
            "rotation_s": ROTATION,
            "now": NOW,
            "identity": keys.identity.hex(),
            "keys": [
                {"kid": e.kid, "key": e.key.hex(), "exp": e.exp, "sig": e.sig.hex()}
                for e in entries
            ],
            "packet": {
                "kid": kid,
                "esk": esk.hex(),
                "epk": epk.hex(),
                "nonce": nonce.hex(),
                "inner": inner.hex(),
                "pkt": pkt.hex(),
                "reply_key": reply_key.hex(),
            },
            "answer": {"nonce": answer_nonce.hex(), "reply": reply.hex(), "ans": ans.hex()},
            "pow": {"bits": 10, "counter": solve_route_pow(pkt, 10)},
        }
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
