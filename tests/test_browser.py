"""Main journeys in headless Chromium against a real Streamlit server and database."""
import pytest

from core import characters, references
from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server
from tests.helpers import image_bytes

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]


def _set_editor(page, name="Playwright Pat"):
    box = page.get_by_role("textbox", name="Your name")
    box.fill(name)
    box.press("Enter")
    page.get_by_text("Enter your name to save changes.").wait_for(state="detached")
    page.wait_for_timeout(500)  # let the rerun that the name triggered settle


def test_create_character_with_uploaded_image_and_see_it_listed(tmp_path):
    png = tmp_path / "ayla-front.png"
    png.write_bytes(image_bytes("PNG", (320, 400), "#884422"))
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/characters")
        page.get_by_text("No characters yet").wait_for()
        _set_editor(page)
        page.get_by_role("textbox", name="Name", exact=True).first.fill("Ayla Stormwind")
        page.get_by_role("textbox", name="Traits (comma separated)").fill("storm mage, silver hair")
        page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(png))
        page.get_by_text("ayla-front.png").wait_for()
        page.get_by_role("button", name="Create character").click()
        page.get_by_text("Created 'Ayla Stormwind'").wait_for()
        page.get_by_role("heading", name="Ayla Stormwind").wait_for()
        page.screenshot(path=str(ARTIFACTS / "character-created.png"), full_page=True)

        rows = characters.list_characters()
        assert [r.name for r in rows] == ["Ayla Stormwind"]
        refs = references.list_references(character_id=rows[0].id)
        assert len(refs) == 1 and refs[0].original_filename == "ayla-front.png"

        page.get_by_role("button", name="← Back").click()
        page.get_by_text("1 character(s)").wait_for()
        page.get_by_text("Ayla Stormwind").first.wait_for()
        assert page.locator("[data-testid='stImage'] img").count() >= 1  # the thumbnail shows in the list
        page.screenshot(path=str(ARTIFACTS / "character-list.png"), full_page=True)


def test_demo_cast_from_empty_overview():
    with streamlit_server() as url, browser_page() as page:
        page.goto(url)
        page.get_by_text("The workbench is empty").wait_for()
        _set_editor(page)
        page.get_by_role("button", name="Load demo cast").click()
        page.get_by_text("Demo cast loaded").wait_for(timeout=60_000)
        assert characters.count_characters() == 12
        page.screenshot(path=str(ARTIFACTS / "overview-demo.png"), full_page=True)


def test_generate_review_reject_regenerate_and_approve(editor):
    from core import generation, review
    from core.characters import CharacterInput
    from tests.browser import worker_process

    ch = characters.create_character(data=CharacterInput(name="Hana Mizuki", traits=["archer"]), editor=editor)
    with worker_process(), streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/characters?character={ch.id}")
        _set_editor(page)
        page.get_by_role("tab", name="Variations").click()
        page.get_by_role("button", name="🎬 Generate variations").click()
        page.get_by_text("ten slots are generating").wait_for()
        page.get_by_role("tab", name="Variations").click()
        page.get_by_text("completed: 10 completed").wait_for(timeout=60_000)  # the live panel, no reload
        page.screenshot(path=str(ARTIFACTS / "variations-done.png"), full_page=True)

        page.goto(f"{url}/review")
        _set_editor(page)
        page.get_by_role("radio", name="Review queue (10)").click()
        page.get_by_text("1 of 10").wait_for()
        # reject the first queued image (portrait_front) with a reason
        page.get_by_text("Reasons (for a rejection)").first.wait_for()
        page.locator("[data-testid='stMultiSelect']").first.click()
        page.get_by_role("option", name="wrong outfit").click()
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Reject").first.click()
        page.get_by_text("Marked rejected").wait_for()
        run_id = generation.runs_for_character(character_id=ch.id)[0].id
        front = review.attempts(character_id=ch.id, slot_key="portrait_front")[0]
        assert front.review_status == "rejected" and front.reason_codes == ["wrong_outfit"]

        page.get_by_role("radio", name="Coverage grid").click()
        page.get_by_role("button", name="👎").first.click()
        page.get_by_role("dialog").get_by_role("button", name="Regenerate slot").click()
        page.get_by_text("portrait_front: new attempt queued").wait_for()
        deadline_ok = False
        for _ in range(100):
            tries = review.attempts(character_id=ch.id, slot_key="portrait_front")
            if len(tries) == 2 and tries[0].status == "completed":
                deadline_ok = True
                break
            page.wait_for_timeout(300)
        assert deadline_ok, "regenerated slot did not complete"
        assert "wrong outfit" in tries[0].rendered_prompt
        page.reload()
        _set_editor(page)
        page.get_by_role("button", name="Approve all 10 unreviewed shown").click()
        page.get_by_text("Approved 10 image(s)").wait_for()
        page.screenshot(path=str(ARTIFACTS / "review-approved.png"), full_page=True)
        assert review.queue() == []
        assert generation.run_status(run_id=run_id).status == "completed"


def test_search_by_text_then_find_similar(editor):
    from core.vectors import embedding_status
    from core.characters import CharacterInput
    from tests.browser import worker_process

    for name, traits in (("Ayla Stormwind", ["storm mage", "lightning"]), ("Sable Nyx", ["assassin", "shadows"]),
                         ("Pip Thimble", ["mouse knight", "needle sword"])):
        characters.create_character(data=CharacterInput(name=name, traits=traits), editor=editor)
    with worker_process(), streamlit_server() as url, browser_page() as page:
        for _ in range(200):  # the saves queued embedding jobs; the worker runs them
            if {r["status"] for r in embedding_status.character_status()} == {"current"}:
                break
            page.wait_for_timeout(300)
        page.goto(f"{url}/search")
        page.get_by_text("Type a description to search by meaning").wait_for()
        box = page.get_by_role("textbox", name="Describe who or what you are looking for")
        box.fill("an assassin lurking in the shadows")
        box.press("Enter")
        page.get_by_text("Characters closest to").wait_for(timeout=60_000)
        page.get_by_role("button", name="Find similar").first.wait_for()
        names = page.locator("[data-testid='stMain'] [data-testid='stMarkdownContainer'] strong").all_inner_texts()
        assert names[0] == "Sable Nyx", names  # result cards in order of similarity
        page.screenshot(path=str(ARTIFACTS / "search-text.png"), full_page=True)
        page.get_by_role("button", name="Find similar").first.click()
        page.get_by_text("Most similar to").wait_for()
        assert "Sable Nyx" in page.get_by_text("Most similar to").inner_text()
        page.get_by_role("button", name="Find similar").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "search-similar.png"), full_page=True)
