"""Embeddings: what each subject means in each space, content-hash dedupe, storage, status.

A subject (character, reference image, variation, tag concept) has at most one
row per space. Its content — canonical text for text spaces, the media path of
its (write-once) image file for the image space — is hashed together with the
space's model id; the model is only called for subjects whose hash changed,
checked per chunk right before the call. A failed embed keeps the previous
vector and records the error; vector and status change in one transaction,
and a vector of the wrong length never reaches the table (check constraint).
Search lives in core.vectors.similarity.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from core import shots
from core.vectors.embedding_spaces import SPACE_CLASSES, Embedder, dims_of, get_embedder, image_spaces, text_space
from core.errors import ValidationError
from db.engine import session_scope
from db.models import Character, ReferenceImage, Style, Variation

log = logging.getLogger(__name__)

SUBJECT_TYPES = ("character", "reference", "variation")
SUBJECT_LABELS = {"character": "Characters", "reference": "Reference images", "variation": "Variations",
                  "tag": "Tag concepts"}
IMAGE_TYPES = ("reference", "variation")
CHUNK = 256  # subjects per hash check + model call + commit: progress shows, and one failure costs one chunk
STATUS_ORDER = ("missing", "queued", "stale", "failed", "current")


def spaces_for(subject_type: str) -> list[str]:
    """The spaces a subject type lives in: images also get the image space(s) (image-learned by default)."""
    return [text_space(), *image_spaces()] if subject_type in IMAGE_TYPES else [text_space()]


# ---------------------------------------------------------------- subject contents
@dataclass(frozen=True)
class Subject:
    id: int
    label: str
    text: str
    image_path: str | None = None
    character_id: int | None = None


def _join(*parts: str) -> str:
    return ". ".join(p.strip().rstrip(".") for p in parts if p and p.strip())


CAPTION_FUNCTIONS = {"reference": ("caption_reference", "reference_image"), "variation": ("caption_variation", "variation")}


def machine_captions(*, subject_type: str, ids: list[int] | None = None) -> dict[int, str]:
    """The latest vision-model caption per image, from the cost log's call outputs (openai provider only)."""
    function, logged_type = CAPTION_FUNCTIONS[subject_type]
    q = ("select distinct on (subject_id) subject_id, output->>'caption' from ai_call where function = :f "
         "and subject_type = :t and status = 'succeeded'" + (" and subject_id = any(:ids)" if ids is not None else "")
         + " order by subject_id, id desc")
    with session_scope() as s:
        return {sid: cap for sid, cap in s.execute(sa.text(q), {"f": function, "t": logged_type, "ids": ids}).all()
                if cap}


def caption_missing(*, subject_type: str, ids: list[int]) -> int:
    """With the openai provider, caption images that have no vision caption yet (their text then says what
    the image shows). A failed caption is logged and skipped: the image still embeds from its prompt/caption."""
    from core.ai import ai_functions
    from core.settings import get_settings

    if get_settings().provider_name != "openai" or not ids:
        return 0
    have = machine_captions(subject_type=subject_type, ids=ids)
    done = 0
    for sid in ids:
        if sid in have:
            continue
        try:
            ai_functions.caption_image_for_job(subject_type=subject_type, subject_id=sid, job_label="embedding job")
            done += 1
        except Exception as err:  # recorded as a failed ai_call by the engine; the embed goes on without it
            log.warning("vision caption of %s %s failed, embedding without it: %s", subject_type, sid, err)
    return done


