"""Issue 13 in a real browser: the editor's place, live state and words hold up in Chromium."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server
from tests.test_browser import _set_editor

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]


def test_editor_name_survives_reload_and_upload_limit_follows_the_setting():
    with streamlit_server({"MAX_UPLOAD_BYTES": str(5 * 1024 * 1024)}) as url, browser_page() as page:
        page.goto(f"{url}/characters")
        page.get_by_text("No characters yet").wait_for()
        # the widget states the server's limit, not Streamlit's default or a stale config value
        expect(page.locator("[data-testid='stFileUploaderDropzone']").first).to_contain_text("5MB")
        _set_editor(page, "Playwright Pat")
        expect(page).to_have_url(re.compile(r"editor=Playwright"))
        page.reload()
        box = page.get_by_role("textbox", name="Your name")
        expect(box).to_have_value("Playwright Pat")
        expect(page.get_by_role("button", name="Create character")).to_be_enabled()
        # another page through the navigation, then a reload there: still known
        page.get_by_role("link", name="Prompts").click()
        page.get_by_role("heading", name="📝 Prompts").wait_for()
        expect(page).to_have_url(re.compile(r"/prompts\?.*editor=Playwright"))
        page.reload()
        expect(page.get_by_role("textbox", name="Your name")).to_have_value("Playwright Pat")
        expect(page.get_by_text("Enter your name to save changes.")).to_have_count(0)
        page.screenshot(path=str(ARTIFACTS / "editor-after-reload.png"), full_page=True)
