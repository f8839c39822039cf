"""Review workflow on real generated variations."""
import io
import json
import zipfile

import pytest

from core import characters, generation, review, styles
from core.characters import CharacterInput
from core.errors import ValidationError
from tests.test_generation import run_worker


@pytest.fixture
def cast(editor):
    ink = styles.create_style(data=styles.StyleInput(name="Ink"), editor=editor)
    a = characters.create_character(data=CharacterInput(name="Ayla", style_id=ink.id), editor=editor)
    b = characters.create_character(data=CharacterInput(name="Bram"), editor=editor)
    runs = generation.request_runs(character_ids=[a.id, b.id], requested_by=editor)
    run_worker()
    return a, b, ink, runs


def test_coverage_grid_shows_latest_attempt_per_slot(cast, editor):
    a, b, ink, runs = cast
    grid = review.coverage()
    assert [r.name for r in grid] == ["Ayla", "Bram"]
    assert all(len(r.cells) == 10 and all(c.status == "completed" for c in r.cells.values()) for r in grid)
    assert [r.name for r in review.coverage(style_id=ink.id)] == ["Ayla"]
    generation.regenerate(run_id=runs[0].run_id, requested_by=editor, slot_keys=["portrait_side"])
    run_worker()
    cell = review.coverage(style_id=ink.id)[0].cells["portrait_side"]
    assert cell.attempt == 2
    assert len(review.attempts(character_id=a.id, slot_key="portrait_side")) == 2


def test_reject_needs_a_reason_and_approve_clears_it(cast, editor):
    a, *_ = cast
    cell = review.coverage()[0].cells["action_pose"]
    with pytest.raises(ValidationError, match="at least one reason"):
        review.review(variation_id=cell.variation_id, decision="rejected", reviewer=editor)
    with pytest.raises(ValidationError, match="Unknown reason"):
        review.review(variation_id=cell.variation_id, decision="rejected", reviewer=editor, reason_codes=["ugly"])
    v = review.review(variation_id=cell.variation_id, decision="rejected", reviewer=editor,
                      reason_codes=["anatomy", "artifact"], note="extra finger")
    assert (v.review_status, v.reason_codes, v.reviewed_by) == ("rejected", ["anatomy", "artifact"], editor)
    assert [r.name for r in review.coverage(review_state="rejected")] == ["Ayla"]
    v = review.review(variation_id=cell.variation_id, decision="approved", reviewer=editor)
    assert v.reason_codes == [] and v.review_status == "approved"


def test_bulk_approve_queue_avatar_and_export(cast, editor):
    a, b, *_ = cast
    assert len(review.queue()) == 20
    grid = review.coverage()
    assert review.queue()[0] == grid[0].cells["portrait_front"].variation_id  # grid order: Ayla's slots first
    review.review(variation_id=grid[0].cells["action_pose"].variation_id, decision="rejected", reviewer=editor,
                  reason_codes=["style_drift"])
    ayla_ids = [c.variation_id for c in review.coverage()[0].cells.values()]
    assert review.bulk_approve(variation_ids=ayla_ids, reviewer=editor) == 9  # the rejected one is left alone
    assert len(review.queue()) == 10
    avatars = review.avatar_paths([a.id, b.id])
    assert "/variations/" in avatars[a.id] and "portrait_front" in avatars[a.id]
    assert b.id not in avatars  # no approved portrait and no reference image
    data, n = review.export_approved()
    assert n == 9
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = set(zf.namelist())
    assert {"manifest.csv", "manifest.json", "ayla/portrait_front.png"} <= names
    manifest = json.loads(zf.read("manifest.json"))
    assert len(manifest) == 9 and all(m["slug"] == "ayla" and m["prompt"] for m in manifest)
    import csv

    rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert len(rows) == 9 and rows[0]["file"].startswith("ayla/")
    summary = review.generation_summary([a.id, b.id])
    assert summary[a.id] == {"completed": 10, "approved": 9, "rejected": 1}


def test_only_completed_images_can_be_reviewed(editor):
    ch = characters.create_character(data=CharacterInput(name="Pip"), editor=editor)
    req = generation.request_run(character_id=ch.id, requested_by=editor)
    pending = generation.run_status(run_id=req.run_id).slots[0]
    with pytest.raises(ValidationError, match="Only completed"):
        review.review(variation_id=pending.id, decision="approved", reviewer=editor)


def test_bulk_reject_needs_a_reason_and_leaves_unfinished_slots_alone(cast, editor):
    a, b, ink, runs = cast
    ids = [c.variation_id for c in review.coverage()[0].cells.values()]
    with pytest.raises(ValidationError, match="at least one reason"):
        review.bulk_reject(variation_ids=ids, reviewer=editor, reason_codes=[])
    generation.regenerate(run_id=runs[0].run_id, requested_by=editor, slot_keys=["portrait_side"])
    pending = review.attempts(character_id=a.id, slot_key="portrait_side")[0]  # queued, not generated yet
    assert pending.status == "pending"
    assert review.bulk_reject(variation_ids=ids + [pending.id], reviewer=editor, reason_codes=["wrong_outfit"]) == 10
    assert review.get_variation(variation_id=pending.id).review_status == "unreviewed"
    assert {review.get_variation(variation_id=i).reason_codes[0] for i in ids} == {"wrong_outfit"}


# --- at studio scale: paging, filters, queue order, undo and the export fingerprint, all answered in SQL ---

