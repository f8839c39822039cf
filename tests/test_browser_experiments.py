"""The prompt tuner's journey in headless Chromium: panel → experiment (active vs draft, offline) →
blind keyboard picks → verdict → activate the winner."""
import pytest

from core import characters, experiment_results, experiments
from core.ai import prompt_registry
from core.characters import CharacterInput
from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server, worker_process
from tests.test_browser import _set_editor

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]


def _choose(page, label: str, option: str) -> None:
    box = page.locator("[data-testid='stMultiSelect']").filter(has_text=label)
    box.wait_for(timeout=90_000)  # the first render can wait on a busy machine (the worker warms its models)
    for _ in range(3):  # a rerun (e.g. the one a text field's blur triggers) can redraw the open list
        box.click()
        try:
            page.get_by_role("option", name=option).click(timeout=5_000)
            break
        except Exception:
            page.keyboard.press("Escape")
            page.wait_for_timeout(500)
    page.keyboard.press("Escape")
    box.get_by_text(option).wait_for()


def test_panel_experiment_blind_keyboard_picks_verdict_and_activate(editor):
    for name in ("Ayla", "Bram"):
        characters.create_character(data=CharacterInput(name=name, traits=["t"]), editor=editor)
    prompt_registry.save_version(name="variation_prompt", body=prompt_registry.file_default("variation_prompt")
                                 + "\nVersion one marker.", author=editor)
    with worker_process(), streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/experiments")
        _set_editor(page)
        page.get_by_role("textbox", name="Panel name").fill("two heroes")
        _choose(page, "Characters", "Ayla")
        _choose(page, "Characters", "Bram")
        _choose(page, "Slots", "Portrait, front")
        page.get_by_role("button", name="Create panel").click()
        page.get_by_text("Panel 'two heroes' saved: 2 characters × 1 slots.").wait_for()

        page.get_by_role("radio", name="New experiment").click()
        draft = page.get_by_role("textbox", name="Draft body")
        draft.fill(draft.input_value() + "\nDraft marker: crisp ink outlines.")
        draft.press("Control+Enter")
        page.get_by_role("button", name="Start experiment").click()
        page.get_by_text("queued: 4 images").wait_for()
        page.get_by_text("0 of 2 rows judged").wait_for()
        page.get_by_role("button", name="Image A is better").and_(
            page.locator("button:not([disabled])")).wait_for(timeout=90_000)  # the live view saw the worker finish
        page.wait_for_function("[...document.querySelectorAll(\"[data-testid='stImage'] img\")]"
                               ".filter(i => i.complete && i.naturalWidth > 0).length == 2")  # both images drawn
        page.screenshot(path=str(ARTIFACTS / "experiment-compare-blind.png"), full_page=True)
        body = page.locator("[data-testid='stMain']").inner_text()
        assert "Image B" in body and "Version one marker" not in body and "v1 (active)" not in body

        for done in (1, 2):  # peek at Image A's prompt (the tuner could too), then pick the draft by key
            page.get_by_role("button", name="Prompt (reveals the version)").first.click()
            prompt_a = page.locator("[data-testid='stPopoverBody']").inner_text()
            page.keyboard.press("Escape")
            page.locator("[data-testid='stPopoverBody']").wait_for(state="detached")
            page.evaluate("document.activeElement && document.activeElement.blur()")  # keys go to the page
            page.keyboard.press("1" if "Draft marker" in prompt_a else "2")
            page.get_by_text(f"{done} of 2 rows judged").wait_for()
        [exp] = experiments.list_experiments()
        res = experiment_results.results(experiment_id=exp.id)
        assert res.judged == 2 and [r.wins for r in res.arms] == [0, 2]  # the draft won both rows

        page.get_by_role("radio", name="Results").click()
        page.get_by_text("draft wins 2 of 2 rows").wait_for()
        assert res.verdict in page.locator("[data-testid='stMain'] [data-testid='stAlert']").first.inner_text()
        page.get_by_role("button", name="Activate draft").click()
        page.get_by_text(f"(noted: experiment #{exp.id})").wait_for()
        page.screenshot(path=str(ARTIFACTS / "experiment-results.png"), full_page=True)
    active = prompt_registry.resolve("variation_prompt")
    assert active.version == 2 and active.body == exp.arms[1]["body"]
