"""protocol.md §22.1 names every conversation content the client decodes, with every field;
contents with sections of their own (``file`` §25.3, group contents §26) must at least be
named in protocol.md: a content added to the code without its spec fails here."""

from __future__ import annotations

import re
from pathlib import Path

from clientlib.client import content

SPEC = Path(__file__).resolve().parents[2] / "protocol.md"
#: The contents §22.1 tabulates; the others have sections of their own.
CORE = {"req", "acc", "msg", "set", "rcp", "typ", "dis", "del", "edit", "rx", "own"}


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
    spec = SPEC.read_text(encoding="utf-8")
    for t, cls in registry.items():
        if t not in CORE:
            # specified in its own section (file: §25.3, groups: §26)
            assert f"`{t}`" in spec, f"protocol.md never names content {t!r}"
            continue
        assert t in table, f"§22.1 has no row for content {t!r}"
        keys = {f.key for f in cls.SCHEMA}
        assert keys <= table[t], f"§22.1 misses fields {sorted(keys - table[t])} of {t!r}"