def subjects(*, subject_type: str, ids: list[int] | None = None) -> list[Subject]:
    """Every embeddable subject of a type with its text and image: the one place that says what gets embedded."""
    if subject_type == "character":
        q = sa.select(Character.id, Character.name, Character.traits, Character.description, Style.name).join(
            Style, Style.id == Character.style_id, isouter=True)
        q = q.where(Character.id.in_(ids)) if ids is not None else q
        with session_scope() as s:
            return [Subject(cid, name, _join(name, f"Style: {style}" if style else "",
                                             f"Traits: {', '.join(traits)}" if traits else "", desc), None, cid)
                    for cid, name, traits, desc, style in s.execute(q.order_by(Character.id)).all()]
    if subject_type == "reference":
        q = sa.select(ReferenceImage.id, ReferenceImage.path, ReferenceImage.caption, ReferenceImage.alt_text,
                      ReferenceImage.position, Character.id, Character.name).join(
            Character, Character.id == ReferenceImage.character_id)
        q = q.where(ReferenceImage.id.in_(ids)) if ids is not None else q
        with session_scope() as s:
            rows = s.execute(q.order_by(ReferenceImage.id)).all()
        seen = machine_captions(subject_type="reference", ids=ids)
        return [Subject(rid, f"{name} · reference {pos + 1}",
                        _join(f"Reference image of {name}", cap, alt, seen.get(rid, "")), path, cid)
                for rid, path, cap, alt, pos, cid, name in rows]
    if subject_type == "variation":
        q = sa.select(Variation.id, Variation.path, Variation.slot_key, Variation.attempt, Variation.rendered_prompt,
                      Character.id, Character.name).join(Character, Character.id == Variation.character_id).where(
            Variation.status == "completed", Variation.path.is_not(None))
        q = q.where(Variation.id.in_(ids)) if ids is not None else q
        out = []
        with session_scope() as s:
            rows = s.execute(q.order_by(Variation.id)).all()
        seen = machine_captions(subject_type="variation", ids=ids)
        labels = {x.key: x.label for x in shots.shot_list()}
        for vid, path, slot, attempt, prompt, cid, name in rows:
            label = labels.get(slot, slot)
            # what the image shows (vision caption) when there is one, else what was asked for (the prompt)
            out.append(Subject(vid, f"{name} · {label} · attempt {attempt}",
                               _join(f"{name}, {label}", seen.get(vid) or prompt), path, cid))
        return out
    if subject_type == "tag":
        with session_scope() as s:
            q = "select id, name, description from tag_concept" + (" where id = any(:ids)" if ids is not None else "")
            return [Subject(tid, name, _join(name, desc))
                    for tid, name, desc in s.execute(sa.text(q + " order by id"), {"ids": ids}).all()]
    raise ValidationError(f"Unknown subject type '{subject_type}'.")


def contents(subs: list[Subject], space: str) -> dict[int, str]:
    """What is embedded for each subject in `space`: text, or the image's media path."""
    if SPACE_CLASSES[space].kind == "image":
        return {s.id: s.image_path for s in subs if s.image_path}
    return {s.id: s.text for s in subs}


def content_hash(space: str, model_id: str, content: str) -> str:
    return hashlib.sha256(f"{space}\x1f{model_id}\x1f{content}".encode()).hexdigest()


def vec_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in v.tolist()) + "]"


