"""The parts of client media that need no relay (protocol.md §25.4): image metadata removal
with Pillow, thumbnails and their blurred form, safe file names, the encrypted spool for
streams, the history record of a file, and the blob transport's argument checks."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import aiohttp
import pytest
from mediakit import GPS_LAT, gps_jpeg
from PIL import Image, PngImagePlugin

from clientlib.chat.text import file_label, human_size
from clientlib.client._history_records import parse_message, patched, to_wire
from clientlib.client._images import (
    MAX_IMAGE_PIXELS,
    THUMBNAIL_PX,
    ImageTooLarge,
    blur_thumbnail,
    sniff_image,
    strip_image,
)
from clientlib.client._media import _place, _Spool, safe_filename
from clientlib.client.types import Attachment, StoredMessage
from clientlib.errors import LocalProtocolError
from clientlib.transport.blobs import BlobTransport


def test_a_jpeg_loses_gps_exif_and_comments_and_keeps_its_orientation() -> None:
    raw = gps_jpeg()
    with Image.open(io.BytesIO(raw)) as before:
        assert before.getexif().get_ifd(0x8825)[2] == GPS_LAT  # the test image has them
    stripped = strip_image(io.BytesIO(raw))
    assert stripped is not None
    data, mime, thumb = stripped
    assert mime == "image/jpeg"
    for needle in (b"Exif", b"SpyCam", b"SERIAL-123456", b"secret comment", b"GPS"):
        assert needle not in data
    with Image.open(io.BytesIO(data)) as after:
        assert len(after.getexif()) == 0
        assert "exif" not in after.info and "comment" not in after.info
        assert after.size == (32, 64)  # orientation 6 (rotate 90°) applied to the pixels
        r, _g, b = after.convert("RGB").getpixel((after.width - 2, 1))  # type: ignore[misc]
        assert b > 150 and r < 100  # the top-left mark is now top right
    with Image.open(io.BytesIO(thumb)) as t:
        assert t.format == "JPEG" and max(t.size) <= THUMBNAIL_PX
        assert len(t.getexif()) == 0
    assert len(thumb) <= 16384


def test_a_png_loses_its_text_chunks_and_a_webp_is_re_encoded() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe, 12 Secret Street")
    info.add_text("XML:com.adobe.xmp", "<x:xmpmeta>geo</x:xmpmeta>")
    out = io.BytesIO()
    Image.new("RGBA", (20, 10), (1, 2, 3, 128)).save(out, "PNG", pnginfo=info)
    stripped = strip_image(io.BytesIO(out.getvalue()))
    assert stripped is not None
    data, mime, _ = stripped
    assert mime == "image/png" and b"Secret Street" not in data and b"xmpmeta" not in data
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "RGBA" and img.size == (20, 10) and not img.text  # type: ignore[attr-defined]
    webp = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(webp, "WEBP", exif=Image.Exif().tobytes())
    stripped = strip_image(io.BytesIO(webp.getvalue()))
    assert stripped is not None and stripped[1] == "image/webp"


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that announces ``width`` x ``height`` and holds (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def test_not_an_image_or_a_huge_one() -> None:
    assert strip_image(io.BytesIO(b"%PDF-1.7 not an image")) is None
    assert strip_image(io.BytesIO(b"\xff\xd8\xff\xe0 truncated jpeg")) is None
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    with pytest.raises(ImageTooLarge):  # decided from the header, before any pixel is read
        strip_image(io.BytesIO(_png_header(side, side)))
    assert sniff_image(gps_jpeg()) and sniff_image(_png_header(1, 1))
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") and not sniff_image(b"GIF89a")


def test_the_blurred_thumbnail_is_not_the_thumbnail() -> None:
    stripped = strip_image(io.BytesIO(gps_jpeg(size=(96, 96))))
    assert stripped is not None
    thumb = stripped[2]
    blurred = blur_thumbnail(thumb)
    assert blurred is not None and blurred != thumb
    with Image.open(io.BytesIO(blurred)) as b, Image.open(io.BytesIO(thumb)) as t:
        assert b.size == t.size and b.format == "JPEG"
    assert blur_thumbnail(b"not a jpeg") is None
    big = io.BytesIO()
    Image.new("RGB", (800, 800)).save(big, "JPEG")
    assert blur_thumbnail(big.getvalue()) is None  # not a thumbnail: not decoded further


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cv.pdf", "cv.pdf"),
        ("..", None),
        (".bashrc", "bashrc"),
        ("evil\x1b[2Jname\u202e.txt", "evil[2Jname.txt"),
        ("", None),
        (None, None),
        ("dir/", None),
    ],
)
def test_safe_filename(name: str | None, safe: str | None) -> None:
    assert safe_filename(name) == safe


def test_safe_filename_stays_within_255_bytes() -> None:
    out = safe_filename("é" * 300)
    assert out is not None and len(out.encode()) <= 255


def test_the_spool_holds_no_plaintext_and_reads_back_twice() -> None:
    spool = _Spool()
    secret = b"the plaintext of a streamed file " * 1000
    for i in range(0, len(secret), 777):
        spool.write(secret[i : i + 777])
    assert spool.size == len(secret)
    spool._f.flush()
    spool._f.seek(0)
    on_disk = spool._f.read()
    assert len(on_disk) == len(secret) and b"plaintext of a streamed" not in on_disk
    for _ in range(2):
        with spool.open() as f:
            assert f.read() == secret
    spool.close()


def test_placing_never_replaces_a_file(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"mine")
    tmp = tmp_path / ".part1"
    tmp.write_bytes(b"theirs")
    final = _place(tmp, tmp_path / "a.txt", unique=True)
    assert final.name == "a (1).txt" and final.read_bytes() == b"theirs"
    assert (tmp_path / "a.txt").read_bytes() == b"mine" and not tmp.exists()
    tmp.write_bytes(b"again")
    with pytest.raises(FileExistsError):
        _place(tmp, tmp_path / "a.txt", unique=False)
    assert tmp.exists()  # the caller deletes it


def _message(att: Attachment | None) -> StoredMessage:
    return StoredMessage("c" * 32, "ab" * 16, "in", "caption", 1, 2, "received", attachment=att)


def test_the_history_record_of_a_file_round_trips_and_view_once_is_emptied() -> None:
    att = Attachment(
        "c" * 32,
        "ab" * 16,
        "photo.jpg",
        "image/jpeg",
        1_234_567,
        thumbnail=b"\xff\xd8thumb",
        view_once=True,
        descriptor=b"\x01descriptor",
        plaintext_hash=os.urandom(32),
    )
    m = _message(att)
    back = parse_message(to_wire(m))
    assert back == m and back.attachment is not None
    assert back.attachment.descriptor == att.descriptor
    assert back.attachment.plaintext_hash == att.plaintext_hash
    viewed = patched(
        back,
        {"at": {"n": "photo.jpg", "m": "image/jpeg", "s": 1_234_567, "vo": 1, "v": 1}, "text": ""},
    )
    assert viewed.attachment is not None and viewed.attachment.viewed
    assert not viewed.attachment.downloadable and viewed.attachment.descriptor == b""
    assert viewed.attachment.thumbnail is None and viewed.text == ""
    assert parse_message(to_wire(viewed)) == viewed
    deleted = patched(back, {"dl": 1})
    assert deleted.attachment is None
    with pytest.raises(ValueError):
        parse_message([*to_wire(_message(None)), None, {"at": {"n": 1, "m": "x", "s": 1}}])
    assert file_label(att) == "[photo.jpg, 1.2 MB, view-once, id abab]"
    assert file_label(viewed.attachment) == "[photo.jpg, 1.2 MB, view-once, opened, id abab]"
    assert human_size(812) == "812 B" and human_size(4100) == "4.1 kB"


async def test_the_blob_transport_checks_its_arguments() -> None:
    async with aiohttp.ClientSession() as s:
        t = BlobTransport(s, "http://127.0.0.1:9")
        assert "127.0.0.1" not in repr(t)
        with pytest.raises(LocalProtocolError):
            await t.create(os.urandom(15), 10)
        with pytest.raises(LocalProtocolError):
            await t.create(os.urandom(16), 0)
        with pytest.raises(LocalProtocolError):
            await t.create(os.urandom(16), 10, dl=256)
        with pytest.raises(LocalProtocolError):
            await t.upload_offset(os.urandom(16), os.urandom(31))
