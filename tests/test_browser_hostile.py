"""In a real browser: editor text that looks like Markdown or HTML is shown as text and fetches nothing."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core import characters, styles
from core.characters import CharacterInput
from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]


class _Tracker(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Tracker.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_markdown_and_html_in_names_are_shown_literally_and_fetch_nothing(editor):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tracker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Tracker.hits.clear()
    try:
        style = styles.create_style(data=styles.StyleInput(name=f"Noir ![s]({base}/style.png)"), editor=editor)
        ch = characters.create_character(data=CharacterInput(
            name=f"Eve ![pwn]({base}/name.png)", traits=[f"<img src={base}/trait.png>", "**bold**"],
            style_id=style.id), editor=f"Mallory ![m]({base}/editor.png)")
        with streamlit_server() as url, browser_page() as page:
            page.goto(f"{url}/characters")
            page.get_by_text("1 character(s)").wait_for()
            page.get_by_text(f"Eve ![pwn]({base}/name.png)").first.wait_for()
            page.get_by_text(f"<img src={base}/trait.png>, **bold**", exact=False).first.wait_for()
            assert page.locator("a[href*='127.0.0.1:%d']" % server.server_address[1]).count() == 0  # not even links

            box = page.get_by_role("textbox", name="Your name")
            box.fill(f"Sam ![x]({base}/sidebar.png)")
            box.press("Enter")
            page.get_by_text(f"Sam ![x]({base}/sidebar.png)", exact=False).first.wait_for()

            page.goto(f"{url}/characters?character={ch.id}")
            page.get_by_role("heading", name=f"Eve ![pwn]({base}/name.png)").wait_for()
            page.get_by_text(f"Mallory ![m]({base}/editor.png)", exact=False).first.wait_for()
            page.goto(f"{url}/styles")
            page.get_by_text("Edit").first.wait_for()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "hostile-names.png"), full_page=True)
        assert page is not None and _Tracker.hits == []
    finally:
        server.shutdown()
