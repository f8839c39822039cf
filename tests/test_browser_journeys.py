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


def _pick(page, label: str, option: str) -> None:
    """Choose an option in a Streamlit selectbox by its label."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_prompts_page_keeps_its_tab_and_make_active_starts_at_what_is_in_use(editor):
    from core.ai import prompt_registry

    body = prompt_registry.file_default("character_name")
    prompt_registry.save_version(name="character_name", body=body + "\nBe brief.", author=editor, note="one")
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/prompts?editor=Pat")
        draft = page.get_by_role("textbox", name="Template body (Jinja2, sandboxed)")
        draft.fill(body + "\nBe very brief.")
        page.get_by_role("button", name="Save as new version").click()
        page.get_by_text("Saved character_name v2 and made it active.").wait_for()
        versions_tab = page.get_by_role("tab", name="Versions & diff")
        versions_tab.click()
        page.get_by_text("Make active").wait_for()
        # the picker starts at the version in use: one click on Activate cannot roll the template back
        expect(page.get_by_role("combobox", name="Make active")).to_have_value("v2 (in use)")
        expect(page.get_by_role("button", name="Activate")).to_be_disabled()
        _pick(page, "Make active", "v1")
        page.get_by_role("button", name="Activate").click()
        page.get_by_text("character_name: v1 is now in use.").wait_for()
        expect(versions_tab).to_have_attribute("aria-selected", "true")
        assert prompt_registry.resolve("character_name").version == 1
        expect(page.get_by_role("combobox", name="Make active")).to_have_value("v1 (in use)")
        # picking a side of the diff keeps the tab too, and the diff wraps inside the page
        _pick(page, "Left", "file default")
        page.locator("table.diff").wait_for()
        expect(versions_tab).to_have_attribute("aria-selected", "true")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(ARTIFACTS / "prompts-versions-tab.png"), full_page=True)


def test_new_runs_are_shown_live_on_the_cards_and_in_the_variations_tab(editor):
    from core import characters, generation
    from core.characters import CharacterInput
    from tests.browser import worker_process

    ch = characters.create_character(data=CharacterInput(name="Hana Mizuki", traits=["archer"]), editor=editor)
    first = generation.request_run(character_id=ch.id, requested_by="Olga Other").run_id
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/characters?editor=Pat")
        page.get_by_text("🔄 generating · 0/10 done").wait_for()  # queued, no worker yet
        with worker_process():
            # the card's progress line follows the run without a reload
            page.get_by_text("10/10 done · 0 approved").wait_for(timeout=90_000)
            expect(page.get_by_text("🔄 generating")).to_have_count(0)
            page.locator("[data-testid='stBaseButton-secondary']").filter(has_text="Open").click()
            page.get_by_role("tab", name="Variations").click()
            run_box = page.get_by_role("combobox", name="Run")
            expect(run_box).to_have_value(re.compile(rf"^Run #{first} · .* by Olga Other"))
            generate = page.get_by_role("button", name="🎬 Generate variations")

            generate.click()
            # the button answers at once and stays disabled while the run is active
            expect(page.get_by_role("button", name=re.compile(r"^⏳"))).to_be_disabled()
            page.get_by_text("ten slots are generating").wait_for()
            second = generation.runs_for_character(character_id=ch.id)[0].id
            assert second != first
            expect(run_box).to_have_value(re.compile(rf"^Run #{second} · .* by Pat"))  # the new run, not the old one
            # the live panel follows it to the end, then the page refreshes itself (no reload)
            generate.wait_for(timeout=90_000)
            assert generation.run_status(run_id=second).status == "completed"
            expect(run_box).to_have_value(re.compile(rf"^Run #{second} · "))
            page.get_by_text("completed: 10 completed").wait_for()

            # another editor starts a run: the open tab notices it, selects it and follows it
            third = generation.request_run(character_id=ch.id, requested_by="Olga Other").run_id
            expect(run_box).to_have_value(re.compile(rf"^Run #{third} · .* by Olga Other"), timeout=30_000)
            generate.wait_for(timeout=90_000)  # a warm worker may finish it before the page looks again
            assert generation.run_status(run_id=third).status == "completed"
            page.get_by_text("completed: 10 completed").wait_for()
        page.screenshot(path=str(ARTIFACTS / "variations-live.png"), full_page=True)
