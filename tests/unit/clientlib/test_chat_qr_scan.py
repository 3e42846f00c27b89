"""blindchat's terminal QR codes scan on light and on dark terminals (issue 22, snag 9).

The rendered text is drawn as a terminal would draw it (half blocks in the foreground colour
over the background colour, SGR colour codes applied, the terminal's own theme for the
defaults), rasterised, and read by ZBar (``pyzbar`` over ``libzbar0``), a scanner that reads
only dark-on-light codes. Skipped without libzbar, failing under ``CI``.
"""

from __future__ import annotations

import os
import re

import pytest

from clientlib.chat.qr import COLOUR_OFF, COLOUR_ON, QR_BORDER, qr_matrix, render_qr, wants_colour
from clientlib.client import Invitation

try:
    from pyzbar import pyzbar
except (ImportError, OSError):  # pragma: no cover - depends on the machine
    if os.environ.get("CI"):
        raise
    pytest.skip("pyzbar / libzbar0 not installed", allow_module_level=True)

#: (default foreground, default background) grey levels of a terminal theme.
LIGHT_THEME = (20, 250)
DARK_THEME = (210, 25)
#: SGR codes the renderer may use -> (which, grey level); 0 resets both.
_SGR = {"97": ("fg", 255), "40": ("bg", 0)}
_TOKEN = re.compile(r"\x1b\[([0-9;]*)m|(.)", re.S)
PX = 4  # pixels per module, each way


def paint(text: str, theme: tuple[int, int]) -> list[list[int]]:
    """The grey pixels a terminal with ``theme`` shows for ``text`` (a margin of its own
    background around it)."""
    rows: list[list[int]] = []
    for line in text.split("\n"):
        fg, bg = theme
        top: list[int] = []
        bottom: list[int] = []
        for m in _TOKEN.finditer(line):
            if m.group(1) is not None:
                for code in m.group(1).split(";"):
                    if code in ("", "0"):
                        fg, bg = theme
                    else:
                        which, level = _SGR[code]  # an unexpected code fails the test
                        fg, bg = (level, bg) if which == "fg" else (fg, level)
                continue
            ch = m.group(2)
            upper, lower = {" ": (bg, bg), "\u2580": (fg, bg), "\u2584": (bg, fg)}.get(ch, (fg, fg))
            assert ch in " \u2580\u2584\u2588", repr(ch)
            top += [upper] * PX
            bottom += [lower] * PX
        rows += [top] * PX + [bottom] * PX
    width = max(len(r) for r in rows)
    margin = 8 * PX
    blank = [theme[1]] * (width + 2 * margin)
    body = [[theme[1]] * margin + r + [theme[1]] * (width - len(r) + margin) for r in rows]
    return [blank] * margin + body + [blank] * margin


def scan(pixels: list[list[int]]) -> list[bytes]:
    height, width = len(pixels), len(pixels[0])
    data = bytes(v for row in pixels for v in row)
    return [
        r.data for r in pyzbar.decode((data, width, height), symbols=[pyzbar.ZBarSymbol.QRCODE])
    ]


LINK = Invitation("https://relay.example.org", bytes(range(16)), bytes(range(32))).link


@pytest.mark.parametrize("theme", [LIGHT_THEME, DARK_THEME], ids=["light", "dark"])
def test_the_coloured_code_scans_on_light_and_dark_terminals(theme: tuple[int, int]) -> None:
    assert scan(paint(render_qr(LINK, colour=True), theme)) == [LINK.encode()]


def test_the_plain_code_scans_on_a_dark_terminal_only() -> None:
    assert scan(paint(render_qr(LINK), DARK_THEME)) == [LINK.encode()]
    # Why a terminal gets colours: uncoloured, a light theme shows the code inverted.
    assert scan(paint(render_qr(LINK), LIGHT_THEME)) == []


def test_the_quiet_zone_is_four_light_modules() -> None:
    assert QR_BORDER == 4
    matrix = qr_matrix(LINK)
    n = len(matrix)
    ring = [
        matrix[y][x]
        for y in range(n)
        for x in range(n)
        if min(x, y, n - 1 - x, n - 1 - y) < QR_BORDER
    ]
    assert ring and not any(ring)  # light (False) all round
    assert any(matrix[QR_BORDER][QR_BORDER:])  # the code starts right inside it


def test_every_coloured_line_sets_and_resets_its_colours() -> None:
    lines = render_qr(LINK, colour=True).split("\n")
    assert all(line.startswith(COLOUR_ON) and line.endswith(COLOUR_OFF) for line in lines)


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert wants_colour(Tty())  # type: ignore[arg-type]
    with open(os.devnull, "w") as f:
        assert not wants_colour(f)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(Tty())  # type: ignore[arg-type]
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not wants_colour(Tty())  # type: ignore[arg-type]
