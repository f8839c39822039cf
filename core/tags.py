"""Semantic tags: an editable list of concepts, embedded like everything else.

A tag's description is embedded in the text space; each character and image
gets its nearest tags above a similarity threshold (at most a few, so tags
stay meaningful). Editors can also apply a tag by hand (space 'manual'); those
rows survive every automatic recomputation.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from core.embedding_spaces import dims_of, text_space
from core.errors import DuplicateError, NotFoundError, ValidationError
from core.text import NOTE_MAX, clean_line, clean_text
from db.engine import session_scope

log = logging.getLogger(__name__)

TAG_THRESHOLD = 0.3  # MiniLM cosine: above this a concept clearly relates to the subject's text
MAX_AUTO_TAGS = 3
TAG_MARGIN = 0.06  # ... and within this of the subject's best tag, so a generic concept doesn't tag everyone
MANUAL = "manual"
STARTER_FILE = Path(__file__).resolve().parent.parent / "prompts" / "tag_concepts.json"
MAX_NAME = 60


@dataclass(frozen=True)
class Tag:
    id: int
    name: str
    description: str
    subjects: int
    embedded: bool


def list_tags() -> list[Tag]:
    with session_scope() as s:
        rows = s.execute(sa.text("""
            select t.id, t.name, t.description,
                   (select count(*) from subject_tag st where st.tag_id = t.id) as n,
                   exists (select 1 from embedding e where e.subject_type = 'tag' and e.subject_id = t.id
                           and e.vector is not null) as embedded
            from tag_concept t order by t.name""")).all()
    return [Tag(*r) for r in rows]


DESCRIPTION_MAX = NOTE_MAX


def _clean_name(name: str) -> str:
    name = clean_line(name, field="Tag name", limit=10**6).lower()
    if not name:
        raise ValidationError("A tag needs a name.")
    if len(name) > MAX_NAME:
        raise ValidationError(f"Tag names are at most {MAX_NAME} characters (this one has {len(name)}).")
    return name


def _clean_description(description: str) -> str:
    return clean_text(description, field="Tag description", limit=DESCRIPTION_MAX, multiline=True)


def _insert(s, name: str, description: str, editor: str) -> int | None:
    return s.execute(sa.text("insert into tag_concept (name, description, created_by) values (:n, :d, :e) "
                             "on conflict (name) do nothing returning id"),
                     {"n": name, "d": description.strip(), "e": editor}).scalar()


def create_tag(*, name: str, description: str = "", editor: str, embed: bool = True) -> int:
    """A new concept; it is embedded (and assigned to the cast) by a background job."""
    name, description = _clean_name(name), _clean_description(description)
    with session_scope() as s:
        tag_id = _insert(s, name, description, editor)
    if tag_id is None:
        raise DuplicateError(f"There is already a tag called '{name}'.")
    if embed:
        _request([tag_id])
    return tag_id


def update_tag(*, tag_id: int, name: str, description: str) -> None:
    name, description = _clean_name(name), _clean_description(description)
    with session_scope() as s:
        clash = s.execute(sa.text("select 1 from tag_concept where name = :n and id <> :i"),
                          {"n": name, "i": tag_id}).scalar()
        if clash:
            raise DuplicateError(f"There is already a tag called '{name}'.")
        if not s.execute(sa.text("update tag_concept set name = :n, description = :d where id = :i"),
                         {"n": name, "d": description.strip(), "i": tag_id}).rowcount:
            raise NotFoundError("That tag was deleted in the meantime.")
    _request([tag_id])


def delete_tag(*, tag_id: int) -> None:
    with session_scope() as s:
        s.execute(sa.text("delete from embedding where subject_type = 'tag' and subject_id = :i"), {"i": tag_id})
        s.execute(sa.text("delete from tag_concept where id = :i"), {"i": tag_id})


def load_starter_tags(*, editor: str, path: Path = STARTER_FILE) -> int:
    """The starter concepts from prompts/tag_concepts.json that don't exist yet; returns how many were added."""
    spec = json.loads(path.read_text())["tags"]
    with session_scope() as s:
        added = [tid for t in spec if (tid := _insert(s, _clean_name(t["name"]), t.get("description", ""), editor))]
    if added:
        _request(added)
    return len(added)


