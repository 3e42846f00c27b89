"""The admin listener's place in the relay application (imports no moderation code itself)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from relay.config import RelayConfig

if TYPE_CHECKING:
    from relay.moderation import ModerationService

__all__ = ["AdminListener", "admin_listener_key", "start_admin_listener", "stop_admin_listener"]


@dataclass(slots=True)
class AdminListener:
    """Where the admin listener of a running relay app listens (None: not started)."""

    address: tuple[str, int] | None = None
    runner: web.AppRunner | None = field(default=None, repr=False)
    #: The page's own loopback name (``admin_hosts``' first ``*.localhost`` entry), if any.
    local_name: str | None = None

    @property
    def url(self) -> str | None:
        """Where a moderator on this machine opens the page: its ``*.localhost`` name (the
        page answers only to its own names) or, without one, the listen address."""
        if self.address is None:
            return None
        host, port = self.address
        if self.local_name is not None:
            host = self.local_name
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/admin/"


admin_listener_key = web.AppKey("admin_listener", AdminListener)
"""Set on the relay (public) application; filled in when the admin listener starts."""


async def start_admin_listener(
    config: RelayConfig, service: ModerationService, listener: AdminListener
) -> None:
    """Start the admin application on ``admin_host:admin_port`` and fill in ``listener``.

    Raises:
        OSError: the address cannot be bound.
    """
    from relay.admin.web import create_admin_app

    runner = web.AppRunner(
        create_admin_app(config, service),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=2,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.admin_host, config.admin_port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    host, port = runner.addresses[0][:2]
    listener.address = (str(host), int(port))
    names = [n.strip().lower() for n in config.admin_hosts.split(",")]
    listener.local_name = next(
        (n for n in names if n == "localhost" or n.endswith(".localhost")), None
    )
    listener.runner = runner


async def stop_admin_listener(listener: AdminListener) -> None:
    if listener.runner is not None:
        runner, listener.runner = listener.runner, None
        listener.address = None
        await runner.cleanup()
