"""``python -m clientlib.chat``: the same as the ``blindchat`` command."""

from __future__ import annotations

from clientlib.chat.cli import main

raise SystemExit(main())
