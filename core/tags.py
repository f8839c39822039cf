"""Semantic tags: an editable list of concepts, embedded like everything else.

A tag's description is embedded in the text space; each character and image
gets the tags that stand out for it: calibrated against each tag's background
over the whole subject type (see `choose_tags`), so a tag marks a minority
that fits it, and at most a few per subject. Editors can also apply a tag by
hand (space 'manual'); those rows survive every automatic recomputation.
`coverage` says what share of each type a tag marks (the Tags tab shows it).
Tag definitions are shared vocabulary: creating, editing, deleting and loading the starter
list need the admin role, and each tag written leaves one audit row (name, description).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from core.vectors.embedding_spaces import dims_of, text_space
from core.errors import DuplicateError, NotFoundError, ValidationError
from core.team.access import authorize
from core.team.audit import record
from core.text import NOTE_MAX, clean_line, clean_text
from db.engine import session_scope

log = logging.getLogger(__name__)

TAG_THRESHOLD = 0.25  # MiniLM cosine: below this a concept does not relate to the subject's text at all
MAX_AUTO_TAGS = 3
Z_MIN = 1.5  # standard deviations above the tag's background: at most 1 / (1 + 1.5²) ≈ 31 % of subjects qualify
Z_MARGIN = 1.0  # ... and within this many of the subject's best tag (a margin over its other tags)
MIN_BACKGROUND = 8  # subjects of a type needed before the background means anything
TAG_MARGIN = 0.06  # small sets: raw similarity within this of the subject's best tag
MANUAL = "manual"
# what apply_tag may tag, and the table holding each (core.vectors.embeddings.SUBJECT_TYPES)
SUBJECT_TABLES = {"character": "character", "reference": "reference_image", "variation": "variation"}
STARTER_FILE = Path(__file__).resolve().parent.parent / "prompts" / "tag_concepts.json"
MAX_NAME = 60


@dataclass(frozen=True)
class Tag:
    id: int
    name: str
    description: str
    subjects: int
    embedded: bool
    coverage: dict[str, tuple[int, int]] = field(default_factory=dict)  # subject type -> (tagged, embedded in all)

    def coverage_text(self) -> str:
        """'2 of 12 characters (17 %) · …': a tag on most of a type means nothing, this shows it at a glance."""
        parts = [f"{n} of {total} {LABELS.get(t, t)} ({n / total:.0%})" for t, (n, total) in self.coverage.items() if total]
        return " · ".join(parts) or "—"


LABELS = {"character": "characters", "reference": "references", "variation": "variations"}


def list_tags() -> list[Tag]:
    with session_scope() as s:
        rows = s.execute(sa.text("""
            select t.id, t.name, t.description,
                   (select count(*) from subject_tag st where st.tag_id = t.id) as n,
                   exists (select 1 from embedding e where e.subject_type = 'tag' and e.subject_id = t.id
                           and e.vector is not null) as embedded
            from tag_concept t order by t.name""")).all()
        totals = dict(s.execute(sa.text(
            "select subject_type, count(*) from embedding where space = :s and vector is not null "
            "and subject_type <> 'tag' group by subject_type"), {"s": text_space()}).all())
        counts: dict[int, dict[str, int]] = {}
        for tag_id, subject_type, n in s.execute(sa.text(
                "select tag_id, subject_type, count(*) from subject_tag group by tag_id, subject_type")).all():
            counts.setdefault(tag_id, {})[subject_type] = n
    return [Tag(*r, coverage={t: (counts.get(r[0], {}).get(t, 0), totals[t]) for t in LABELS if totals.get(t)})
            for r in rows]


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


def _definition(s, tag_id: int) -> dict[str, str] | None:
    """A tag's auditable fields as stored now (None when it does not exist)."""
    row = s.execute(sa.text("select name, description from tag_concept where id = :i"), {"i": tag_id}).first()
    return None if row is None else {"name": row.name, "description": row.description}


def create_tag(*, name: str, description: str = "", editor: str, embed: bool = True) -> int:
    """A new concept (tag.create, admin); it is embedded (and assigned to the cast) by a background job."""
    name, description = _clean_name(name), _clean_description(description)
    with session_scope() as s:
        role = authorize(s, who=editor, action="tag.create")
        tag_id = _insert(s, name, description, editor)
        if tag_id is None:
            raise DuplicateError(f"There is already a tag called '{name}'.")
        record(s, who=editor, role=role, action="tag.create", entity="tag", entity_id=tag_id,
               after=_definition(s, tag_id), label=name)
    if embed:
        _request([tag_id])
    return tag_id