from bench._fill import fill_cast  # noqa: E402  (real rows + real files, written set-based)
from core.shots import shot_list  # noqa: E402


def test_coverage_is_paged_in_name_order_and_counts_come_from_the_database():
    fill_cast(characters=60, styles=3)
    f = review.ReviewFilter()
    first = review.coverage_page(filters=f, page=1)
    assert (first.total_characters, first.pages, len(first.rows)) == (60, 3, 25)
    assert [r.name for r in first.rows] == sorted(r.name for r in first.rows)
    assert all(len(r.cells) == 10 for r in first.rows)
    last = review.coverage_page(filters=f, page=99)  # clamped to the last page, not an empty one
    assert (last.page, len(last.rows)) == (3, 10)
    seen = [r.character_id for p in (1, 2, 3) for r in review.coverage_page(filters=f, page=p).rows]
    assert len(seen) == len(set(seen)) == 60
    counts = review.review_counts(filters=f)
    assert sum(counts.values()) == 600 and counts["unreviewed"] == len(review.queue())


def test_filters_narrow_the_grid_and_the_queue_together(editor):
    fill_cast(characters=40, styles=4)
    only = review.ReviewFilter(search="character 0001")  # names are "Bench character 00001" ...
    page = review.coverage_page(filters=only)
    assert [r.name for r in page.rows] == [f"Bench character 0001{i}" for i in range(10)]
    assert {i.character_name for i in review.queue_slice(filters=only)} <= {r.name for r in page.rows}
    assert review.coverage_page(filters=review.ReviewFilter(search="100%_")).total_characters == 0  # literal
    rejected = review.ReviewFilter(review_state="rejected")
    assert all(any(c.review_status == "rejected" for c in r.cells.values())
               for r in review.coverage_page(filters=rejected, page_size=100).rows)
    with pytest.raises(ValidationError, match="Unknown review state"):
        review.ReviewFilter(review_state="maybe")


def test_queue_orders_by_grid_or_drift_and_slices_in_sql():
    fill_cast(characters=5, styles=1)
    f = review.ReviewFilter()
    grid = review.queue_slice(filters=f)
    slot_order = [s.key for s in shot_list()]
    assert grid == sorted(grid, key=lambda i: (i.character_name.lower(), i.character_id, slot_order.index(i.slot_key)))
    drift = review.queue_slice(filters=f, order="drift")
    assert [i.drift_score for i in drift] == sorted((i.drift_score for i in drift), reverse=True)
    assert review.queue_slice(filters=f, offset=3, limit=4) == grid[3:7]


def test_a_decision_names_its_image_and_undo_restores_it(cast, editor):
    a, *_ = cast
    cell = review.coverage()[0].cells["action_pose"]
    done = review.decide(variation_id=cell.variation_id, decision="approved", reviewer=editor)
    assert done.label == "Ayla · Action pose · attempt 1"
    review.undo(decision=done)
    v = review.get_variation(variation_id=cell.variation_id)
    assert (v.review_status, v.reviewed_by, v.reviewed_at) == ("unreviewed", None, None)

    first = review.decide(variation_id=cell.variation_id, decision="rejected", reviewer=editor,
                          reason_codes=["anatomy"], note="hands")
    second = review.decide(variation_id=cell.variation_id, decision="approved", reviewer="Ann")
    from core.errors import ConflictError

    with pytest.raises(ConflictError, match="reviewed again since"):
        review.undo(decision=first)  # Ann's approval is not silently dropped
    assert review.get_variation(variation_id=cell.variation_id).review_status == "approved"
    review.undo(decision=second)
    v = review.get_variation(variation_id=cell.variation_id)
    assert (v.review_status, v.reason_codes, v.review_note, v.reviewed_by) == ("rejected", ["anatomy"], "hands", editor)


def test_export_fingerprint_follows_the_approved_set_and_the_filters(cast, editor):
    a, b, ink, runs = cast
    everyone, ink_only = review.ReviewFilter(), review.ReviewFilter(style_id=ink.id)
    before = review.approved_fingerprint(filters=everyone)
    bram_cell = review.coverage(search="Bram")[0].cells["portrait_front"]
    done = review.decide(variation_id=bram_cell.variation_id, decision="approved", reviewer=editor)
    after = review.approved_fingerprint(filters=everyone)
    assert after != before
    assert review.approved_fingerprint(filters=ink_only) == before  # Bram has no style: Ink's set is unchanged
    data, n = review.export_approved(filters=everyone)
    assert n == 1 and "bram/portrait_front.png" in zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert review.export_approved(filters=ink_only)[1] == 0
    review.undo(decision=done)
    assert review.approved_fingerprint(filters=everyone) == before


def test_name_filter_matches_literally_whatever_the_editor_types(editor):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = ["100% Real", "snake_case Sam", "Back\\slash Bo", "Plain Pia"]
    for name in names:
        ch = characters.create_character(data=CharacterInput(name=name), editor=editor)
        generation.request_run(character_id=ch.id, requested_by=editor)  # pending cells are enough for the grid

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(names).flatmap(lambda n: st.tuples(st.integers(0, len(n)), st.integers(0, len(n)))
                                          .map(lambda ij, n=n: n[min(ij):max(ij)]))
           | st.text(alphabet="%_\\ aS", max_size=4))
    def check(term):
        got = {r.name for r in review.coverage(search=term)}
        assert got == {n for n in names if term.strip().lower() in n.lower()}

    check()
