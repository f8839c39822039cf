"""Review in headless Chromium: keys act only on the image on screen, the view stays, undo, paging at 1,000."""
import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from bench._fill import fill_cast
from core import review
from db.engine import get_engine
from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server
from tests.test_browser import _set_editor

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]


def _review_states() -> dict[int, str]:
    with get_engine().connect() as conn:
        return dict(conn.execute(sa.text("select id, review_status from variation")).all())


def _position(page, pos: int, n: int):
    return page.get_by_text(re.compile(rf"^{pos} of {n} · keys"))


def _press(page, key: str) -> None:
    page.locator("h1").first.click()  # keys go to the page, not to a text box
    page.keyboard.press(key)


def test_keys_act_only_on_the_visible_queue_image_and_undo_restores_it():
    fill_cast(characters=3, styles=1)
    before = _review_states()
    n = list(before.values()).count("unreviewed")
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/review")
        _set_editor(page)
        page.get_by_text("3 character(s)").wait_for()
        page.get_by_role("button", name="🔎", exact=True).first.wait_for()  # grid cells of unreviewed images
        _press(page, "a")  # the coverage grid is showing: A must not approve anything
        page.wait_for_timeout(1500)
        assert _review_states() == before
        assert page.get_by_text("Marked approved").count() == 0

        page.get_by_role("radio", name=f"Review queue ({n})").click()
        _position(page, 1, n).wait_for()
        first = review.queue_slice(filters=review.ReviewFilter(), limit=1)[0]
        page.get_by_text(first.label).first.wait_for()  # the image the keys will act on is the one shown
        _press(page, "a")
        page.get_by_text(f"Marked approved: {first.label}.").wait_for()
        _position(page, 1, n - 1).wait_for()  # still the queue, next image
        # no grid cells behind it (elements of the previous run linger until this run ends on a slow machine)
        expect(page.get_by_role("button", name="🔎", exact=True)).to_have_count(0, timeout=60_000)
        expect(page.locator("[data-testid='stMarkdownContainer'] img")).to_have_count(0, timeout=60_000)
        after = _review_states()
        assert after[first.variation_id] == "approved"
        assert {k: v for k, v in after.items() if k != first.variation_id} == \
               {k: v for k, v in before.items() if k != first.variation_id}
        page.screenshot(path=str(ARTIFACTS / "review-queue-key-approved.png"), full_page=True)

        page.get_by_role("button", name="Undo").click()
        page.get_by_text(f"Undone: {first.label} is unreviewed again.").wait_for()
        _position(page, 1, n).wait_for()
        assert _review_states() == before


def test_review_at_a_thousand_characters_renders_one_page_at_a_time():
    fill_cast(characters=1000)
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/review")
        page.get_by_text("1000 character(s)").wait_for(timeout=90_000)
        page.screenshot(path=str(ARTIFACTS / "review-1000-page1.png"), full_page=True)
        box = page.get_by_role("spinbutton", name="Page (of 40)")
        box.wait_for(timeout=60_000)
        page.get_by_text("Bench character 00025", exact=True).wait_for()
        assert page.get_by_text(re.compile(r"^Bench character \d{5}$")).count() == 25
        assert page.get_by_text("Bench character 00026", exact=True).count() == 0
        box.fill("2")
        box.press("Enter")
        page.get_by_text("Bench character 00026", exact=True).wait_for()
        assert page.get_by_text("Bench character 00001", exact=True).count() == 0


def test_the_grid_and_an_open_slot_dialog_follow_a_run_until_its_images_land(editor):
    from core import characters, generation
    from core.characters import CharacterInput
    from tests.browser import worker_process

    ch = characters.create_character(data=CharacterInput(name="Live Lina", traits=["runner"]), editor=editor)
    run = generation.request_run(character_id=ch.id, requested_by=editor).run_id
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/review")
        _set_editor(page)
        expect(page.get_by_role("button", name="⏳", exact=True)).to_have_count(10)  # queued: no worker yet
        page.get_by_role("button", name="⏳", exact=True).first.click()  # a dialog on a slot still to come
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("this view refreshes by itself").wait_for()
        with worker_process({"OFFLINE_LATENCY_S": "2"}):
            # nobody touches the page: the dialog shows its image once it lands, then the grid fills in
            dialog.get_by_text(re.compile(r"· completed · unreviewed")).wait_for(timeout=90_000)
            expect(dialog.get_by_text("this view refreshes by itself")).to_have_count(0)
            page.keyboard.press("Escape")  # close the dialog: the grid resumes following the run
            expect(page.get_by_role("button", name="🔎", exact=True)).to_have_count(10, timeout=90_000)
            expect(page.get_by_role("button", name="⏳", exact=True)).to_have_count(0)
        assert generation.run_status(run_id=run).status == "completed"
        page.screenshot(path=str(ARTIFACTS / "review-live-grid.png"), full_page=True)
