"""Image verification and thumbnails (Pillow).

Every byte that becomes a stored image passes `inspect_image` first: size cap,
pixel cap checked from the header *before* decoding (decompression bombs), a
full decode to catch truncated files, and the real format compared with what
the file claims to be.
"""
from __future__ import annotations

import base64
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import PurePath

from PIL import Image, UnidentifiedImageError

from core.errors import ImageRejected

log = logging.getLogger(__name__)

ALLOWED_FORMATS: dict[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS: dict[str, str] = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
_EXT_TO_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".webp": "WEBP"}
_MIME_TO_FORMAT = {v: k for k, v in ALLOWED_FORMATS.items()} | {"image/jpg": "JPEG", "image/pjpeg": "JPEG"}


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime: str
    extension: str
    width: int
    height: int
    byte_size: int


def _human(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def inspect_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    filename: str | None = None,
    claimed_mime: str | None = None,
) -> ImageInfo:
    """Return facts about `data` or raise ImageRejected with a message for the editor."""
    label = f"'{filename}'" if filename else "The file"
    if not data:
        raise ImageRejected(f"{label} is empty.")
    if len(data) > max_bytes:
        raise ImageRejected(f"{label} is {_human(len(data))}; the limit is {_human(max_bytes)}.")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or "?"
            width, height = probe.size
    except UnidentifiedImageError:
        raise ImageRejected(f"{label} is not an image Pillow can read (PNG, JPEG or WebP expected).") from None
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(f"{label} is a {fmt} image; only PNG, JPEG and WebP are accepted.")
    if width * height > max_pixels:
        raise ImageRejected(
            f"{label} is {width}×{height} = {width * height / 1e6:.0f} megapixels; the limit is "
            f"{max_pixels / 1e6:.0f} megapixels (this guards against decompression bombs)."
        )
    claimed = None
    if filename:
        claimed = _EXT_TO_FORMAT.get(PurePath(filename).suffix.lower())
        if claimed is None and PurePath(filename).suffix:
            raise ImageRejected(f"{label} has extension '{PurePath(filename).suffix}'; use .png, .jpg or .webp.")
    if claimed is None and claimed_mime:
        claimed = _MIME_TO_FORMAT.get(claimed_mime.split(";")[0].strip().lower())
    if claimed is not None and claimed != fmt:
        raise ImageRejected(f"{label} claims to be {claimed} but its content is {fmt}; rename or re-export it.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
    except (OSError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        log.info("image rejected on decode (%s): %s", filename, err)
        raise ImageRejected(f"{label} is damaged or truncated and cannot be decoded ({err}).") from None
    return ImageInfo(fmt, ALLOWED_FORMATS[fmt], EXTENSIONS[fmt], width, height, len(data))


def make_thumbnail(data: bytes, *, size: int) -> bytes:
    """A WebP thumbnail that fits in size×size, alpha flattened onto white."""
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGBA")
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", img.size, "white")
        canvas.paste(img, mask=img.split()[-1])
        out = io.BytesIO()
        canvas.save(out, format="WEBP", quality=82)
        return out.getvalue()



def data_uri(data: bytes, *, size: int) -> str:
    """A small WebP `data:` URI of an image for dense grids: Streamlit passes such a string to the browser
    as it is, where a file or bytes cost two decodes and a re-encode on every render (seconds for a page of
    250 cells)."""
    return "data:image/webp;base64," + base64.b64encode(make_thumbnail(data, size=size)).decode("ascii")
