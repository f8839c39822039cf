"""Review-y findings: double review, adjudication, undo, agreement edge cases, sign-in claims (real Postgres)."""
from __future__ import annotations

import pytest

from bench._fill import fill_cast
from core import review, review_agreement, review_metrics
from core.errors import ConflictError
from core.team import signin
from db.engine import session_scope
from db.models_team import Member, ReviewVote

A, R = "approved", "rejected"


@pytest.fixture
def k2(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml", review_votes_required=2)
    fill_cast(characters=1, styles=1, reviewed_every=10**6)
    with session_scope() as s:
        s.add(Member(identity="ed@example.com", role="editor"))
        s.add(Member(identity="eve@example.com", role="editor"))
    return review.queue()


def _dispute(vid: int) -> None:
    review.decide(variation_id=vid, decision=A, reviewer="ann")
    review.decide(variation_id=vid, decision=R, reviewer="bob", reason_codes=["anatomy"])
    assert review.get_variation(variation_id=vid).review_status == "disputed"


def test_a_second_adjudication_of_an_image_no_longer_disputed_is_refused(k2):
    """Two editors have the same disputed image on their Adjudicate view; the second click must not silently
    overturn the first editor's settlement (nor add a second adjudication vote)."""
    vid = k2[0]
    _dispute(vid)
    review.adjudicate(variation_id=vid, decision=A, editor="ed@example.com")
    with pytest.raises(ConflictError, match="not disputed"):
        review.adjudicate(variation_id=vid, decision=R, editor="eve@example.com", reason_codes=["anatomy"])
    v = review.get_variation(variation_id=vid)
    assert (v.review_status, v.reviewed_by) == (A, "ed@example.com")
    with session_scope() as s:
        assert s.query(ReviewVote).filter(ReviewVote.variation_id == vid, ReviewVote.adjudication).count() == 1


def test_adjudication_cannot_settle_an_image_still_waiting_for_votes(k2):
    """An unreviewed image with one vote, held in bob's queue: an adjudication would bypass both the second
    independent vote and bob's claim."""
    vid = k2[0]
    review.decide(variation_id=vid, decision=A, reviewer="ann")
    assert vid in [i.variation_id for i in review.claim_next(reviewer="bob", n=10)]
    with pytest.raises(ConflictError, match="not disputed"):
        review.adjudicate(variation_id=vid, decision=R, editor="ed@example.com", reason_codes=["anatomy"])
    assert review.get_variation(variation_id=vid).review_status == "unreviewed"


def test_undo_after_the_other_reviewer_settled_it_is_refused_and_keeps_both_votes(k2):
    vid = k2[0]
    first = review.decide(variation_id=vid, decision=A, reviewer="ann")
    review.decide(variation_id=vid, decision=A, reviewer="bob")
    with pytest.raises(ConflictError, match="reviewed again since"):
        review.undo(decision=first)
    with session_scope() as s:
        assert s.query(ReviewVote).filter(ReviewVote.variation_id == vid).count() == 2
    assert review.get_variation(variation_id=vid).review_status == A


def test_undo_and_redo_never_gives_one_reviewer_two_votes(k2):
    vid = k2[0]
    d = review.decide(variation_id=vid, decision=A, reviewer="ann")
    review.undo(decision=d)
    review.decide(variation_id=vid, decision=R, reviewer="ann", reason_codes=["anatomy"])
    assert review.bulk_approve(variation_ids=[vid], reviewer="ann") == 1  # replaces her vote, not a second one
    v = review.get_variation(variation_id=vid)
    assert v.review_status == "unreviewed"
    with session_scope() as s:
        assert s.query(ReviewVote).filter(ReviewVote.variation_id == vid).count() == 1


def test_a_vote_leaves_nothing_on_the_image_the_slot_dialog_shows(k2):
    vid = k2[0]
    v0 = review.get_variation(variation_id=vid)
    review.decide(variation_id=vid, decision=R, reviewer="ann", reason_codes=["anatomy"], note="six fingers")
    tries = review.attempts(character_id=v0.character_id, slot_key=v0.slot_key)
    latest = tries[0]
    assert (latest.review_status, latest.reason_codes, latest.review_note, latest.reviewed_by) == (
        "unreviewed", [], "", None)
    assert review.review_counts(filters=review.ReviewFilter()).get("disputed", 0) == 0


def test_kappa_is_undefined_not_a_crash_for_one_label_or_no_overlap():
    assert review_agreement.cohen_kappa([(A, A)] * 5) is None
    assert review_agreement.cohen_kappa([]) is None
    assert review_agreement.percent_agreement([]) is None
    (g,) = review_agreement.pair_agreement([review_agreement.VotePair(1, "a", "b", A, A, (), ())])
    assert (g.percent, g.kappa) == (1.0, None)
    # a code both raters gave on every shared item: binary labels all (True, True)
    (c,) = review_agreement.code_agreement([review_agreement.VotePair(1, "a", "b", R, R, ("anatomy",), ("anatomy",))])
    assert (c.percent, c.kappa) == (1.0, None)
    assert review_agreement.cohen_kappa([(A, R), (R, A)]) == pytest.approx(-1.0)


def test_agreement_and_metrics_without_any_overlap(k2):
    review.decide(variation_id=k2[0], decision=A, reviewer="ann")
    review.decide(variation_id=k2[1], decision=A, reviewer="bob")
    assert review_agreement.agreement() == ([], [])
    from datetime import date, timedelta, timezone, datetime

    today = datetime.now(timezone.utc).date()
    rows = review_metrics.per_reviewer_day(since=today - timedelta(days=3), until=today + timedelta(days=1))
    assert sorted((r.reviewer, r.reviewed) for r in rows) == [("ann", 1), ("bob", 1)]
    assert review_metrics.per_reviewer_day(since=today + timedelta(days=1), until=today + timedelta(days=2)) == []


@pytest.mark.parametrize("claims, identity, name", [
    ({"email": "  Ann.Smith@Example.COM ", "email_verified": True}, "ann.smith@example.com", "ann.smith"),
    ({"email": "bob@example.com", "name": "  \u202e  ", "given_name": "Bob"}, "bob@example.com", "Bob"),
])
def test_sign_in_claims_are_normalised(claims, identity, name):
    p = signin.person_from_claims(claims)
    assert (p.identity, p.display_name) == (identity, name)


@pytest.mark.parametrize("flag", [False, "false", " FALSE ", "False"])
def test_unverified_email_is_refused_whatever_its_spelling(flag):
    with pytest.raises(signin.SignInRefused, match="not verified"):
        signin.person_from_claims({"email": "x@example.com", "email_verified": flag})


def test_a_settled_image_refusal_does_not_point_to_the_adjudicate_view(k2):
    """The Adjudicate view lists only disputed images (and adjudicate refuses others): the refusal of a vote on
    an agreed image must not send the reviewer there."""
    vid = k2[0]
    review.decide(variation_id=vid, decision=A, reviewer="ann")
    review.decide(variation_id=vid, decision=A, reviewer="bob")
    with pytest.raises(ConflictError, match="already approved by double review") as err:
        review.decide(variation_id=vid, decision=R, reviewer="carl", reason_codes=["anatomy"])
    assert "Adjudicate" not in str(err.value)


@pytest.fixture
def k1(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    fill_cast(characters=1, styles=1, reviewed_every=10**6)
    return review.queue()


def _expire(who: str) -> None:
    import sqlalchemy as sa
    from db.models_team import ReviewClaim

    with session_scope() as s:
        s.execute(sa.update(ReviewClaim).where(ReviewClaim.reviewer == who)
                  .values(expires_at=sa.func.now() - sa.text("interval '1 second'")))


def test_expired_claim_taken_over_while_the_first_reviewer_is_mid_decision(k1):
    mine = [i.variation_id for i in review.claim_next(reviewer="ann", n=2)]
    _expire("ann")
    theirs = [i.variation_id for i in review.claim_next(reviewer="bob", n=2)]
    assert theirs == mine  # bob took the expired claims over
    with pytest.raises(ConflictError, match="bob's review queue"):
        review.decide(variation_id=mine[0], decision=A, reviewer="ann")
    assert review.bulk_approve(variation_ids=mine, reviewer="ann") == 0
    assert review.claim_next(reviewer="ann", n=2) and review.held_by(variation_ids=mine) == {i: "bob" for i in mine}
    review.decide(variation_id=mine[0], decision=A, reviewer="bob")


def test_a_reviewer_demoted_to_viewer_can_still_give_their_claims_back(k1):
    """Leaving the queue releases the held images; a reviewer demoted meanwhile got a refusal instead (shown on
    whatever page they went to) and their images stayed locked for everyone until the claims expired."""
    with session_scope() as s:
        s.add(Member(identity="ann@example.com", role="reviewer"))
    held = [i.variation_id for i in review.claim_next(reviewer="ann@example.com", n=3)]
    from core.team import members

    with session_scope() as s:
        s.add(Member(identity="adm@example.com", role="admin"))
    members.set_role(identity="ann@example.com", role="viewer", editor="adm@example.com")
    assert review.release(reviewer="ann@example.com") == 3
    assert review.held_by(variation_ids=held) == {}
    assert review.release(reviewer="ann@example.com") == 0


def test_metrics_days_are_utc_days_whatever_the_offset_of_the_vote_time(k1):
    from datetime import date, datetime, timedelta, timezone

    import sqlalchemy as sa

    for vid, who in zip(k1[:3], ("ann", "ann", "ann")):
        review.decide(variation_id=vid, decision=A, reviewer=who)
    plus5 = timezone(timedelta(hours=5))
    times = [datetime(2026, 1, 1, 23, 59, 59, tzinfo=timezone.utc), datetime(2026, 1, 2, 0, 0, tzinfo=timezone.utc),
             datetime(2026, 1, 2, 4, 0, tzinfo=plus5)]  # the last is 2026-01-01 23:00 UTC
    with session_scope() as s:
        for vid, t in zip(k1[:3], times):
            s.execute(sa.update(ReviewVote).where(ReviewVote.variation_id == vid).values(decided_at=t))
    rows = review_metrics.per_reviewer_day(since=date(2026, 1, 1), until=date(2026, 1, 2))
    assert [(r.day, r.reviewed) for r in rows] == [(date(2026, 1, 2), 1), (date(2026, 1, 1), 2)]
    assert [r.day for r in review_metrics.per_reviewer_day(since=date(2026, 1, 2), until=date(2026, 1, 2))] == [
        date(2026, 1, 2)]



def test_a_reviewer_demoted_mid_queue_gives_the_queue_back_on_leaving_it(k1):
    """Leaving the queue view released nothing and showed a refusal (release needed the reviewer role), so the
    images stayed locked for everyone until the claims expired."""
    from core.team import members
    from tests.test_pages import _page

    with session_scope() as s:
        s.add(Member(identity="ann", role="reviewer"))
        s.add(Member(identity="adm", role="admin"))
    at = _page("pages/review.py", editor="ann")
    at.segmented_control(key="rv_view").set_value("queue").run()
    assert not at.exception and set(review.held_by(variation_ids=k1).values()) == {"ann"}
    members.set_role(identity="ann", role="viewer", editor="adm")
    at.segmented_control(key="rv_view").set_value("grid").run()
    assert not at.exception
    assert not [e.value for e in at.error], [e.value for e in at.error]
    assert review.held_by(variation_ids=k1) == {}


def test_a_deactivated_reviewer_s_claims_can_be_released(k1):
    from core.team import members

    with session_scope() as s:
        s.add(Member(identity="ann", role="reviewer"))
        s.add(Member(identity="adm", role="admin"))
    held = [i.variation_id for i in review.claim_next(reviewer="ann", n=4)]
    members.deactivate(identity="ann", editor="adm")
    assert review.release(reviewer="ann") == 4 and review.held_by(variation_ids=held) == {}


def test_agreement_shows_no_pair_of_votes_on_an_image_still_open_for_votes(tmp_path, settings_override):
    """k = 3: after two votes the image still waits for a third reviewer, who must not learn from the Reviewers
    view that the first two agreed or disagreed (and on which reason)."""
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml", review_votes_required=3)
    fill_cast(characters=1, styles=1, reviewed_every=10**6)
    vid = review.queue()[0]
    review.decide(variation_id=vid, decision=A, reviewer="ann")
    review.decide(variation_id=vid, decision=R, reviewer="bob", reason_codes=["anatomy"])
    assert review.get_variation(variation_id=vid).review_status == "unreviewed"
    assert review_agreement.agreement() == ([], [])
    review.decide(variation_id=vid, decision=R, reviewer="carl", reason_codes=["anatomy"])
    assert review.get_variation(variation_id=vid).review_status == "disputed"
    pairs, codes = review_agreement.agreement()
    assert sorted(p.key for p in pairs) == ["ann & bob", "ann & carl", "bob & carl"]
    assert [c.key for c in codes] == ["anatomy"]
