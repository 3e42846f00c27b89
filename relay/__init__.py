"""blindrelay relay: a blind store-and-forward server for opaque, sealed envelopes.

The relay never imports clientlib's crypto, session, keystore or transport code; it shares
only the wire codec (:mod:`clientlib.wire`).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
