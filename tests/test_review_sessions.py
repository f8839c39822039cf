"""Review sessions that don't collide: claims on a real database, from concurrent reviewer threads."""
from __future__ import annotations

import threading
import time

import pytest

from bench._fill import fill_cast
from core import review
from core.errors import ConflictError, PermissionDenied
from core.team import audit
from db.engine import session_scope
from db.models_team import Member, ReviewClaim


@pytest.fixture
def fifty(tmp_path, settings_override):
    """50 completed, unreviewed images (5 characters × 10 shots), one local user mode (everyone may review)."""
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    assert fill_cast(characters=5, styles=1, reviewed_every=10**6) == 50
    assert len(review.queue()) == 50
    return review.queue()


def test_two_concurrent_reviewers_never_get_the_same_image_and_review_all_fifty(fifty):
    got: dict[str, list[int]] = {"ann": [], "bob": []}
    holding: dict[str, set[int]] = {"ann": set(), "bob": set()}
    overlaps: list[set[int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def reviewer(who: str) -> None:
        try:
            start.wait()
            while True:
                batch = review.claim_next(reviewer=who, n=3)
                if not batch:
                    return
                with lock:
                    holding[who] = {i.variation_id for i in batch}
                    overlaps.append(holding["ann"] & holding["bob"])
                for item in batch:
                    review.decide(variation_id=item.variation_id, decision="approved", reviewer=who)
                    with lock:
                        got[who].append(item.variation_id)
                        holding[who].discard(item.variation_id)
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=reviewer, args=(w,)) for w in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(overlaps), "two reviewers held the same image at once"
    assert not set(got["ann"]) & set(got["bob"])
    assert sorted(got["ann"] + got["bob"]) == sorted(fifty)
    assert got["ann"] and got["bob"]  # both did work
    assert review.review_counts(filters=review.ReviewFilter()) == {"approved": 50}
    with session_scope() as s:
        assert s.query(ReviewClaim).count() == 0  # every decision released its image


def test_an_image_in_someone_elses_queue_is_refused_and_claims_expire(fifty, settings_override):
    settings_override(review_claim_ttl_s=0.5)
    ann = review.claim_next(reviewer="ann", n=2)
    assert [i.variation_id for i in ann] == fifty[:2]  # grid order
    bob = review.claim_next(reviewer="bob", n=2)
    assert [i.variation_id for i in bob] == fifty[2:4]  # never ann's
    assert review.held_by(variation_ids=fifty[:4]) == {fifty[0]: "ann", fifty[1]: "ann", fifty[2]: "bob",
                                                       fifty[3]: "bob"}
    with pytest.raises(ConflictError, match="in ann's review queue right now"):
        review.decide(variation_id=fifty[0], decision="approved", reviewer="bob")
    assert review.get_variation(variation_id=fifty[0]).review_status == "unreviewed"
    assert review.bulk_approve(variation_ids=fifty[:4], reviewer="bob") == 2  # ann's two are left alone
    time.sleep(0.7)  # ann walked away; her claims time out
    carl = review.claim_next(reviewer="carl", n=2)
    assert [i.variation_id for i in carl] == fifty[:2]
    assert review.held_by(variation_ids=fifty[:2]) == {fifty[0]: "carl", fifty[1]: "carl"}
    with pytest.raises(ConflictError):  # ann's stale page cannot decide carl's image
        review.decide(variation_id=fifty[0], decision="approved", reviewer="ann")


def test_working_renews_claims_and_leaving_releases_them(fifty, settings_override):
    settings_override(review_claim_ttl_s=1.0)
    first = review.claim_next(reviewer="ann", n=3)
    for _ in range(3):  # ann keeps interacting for longer than the TTL
        time.sleep(0.45)
        assert [i.variation_id for i in review.claim_next(reviewer="ann", n=3)] == [i.variation_id for i in first]
    assert [i.variation_id for i in review.claim_next(reviewer="bob", n=3)] == fifty[3:6]
    assert review.release(reviewer="ann") == 3
    assert [i.variation_id for i in review.claim_next(reviewer="bob", n=6)] == fifty[:6]  # ann's are free again
    assert review.available(reviewer="ann") == 50 - 6


def test_switching_filters_releases_what_is_outside_them(fifty):
    review.claim_next(reviewer="ann", n=5)
    narrow = review.ReviewFilter(search="character 00002")
    mine = review.claim_next(reviewer="ann", filters=narrow, n=5)
    assert [i.variation_id for i in mine] == fifty[10:15]
    assert review.held_by(variation_ids=fifty[:10]) == {}  # character 00001's images were given back


def test_a_viewer_cannot_claim_or_decide_and_leaves_no_audit_row(fifty):
    with session_scope() as s:
        s.add(Member(identity="vic@example.com", role="viewer"))
    with pytest.raises(PermissionDenied, match="needs the reviewer role; you are a viewer"):
        review.claim_next(reviewer="vic@example.com")
    with pytest.raises(PermissionDenied, match="needs the reviewer role"):
        review.decide(variation_id=fifty[0], decision="approved", reviewer="vic@example.com")
    with pytest.raises(PermissionDenied, match="needs the reviewer role"):
        review.bulk_approve(variation_ids=fifty, reviewer="vic@example.com")
    assert review.get_variation(variation_id=fifty[0]).review_status == "unreviewed"
    assert audit.count() == 0


def test_every_decision_leaves_one_audit_row_and_undo_another(fifty):
    review.claim_next(reviewer="ann", n=2)
    assert [(e.action, e.entity, e.changes["variation_ids"][1]) for e in audit.events()] == [
        ("review.claim", "review_claim", fifty[:2])]
    done = review.decide(variation_id=fifty[0], decision="rejected", reviewer="ann", reason_codes=["anatomy"])
    [row] = audit.history(entity="variation", entity_id=fifty[0])
    assert (row.action, row.actor, row.changes["review_status"], row.changes["vote"]) == (
        "review.decide", "ann", ["unreviewed", "rejected"], [None, "rejected"])
    assert row.changes["reason_codes"] == [[], ["anatomy"]]
    review.undo(decision=done)
    assert [e.action for e in audit.history(entity="variation", entity_id=fifty[0])] == ["review.undo",
                                                                                         "review.decide"]
    assert review.bulk_approve(variation_ids=fifty[1:5], reviewer="ann") == 4
    assert audit.count(filters=audit.AuditFilter(entity="variation")) == 2 + 4  # one row per image
    with pytest.raises(Exception):
        review.decide(variation_id=fifty[5], decision="rejected", reviewer="ann", reason_codes=[])
    assert audit.history(entity="variation", entity_id=fifty[5]) == []  # a refused write leaves none


# ------------------------------------------------------------------ the Review page (AppTest, real database)
def _queue_label(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Bench character"))


def test_two_reviewers_queues_on_the_page_hold_different_images_and_leaving_gives_them_back(fifty):
    from tests.test_pages import _click, _page

    ann = _page("pages/review.py", editor="ann")
    ann.segmented_control(key="rv_view").set_value("queue").run()
    bob = _page("pages/review.py", editor="bob")
    bob.segmented_control(key="rv_view").set_value("queue").run()
    assert not ann.exception and not bob.exception
    held = review.held_by(variation_ids=fifty)
    assert sorted(held.values()) == ["ann"] * review.CLAIM_BATCH + ["bob"] * review.CLAIM_BATCH
    assert _queue_label(ann) != _queue_label(bob)
    assert any(f"1 of {50 - review.CLAIM_BATCH}" in c.value for c in bob.caption)  # ann's images are not offered
    _click(bob, "Approve")
    assert not bob.exception
    decided = [i for i, who in held.items() if who == "bob" and
               review.get_variation(variation_id=i).review_status == "approved"]
    assert len(decided) == 1
    ann.segmented_control(key="rv_view").set_value("grid").run()  # ann leaves the queue
    assert set(review.held_by(variation_ids=fifty).values()) == {"bob"}


def test_a_viewer_sees_the_queue_with_disabled_buttons_that_say_why(fifty):
    from tests.test_pages import _page

    with session_scope() as s:
        s.add(Member(identity="vic", role="viewer"))
    at = _page("pages/review.py", editor="Vic")
    at.segmented_control(key="rv_view").set_value("queue").run()
    assert not at.exception
    approve = next(b for b in at.button if b.label == "Approve")
    assert approve.disabled and "needs the reviewer role; you are a viewer" in approve.help
    assert next(b for b in at.button if b.label == "Regenerate slot").disabled
    assert review.held_by(variation_ids=fifty) == {}  # looking takes nothing from the reviewers
    at.segmented_control(key="rv_view").set_value("grid").run()
    assert not at.exception and next(b for b in at.button if b.key == "bulk").disabled


def test_the_activity_page_shows_reviewer_metrics(fifty):
    from tests.test_pages import _page

    review.decide(variation_id=fifty[0], decision="rejected", reviewer="ann", reason_codes=["anatomy"])
    review.decide(variation_id=fifty[1], decision="approved", reviewer="ann")
    at = _page("pages/activity.py")
    assert not at.exception
    assert any(h.value == "Reviewers" for h in at.subheader)
    [table] = [d.value for d in at.dataframe if "images reviewed" in d.value.columns]
    row = table.iloc[0]
    assert (row["reviewer"], row["images reviewed"], row["approval rate"], row["reasons used"]) == (
        "ann", 2, 0.5, "anatomy ×1")


def test_near_duplicate_decisions_are_authorized_and_audited(fifty):
    from core.vectors import duplicates

    with session_scope() as s:
        s.add(Member(identity="vic", role="viewer"))
    with pytest.raises(PermissionDenied, match="Keeping both images of a near-duplicate pair needs the reviewer"):
        duplicates.keep_both(a=("variation", fifty[0]), b=("variation", fifty[1]), editor="vic")
    duplicates.keep_both(a=("variation", fifty[1]), b=("variation", fifty[0]), editor="ann")
    duplicates.keep_both(a=("variation", fifty[0]), b=("variation", fifty[1]), editor="ann")  # already kept
    [kept] = audit.events(filters=audit.AuditFilter(entity="duplicate_pair"))
    assert (kept.action, kept.entity_id, kept.changes) == ("duplicate.keep", f"variation:{fifty[0]}+variation:"
                                                           f"{fifty[1]}", {"kept": [False, True]})
    assert duplicates.reject_duplicate(variation_id=fifty[2], of=("variation", fifty[3]), reviewer="ann") == 1
    [row] = audit.history(entity="variation", entity_id=fifty[2])
    assert (row.action, row.changes["reason_codes"]) == ("review.bulk", [[], ["duplicate"]])
    review.claim_next(reviewer="bob", n=5)  # fifty[4] is now in bob's queue
    assert duplicates.reject_duplicate(variation_id=fifty[4], of=("variation", fifty[3]), reviewer="ann") == 0
