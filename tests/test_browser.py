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
