"""``blindchat``: end-to-end encrypted chat in the terminal, on :class:`clientlib.client.Client`.

Run ``blindchat --help`` (or ``python -m clientlib.chat --help``). The command-line program
lives in :mod:`clientlib.chat.cli`; :mod:`clientlib.chat.qr` draws QR codes as text.
"""

from __future__ import annotations

from clientlib.chat.cli import main

__all__ = ["main"]
