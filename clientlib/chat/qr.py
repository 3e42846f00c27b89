"""QR codes drawn with Unicode half blocks, so they show in any terminal and in a log file.

Each character cell holds two modules stacked vertically; the quiet zone is the standard 4
modules (ISO/IEC 18004 §6.3.8). Scanners expect dark modules on a light ground, and most
(ZBar among them) read nothing else, so the colours are not left to the terminal's theme:

* ``colour=True`` (a terminal): every line sets the foreground to bright white and the
  background to black (SGR ``97;40``) and resets at its end. Light modules and the quiet zone
  are drawn as blocks in the foreground, dark modules are the background: dark on light on a
  light terminal and on a dark one alike.
* ``colour=False`` (``NO_COLOR``, ``TERM=dumb``, a file or a pipe): plain characters, light
  modules drawn as blocks, like ``qrencode -t UTF8``. That is right on a light-on-dark
  terminal; elsewhere a scanner sees the code inverted.

:func:`wants_colour` makes the choice for an output stream.
"""

from __future__ import annotations

import os
from typing import TextIO

import segno

__all__ = ["QR_BORDER", "qr_matrix", "render_qr", "wants_colour"]

#: Quiet zone, in modules, around the code (the standard's 4).
QR_BORDER = 4

#: Foreground bright white, background black; and back to the terminal's own colours.
COLOUR_ON = "\x1b[97;40m"
COLOUR_OFF = "\x1b[0m"

# (top is light, bottom is light) -> character
_CELLS = {
    (False, False): " ",
    (True, False): "\u2580",  # upper half block
    (False, True): "\u2584",  # lower half block
    (True, True): "\u2588",  # full block
}


def qr_matrix(payload: bytes | str, *, border: int = QR_BORDER) -> list[list[bool]]:
    """The module matrix (True = dark), quiet zone included, of a QR code (error level M)."""
    qr = segno.make(payload, error="m", micro=False)
    size = len(qr.matrix) + 2 * border
    out = [[False] * size for _ in range(size)]
    for y, row in enumerate(qr.matrix):
        for x, bit in enumerate(row):
            out[y + border][x + border] = bool(bit)
    return out


def wants_colour(stream: TextIO) -> bool:
    """Whether to draw with explicit colours on ``stream``: a terminal, unless ``NO_COLOR``
    is set (https://no-color.org) or ``TERM`` is ``dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def render_qr(payload: bytes | str, *, border: int = QR_BORDER, colour: bool = False) -> str:
    """The QR code of ``payload`` as lines of half-block characters (no trailing newline).

    ``n`` modules (border included) give ``n`` columns and ``ceil(n / 2)`` lines; the bottom
    half of the last line is dark (background) when ``n`` is odd. With ``colour`` each line
    is wrapped in :data:`COLOUR_ON` ... :data:`COLOUR_OFF`.
    """
    matrix = qr_matrix(payload, border=border)
    size = len(matrix)
    lines = []
    for y in range(0, size, 2):
        top = matrix[y]
        bottom = matrix[y + 1] if y + 1 < size else None
        cells = "".join(
            _CELLS[(not top[x], bottom is not None and not bottom[x])] for x in range(size)
        )
        lines.append(f"{COLOUR_ON}{cells}{COLOUR_OFF}" if colour else cells)
    return "\n".join(lines)
