"""A character's history: the audit rows of the character and of its references, runs and variations.

Why a query over several entities instead of one `character_id` column: each write is audited under
the entity it changed (a caption edit is a 'reference' row, a retry a 'run' row), so the Audit page
can link to it. The character's sub-entities are found by id from their own tables; a reference that
was deleted is gone from its table, so its ids come from the delete rows (whose `before` keeps the
character). Every branch is an index lookup on audit_event (entity, entity_id, at DESC), so one
character's history stays fast however long the whole trail grows; paged in SQL, newest first.
"""
from __future__ import annotations

import sqlalchemy as sa

from core.review_votes import seal_trail
from core.team.audit_view import Row, to_row
from db.engine import session_scope

PAGE_SIZE = 25

# Ids of everything that belongs to character :c, as audit entity ids (text). A deleted reference is
# found through its delete row; its earlier rows (added, captioned) then come with it.
_SCOPE = """
with deleted_refs as (
    select entity_id from audit_event
    where entity = 'reference' and action = 'reference.delete' and changes -> 'character_id' ->> 0 = :cs
), scope(entity, entity_id) as (
    select 'character', :cs
    union all select 'reference', id::text from reference_image where character_id = :c
    union all select 'reference', entity_id from deleted_refs
    union all select 'run', id::text from generation_run where character_id = :c
    union all select 'variation', id::text from variation where character_id = :c
)
"""
_ROWS = _SCOPE + """
select a.id, a.at, a.actor, a.role, a.action, a.entity, a.entity_id, a.label, a.changes
from (select distinct entity, entity_id from scope) sc
cross join lateral (
    select * from audit_event e where e.entity = sc.entity and e.entity_id = sc.entity_id
    order by e.at desc, e.id desc limit :upto
) a
order by a.at desc, a.id desc
limit :n offset :o
"""
_COUNT = _SCOPE + """
select coalesce(sum(c.n), 0) from (select distinct entity, entity_id from scope) sc
cross join lateral (
    select count(*) as n from audit_event e where e.entity = sc.entity and e.entity_id = sc.entity_id
) c
"""
# The one lookup the (entity, entity_id, at) index cannot serve, which deleted references were this
# character's, is served by the partial index ix_audit_event_deleted_reference (migration 0023).
DELETED_REFERENCE_INDEX_NAME = "ix_audit_event_deleted_reference"


def character_history(*, character_id: int, limit: int = PAGE_SIZE, offset: int = 0) -> list[Row]:
    """One page of a character's history, newest first (its own edits and those of its references,
    runs and variations, including references deleted since), shaped like the Audit page's rows."""
    if limit < 1 or offset < 0:
        raise ValueError("limit must be positive and offset not negative")
    with session_scope() as s:
        rows = s.execute(sa.text(_ROWS), {"c": int(character_id), "cs": str(int(character_id)), "n": limit,
                                          "o": offset, "upto": limit + offset}).all()
    sealed = seal_trail(rows, entity_of=lambda r: (r.entity, r.entity_id), changes_of=lambda r: r.changes)
    return [to_row(r, sealed.get(i)) for i, r in enumerate(rows)]


def count_character_history(*, character_id: int) -> int:
    """How many audit rows a character's history has (for the pager)."""
    with session_scope() as s:
        return int(s.execute(sa.text(_COUNT), {"c": int(character_id), "cs": str(int(character_id))}).scalar_one())
