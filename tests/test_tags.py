"""Tags mean something: a calibrated rule marks a minority that fits each tag; edits requeue themselves."""
import statistics

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from core import tags
from core.vectors import embeddings
from core.tags import Background, choose_tags
from db.engine import session_scope


@settings(max_examples=200, deadline=None)
@given(st.integers(tags.MIN_BACKGROUND, 40).flatmap(lambda n: st.lists(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=3), min_size=n, max_size=n)))
def test_a_calibrated_tag_never_lands_on_more_than_cantellis_share(rows):
    sims = {sid: dict(enumerate(row)) for sid, row in enumerate(rows)}
    background = {tag: Background(statistics.fmean(col), statistics.pstdev(col), len(col))
                  for tag, col in enumerate(zip(*rows))}
    chosen = choose_tags(sims, background)
    for tag in range(3):
        share = sum(tag in dict(picks) for picks in chosen.values()) / len(rows)
        assert share <= 1 / (1 + tags.Z_MIN ** 2) + 1e-9
    for picks in chosen.values():
        assert 0 < len(picks) <= tags.MAX_AUTO_TAGS
        assert all(sim >= tags.TAG_THRESHOLD for _, sim in picks)


def test_small_sets_fall_back_to_plain_similarity():
    sims = {1: {10: 0.5, 11: 0.2}, 2: {10: 0.31, 11: 0.6}}
    background = {10: Background(0.4, 0.1, 2), 11: Background(0.4, 0.2, 2)}
    assert choose_tags(sims, background) == {1: [(10, 0.5)], 2: [(11, 0.6)]}


def test_starter_tags_on_the_demo_cast_mark_a_fitting_minority_and_edits_requeue(editor):
    from core.characters import list_characters
    from core.demo import load_demo_cast
    from tests.test_generation import run_worker

    load_demo_cast(editor=editor)
    tags.load_starter_tags(editor=editor)
    embeddings.backfill()  # the real local model
    cast = {c.name: c.id for c in list_characters()}
    got = tags.tags_for(subject_type="character", subject_ids=list(cast.values()))
    assert "dark" not in got.get(cast["Bram Copperkettle"], [])  # the cheerful tinker is no villain
    assert "rogue" in got[cast["Sable Nyx"]] and "technology" in got[cast["Unit 7-Echo"]]
    by_name = {t.name: t for t in tags.list_tags()}
    for t in by_name.values():
        tagged, total = t.coverage.get("character", (0, 12))
        assert total == 12 and tagged <= 12 / (1 + tags.Z_MIN ** 2), (t.name, tagged)
    dark = by_name["dark"]
    n_dark = dark.coverage["character"][0]
    assert dark.coverage_text().startswith(f"{n_dark} of 12 characters")

    # editing a tag queues its re-embedding and re-assignment by itself
    tags.update_tag(tag_id=by_name["animal"].id, name="animal", description="a mouse or a fox", editor=editor)
    with session_scope() as s:
        status = s.execute(sa.text("select status from embedding where subject_type = 'tag' and subject_id = :i"),
                           {"i": by_name["animal"].id}).scalar_one()
        jobs = s.execute(sa.text("select count(*) from procrastinate_jobs where task_name = 'embed_pending' "
                                 "and status = 'todo'")).scalar_one()
    assert status == "queued" and jobs == 1  # the tag's row joins the pending set one coalesced job embeds
    run_worker(queues=None)
    got = tags.tags_for(subject_type="character", subject_ids=[cast["Pip Thimble"], cast["Momo the Fox"]])
    assert any("animal" in names for names in got.values())
