"""The Map page in headless Chromium: a real box selection with the mouse fills the thumbnail grid."""
import re

import pytest
from playwright.sync_api import expect

from core.vectors import projection
from core.vectors.projection import ProjectionParams
from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server
from tests.test_browser import _set_editor
from tests.test_generation import run_worker

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]


def test_box_select_on_the_map_fills_the_grid(editor):
    from core.demo import load_demo_cast

    load_demo_cast(editor=editor)
    run_worker(queues=None)  # embed the cast (real local model)
    projection.request_fit(space="text-local", subject_type="character", editor=editor,
                           params=ProjectionParams(n_neighbors=5, random_state=3))
    run_worker(queues=None)  # the map job
    assert projection.current(space="text-local", subject_type="character").n_points == 12

    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/map")
        _set_editor(page)
        page.get_by_text("12 points · t-SNE").wait_for()
        plot = page.locator("[data-testid='stPlotlyChart'] .nsewdrag").first
        plot.wait_for()
        page.get_by_text("Nothing selected yet.").wait_for()
        box = plot.bounding_box()
        # drag a box over the whole plot area (dragmode is box-select by default)
        page.mouse.move(box["x"] + 5, box["y"] + 5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=10)
        page.mouse.move(box["x"] + box["width"] - 5, box["y"] + box["height"] - 5, steps=10)
        page.mouse.up()
        heading = page.get_by_role("heading", name=re.compile(r"^12 selected"))
        heading.wait_for(timeout=30_000)
        page.get_by_role("button", name="Tag 12").wait_for()
        expect(page.get_by_role("link", name=re.compile("Open"))).to_have_count(13)  # 12 cards + the preview
        page.screenshot(path=str(ARTIFACTS / "map-selection.png"), full_page=True)
