"""protocol.md §22.1 names every content type the client decodes, with every field (the
``file`` content is specified in §25.3): a content added to the code without its spec row
fails here."""

from __future__ import annotations

import re
from pathlib import Path

from clientlib.client import content

SPEC = Path(__file__).resolve().parents[2] / "protocol.md"


def _table() -> dict[str, set[str]]:
    text = SPEC.read_text(encoding="utf-8")
    start = text.index("### §22.1 Content")
    end = text.index("### §22.2", start)
    rows: dict[str, set[str]] = {}
    current = ""
    for line in text[start:end].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not line.startswith("|") or set(cells[1]) <= {"-"}:
            continue
        if cells[0].startswith("`"):
            current = cells[0].strip("`")
        if current:
            rows.setdefault(current, set()).update(re.findall(r"`([a-z]+)`", cells[1]))
    return rows


def test_every_content_type_and_field_is_in_the_table() -> None:
    table = _table()
    registry = content._REGISTRY
    assert {"req", "msg", "rcp", "typ", "dis", "del", "edit", "rx"} <= set(registry)
    for t, cls in registry.items():
        if t == "file":
            continue
        assert t in table, f"§22.1 has no row for content {t!r}"
        keys = {f.key for f in cls.SCHEMA}
        assert keys <= table[t], f"§22.1 misses fields {sorted(keys - table[t])} of {t!r}"
