"""Image search and Duplicates in headless Chromium: real server, real worker, real photographs."""
import pytest

from core.vectors import embedding_status
from core import characters, references
from core.vectors import duplicates
from core.characters import CharacterInput
from core.vectors.image_embedders import IMAGE_LEARNED
from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server, worker_process
from tests.photos import another_view, photo, png
from tests.test_browser import _set_editor

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]



def test_upload_an_image_find_its_nearest_images_then_open_duplicates(editor, tmp_path):
    cat, coffee = photo("chelsea.png"), photo("coffee.png")
    whiskers = characters.create_character(data=CharacterInput(name="Whiskers"), editor=editor)
    barista = characters.create_character(data=CharacterInput(name="Barista"), editor=editor)
    for ch, img, side in ((whiskers, cat, 256), (whiskers, cat, 230), (barista, coffee, 256)):  # two near-identical
        references.add_reference_upload(character_id=ch.id, data=png(img, side=side), filename=f"{ch.slug}.png",
                                        claimed_mime="image/png", editor=editor)
    query = tmp_path / "cat-from-another-angle.png"
    query.write_bytes(png(another_view(cat), side=300))
    with worker_process(), streamlit_server() as url, browser_page() as page:
        for _ in range(600):  # the uploads queued embedding jobs; the worker runs them (and loads the model)
            states = [r["status"] for r in embedding_status.status_rows(subject_type="reference", space=IMAGE_LEARNED)]
            if states == ["current"] * 3:
                break
            page.wait_for_timeout(300)
        else:
            pytest.fail(f"the worker did not embed the three references: {states}")
        page.goto(f"{url}/search")
        page.get_by_text("Type a description to search by meaning").wait_for()
        page.locator("[data-testid='stMain']").get_by_text("Similar images").first.click()
        page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(str(query))
        page.get_by_text("Images most like").wait_for(timeout=90_000)
        page.get_by_role("button", name="Find similar").first.wait_for()
        main = page.locator("[data-testid='stMain']")
        main.locator("strong", has_text="Barista").first.wait_for()  # every card drawn, not a half-rendered list
        names = page.locator("[data-testid='stMain'] [data-testid='stMarkdownContainer'] strong").all_inner_texts()
        cards = [n for n in names if n in ("Whiskers", "Barista")]
        assert cards[:3] == ["Whiskers", "Whiskers", "Barista"], names  # both cat photos before the coffee
        page.screenshot(path=str(ARTIFACTS / "search-image-learned.png"), full_page=True)

        page.get_by_role("link", name="Near-duplicate images").click()
        page.get_by_role("heading", name="👯 Duplicates").wait_for()
        _set_editor(page)
        page.get_by_text("1 pair(s)").wait_for(timeout=60_000)
        page.get_by_role("button", name="Keep both").wait_for()
        page.locator("[data-testid='stMain'] [data-testid='stImage'] img").nth(1).wait_for()
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "duplicates.png"), full_page=True)
        page.get_by_role("button", name="Keep both").click()
        page.get_by_text("Kept both").wait_for()
        page.get_by_text("No pairs at this threshold").wait_for()
        assert duplicates.find_pairs() == []
