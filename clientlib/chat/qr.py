"""QR codes drawn with Unicode half blocks, so they show in any terminal and in a log file.

Each character cell holds two modules stacked vertically. Like ``qrencode -t UTF8``, the
*light* modules (and the quiet zone) are drawn with the foreground colour, which suits the
usual light-on-dark terminal; the dark modules are the terminal background. Phone scanners
read codes either way round, so a light-background terminal works too.
"""

from __future__ import annotations

import segno

__all__ = ["QR_BORDER", "qr_matrix", "render_qr"]

#: Quiet zone, in modules, around the code (the standard asks for 4; 2 reads fine on screens).
QR_BORDER = 2

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


def render_qr(payload: bytes | str, *, border: int = QR_BORDER) -> str:
    """The QR code of ``payload`` as lines of half-block characters (no trailing newline).

    ``n`` modules (border included) give ``n`` columns and ``ceil(n / 2)`` lines; the bottom
    half of the last line is background when ``n`` is odd.
    """
    matrix = qr_matrix(payload, border=border)
    size = len(matrix)
    lines = []
    for y in range(0, size, 2):
        top = matrix[y]
        bottom = matrix[y + 1] if y + 1 < size else None
        lines.append(
            "".join(_CELLS[(not top[x], bottom is not None and not bottom[x])] for x in range(size))
        )
    return "\n".join(lines)
