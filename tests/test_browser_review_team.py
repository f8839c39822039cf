"""Two reviewers in two headless Chromium sessions on one server: their review queues never share an image."""
import re
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from bench._fill import fill_cast
from core import review
from db.engine import get_engine
from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, chromium_available, streamlit_server
from tests.test_browser import _set_editor

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]


@contextmanager
def two_pages():
    """Two independent browser sessions (separate contexts: separate Streamlit sessions)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2)]
            for page in pages:
                page.set_default_timeout(60_000)
            yield pages
        finally:
            browser.close()


def _states() -> dict[int, str]:
    with get_engine().connect() as conn:
        return dict(conn.execute(sa.text("select id, review_status from variation")).all())


def _press(page, key: str) -> None:
    page.locator("h1").first.click()  # keys go to the page, not to a text box
    page.keyboard.press(key)


def test_two_reviewers_get_different_images_and_leaving_the_queue_gives_them_back():
    fill_cast(characters=3, styles=1, reviewed_every=10**6)
    n = 30
    with streamlit_server() as url, two_pages() as (ann, bob):
        for page, name in ((ann, "Ann Able"), (bob, "Bob Baker")):
            page.goto(f"{url}/review")
            _set_editor(page, name)
        ann.get_by_role("radio", name=f"Review queue ({n})").click()
        ann.get_by_text(re.compile(rf"^1 of {n} · keys.* · {review.CLAIM_BATCH} held for you$")).wait_for()
        bob.get_by_role("radio", name=f"Review queue ({n})").click()
        bob.get_by_text(re.compile(rf"^1 of {n - review.CLAIM_BATCH} · keys.* · {review.CLAIM_BATCH} held for you$"))\
            .wait_for()
        held = review.held_by(variation_ids=list(_states()))
        assert sorted(held.values()) == ["Ann Able"] * review.CLAIM_BATCH + ["Bob Baker"] * review.CLAIM_BATCH
        ann_first = review.claim_next(reviewer="Ann Able")[0]
        bob_first = review.claim_next(reviewer="Bob Baker")[0]
        assert ann_first.variation_id != bob_first.variation_id
        ann.get_by_text(ann_first.label).first.wait_for()  # each sees their own image
        bob.get_by_text(bob_first.label).first.wait_for()
        assert bob.get_by_text(ann_first.label).count() == 0
        ann.screenshot(path=str(ARTIFACTS / "review-team-ann.png"), full_page=True)
        bob.screenshot(path=str(ARTIFACTS / "review-team-bob.png"), full_page=True)

        _press(ann, "a")
        ann.get_by_text(f"Marked approved: {ann_first.label}.").wait_for()
        _press(bob, "a")
        bob.get_by_text(f"Marked approved: {bob_first.label}.").wait_for()
        states = _states()
        assert states[ann_first.variation_id] == states[bob_first.variation_id] == "approved"
        assert list(states.values()).count("approved") == 2

        ann.get_by_role("radio", name="Coverage grid").click()  # Ann leaves the queue
        ann.get_by_text("3 character(s)").wait_for()
        ann.wait_for_timeout(1000)
        assert set(review.held_by(variation_ids=list(states)).values()) == {"Bob Baker"}

        bob.get_by_role("link", name="Characters").first.click()  # Bob leaves the Review page altogether
        bob.get_by_role("heading", name=re.compile("Characters")).first.wait_for()
        for _ in range(50):  # the release happens in the rerun that opens the other page
            if not review.held_by(variation_ids=list(states)):
                break
            bob.wait_for_timeout(200)
        assert review.held_by(variation_ids=list(states)) == {}
