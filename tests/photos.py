"""Real photographs for tests: the ones that ship inside scikit-image and scikit-learn (offline)."""
from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

_FOLDERS = {"skimage": ("data",), "sklearn": ("datasets", "images")}


def photo(name: str, *, package: str = "skimage") -> Image.Image:
    """e.g. photo("chelsea.png") (a cat), photo("coffee.png"), photo("china.jpg", package="sklearn")."""
    folder = Path(importlib.util.find_spec(package).submodule_search_locations[0]).joinpath(*_FOLDERS[package])
    with Image.open(folder / name) as img:
        return img.convert("RGB")


def another_view(img: Image.Image) -> Image.Image:
    """The same subject seen differently: cropped, mirrored, a little darker and more saturated."""
    w, h = img.size
    view = ImageOps.mirror(img.crop((w // 10, h // 12, w - w // 8, h - h // 10)).resize((w, h)))
    return ImageEnhance.Brightness(ImageEnhance.Color(view).enhance(1.3)).enhance(0.85)


def png(img: Image.Image, *, side: int | None = None) -> bytes:
    if side:
        img = img.resize((side, side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