# ---------------------------------------------------------------- embedding
@dataclass
class EmbedReport:
    considered: int = 0
    embedded: int = 0
    unchanged: int = 0
    failed: int = 0
    model_calls: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: "EmbedReport") -> "EmbedReport":
        for name in ("considered", "embedded", "unchanged", "failed", "model_calls"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors
        return self


def embed_contents(*, subject_type: str, items: dict[int, str], space: str) -> EmbedReport:
    """Embed the subjects whose content changed, chunk by chunk (hash check right before each model call)."""
    emb = get_embedder(space)
    rep = EmbedReport()
    ids = list(items)
    for start in range(0, len(ids), CHUNK):
        rep.add(_embed_chunk(subject_type, {i: items[i] for i in ids[start:start + CHUNK]}, space, emb))
    return rep


def _embed_chunk(subject_type: str, items: dict[int, str], space: str, emb: Embedder) -> EmbedReport:
    hashes = {sid: content_hash(space, emb.model_id, c) for sid, c in items.items()}
    with session_scope() as s:
        existing = {r.subject_id: r for r in s.execute(
            sa.text("select subject_id, content_hash, status from embedding where subject_type=:t and space=:s "
                    "and vector is not null and subject_id = any(:ids)"),
            {"t": subject_type, "s": space, "ids": list(items)}).all()}
    same = [sid for sid in items if sid in existing and existing[sid].content_hash == hashes[sid]]
    todo = [sid for sid in items if sid not in same]
    requeued = [sid for sid in same if existing[sid].status != "current"]
    if requeued:  # queued (or failed) for content that is already embedded: nothing to call the model for
        _set_current(subject_type, space, requeued)
    calls_before = emb.calls
    rep = EmbedReport(considered=len(items), unchanged=len(same))
    if not todo:
        return rep
    try:
        vectors = _checked(emb, [items[sid] for sid in todo])
    except Exception as err:  # provider/model/file failure: keep old vectors, record the error per subject
        if emb.kind == "image" and len(todo) > 1:  # one unreadable file must not fail the other images
            for sid in todo:
                rep.add(_embed_chunk(subject_type, {sid: items[sid]}, space, emb))
            rep.considered -= len(todo)
            rep.model_calls = emb.calls - calls_before
            return rep
        msg = str(err) or err.__class__.__name__
        log.warning("embedding %d %s subjects in %s failed: %s", len(todo), subject_type, space, msg)
        _record_failure(subject_type, space, emb, todo, msg)
        rep.failed += len(todo)
        rep.errors.append(msg)
    else:
        _store(subject_type, space, emb, todo, vectors, hashes)
        rep.embedded += len(todo)
    rep.model_calls = emb.calls - calls_before
    return rep


def _checked(emb: Embedder, batch: list[str]) -> np.ndarray:
    vectors = emb.embed(batch)
    if vectors.shape != (len(batch), emb.dims) or not np.isfinite(vectors).all():
        raise ValueError(f"model returned shape {vectors.shape}, expected ({len(batch)}, {emb.dims})")
    if (np.linalg.norm(vectors, axis=1) == 0).any():
        raise ValueError("model returned an all-zero vector (cosine distance is undefined for it)")
    return vectors


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
             "v": vec_literal(vec)} for sid, vec in zip(ids, vectors)])


def _set_current(subject_type: str, space: str, ids: list[int]) -> None:
    with session_scope() as s:
        s.execute(sa.text("update embedding set status='current', error=null, updated_at=now() "
                          "where subject_type=:t and space=:s and subject_id = any(:ids)"),
                  {"t": subject_type, "s": space, "ids": ids})


def _record_failure(subject_type, space, emb, ids, error: str) -> None:
    with session_scope() as s:
        s.execute(sa.text("""
            insert into embedding (subject_type, subject_id, space, model_id, dims, status, error, updated_at)
            values (:t, :sid, :s, :m, :d, 'failed', :e, now())
            on conflict (subject_type, subject_id, space) do update set
                status = 'failed', error = excluded.error, updated_at = now()
        """), [{"t": subject_type, "sid": sid, "s": space, "m": emb.model_id, "d": emb.dims, "e": error[:2000]}
               for sid in ids])


def mark_queued(*, subject_type: str, ids: list[int], spaces: list[str] | None = None, session=None) -> None:
    """Add subjects to the pending set: 'queued' rows, shown on the status page as soon as a job is requested
    (the old vector stays searchable) and picked up by the next `embed_pending` job. With `session` the rows
    are written in the caller's transaction (a person's request commits with its audit row)."""
    if not ids:
        return
    if session is None:
        with session_scope() as s:
            return mark_queued(subject_type=subject_type, ids=ids, spaces=spaces, session=s)
    for space in spaces or spaces_for(subject_type):
        session.execute(sa.text("""
            insert into embedding (subject_type, subject_id, space, model_id, dims, status, updated_at)
            select :t, sid, :s, :m, :d, 'queued', now() from unnest(cast(:ids as int[])) as sid
            on conflict (subject_type, subject_id, space) do update set status = 'queued', updated_at = now()
        """), {"t": subject_type, "s": space, "m": get_embedder(space).model_id, "d": dims_of(space),
               "ids": ids})


PENDING_BATCH = 2000  # subjects per embed_pending job; a longer backlog continues in a follow-up job


