"""What a subject (character, reference image, variation) is, for display.

Search results and the map both show subjects by id; this is the one place that
turns ids into names, shot labels, thumbnails, styles and review states — one
query per subject type, whatever the number of ids.
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from core.errors import ValidationError
from core.shots import shot_list
from db.engine import session_scope


@dataclass(frozen=True)
class SubjectInfo:
    character_id: int
    name: str
    slot: str  # shot label for variations, "reference" for references, "" for characters
    thumb: str  # media path ("" when there is none yet); characters use their avatar
    style: str
    review: str  # variations only
    run: str  # variations only
    traits: tuple[str, ...]
    caption: str  # references only
    archived: bool = False  # the character is archived (the map marks it)


_SQL = {
    "character": "select c.id, c.id, c.name, '', '', coalesce(st.name, 'no style'), '', '', c.traits, '', c.archived "
                 "from character c left join style st on st.id = c.style_id where c.id = any(:ids)",
    "reference": "select r.id, r.character_id, c.name, 'reference', r.thumb_path, coalesce(st.name, 'no style'), "
                 "'', '', c.traits, r.caption, c.archived from reference_image r join character c on c.id = r.character_id "
                 "left join style st on st.id = c.style_id where r.id = any(:ids)",
    "variation": "select v.id, v.character_id, c.name, v.slot_key, coalesce(v.thumb_path, ''), "
                 "coalesce(st.name, 'no style'), v.review_status, 'run #' || v.run_id, c.traits, '', c.archived "
                 "from variation v join character c on c.id = v.character_id "
                 "left join style st on st.id = c.style_id where v.id = any(:ids)",
}


def describe(*, subject_type: str, ids: list[int]) -> dict[int, SubjectInfo]:
    """Display facts per id; ids deleted since they were embedded or mapped are simply absent."""
    if subject_type not in _SQL:
        raise ValidationError(f"Unknown subject type '{subject_type}'.")
    if not ids:
        return {}
    with session_scope() as s:
        rows = s.execute(sa.text(_SQL[subject_type]), {"ids": list(ids)}).all()
    labels = {x.key: x.label for x in shot_list()}
    avatars: dict[int, str] = {}
    if subject_type == "character":
        from core.review import avatar_paths

        avatars = avatar_paths([r[0] for r in rows])
    return {sid: SubjectInfo(cid, name, labels.get(slot, slot) if subject_type == "variation" else slot,
                             avatars.get(sid, "") if subject_type == "character" else (thumb or ""),
                             style, review, run, tuple(traits or ()), caption or "", bool(archived))
            for sid, cid, name, slot, thumb, style, review, run, traits, caption, archived in rows}
