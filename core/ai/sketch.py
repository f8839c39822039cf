"""Deterministic preview sketches drawn with Pillow.

Used for the demo cast's reference images and by the offline provider: a
labelled figure in a pose and palette, so screens have real, distinguishable
images without any network. Same inputs → same bytes.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

DEFAULT_PALETTE = ["#3b4a6b", "#e0b15c", "#c8553d", "#f2e8cf"]


@dataclass(frozen=True)
class Pose:
    """Figure geometry as fractions of the canvas; poses live in the shot list data."""

    head_y: float = 0.28
    head_r: float = 0.09
    body_h: float = 0.34
    lean: float = 0.0
    arms: str = "down"  # down | up | wide | sit
    scale: float = 1.0


POSES: dict[str, Pose] = {
    "reference": Pose(),
    "portrait": Pose(head_y=0.42, head_r=0.2, body_h=0.4, scale=1.6),
    "full_body": Pose(head_y=0.2, head_r=0.07, body_h=0.36),
    "action": Pose(lean=0.12, arms="up"),
    "sit": Pose(head_y=0.36, arms="sit", body_h=0.24),
    "wide": Pose(head_y=0.3, head_r=0.06, body_h=0.22, arms="wide", scale=0.7),
}


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow without sized default font
        return ImageFont.load_default()


def draw_sketch(
    *, title: str, subtitle: str, seed: int, palette: list[str] | None = None, pose: str = "reference",
    size: int = 512, banner: str = "PREVIEW SKETCH (offline)",
) -> bytes:
    rng = random.Random(seed)
    colours = [_rgb(c) for c in (palette or DEFAULT_PALETTE)]
    while len(colours) < 4:
        colours.append(colours[len(colours) % max(1, len(colours))])
    bg, accent, figure, light = colours[0], colours[1], colours[2], colours[3]
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    for i in range(size // 8):  # vertical gradient towards the accent colour
        t = i / (size // 8)
        c = tuple(int(bg[k] * (1 - t * 0.6) + accent[k] * t * 0.6) for k in range(3))
        d.rectangle([0, i * 8, size, i * 8 + 8], fill=c)
    for _ in range(6):  # seeded background shapes make variations distinguishable
        x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(size // 16, size // 5)
        d.ellipse([x - r, y - r, x + r, y + r], outline=light, width=2)
    p = POSES.get(pose, POSES["reference"])
    cx = size * (0.5 + p.lean * 0.5)
    hr = size * p.head_r
    hy = size * p.head_y
    w = max(2, int(size * 0.018 * p.scale))
    d.ellipse([cx - hr, hy - hr, cx + hr, hy + hr], fill=light, outline=figure, width=w)
    neck = hy + hr
    hip = neck + size * p.body_h
    d.line([cx, neck, cx - size * p.lean, hip], fill=figure, width=w * 2)
    arm_y = neck + size * p.body_h * 0.25
    spread = size * 0.16 * p.scale
    ends = {
        "down": [(cx - spread, arm_y + spread), (cx + spread, arm_y + spread)],
        "up": [(cx - spread, arm_y - spread), (cx + spread, arm_y - spread * 1.2)],
        "wide": [(cx - spread * 1.5, arm_y), (cx + spread * 1.5, arm_y)],
        "sit": [(cx - spread, arm_y + spread * 0.6), (cx + spread, arm_y + spread * 0.6)],
    }[p.arms]
    for ex, ey in ends:
        d.line([cx, arm_y, ex, ey], fill=figure, width=w)
    hx = cx - size * p.lean
    if p.arms == "sit":
        d.line([hx, hip, hx + spread, hip], fill=figure, width=w)
        d.line([hx + spread, hip, hx + spread, hip + spread], fill=figure, width=w)
        d.rectangle([hx - spread * 0.5, hip + 2, hx + spread * 1.3, hip + w * 2], fill=accent)
    elif hip < size:
        for dx in (-1, 1):
            d.line([hx, hip, hx + dx * spread * 0.7, min(size - 50, hip + size * 0.22)], fill=figure, width=w)
    d.rectangle([0, 0, size, 30], fill=(20, 20, 20))
    d.text((10, 6), banner, fill=(255, 220, 120), font=_font(16))
    d.rectangle([0, size - 48, size, size], fill=(20, 20, 20))
    d.text((10, size - 46), title[:40], fill=(255, 255, 255), font=_font(20))
    d.text((10, size - 22), subtitle[:60], fill=(200, 200, 200), font=_font(14))
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()
