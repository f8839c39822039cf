"""Real files for tests: images made with Pillow, never canned bytes."""
from __future__ import annotations

import io

from PIL import Image


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), colour: str = "#336699") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()
