"""Layout at common widths: every page at 1024 and 1440 px, screenshots saved, nothing overflows sideways."""
import pytest

from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]

WIDTHS = (1024, 1440)
# (url path, a file-name slug); the character detail is the busiest screen
PAGES = [("", "overview"), ("characters", "characters"), ("characters?character={cid}", "character-variations"),
         ("styles", "styles"), ("review", "review"), ("search", "search"), ("embeddings", "embeddings"),
         ("map", "map"), ("prompts", "prompts"), ("activity", "activity"), ("duplicates", "duplicates"),
         ("experiments", "experiments"), ("audit", "audit"), ("members", "members")]

# Elements whose right edge passes the viewport, unless a scrolling/clipping ancestor keeps them inside it
# (dataframes scroll inside their frame: that is fine). Buttons whose label does not fit are cut.

OVERFLOW_JS = """
() => {
  const W = window.innerWidth, out = [];
  const name = el => (el.getAttribute('data-testid') || el.tagName.toLowerCase()) + ': '
                     + (el.innerText || el.getAttribute('aria-label') || '').trim().slice(0, 60);
  if (document.documentElement.scrollWidth > W) out.push('page scrollWidth ' + document.documentElement.scrollWidth);
  for (const el of document.querySelectorAll('[data-testid="stMain"] *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= W + 1) continue;
    let p = el.parentElement, inside = false;
    while (p && !inside) {
      const ox = getComputedStyle(p).overflowX;
      if (ox !== 'visible' && p.getBoundingClientRect().right <= W + 1) inside = true;
      p = p.parentElement;
    }
    if (!inside) out.push('overflows (' + Math.round(r.right) + ' > ' + W + ') ' + name(el));
  }
  for (const b of document.querySelectorAll('[data-testid="stMain"] button')) {
    const label = b.querySelector('[data-testid="stMarkdownContainer"]') || b;
    if (b.offsetWidth > 0 && label.scrollWidth > label.clientWidth + 1) out.push('cut button label ' + name(b));
  }
  return out.slice(0, 15);
}
"""


def test_every_page_fits_at_1024_and_1440_px(editor):
    from core import generation
    from core.vectors import projection
    from core.characters import list_characters
    from core.demo import load_demo_cast
    from tests.test_generation import run_worker

    load_demo_cast(editor=editor)
    cid = next(c.id for c in list_characters() if c.name == "Bram Copperkettle")
    generation.request_run(character_id=cid, requested_by=editor)
    run_worker(queues=None)  # the slots, the cast's embeddings (real local model), the images' embeddings
    projection.request_fit(space="text-local", subject_type="character", editor=editor,
                           params=projection.ProjectionParams())  # 12 points: a quick PCA map
    run_worker(queues=None)
    problems = {}
    with streamlit_server() as url, browser_page() as page:
        for path, slug in PAGES:
            page.set_viewport_size({"width": WIDTHS[0], "height": 900})
            sep = "&" if "?" in path else "?"
            page.goto(f"{url}/{path.format(cid=cid)}{sep}editor=Pat")
            page.locator("[data-testid='stMain'] h1").first.wait_for()
            if slug == "character-variations":
                page.get_by_role("tab", name="Variations").click()
                page.get_by_text("completed: 10 completed").wait_for()
            page.wait_for_timeout(1500)  # images, charts and fonts settle
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                page.wait_for_timeout(700)
                page.screenshot(path=str(ARTIFACTS / f"layout-{slug}-{width}.png"), full_page=True)
                found = page.evaluate(OVERFLOW_JS)
                if found:
                    problems[f"{slug} @ {width}px"] = found
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