def update_tag(*, tag_id: int, name: str, description: str, editor: str) -> None:
    """Rename or redescribe a tag (tag.update, admin); its vector and assignments are recomputed in the background."""
    name, description = _clean_name(name), _clean_description(description)
    with session_scope() as s:
        role = authorize(s, who=editor, action="tag.update")
        before = _definition(s, tag_id)
        if before is None:
            raise NotFoundError("That tag was deleted in the meantime.")
        clash = s.execute(sa.text("select 1 from tag_concept where name = :n and id <> :i"),
                          {"n": name, "i": tag_id}).scalar()
        if clash:
            raise DuplicateError(f"There is already a tag called '{name}'.")
        if not s.execute(sa.text("update tag_concept set name = :n, description = :d where id = :i"),
                         {"n": name, "d": description.strip(), "i": tag_id}).rowcount:
            raise NotFoundError("That tag was deleted in the meantime.")
        record(s, who=editor, role=role, action="tag.update", entity="tag", entity_id=tag_id,
               before=before, after=_definition(s, tag_id), label=name)
    _request([tag_id])


def delete_tag(*, tag_id: int, editor: str) -> None:
    """Delete a tag with its vector and every assignment (tag.delete, admin); the audit row keeps what it was."""
    with session_scope() as s:
        role = authorize(s, who=editor, action="tag.delete")
        before = _definition(s, tag_id)
        if before is None:
            raise NotFoundError("That tag was deleted in the meantime.")
        s.execute(sa.text("delete from embedding where subject_type = 'tag' and subject_id = :i"), {"i": tag_id})
        s.execute(sa.text("delete from tag_concept where id = :i"), {"i": tag_id})
        record(s, who=editor, role=role, action="tag.delete", entity="tag", entity_id=tag_id, before=before,
               label=before["name"])


def load_starter_tags(*, editor: str, path: Path = STARTER_FILE) -> int:
    """The starter concepts from prompts/tag_concepts.json that don't exist yet; returns how many were added.

    Needs tag.create (admin). Like every bulk write here, one audit row per tag added (none when all exist)."""
    spec = json.loads(path.read_text())["tags"]
    with session_scope() as s:
        role = authorize(s, who=editor, action="tag.create")
        added = [tid for t in spec if (tid := _insert(s, _clean_name(t["name"]), t.get("description", ""), editor))]
        for tid in added:
            after = _definition(s, tid)
            record(s, who=editor, role=role, action="tag.create", entity="tag", entity_id=tid, after=after,
                   label=f"{after['name']} (starter list)")
    if added:
        _request(added)
    return len(added)


def _request(tag_ids: list[int]) -> None:
    from core import jobs

    jobs.request_embedding(subject_type="tag", ids=tag_ids)


def apply_tag(*, subject_type: str, subject_ids: list[int], tag_name: str, editor: str) -> int:
    """Tag subjects by hand (editor role; a tag that does not exist yet is created, which needs the admin
    role like any new tag); returns how many got the tag.

    One audit row per tagged subject (entity = the subject type), so a character's or image's history
    shows the tag; a created concept gets its own tag.create row."""
    from core.team.access import authorize
    from core.team.audit import record

    name = _clean_name(tag_name)
    table = SUBJECT_TABLES.get(subject_type) if isinstance(subject_type, str) else None
    if table is None:
        raise ValidationError(f"Only {', '.join(SUBJECT_TABLES)} can be tagged (not {str(subject_type)[:40]!r}).")
    if not subject_ids:
        raise ValidationError("Select something to tag first.")
    try:
        ids = sorted(set(int(i) for i in subject_ids))
    except (TypeError, ValueError):
        raise ValidationError("Subjects to tag are given by their numeric ids.") from None
    with session_scope() as s:
        role = authorize(s, who=editor, action="tag.apply")
        known = set(s.execute(sa.text(f"select id from {table} where id = any(cast(:ids as bigint[]))"),
                              {"ids": ids}).scalars())
        missing = [i for i in ids if i not in known]
        if missing:
            raise ValidationError(f"No {subject_type} with id {', '.join(map(str, missing[:5]))}"
                                  f"{' …' if len(missing) > 5 else ''} (deleted meanwhile?); nothing was tagged.")
        tag_id = s.execute(sa.text("select id from tag_concept where name = :n"), {"n": name}).scalar()
        created = None
        if tag_id is None:
            create_role = authorize(s, who=editor, action="tag.create")
            created = _insert(s, name, "", editor)
            tag_id = created or s.execute(sa.text("select id from tag_concept where name = :n"),
                                          {"n": name}).scalar_one()
            if created:
                record(s, who=editor, role=create_role, action="tag.create", entity="tag", entity_id=created,
                       label=name, after={"name": name, "description": ""})
        n = s.execute(sa.text("""
            insert into subject_tag (subject_type, subject_id, tag_id, space, similarity)
            select :t, sid, :tag, :m, 1.0 from unnest(cast(:ids as int[])) as sid
            on conflict (subject_type, subject_id, tag_id) do update set space = :m, similarity = 1.0
        """), {"t": subject_type, "tag": tag_id, "m": MANUAL, "ids": ids}).rowcount
        for sid in ids:
            record(s, who=editor, role=role, action="tag.apply", entity=subject_type, entity_id=sid,
                   label=name, after={"tag": name})
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


