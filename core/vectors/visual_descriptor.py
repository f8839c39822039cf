"""An offline visual descriptor: 256 numbers from the pixels, for image → image similarity.

No model download and no GPU, so it works on a fresh offline machine. It is
three blocks, each L2-normalised so none dominates, then normalised together
so cosine distance (the space's HNSW opclass) compares them:

- colour layout (192): the image as an 8×8 grid in YCbCr, centred — where
  light, dark and coloured areas sit (composition, framing, pose silhouette);
- palette (32): a Hellinger-scaled histogram of 24 hue bins for saturated
  pixels plus 8 brightness bins for grey ones — which colours, wherever they are;
- shape (32): gradient-orientation histograms (8 directions) in a 2×2 grid,
  weighted by edge strength — line direction and texture.

It knows nothing about identity; it finds "looks alike", which is what editors
need to catch near-duplicates and to measure how far a variation drifted from
the character's references.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

DIMS = 256
MODEL_ID = "wb-visual-descriptor@1"
LAYOUT_GRID = 8
HUE_BINS, GREY_BINS = 24, 8
ORIENT_BINS, SHAPE_CELLS = 8, 2
SHAPE_SIDE = 64
SATURATED = 0.25  # below this saturation a pixel counts as grey


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _layout(img: Image.Image) -> np.ndarray:
    small = img.convert("YCbCr").resize((LAYOUT_GRID, LAYOUT_GRID), Image.Resampling.BOX)
    return (np.asarray(small, dtype=np.float32).reshape(-1) - 128.0) / 128.0


def _palette(img: Image.Image) -> np.ndarray:
    hsv = np.asarray(img.convert("HSV").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    h, s, v = hsv[..., 0].ravel(), hsv[..., 1].ravel(), hsv[..., 2].ravel()
    colour = (s >= SATURATED) & (v >= 0.15)
    hue = np.bincount((h[colour] * HUE_BINS).astype(int).clip(0, HUE_BINS - 1), minlength=HUE_BINS)
    grey = np.bincount((v[~colour] * GREY_BINS).astype(int).clip(0, GREY_BINS - 1), minlength=GREY_BINS)
    hist = np.concatenate([hue, grey]).astype(np.float32)
    return np.sqrt(hist / max(hist.sum(), 1.0))


def _shape(img: Image.Image) -> np.ndarray:
    g = np.asarray(img.convert("L").resize((SHAPE_SIDE, SHAPE_SIDE), Image.Resampling.BILINEAR), dtype=np.float32)
    gx = np.zeros_like(g)
    gy = np.zeros_like(g)
    gx[:, 1:-1] = g[:, 2:] - g[:, :-2]
    gy[1:-1, :] = g[2:, :] - g[:-2, :]
    mag = np.hypot(gx, gy)
    ang = (np.arctan2(gy, gx) % np.pi) / np.pi  # orientation, not direction: 0..1
    bins = (ang * ORIENT_BINS).astype(int).clip(0, ORIENT_BINS - 1)
    cell = SHAPE_SIDE // SHAPE_CELLS
    out = []
    for cy in range(SHAPE_CELLS):
        for cx in range(SHAPE_CELLS):
            sl = (slice(cy * cell, (cy + 1) * cell), slice(cx * cell, (cx + 1) * cell))
            out.append(np.bincount(bins[sl].ravel(), weights=mag[sl].ravel(), minlength=ORIENT_BINS))
    return np.sqrt(np.concatenate(out).astype(np.float32))


def describe(image: Image.Image) -> np.ndarray:
    """The 256-d unit descriptor of one image."""
    img = image.convert("RGB")
    vec = np.concatenate([_unit(_layout(img)), _unit(_palette(img)), _unit(_shape(img))]).astype(np.float32)
    return _unit(vec)


def describe_bytes(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return describe(img)


def describe_file(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return describe(img)
