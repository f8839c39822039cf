"""Reference images of a character: verified, stored atomically, then recorded.

Order matters: file and thumbnail are written first, the row commits second;
when the row cannot commit the files are removed again, so there is never a
row without a file nor a file without a row.
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core import media
from core.errors import DuplicateError, ValidationError, require
from core.images import inspect_image, make_thumbnail
from core.settings import get_settings
from core.text import CAPTION_MAX, clean_text
from core.urlfetch import fetch_image_bytes
from db.engine import session_scope
from db.models import Character, ReferenceImage

log = logging.getLogger(__name__)


def list_references(*, character_id: int) -> list[ReferenceImage]:
    with session_scope() as s:
        q = select(ReferenceImage).where(ReferenceImage.character_id == character_id)
        return list(s.exec(q.order_by(ReferenceImage.position, ReferenceImage.id)).all())


def clean_captions(caption: str | None, alt_text: str | None) -> tuple[str, str]:
    """Caption and alt text under CAPTION_MAX, without control or bidi override characters (refused, not cut)."""
    return (clean_text(caption, field="Caption", limit=CAPTION_MAX, multiline=True),
            clean_text(alt_text, field="Alt text", limit=CAPTION_MAX, multiline=True))


def _store(
    *, character_id: int, data: bytes, filename: str | None, claimed_mime: str | None, source: str,
    source_url: str | None, editor: str, caption: str = "", alt_text: str = "",
) -> ReferenceImage:
    caption, alt_text = clean_captions(caption, alt_text)  # before any file is written
    settings = get_settings()
    info = inspect_image(
        data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
        filename=filename, claimed_mime=claimed_mime,
    )
    digest = media.sha256_hex(data)
    with session_scope() as s:
        ch = require(s.get(Character, character_id), f"Character #{character_id} does not exist.")
        if ch.archived:
            raise ValidationError(f"'{ch.name}' is archived; restore it before adding reference images.")
        dup = s.exec(
            select(ReferenceImage).where(ReferenceImage.character_id == character_id, ReferenceImage.sha256 == digest)
        ).first()
        if dup:
            raise DuplicateError(f"This image is already a reference of '{ch.name}' (added {dup.created_at:%Y-%m-%d}).")
        base = f"{media.character_dir(ch.slug)}/references/{digest[:16]}"
        rel, thumb = f"{base}.{info.extension}", f"{base}.thumb.webp"
        position = s.execute(
            sa.select(sa.func.coalesce(sa.func.max(ReferenceImage.position), -1) + 1)
            .where(ReferenceImage.character_id == character_id)
        ).scalar_one()
        media.write_atomic(rel, data)
        media.write_atomic(thumb, make_thumbnail(data, size=settings.thumbnail_size))
        ref = ReferenceImage(
            character_id=character_id, path=rel, thumb_path=thumb, sha256=digest, width=info.width,
            height=info.height, mime=info.mime, byte_size=info.byte_size, caption=caption,
            alt_text=alt_text, source=source, source_url=source_url,
            original_filename=(filename or "")[:255], position=position, created_by=editor,
        )
        try:
            s.add(ref)
            s.flush()
            s.refresh(ref)
            s.commit()
        except IntegrityError as err:
            s.rollback()
            if getattr(getattr(err.orig, "diag", None), "constraint_name", None) == "uq_reference_image_character_sha":
                # Same digest → same path: the files belong to the row that won the race; keep them.
                raise DuplicateError(f"This image was just added to '{ch.name}' by someone else.") from None
            media.remove(rel, thumb)
            raise
        except BaseException:
            s.rollback()
            media.remove(rel, thumb)
            raise
    _request_embedding(ref.id)
    return ref


def _request_embedding(reference_id: int) -> None:
    from core import jobs

    jobs.request_embedding(subject_type="reference", ids=[reference_id])


def add_reference_upload(
    *, character_id: int, data: bytes, filename: str, claimed_mime: str | None, editor: str,
    caption: str = "", alt_text: str = "",
) -> ReferenceImage:
    return _store(
        character_id=character_id, data=data, filename=filename, claimed_mime=claimed_mime, source="upload",
        source_url=None, editor=editor, caption=caption, alt_text=alt_text,
    )


def add_reference_url(*, character_id: int, url: str, editor: str, caption: str = "", alt_text: str = "") -> ReferenceImage:
    settings = get_settings()
    fetched = fetch_image_bytes(
        url, timeout_s=settings.url_fetch_timeout_s, max_bytes=settings.url_fetch_max_bytes,
        allow_private=settings.allow_private_urls,
    )
    # The URL's path rarely names the format honestly; the content decides, checked against nothing.
    return _store(
        character_id=character_id, data=fetched.data, filename=None, claimed_mime=None, source="url",
        source_url=fetched.final_url, editor=editor, caption=caption, alt_text=alt_text,
    )


def update_reference_text(*, reference_id: int, caption: str, alt_text: str) -> ReferenceImage:
    caption, alt_text = clean_captions(caption, alt_text)
    with session_scope() as s:
        ref = require(s.get(ReferenceImage, reference_id), f"Reference image #{reference_id} no longer exists.")
        ref.caption, ref.alt_text = caption, alt_text
        s.add(ref)
        s.flush()
        s.refresh(ref)
    _request_embedding(reference_id)
    return ref


def delete_reference(*, reference_id: int) -> None:
    """Row first, files after the commit: a failed delete leaves everything in place."""
    with session_scope() as s:
        ref = require(s.get(ReferenceImage, reference_id), f"Reference image #{reference_id} no longer exists.")
        paths, character_id = (ref.path, ref.thumb_path), ref.character_id
        s.delete(ref)
        s.execute(sa.text("delete from embedding where subject_type = 'reference' and subject_id = :i"),
                  {"i": reference_id})
        s.execute(sa.text("delete from subject_tag where subject_type = 'reference' and subject_id = :i"),
                  {"i": reference_id})
    media.remove(*paths)
    from core import drift

    drift.update(character_ids=[character_id])
