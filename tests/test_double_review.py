"""Double review (REVIEW_VOTES_REQUIRED = 2): independent votes, disputes, adjudication, agreement."""
from __future__ import annotations

import pytest

from bench._fill import fill_cast
from core import review, review_agreement
from core.errors import ConflictError, PermissionDenied
from core.team import audit
from db.engine import session_scope
from db.models_team import Member

A, R = "approved", "rejected"
# the hand-checked example: ten images, two reviewers (see test_agreement_on_a_hand_checked_example)
ANN = [(A, []), (A, []), (A, []), (A, []), (A, []), (A, []), (R, ["anatomy"]), (R, ["anatomy"]),
       (R, ["anatomy", "artifact"]), (R, ["artifact"])]
BOB = [(A, []), (A, []), (A, []), (A, []), (A, []), (R, ["anatomy"]), (A, []), (R, ["anatomy"]),
       (R, ["artifact"]), (R, ["artifact"])]


@pytest.fixture
def ten(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml", review_votes_required=2)
    fill_cast(characters=1, styles=1, reviewed_every=10**6)
    return review.queue()


def _vote_all(ids: list[int], who: str, votes: list) -> None:
    for vid, (decision, codes) in zip(ids, votes):
        review.decide(variation_id=vid, decision=decision, reviewer=who, reason_codes=codes, note=f"{who} says so")


def test_the_second_reviewer_never_sees_the_first_vote_nor_gets_an_image_twice(ten):
    ann = review.claim_next(reviewer="ann", n=10)
    assert [i.variation_id for i in ann] == ten
    review.decide(variation_id=ten[0], decision=R, reviewer="ann", reason_codes=["anatomy"], note="six fingers")
    v = review.get_variation(variation_id=ten[0])
    # one vote of two: the image (what any page shows) is untouched
    assert (v.review_status, v.reason_codes, v.review_note, v.reviewed_by) == ("unreviewed", [], "", None)
    assert review.review_counts(filters=review.ReviewFilter()) == {"unreviewed": 10}
    review.release(reviewer="ann")
    assert ten[0] not in [i.variation_id for i in review.claim_next(reviewer="ann", n=10)]  # she voted on it
    review.release(reviewer="ann")
    bob = review.claim_next(reviewer="bob", n=1)
    assert [i.variation_id for i in bob] == [ten[0]]
    assert review.available(reviewer="ann") == 9 and review.available(reviewer="bob") == 10


def test_agreeing_votes_settle_disagreeing_ones_go_to_adjudication(ten):
    _vote_all(ten, "ann", ANN)
    _vote_all(ten, "bob", BOB)
    states = [review.get_variation(variation_id=i).review_status for i in ten]
    assert states == [A] * 5 + ["disputed", "disputed"] + [R] * 3
    settled = review.get_variation(variation_id=ten[8])
    assert settled.reason_codes == ["anatomy", "artifact"] and settled.reviewed_by == "ann, bob"
    with pytest.raises(ConflictError, match="already approved by double review"):
        review.decide(variation_id=ten[0], decision=R, reviewer="carl", reason_codes=["anatomy"])
    assert review.claim_next(reviewer="carl") == []  # nothing left waiting for a vote
    queue = review.disputed()
    assert [d.item.variation_id for d in queue] == ten[5:7]
    assert queue[0].votes == [("ann", A, (), "ann says so"), ("bob", R, ("anatomy",), "bob says so")]


def test_only_an_editor_adjudicates_and_it_is_audited(ten):
    _vote_all(ten, "ann", ANN)
    _vote_all(ten, "bob", BOB)
    with session_scope() as s:
        s.add(Member(identity="rev@example.com", role="reviewer"))
        s.add(Member(identity="ed@example.com", role="editor"))
    with pytest.raises(PermissionDenied, match="Settling a review disagreement needs the editor role"):
        review.adjudicate(variation_id=ten[5], decision=A, editor="rev@example.com")
    done = review.adjudicate(variation_id=ten[5], decision=R, editor="ed@example.com", reason_codes=["anatomy"])
    v = review.get_variation(variation_id=ten[5])
    assert (v.review_status, v.reason_codes, v.reviewed_by) == (R, ["anatomy"], "ed@example.com")
    assert [d.item.variation_id for d in review.disputed()] == [ten[6]]
    row = audit.history(entity="variation", entity_id=ten[5])[0]
    assert (row.action, row.actor, row.role, row.changes["review_status"]) == (
        "review.adjudicate", "ed@example.com", "editor", ["disputed", R])
    review.undo(decision=done, who="ed@example.com")
    assert review.get_variation(variation_id=ten[5]).review_status == "disputed"
    pairs, _ = review_agreement.agreement()
    assert pairs[0].items == 10  # adjudications are not reviewer votes


def test_agreement_on_a_hand_checked_example(ten):
    """Ten images, ann and bob (the ANN / BOB lists above).

    Decisions: both approve 1–5, both reject 8–10, image 6 ann A / bob R, image 7 ann R / bob A.
      p_o = 8/10 = 0.8; ann A 6 R 4, bob A 6 R 4; p_e = (6·6 + 4·4)/100 = 0.52;
      kappa = (0.8 − 0.52) / (1 − 0.52) = 0.28 / 0.48 = 0.58333…
    Reason 'anatomy' (given or not, per image): ann yes on 7, 8, 9; bob yes on 6, 8.
      agree on 1–5, 8, 10 → p_o = 7/10 = 0.7; p_e = (3·2 + 7·8)/100 = 0.62;
      kappa = 0.08 / 0.38 = 0.210526…
    Reason 'artifact': both yes on 9 and 10, both no elsewhere → p_o = 1; p_e = (2·2 + 8·8)/100 = 0.68;
      kappa = 0.32 / 0.32 = 1.
    """
    _vote_all(ten, "ann", ANN)
    _vote_all(ten, "bob", BOB)
    pairs, codes = review_agreement.agreement()
    [pair] = pairs
    assert (pair.key, pair.items, pair.percent) == ("ann & bob", 10, pytest.approx(0.8))
    assert pair.kappa == pytest.approx(0.28 / 0.48)
    by_code = {c.key: c for c in codes}
    assert set(by_code) == {"anatomy", "artifact"}
    assert (by_code["anatomy"].percent, by_code["anatomy"].kappa) == (pytest.approx(0.7), pytest.approx(0.08 / 0.38))
    assert (by_code["artifact"].percent, by_code["artifact"].kappa) == (pytest.approx(1.0), pytest.approx(1.0))


def test_kappa_is_undefined_when_chance_agreement_is_certain():
    assert review_agreement.cohen_kappa([(A, A), (A, A)]) is None
    assert review_agreement.percent_agreement([(A, A), (A, A)]) == 1.0
    assert review_agreement.cohen_kappa([]) is None
    assert review_agreement.cohen_kappa([(A, R), (R, A)]) == pytest.approx(-1.0)


def test_the_page_adjudicates_a_dispute_and_shows_agreement(ten):
    from tests.test_pages import _page

    _vote_all(ten, "ann", ANN)
    _vote_all(ten, "bob", BOB)
    at = _page("pages/review.py", editor="ed")
    at.segmented_control(key="rv_view").set_value("adjudicate").run()
    assert not at.exception
    assert any("ann: **approved**" in c.value for c in at.caption)  # the adjudicator sees the votes
    at.button(key=f"adj_approved_{ten[5]}").click().run()
    assert not at.exception
    assert review.get_variation(variation_id=ten[5]).review_status == "approved"
    assert any("Settled approved" in s.value for s in at.success)
    at.segmented_control(key="rv_view").set_value("reviewers").run()
    assert not at.exception
    pair = next(d.value for d in at.dataframe if "reviewers" in d.value.columns)
    assert pair.iloc[0]["reviewers"] == "ann & bob" and pair.iloc[0]["Cohen's kappa"] == pytest.approx(0.28 / 0.48)


def test_the_queue_card_of_the_second_reviewer_shows_nothing_of_the_first_vote(ten):
    from tests.test_pages import _page

    review.decide(variation_id=ten[0], decision="rejected", reviewer="ann", reason_codes=["anatomy"],
                  note="six fingers")
    bob = _page("pages/review.py", editor="bob")
    bob.segmented_control(key="rv_view").set_value("queue").run()
    assert not bob.exception
    assert bob.multiselect(key=f"q_reasons_{ten[0]}").value == []
    assert bob.text_input(key=f"q_note_{ten[0]}").value == ""
    assert not any("ann" in m.value or "six fingers" in m.value for m in [*bob.markdown, *bob.caption])


def test_a_vote_can_be_undone_or_withdrawn_without_touching_the_image(ten):
    first = review.decide(variation_id=ten[0], decision=A, reviewer="ann")
    assert first.final == "unreviewed"
    review.undo(decision=first)
    assert review.available(reviewer="ann") == 10  # her vote is gone: the image is hers to take again
    review.decide(variation_id=ten[0], decision=R, reviewer="ann", reason_codes=["anatomy"])
    review.decide(variation_id=ten[0], decision="unreviewed", reviewer="ann")
    v = review.get_variation(variation_id=ten[0])
    assert (v.review_status, v.reviewed_by) == ("unreviewed", None)
    assert review_agreement.vote_pairs() == []
    review.decide(variation_id=ten[0], decision=A, reviewer="ann")
    done = review.decide(variation_id=ten[0], decision=A, reviewer="bob")
    assert done.final == A
    with pytest.raises(ConflictError, match="reviewed again since"):
        review.undo(decision=first)
    review.undo(decision=done)  # bob's vote withdrawn: the image waits for a second vote again
    assert review.get_variation(variation_id=ten[0]).review_status == "unreviewed"
    assert review.available(reviewer="bob") == 10 and review.available(reviewer="ann") == 9


def test_bulk_decisions_are_votes_too(ten):
    assert review.bulk_approve(variation_ids=ten[:4], reviewer="ann") == 4
    assert review.review_counts(filters=review.ReviewFilter()) == {"unreviewed": 10}  # one vote of two each
    assert review.bulk_approve(variation_ids=ten[:4], reviewer="ann") == 4  # her votes are replaced, not doubled
    assert review.bulk_reject(variation_ids=ten[:2], reviewer="bob", reason_codes=["artifact"]) == 2
    assert review.bulk_approve(variation_ids=ten[2:4], reviewer="bob") == 2
    assert [review.get_variation(variation_id=i).review_status for i in ten[:4]] == ["disputed"] * 2 + [A] * 2
    assert review.bulk_approve(variation_ids=ten[:4], reviewer="carl") == 0  # settled: no third vote
    assert [e.action for e in audit.history(entity="variation", entity_id=ten[0])] == ["review.bulk"] * 3
    assert audit.history(entity="variation", entity_id=ten[0])[0].changes["review_status"] == ["unreviewed",
                                                                                                "disputed"]


def test_a_first_vote_stays_hidden_on_the_audit_page_and_in_history_until_the_image_is_settled(ten):
    from core.team import audit_view, history
    from db.models import Variation

    review.decide(variation_id=ten[0], decision=R, reviewer="ann", reason_codes=["anatomy"], note="six fingers")

    def shown() -> tuple[list[str], list[str]]:
        rows = audit_view.page_of(who="adm", filters=audit_view.make_filter(entity="variation")).rows
        with session_scope() as s:
            character_id = s.get(Variation, ten[0]).character_id
        trail = [c.after_full for r in rows if r.entity_id == str(ten[0]) for c in r.changes if c.field == "vote"]
        tab = [str(c.after) for e in history.character_history(character_id=character_id)
               if e.entity_id == str(ten[0]) for c in e.changes if c.field == "vote"]
        return trail, tab

    trail, tab = shown()
    assert trail and tab and R not in trail + tab  # the next reviewer cannot read Ann's rejection anywhere
    review.decide(variation_id=ten[0], decision=R, reviewer="bob", reason_codes=["anatomy"])
    trail, tab = shown()  # settled: every vote is history now
    assert trail.count(R) == 2 and tab.count(R) == 2
