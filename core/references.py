"""Reference images of a character: verified, re-encoded, stored atomically, then recorded.

Order matters: file and thumbnail are written first, the row commits second; when anything
fails the files this attempt wrote are removed again, so there is never a row without a file
nor a file without a row. Every attempt writes under its own paths (digest + random token):
two uploads of the same bytes never share a file, so one attempt's cleanup can never delete
the file the other attempt's row points at, and a delete racing an upload of the same image
cannot either. Uploads to one character are serialised by an advisory lock, so the second of
two identical uploads meets the first one's committed row and hears "already a reference".
"""
from __future__ import annotations

import logging
import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core import media
from core.errors import ConflictError, DuplicateError, NotFoundError, ValidationError, require
from core.media.images import check_filename, prepare_for_storage
from core.settings import get_settings
from core.team.access import authorize
from core.team.audit import record, snapshot
from core.text import CAPTION_MAX, clean_text
from core.media.urlfetch import fetch_image_bytes
from db.engine import session_scope
from db.models import Character, ReferenceImage, utcnow

log = logging.getLogger(__name__)
_LOCK_CLASS = 7_310_001  # pg_advisory_xact_lock(class, character_id): reference uploads of one character
# what the audit trail keeps of a reference image; `character_id` lets a character's history find a deleted one
AUDIT_FIELDS = ("character_id", "original_filename", "caption", "alt_text", "source", "source_url", "sha256",
                "width", "height", "mime", "path")
TEXT_FIELDS = ("caption", "alt_text")


def _label(character_name: str, ref: ReferenceImage) -> str:
    return f"{character_name} · {ref.original_filename or ref.source_url or 'reference image'}"


def _check_role(editor: str, action: str) -> None:
    """An early refusal before costly work (decoding an upload, fetching a URL); the write re-checks."""
    with session_scope() as s:
        authorize(s, who=editor, action=action)


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
    _check_role(editor, "reference.add")  # before decoding the image
    settings = get_settings()
    stored = prepare_for_storage(
        data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels,
        thumb_size=settings.thumbnail_size, filename=filename, claimed_mime=claimed_mime,
    )
    filename = check_filename(filename)
    digest = media.sha256_hex(stored.data)  # of what is stored (and served back), not of the upload
    written: list[str] = []
    with session_scope() as s:
        role = authorize(s, who=editor, action="reference.add")
        ch = require(s.get(Character, character_id), f"Character #{character_id} does not exist.")
        if ch.archived:
            raise ValidationError(f"'{ch.name}' is archived; restore it before adding reference images.")
        s.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_CLASS, character_id)))
        dup = s.exec(
            select(ReferenceImage).where(ReferenceImage.character_id == character_id, ReferenceImage.sha256 == digest)
        ).first()
        if dup:
            raise DuplicateError(f"This image is already a reference of '{ch.name}' (added {dup.created_at:%Y-%m-%d}).")
        base = f"{media.character_dir(ch.slug)}/references/{digest[:16]}-{secrets.token_hex(4)}"
        rel, thumb = f"{base}.{stored.info.extension}", f"{base}.thumb.webp"
        try:
            position = s.execute(
                sa.select(sa.func.coalesce(sa.func.max(ReferenceImage.position), -1) + 1)
                .where(ReferenceImage.character_id == character_id)
            ).scalar_one()
            for path, payload in ((rel, stored.data), (thumb, stored.thumbnail)):
                media.write_atomic(path, payload)
                written.append(path)
            ref = ReferenceImage(
                character_id=character_id, path=rel, thumb_path=thumb, sha256=digest, width=stored.info.width,
                height=stored.info.height, mime=stored.info.mime, byte_size=stored.info.byte_size, caption=caption,
                alt_text=alt_text, source=source, source_url=source_url, original_filename=filename or "",
                position=position, created_by=editor, import_note=" ".join(stored.notes),
            )
            s.add(ref)
            s.flush()
            s.refresh(ref)
            record(s, who=editor, role=role, action="reference.add", entity="reference", entity_id=ref.id,
                   before=None, after=snapshot(ref, AUDIT_FIELDS), label=_label(ch.name, ref))
            s.commit()
        except IntegrityError as err:
            s.rollback()
            media.remove(*written)
            if getattr(getattr(err.orig, "diag", None), "constraint_name", None) == "uq_reference_image_character_sha":
                raise DuplicateError(f"This image was just added to '{ch.name}' by someone else.") from None
            raise
        except BaseException:
            s.rollback()
            media.remove(*written)
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
    """Fetch (only for someone who may add references) and store like an upload."""
    _check_role(editor, "reference.add")  # a viewer cannot make the server fetch URLs
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


