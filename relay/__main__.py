"""``python -m relay``: the same as the ``blindrelay`` command."""

from __future__ import annotations

import sys

from relay.cli import main

sys.exit(main())
