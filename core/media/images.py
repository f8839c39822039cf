"""Image verification, re-encoding and thumbnails (Pillow).

Every byte that becomes a stored image passes through here. `inspect_image` refuses anything
that is not a whole, sane PNG / JPEG / WebP: byte cap, pixel cap checked from the header before
decoding (decompression bombs, Pillow's own guard included), compressed text / ICC chunk bombs,
truncation anywhere (inside the headers or the pixel data), and the real format compared with
the one the file claims. Only Pillow's PNG, JPEG (and MPO) and WebP parsers ever see the bytes.

`prepare_for_storage` then re-encodes the first frame, so what is stored and served back is an
image Pillow wrote: no bytes after the image (polyglots), no EXIF/XMP/text chunks (GPS, comments),
orientation applied. Multi-frame files (animated PNG/WebP, MPO) keep their first frame, with a note.
"""
from __future__ import annotations

import base64
import io
import logging
import unicodedata
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Iterator

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from core import media
from core.errors import ImageRejected

log = logging.getLogger(__name__)

ALLOWED_FORMATS: dict[str, str] = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS: dict[str, str] = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
# The only parsers Pillow may run on uploaded bytes (MPO = multi-picture JPEG, stored as JPEG).
_PILLOW_FORMATS = ("PNG", "JPEG", "WEBP")  # Pillow's JPEG opener also returns MPO files
_STORED_AS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP"}
_EXT_TO_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".webp": "WEBP"}
_MIME_TO_FORMAT = {v: k for k, v in ALLOWED_FORMATS.items()} | {"image/jpg": "JPEG", "image/pjpeg": "JPEG"}
# Named in refusals so "not an image" is specific when it is a known but unaccepted format.
_MAGIC = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"),
          (b"\0\0\1\0", "ICO"), (b"8BPS", "PSD"), (b"%PDF", "PDF"), (b"%!PS", "PostScript"))
MAX_FILENAME_CHARS = 255
MAX_ICC_BYTES = 1024 * 1024
# PNG text chunks (tEXt/zTXt/iTXt) decompress at most 1 MB each (Pillow's MAX_TEXT_CHUNK, which
# also bounds iCCP) and 8 MB together instead of Pillow's 64 MB: a few KB of zTXt must not make
# every upload cost 64 MB of memory. Set process-wide on purpose: nothing here needs more.
PngImagePlugin.MAX_TEXT_MEMORY = 8 * PngImagePlugin.MAX_TEXT_CHUNK


def _bomb_warning_is_an_error() -> None:
    """Pillow's decompression-bomb *warning* (over Image.MAX_IMAGE_PIXELS, 89 MP) is an error here: a server has
    no one to read it. A process-wide filter, (re)asserted before each inspection because frameworks that record
    warnings (pytest, some servers) reset the filter list; warnings.catch_warnings per call is not thread-safe."""
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime: str
    extension: str
    width: int
    height: int
    byte_size: int
    frames: int = 1


@dataclass(frozen=True)
class StoredImage:
    """What will be written: re-encoded bytes, their facts, a thumbnail, and what the editor should know."""
    data: bytes
    info: ImageInfo
    thumbnail: bytes
    notes: tuple[str, ...] = field(default=())