def embed_pending(*, limit: int = PENDING_BATCH) -> tuple[EmbedReport, bool]:
    """Embed the pending set (oldest first, up to `limit` subjects), one embed_subjects call per type.

    Why a pending set instead of one job per subject: the model is called once per chunk of 256 texts
    instead of once per finished slot, and tags and drift are refreshed once per batch. Returns the report
    and whether subjects were left over for another job.
    """
    with session_scope() as s:
        rows = s.execute(sa.text(
            "select subject_type, subject_id, array_agg(space) from embedding where status = 'queued' "
            "group by subject_type, subject_id order by min(updated_at), subject_id limit :n"), {"n": limit}).all()
    by_type: dict[str, tuple[list[int], set[str]]] = {}
    for subject_type, sid, spaces in rows:
        ids, sp = by_type.setdefault(subject_type, ([], set()))
        ids.append(sid)
        sp.update(spaces)
    rep = EmbedReport()
    for subject_type, (ids, spaces) in by_type.items():
        rep.add(embed_subjects(subject_type=subject_type, ids=ids, spaces=sorted(spaces)))
    return rep, len(rows) == limit


def embed_subjects(*, subject_type: str, ids: list[int] | None = None, spaces: list[str] | None = None) -> EmbedReport:
    """Embed (where changed) in every space of the type, then refresh what depends on the vectors:
    semantic tags and, for images, the identity-drift scores of the affected characters."""
    from core import tags
    from core.vectors import drift

    if subject_type in IMAGE_TYPES and ids is not None:  # new images only: a backfill never buys captions
        caption_missing(subject_type=subject_type, ids=ids)
    subs = subjects(subject_type=subject_type, ids=ids)
    rep = EmbedReport()
    for space in spaces or spaces_for(subject_type):
        rep.add(embed_contents(subject_type=subject_type, items=contents(subs, space), space=space))
    if ids is not None:  # subjects that vanished or have no image (e.g. a failed slot) stay queued otherwise
        gone = sorted(set(ids) - {s.id for s in subs})
        if gone:
            with session_scope() as s:
                s.execute(sa.text("delete from embedding where subject_type=:t and subject_id = any(:ids) "
                                  "and vector is null"), {"t": subject_type, "ids": gone})
    if subject_type == "tag":
        tags.assign_all()
    else:
        tags.assign(subject_type=subject_type, ids=[s.id for s in subs])
    if subject_type in IMAGE_TYPES:
        drift.update(character_ids=sorted({s.character_id for s in subs if s.character_id}))
    return rep


def embed_characters(*, ids: list[int] | None = None, space: str | None = None) -> EmbedReport:
    return embed_subjects(subject_type="character", ids=ids, spaces=[space] if space else None)


def backfill() -> EmbedReport:
    """Everything missing, stale or failed, every type and space (unchanged subjects cost nothing)."""
    rep = EmbedReport()
    for subject_type in ("tag",) + SUBJECT_TYPES:
        rep.add(embed_subjects(subject_type=subject_type))
    return rep


def images_behind() -> int:
    """Images with no vector yet in the visual image space: after an upgrade that makes image-learned the
    default, every existing reference and variation (their other spaces are untouched)."""
    from core.vectors.embedding_spaces import image_space

    with session_scope() as s:
        return s.execute(sa.text("""
            select (select count(*) from reference_image r where not exists (select 1 from embedding e
                        where e.subject_type = 'reference' and e.subject_id = r.id and e.space = :s))
                 + (select count(*) from variation v where v.status = 'completed' and v.path is not null
                    and not exists (select 1 from embedding e where e.subject_type = 'variation'
                        and e.subject_id = v.id and e.space = :s))"""), {"s": image_space()}).scalar_one()


def queue_backfill_if_images_behind() -> int | None:
    """Called when a worker starts: queue the normal backfill (one at a time, queueing lock) when images
    lack a vector in the image space, so an existing install re-embeds in the background, no page waits."""
    from core import jobs

    behind = images_behind()
    if not behind:
        return None
    log.info("%d images have no vector in the image space yet: queueing the embedding backfill", behind)
    return jobs.defer_embed_backfill()