def _request(tag_ids: list[int]) -> None:
    from core import jobs

    jobs.request_embedding(subject_type="tag", ids=tag_ids)


def apply_tag(*, subject_type: str, subject_ids: list[int], tag_name: str, editor: str) -> int:
    """Tag subjects by hand (creating the concept if it is new); returns how many got the tag."""
    name = _clean_name(tag_name)
    if not subject_ids:
        raise ValidationError("Select something to tag first.")
    with session_scope() as s:
        created = _insert(s, name, "", editor)
        tag_id = created or s.execute(sa.text("select id from tag_concept where name = :n"), {"n": name}).scalar_one()
        n = s.execute(sa.text("""
            insert into subject_tag (subject_type, subject_id, tag_id, space, similarity)
            select :t, sid, :tag, :m, 1.0 from unnest(cast(:ids as int[])) as sid
            on conflict (subject_type, subject_id, tag_id) do update set space = :m, similarity = 1.0
        """), {"t": subject_type, "tag": tag_id, "m": MANUAL, "ids": list(subject_ids)}).rowcount
    if created:
        _request([created])
    log.info("%s tagged %d %s subjects '%s'", editor, n, subject_type, name)
    return n


def tags_for(*, subject_type: str, subject_ids: list[int]) -> dict[int, list[str]]:
    """Each subject's tags, strongest first (manual ones count as strongest)."""
    with session_scope() as s:
        rows = s.execute(sa.text("""
            select st.subject_id, t.name from subject_tag st join tag_concept t on t.id = st.tag_id
            where st.subject_type = :t and st.subject_id = any(:ids) order by st.subject_id, st.similarity desc
        """), {"t": subject_type, "ids": list(subject_ids)}).all()
    out: dict[int, list[str]] = {}
    for sid, name in rows:
        out.setdefault(sid, []).append(name)
    return out


def assign(*, subject_type: str, ids: list[int] | None = None) -> None:
    """Recompute the automatic tags of some subjects (all of the type when ids is None)."""
    space = text_space()
    d = dims_of(space)
    dist = f"cosine_distance(e.vector::vector({d}), t.vector::vector({d}))"
    scope, e_scope = ("", "") if ids is None else (" and subject_id = any(:ids)", " and e.subject_id = any(:ids)")
    params = {"s": space, "t": subject_type, "ids": ids, "th": TAG_THRESHOLD, "n": MAX_AUTO_TAGS,
              "margin": TAG_MARGIN}
    with session_scope() as s:
        s.execute(sa.text(f"delete from subject_tag where space = :s and subject_type = :t{scope}"), params)
        s.execute(sa.text(f"""
            insert into subject_tag (subject_type, subject_id, tag_id, space, similarity)
            select subject_type, subject_id, tag_id, :s, sim from (
                select e.subject_type, e.subject_id, t.subject_id as tag_id, 1 - {dist} as sim,
                       row_number() over (partition by e.subject_id order by {dist}) as rn,
                       max(1 - {dist}) over (partition by e.subject_id) as best
                from embedding e
                join embedding t on t.space = e.space and t.subject_type = 'tag' and t.vector is not null
                where e.space = :s and e.subject_type = :t and e.vector is not null{e_scope}
            ) x where sim >= :th and sim >= best - :margin and rn <= :n
            on conflict (subject_type, subject_id, tag_id) do nothing
        """), params)


def assign_all() -> None:
    from core.embeddings import SUBJECT_TYPES

    for subject_type in SUBJECT_TYPES:
        assign(subject_type=subject_type)
