"""Images whose header lies about their size, for the tests of the decoded-size bound."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png_claiming_size(mode: str, width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` in `mode` (the pixel data is that of a 16x16 image)."""
    buffer = io.BytesIO()
    Image.new(mode, (16, 16)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)
