"""What both listeners (public relay and moderation page) do to every HTTP answer.

aiohttp answers a request it cannot parse (a bad request line, an invalid header byte, a
header line that is too long) by itself, before any route, middleware or
``on_response_prepare`` handler runs: a ``text/plain`` body that echoes the offending bytes
and a ``Server`` header naming Python's and aiohttp's versions. :func:`guard_unparsed`
gives such answers to a listener-specific function instead, which rewrites them (an ``err``
frame on the public listener, an HTML page with the security headers on the admin one).

aiohttp has no public hook for this: the answer is built by its ``RequestHandler`` and
prepared with the ``web.Request`` that the application's request factory made, whose
match info is still empty. The application's factory takes the request class as its
``_cls`` argument; we give it a subclass whose ``_prepare_hook`` sees those answers.
``tests/integration/test_web_surface.py`` sends such requests over a socket, so an aiohttp
release that changes this path fails the suite rather than leaking again.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

__all__ = ["SERVER_HEADER", "guard_unparsed", "set_server_header"]

#: The ``Server`` header of every answer: no product versions.
SERVER_HEADER: Final = "blindrelay"

UnparsedFix = Callable[[web.StreamResponse], None]


def set_server_header(response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


async def _server_header(_: web.Request, response: web.StreamResponse) -> None:
    set_server_header(response)


def guard_unparsed(app: web.Application, fix: UnparsedFix) -> None:
    """Route aiohttp's own answers to unparsable requests on ``app`` through ``fix``, and
    give every answer of ``app`` the fixed ``Server`` header."""

    class GuardedRequest(web.Request):
        async def _prepare_hook(self, response: web.StreamResponse) -> None:
            if self._match_info is None:  # aiohttp's own error answer: no route ran
                fix(response)
                set_server_header(response)
                return
            await super()._prepare_hook(response)

    factory: Callable[..., web.Request] = app._make_request
    # object.__setattr__: aiohttp's debug mode (-X dev) warns on any attribute set on an
    # Application that it does not declare.
    object.__setattr__(app, "_make_request", functools.partial(factory, _cls=GuardedRequest))
    hook: Callable[[web.Request, web.StreamResponse], Awaitable[None]] = _server_header
    app.on_response_prepare.append(hook)