def _human(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def check_filename(filename: str | None) -> str | None:
    """The file's own name (folders dropped), or ImageRejected when it holds control, bidi-override or
    unpaired-surrogate characters (they garble logs and listings, and Postgres refuses NUL) or is too long."""
    if filename is None:
        return None
    ch = media.first_control_char(filename)
    if ch is not None:
        shown = "".join("?" if media.first_control_char(c) else c for c in filename)[:80]
        raise ImageRejected(
            f"The file name '{shown}' contains the control character U+{ord(ch):04X}"
            f"{' (' + unicodedata.name(ch, '') + ')' if unicodedata.name(ch, '') else ''}; rename the file."
        )
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if len(name) > MAX_FILENAME_CHARS:
        raise ImageRejected(f"The file name is {len(name)} characters long; the limit is {MAX_FILENAME_CHARS}.")
    return name


def _label(filename: str | None) -> str:
    return f"'{filename}'" if filename else "The file"


def _claimed_format(filename: str | None, claimed_mime: str | None, label: str) -> str | None:
    if filename:
        suffix = PurePath(filename).suffix
        claimed = _EXT_TO_FORMAT.get(suffix.lower())
        if claimed is None and suffix:
            raise ImageRejected(f"{label} has extension '{suffix[:20]}'; use .png, .jpg or .webp.")
        if claimed:
            return claimed
    if claimed_mime:
        return _MIME_TO_FORMAT.get(claimed_mime.split(";")[0].strip().lower())
    return None


def _refusal(err: BaseException, label: str, stage: str, max_pixels: int) -> ImageRejected:
    """Turn whatever Pillow raised on hostile bytes into a message that names the problem."""
    text = str(err)
    if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageRejected(
            f"{label} has more pixels than Pillow's decompression-bomb guard allows "
            f"({(Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels; the workbench's limit is {max_pixels / 1e6:.0f}): "
            "refused before decoding."
        )
    if isinstance(err, ValueError) and ("MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text):
        return ImageRejected(
            f"{label} carries compressed text or colour-profile (ICC) data that expands past "
            f"{_human(PngImagePlugin.MAX_TEXT_CHUNK)} per chunk / {_human(PngImagePlugin.MAX_TEXT_MEMORY)} in all "
            "(a decompression bomb); re-export the image without metadata."
        )
    where = "inside its header" if stage == "header" else "in its pixel data"
    return ImageRejected(f"{label} is damaged or truncated and cannot be decoded: it breaks off or is invalid {where} "
                         f"({err.__class__.__name__}: {text[:160]}).")


@contextmanager
def _pillow_guard(label: str, stage: list[str], max_pixels: int) -> Iterator[None]:
    """Pillow on hostile bytes can raise nearly anything (OSError, SyntaxError, ValueError, struct.error,
    EOFError, IndexError, zlib.error…); every one of them becomes our refusal, logged with its context."""
    try:
        yield
    except ImageRejected:
        raise
    except Exception as err:  # noqa: BLE001 - the decoder boundary: any failure is a bad file, never a 500
        log.info("image refused at %s stage (%s): %r", stage[0], label, err)
        raise _refusal(err, label, stage[0], max_pixels) from None


def _sniff(data: bytes) -> str | None:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and len(data) >= 12 and data[8:12] != b"WEBP":
        return "RIFF (not WebP)"
    if data[4:8] == b"ftyp":
        return "HEIC/AVIF"
    if data.lstrip()[:5].lower() in (b"<svg ", b"<?xml"):
        return "SVG"
    return None


def _check_header(img: Image.Image, label: str, *, max_pixels: int, claimed: str | None) -> tuple[str, int]:
    fmt = _STORED_AS.get(img.format or "", "")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageRejected(f"{label} declares an empty canvas ({width}×{height}).")
    if width * height > max_pixels:
        raise ImageRejected(
            f"{label} is {width}×{height} = {width * height / 1e6:.0f} megapixels; the limit is "
            f"{max_pixels / 1e6:.0f} megapixels (this guards against decompression bombs)."
        )
    if claimed is not None and claimed != fmt:
        raise ImageRejected(f"{label} claims to be {claimed} but its content is {fmt}; rename or re-export it.")
    return fmt, int(getattr(img, "n_frames", 1) or 1)


def _open(data: bytes, label: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except UnidentifiedImageError:
        own = ("PNG" if data.startswith(b"\x89PNG\r\n\x1a\n") else "JPEG" if data.startswith(b"\xff\xd8\xff")
               else "WebP" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None)
        if own:
            raise ImageRejected(f"{label} starts like a {own} file but is damaged or truncated inside its header; "
                                "re-export it.") from None
        other = _sniff(data)
        if other:
            raise ImageRejected(f"{label} is a {other} file; only PNG, JPEG and WebP are accepted.") from None
        raise ImageRejected(f"{label} is not an image Pillow can read (PNG, JPEG or WebP expected).") from None


def _precheck(data: bytes, *, max_bytes: int, filename: str | None) -> tuple[str | None, str]:
    _bomb_warning_is_an_error()
    filename = check_filename(filename)
    label = _label(filename)
    if not data:
        raise ImageRejected(f"{label} is empty.")
    if len(data) > max_bytes:
        raise ImageRejected(f"{label} is {_human(len(data))}; the limit is {_human(max_bytes)}.")
    return filename, label


@contextmanager
def _decoded(data: bytes, *, max_bytes: int, max_pixels: int, filename: str | None, claimed_mime: str | None,
             ) -> Iterator[tuple[Image.Image, str, int, str]]:
    """The decoded first frame with its format, frame count and label; everything done with it inside the
    `with` (re-encoding too) is under the same guard, so any Pillow failure becomes our own refusal."""
    filename, label = _precheck(data, max_bytes=max_bytes, filename=filename)
    claimed = _claimed_format(filename, claimed_mime, label)
    stage = ["header"]
    with _pillow_guard(label, stage, max_pixels):
        with _open(data, label) as img:
            fmt, frames = _check_header(img, label, max_pixels=max_pixels, claimed=claimed)
            stage[0] = "pixels"
            img.load()
            yield img, fmt, frames, label


def inspect_image(
    data: bytes, *, max_bytes: int, max_pixels: int, filename: str | None = None, claimed_mime: str | None = None,
) -> ImageInfo:
    """Facts about `data` after a full decode of its first frame, or ImageRejected with a message for the editor."""
    with _decoded(data, max_bytes=max_bytes, max_pixels=max_pixels, filename=filename,
                  claimed_mime=claimed_mime) as (img, fmt, frames, _label):
        return ImageInfo(fmt, ALLOWED_FORMATS[fmt], EXTENSIONS[fmt], img.width, img.height, len(data), frames)


def _is_lossless_webp(data: bytes) -> bool:
    """Walk the RIFF chunks (and animation frames' first sub-chunk) for a VP8L bitstream."""
    pos = 12
    while pos + 8 <= len(data):
        fourcc, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if fourcc == b"VP8L" or (fourcc == b"ANMF" and data[pos + 24:pos + 28] == b"VP8L"):
            return True
        if fourcc in (b"VP8 ", b"ANMF"):
            return False
        pos += 8 + size + (size & 1)
    return False


def _upright(img: Image.Image, notes: list[str], label: str) -> Image.Image:
    """The first frame with its EXIF orientation applied; an unreadable EXIF block keeps the pixels as they are."""
    try:
        turned = ImageOps.exif_transpose(img)
    except Exception as err:  # noqa: BLE001 - metadata only: a broken EXIF block must not refuse good pixels
        log.info("EXIF orientation of %s unreadable, stored as decoded: %r", label, err)
        notes.append("Its EXIF orientation tag could not be read; the image is stored as decoded.")
        return img
    return turned if turned is not None else img


def _encode(img: Image.Image, original: Image.Image, fmt: str, data: bytes, notes: list[str]) -> bytes:
    out = io.BytesIO()
    icc = original.info.get("icc_profile") or None
    if icc and len(icc) > MAX_ICC_BYTES:
        notes.append(f"Its colour profile ({_human(len(icc))}) exceeds {_human(MAX_ICC_BYTES)} and was dropped.")
        icc = None
    extra: dict = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        extra["comment"] = b""  # Pillow would copy the COM marker from the source otherwise
    if fmt == "PNG":
        img.save(out, format="PNG", compress_level=6, **extra)
    elif fmt == "JPEG":
        if img is original and img.mode in ("L", "RGB", "CMYK"):
            img.save(out, format="JPEG", quality="keep", subsampling="keep", **extra)  # same tables: no visible loss
        else:
            img = img if img.mode in ("L", "RGB", "CMYK") else img.convert("RGB")
            img.save(out, format="JPEG", quality=95, **extra)
    else:
        lossless = _is_lossless_webp(data)
        img.save(out, format="WEBP", lossless=lossless, quality=100 if lossless else 95, method=4, **extra)
    return out.getvalue()


def thumbnail_of(img: Image.Image, *, size: int) -> bytes:
    """A WebP thumbnail that fits in size×size, alpha flattened onto white."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        img = img.point(lambda v: v / 256).convert("L") if img.mode != "F" else img.convert("L")
    img = img.convert("RGBA")
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", img.size, "white")
    canvas.paste(img, mask=img.split()[-1])
    out = io.BytesIO()
    canvas.save(out, format="WEBP", quality=82)
    return out.getvalue()


def make_thumbnail(data: bytes, *, size: int) -> bytes:
    """Thumbnail of stored bytes (generated images; uploads get theirs from `prepare_for_storage`)."""
    with Image.open(io.BytesIO(data)) as img:
        return thumbnail_of(img, size=size)


def data_uri(data: bytes, *, size: int) -> str:
    """A small WebP `data:` URI of an image for dense grids: Streamlit passes such a string to the browser
    as it is, where a file or bytes cost two decodes and a re-encode on every render (seconds for a page of
    250 cells)."""
    return "data:image/webp;base64," + base64.b64encode(make_thumbnail(data, size=size)).decode("ascii")


def prepare_for_storage(
    data: bytes, *, max_bytes: int, max_pixels: int, thumb_size: int, filename: str | None = None,
    claimed_mime: str | None = None,
) -> StoredImage:
    """Inspect `data` and re-encode its first frame: the bytes to store (never the upload itself), their facts,
    a thumbnail and notes for the editor. Raises ImageRejected with a specific message for any bad file."""
    notes: list[str] = []
    with _decoded(data, max_bytes=max_bytes, max_pixels=max_pixels, filename=filename,
                  claimed_mime=claimed_mime) as (img, fmt, frames, label):
        if frames > 1:
            kind = "a multi-picture (MPO) photo" if img.format == "MPO" else f"an animated {fmt}"
            notes.append(f"It is {kind} with {frames} frames; only the first frame was kept.")
        upright = _upright(img, notes, label)
        stored = _encode(upright, img, fmt, data, notes)
        thumb = thumbnail_of(upright, size=thumb_size)
        info = ImageInfo(fmt, ALLOWED_FORMATS[fmt], EXTENSIONS[fmt], upright.width, upright.height, len(stored))
    return StoredImage(stored, info, thumb, tuple(notes))
