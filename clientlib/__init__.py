"""blindrelay client library: everything that needs secrets lives here.

Subpackages: :mod:`clientlib.wire` (the codec shared with the relay), :mod:`clientlib.crypto`
(primitives and keys), :mod:`clientlib.session` (the sans-IO handshake, ratchet and sealed
sender).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
