"""Images before they are encrypted (protocol.md §25.4 step 2): metadata removed by
re-encoding the pixels, a small thumbnail, and the blurred form of a thumbnail shown for a
contact whose safety number is not verified.

Pillow does the decoding and encoding (a well-kept library; decoding images by hand is how
parsers get exploited). What is removed: every EXIF field (GPS position, camera serial and
maker notes included), XMP, IPTC, ICC and PNG text chunks and comments: the new file is
built from the pixels alone, after the EXIF orientation was applied to them, so the picture
looks as it did. An image is decoded whole (Pillow needs the pixels), so images are bounded
by :data:`MAX_IMAGE_PIXELS`; files that are not images are never held whole.
"""

from __future__ import annotations

import io
from typing import IO, Final

from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_TYPES",
    "MAX_IMAGE_PIXELS",
    "THUMBNAIL_PX",
    "ImageTooLarge",
    "blur_thumbnail",
    "sniff_image",
    "strip_image",
]

#: Media types re-encoded before sending, and Pillow's name for each.
IMAGE_TYPES: Final = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_MIME_OF: Final = {v: k for k, v in IMAGE_TYPES.items()}
#: The largest image stripped (about 200 MB of RGB pixels while it is re-encoded); larger
#: ones are refused unless sent with ``keep_metadata`` (as opaque files).
MAX_IMAGE_PIXELS: Final = 64_000_000
#: Thumbnails: at most this many pixels on the long side, JPEG (protocol.md §25.3).
THUMBNAIL_PX: Final = 96
_THUMB_MAX_BYTES: Final = 16384
_MAGIC: Final = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


class ImageTooLarge(ValueError):
    """The image has more than :data:`MAX_IMAGE_PIXELS` pixels."""


def sniff_image(head: bytes) -> bool:
    """Whether the first bytes of a file look like JPEG, PNG or WebP."""
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _open(fp: IO[bytes]) -> Image.Image | None:
    try:
        img = Image.open(fp, formats=list(IMAGE_TYPES.values()))
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    if img.width * img.height > MAX_IMAGE_PIXELS:
        img.close()
        raise ImageTooLarge("the image is too large to remove its metadata")
    return img


def strip_image(fp: IO[bytes]) -> tuple[bytes, str, bytes] | None:
    """Re-encode an image from its pixels: ``(new file, mime, thumbnail)``, or None if
    ``fp`` is not a JPEG, PNG or WebP image Pillow can decode.

    Raises:
        ImageTooLarge: over :data:`MAX_IMAGE_PIXELS`.
    """
    img = _open(fp)
    if img is None:
        return None
    with img:
        fmt = img.format or "PNG"
        try:
            upright = ImageOps.exif_transpose(img)
            clean = _fresh(upright, fmt)
        except (OSError, ValueError, SyntaxError):
            return None  # truncated or damaged: not an image we can vouch for
    out = io.BytesIO()
    if fmt == "JPEG":
        clean.save(out, "JPEG", quality=90, optimize=False)
    elif fmt == "WEBP":
        clean.save(out, "WEBP", quality=90)
    else:
        clean.save(out, "PNG")
    return out.getvalue(), _MIME_OF[fmt], _thumbnail(clean)


def _fresh(img: Image.Image, fmt: str) -> Image.Image:
    """A new image with ``img``'s pixels and nothing else (no ``info``, no EXIF)."""
    mode = img.mode
    if mode not in ("1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"):
        img = img.convert("RGBA" if "A" in mode or "transparency" in img.info else "RGB")
        mode = img.mode
    if fmt == "JPEG" and mode not in ("L", "RGB", "CMYK"):
        img = img.convert("RGB")
        mode = "RGB"
    return Image.frombytes(mode, img.size, img.tobytes())


def _thumbnail(img: Image.Image) -> bytes:
    t = img.convert("RGB")
    t.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    for quality in (70, 50, 30, 15):
        out = io.BytesIO()
        t.save(out, "JPEG", quality=quality)
        if out.tell() <= _THUMB_MAX_BYTES:
            return out.getvalue()
    return b""  # pragma: no cover - a 96 px JPEG at quality 15 is a few hundred bytes


def blur_thumbnail(thumb: bytes) -> bytes | None:
    """The blurred form of a received thumbnail (shown until the contact is verified), or
    None if it is not a small JPEG (a thumbnail from a contact is untrusted input)."""
    try:
        with Image.open(io.BytesIO(thumb), formats=["JPEG"]) as img:
            if max(img.size) > THUMBNAIL_PX * 2:
                return None
            small = img.convert("RGB").resize((max(1, img.width // 8), max(1, img.height // 8)))
            blurred = small.resize(img.size).filter(ImageFilter.GaussianBlur(3))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    out = io.BytesIO()
    blurred.save(out, "JPEG", quality=60)
    return out.getvalue()