def update_reference_text(
    *, reference_id: int, expected_version: int, caption: str, alt_text: str, editor: str,
) -> ReferenceImage:
    """Save caption and alt text if nobody saved this image's text since the form was loaded.

    `expected_version` is the version the editor's form showed; a newer version in the database means
    someone else saved in between and ConflictError names them (nothing is overwritten)."""
    caption, alt_text = clean_captions(caption, alt_text)
    with session_scope() as s:
        role = authorize(s, who=editor, action="reference.update")
        current = s.get(ReferenceImage, reference_id)
        before = snapshot(current, TEXT_FIELDS) if current is not None else None
        row = s.execute(
            sa.update(ReferenceImage)
            .where(ReferenceImage.id == reference_id, ReferenceImage.version == expected_version)
            .values(
                caption=caption, alt_text=alt_text, version=ReferenceImage.version + 1, updated_at=utcnow(),
                updated_by=editor,
            ).returning(ReferenceImage.id)
        ).first()
        if row is None:
            current = s.get(ReferenceImage, reference_id)
            if current is None:
                raise NotFoundError(f"Reference image #{reference_id} was deleted by someone else.")
            raise ConflictError(
                f"The caption of this image was changed by {current.updated_by or 'someone'}"
                f"{f' at {current.updated_at:%Y-%m-%d %H:%M:%S} UTC' if current.updated_at else ''} "
                f"(version {current.version}, your form has version {expected_version}). Nothing was overwritten: "
                "reload to see their text, then apply yours again."
            )
        ref = require(s.get(ReferenceImage, reference_id), f"Reference image #{reference_id} no longer exists.")
        s.refresh(ref)
        name = s.execute(sa.select(Character.name).where(Character.id == ref.character_id)).scalar_one()
        record(s, who=editor, role=role, action="reference.update", entity="reference", entity_id=reference_id,
               before=before, after=snapshot(ref, TEXT_FIELDS), label=_label(name, ref))
        s.commit()
    _request_embedding(reference_id)
    return ref


def delete_reference(*, reference_id: int, editor: str) -> None:
    """Row first, files after the commit: a failed delete leaves everything in place.

    The audit row keeps the image's file name, caption and character as `before`, so the character's
    history still says what was deleted once the row and the file are gone."""
    with session_scope() as s:
        role = authorize(s, who=editor, action="reference.delete")
        ref = require(s.get(ReferenceImage, reference_id), f"Reference image #{reference_id} no longer exists.")
        paths, character_id = (ref.path, ref.thumb_path), ref.character_id
        name = s.execute(sa.select(Character.name).where(Character.id == character_id)).scalar_one()
        record(s, who=editor, role=role, action="reference.delete", entity="reference", entity_id=reference_id,
               before=snapshot(ref, AUDIT_FIELDS), after=None, label=_label(name, ref))
        s.delete(ref)
        s.execute(sa.text("delete from embedding where subject_type = 'reference' and subject_id = :i"),
                  {"i": reference_id})
        s.execute(sa.text("delete from subject_tag where subject_type = 'reference' and subject_id = :i"),
                  {"i": reference_id})
    media.remove(*paths)
    from core.vectors import drift

    drift.update(character_ids=[character_id])
