"""A real relay in this process behind an in-memory link: no subprocess, no socket.

``memory_relay(config)`` builds the relay's own application (``relay.app.create_app``: real
storage, real wire codec, real handlers) and serves it through
:class:`clientlib.transport.memory.MemoryLink`; transports from ``link.http()`` and
``link.websocket()`` are the production ones. For tests that only need a link to a relay;
tests of restarts, kills or the network use a TestServer or ``liverelay`` instead.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator

from clientlib.transport.memory import MemoryLink
from relay.app import create_app
from relay.config import RelayConfig


@contextlib.asynccontextmanager
async def memory_relay(config: RelayConfig | None = None) -> AsyncIterator[MemoryLink]:
    """A running relay on a :class:`MemoryLink`.

    Args:
        config: the relay's configuration; default: SQLite in a fresh temporary directory
            (removed on exit).
    """
    with contextlib.ExitStack() as stack:
        if config is None:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="memrelay-"))
            config = RelayConfig(storage="sqlite", data_dir=data_dir, purge_interval_s=3600)
        async with MemoryLink(create_app(config)) as link:
            yield link
