"""Test media: a JPEG that carries what metadata stripping must remove (GPS position,
camera make and serial, a comment, an EXIF orientation)."""

from __future__ import annotations

import io

from PIL import Image

GPS_LAT = (52.0, 22.0, 7.5)


def gps_jpeg(*, orientation: int = 6, size: tuple[int, int] = (64, 32)) -> bytes:
    """A JPEG with GPS tags, a camera serial, a comment and an EXIF orientation."""
    img = Image.new("RGB", size, (200, 20, 20))
    for x in range(size[0] // 4):  # a mark in the top left, to see the rotation
        for y in range(size[1] // 4):
            img.putpixel((x, y), (0, 0, 250))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SpyCam Inc"  # Make
    exif[0xA431] = "SERIAL-123456"  # BodySerialNumber (in the Exif IFD on real cameras)
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = GPS_LAT
    gps[3] = "E"
    gps[4] = (4.0, 53.0, 1.25)
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif, comment=b"secret comment")
    return out.getvalue()