@dataclass(frozen=True)
class Background:
    """How close a tag is to the subjects of one type in general: the yardstick for 'close'."""

    mean: float
    sd: float
    n: int


def choose_tags(sims: dict[int, dict[int, float]], background: dict[int, Background]) -> dict[int, list[tuple[int, float]]]:
    """The calibrated rule: which tags each subject gets, strongest first, as (tag id, similarity).

    Raw cosine similarity says little on its own (a generic concept like "a villain" is 0.3 from almost any
    character text), so with a background of at least MIN_BACKGROUND subjects a tag is scored by how far it
    stands above its own background (z = (sim - mean) / sd) and needs z >= Z_MIN: by Cantelli's inequality at
    most 1 / (1 + Z_MIN²) of the subjects can pass, so a tag marks a minority. Within a subject, only tags
    within Z_MARGIN of its best z stay (a margin over its other tags). With fewer subjects there is no
    background to speak of: raw similarity within TAG_MARGIN of the subject's best tag decides, as before.
    """
    out: dict[int, list[tuple[int, float]]] = {}
    for sid, by_tag in sims.items():
        scored = []
        for tag, sim in by_tag.items():
            bg = background.get(tag)
            calibrated = bg is not None and bg.n >= MIN_BACKGROUND and bg.sd > 1e-9
            score = (sim - bg.mean) / bg.sd if calibrated else sim
            if sim >= TAG_THRESHOLD and (not calibrated or score >= Z_MIN):
                scored.append((score, sim, tag, calibrated))
        if not scored:
            continue
        scored.sort(key=lambda x: (-x[0], x[2]))
        best = scored[0][0]
        keep = [(tag, sim) for score, sim, tag, calibrated in scored
                if score >= best - (Z_MARGIN if calibrated else TAG_MARGIN)][:MAX_AUTO_TAGS]
        out[sid] = keep
    return out


def assign(*, subject_type: str, ids: list[int] | None = None) -> None:
    """Recompute the automatic tags of some subjects (all of the type when ids is None).

    The background of every tag is measured over all subjects of the type (one query in the database),
    whatever the scope, so a subject embedded alone is judged by the same yardstick as a full backfill."""
    space = text_space()
    d = dims_of(space)
    sim = f"1 - cosine_distance(e.vector::vector({d}), t.vector::vector({d}))"
    pairs = f"""from embedding e
                join embedding t on t.space = e.space and t.subject_type = 'tag' and t.vector is not null
                where e.space = :s and e.subject_type = :t and e.vector is not null"""
    scope, e_scope = ("", "") if ids is None else (" and subject_id = any(:ids)", " and e.subject_id = any(:ids)")
    params = {"s": space, "t": subject_type, "ids": ids}
    with session_scope() as s:
        background = {tag: Background(float(mean), float(sd or 0.0), int(n)) for tag, mean, sd, n in s.execute(sa.text(
            f"select t.subject_id, avg({sim}), stddev_pop({sim}), count(*) {pairs} group by t.subject_id"), params)}
        sims: dict[int, dict[int, float]] = {}
        for sid, tag, value in s.execute(sa.text(f"select e.subject_id, t.subject_id, {sim} {pairs}{e_scope}"), params):
            sims.setdefault(sid, {})[tag] = float(value)
        chosen = choose_tags(sims, background)
        s.execute(sa.text(f"delete from subject_tag where space = :s and subject_type = :t{scope}"), params)
        rows = [{"t": subject_type, "sid": sid, "tag": tag, "s": space, "sim": value}
                for sid, picks in chosen.items() for tag, value in picks]
        if rows:
            s.execute(sa.text("""
                insert into subject_tag (subject_type, subject_id, tag_id, space, similarity)
                values (:t, :sid, :tag, :s, :sim) on conflict (subject_type, subject_id, tag_id) do nothing
            """), rows)


def assign_all() -> None:
    from core.vectors.embeddings import SUBJECT_TYPES

    for subject_type in SUBJECT_TYPES:
        assign(subject_type=subject_type)
