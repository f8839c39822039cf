"""Reviewer metrics per person and day, from real votes."""
from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from bench._fill import fill_cast
from core import review, review_metrics
from core.errors import ValidationError
from db.models import utcnow


@pytest.fixture
def ten(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    fill_cast(characters=1, styles=1, reviewed_every=10**6)
    return review.queue()


def test_images_median_seconds_approval_rate_and_reasons_per_person_and_day(ten):
    now = utcnow()
    for vid, secs, decision, codes in [(ten[0], 10, "approved", []), (ten[1], 20, "rejected", ["anatomy"]),
                                       (ten[2], 40, "rejected", ["anatomy", "artifact"])]:
        review.decide(variation_id=vid, decision=decision, reviewer="ann", reason_codes=codes,
                      shown_at=now - timedelta(seconds=secs))
    t0 = time.monotonic()
    review.claim_next(reviewer="bob", n=2)
    time.sleep(0.3)
    review.decide(variation_id=ten[3], decision="approved", reviewer="bob")  # timed from the claim
    waited = time.monotonic() - t0
    assert review.bulk_approve(variation_ids=ten[4:6], reviewer="bob") == 2  # bulk: counted, not timed
    today = utcnow().date()
    rows = {r.reviewer: r for r in review_metrics.per_reviewer_day(since=today - timedelta(days=1), until=today)}
    ann, bob = rows["ann"], rows["bob"]
    assert (ann.day, ann.reviewed, ann.approved) == (today, 3, 1)
    assert ann.approval_rate == pytest.approx(1 / 3)
    assert ann.median_seconds == pytest.approx(20, abs=1.0)
    assert ann.reasons == {"anatomy": 2, "artifact": 1}
    assert (bob.reviewed, bob.approved, bob.approval_rate, bob.reasons) == (3, 3, 1.0, {})
    assert 0.3 <= bob.median_seconds <= waited + 0.5  # the one timed decision: from claim to decision
    assert review_metrics.per_reviewer_day(since=today - timedelta(days=9), until=today - timedelta(days=1)) == []
    assert [r.reviewer for r in review_metrics.per_reviewer_day(since=today, until=today, reviewer="ann")] == ["ann"]


def test_a_re_decision_counts_once_and_a_backwards_period_is_refused(ten):
    review.decide(variation_id=ten[0], decision="approved", reviewer="ann")
    review.decide(variation_id=ten[0], decision="rejected", reviewer="ann", reason_codes=["anatomy"])
    today = utcnow().date()
    [row] = review_metrics.per_reviewer_day(since=today, until=today)
    assert (row.reviewed, row.approved, row.reasons) == (1, 0, {"anatomy": 1})
    with pytest.raises(ValidationError, match="ends"):
        review_metrics.per_reviewer_day(since=date(2026, 5, 2), until=date(2026, 5, 1))
