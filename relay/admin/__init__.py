"""Moderation tools over :mod:`relay.moderation`: the admin web page and the admin CLI.

``relay.admin.listener`` the admin listener inside ``blindrelay serve``
``relay.admin.web``      the moderation page (a separate aiohttp application)
``relay.admin.auth``     moderator tokens, session cookies, CSRF tokens
``relay.admin.render``   the pages' HTML (escaped with :func:`html.escape`, no JavaScript)
``relay.admin.cli``      ``blindrelay admin ...``

Importing this package loads no moderation code: ``serve`` without admin tokens never does.
"""

from __future__ import annotations

from relay.admin.listener import (
    AdminListener,
    admin_listener_key,
    start_admin_listener,
    stop_admin_listener,
)

__all__ = ["AdminListener", "admin_listener_key", "start_admin_listener", "stop_admin_listener"]
