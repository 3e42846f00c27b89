"""blindrelay client library: everything that needs secrets lives here.

Applications use :class:`clientlib.Client` (see :mod:`clientlib.client`). Subpackages:
:mod:`clientlib.wire` (the codec shared with the relay), :mod:`clientlib.crypto` (primitives
and keys), :mod:`clientlib.session` (the sans-IO handshake, ratchet and sealed sender),
:mod:`clientlib.keystore`, :mod:`clientlib.transport`, :mod:`clientlib.client` and
:mod:`clientlib.chat` (the ``blindchat`` terminal chat).

``Client`` is imported lazily: the relay imports :mod:`clientlib.wire`, and importing the
package must not pull the crypto, session or keystore code into the relay process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from clientlib.client import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from clientlib.client import Client

        return Client
    raise AttributeError(f"module 'clientlib' has no attribute {name!r}")
