"""Database outages on a separate embedded Postgres (the session's server is never stopped).

The scratch server lives in a temp folder; the test process and the worker subprocess both point at it
through DATABASE_URL, and the test stops it (pg_ctl stop -m fast, which drops every connection) and
starts it again mid-run.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from core import characters, generation, jobs, references
from core.characters import CharacterInput
from core.settings import reset_settings_cache
from db import embedded
from db.engine import dispose_engine, session_scope
from db.migrate import upgrade
from db.models import AICall
from tests.browser import browser_page, chromium_available, streamlit_server
from tests.helpers import image_bytes
from tests.test_faults import assert_files_match_rows, slots, wait_for

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


class Scratch:
    def __init__(self, server, url: str):
        self.server, self.url = server, url

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()


@pytest.fixture(scope="module")
def scratch_server():
    folder = Path(tempfile.mkdtemp(prefix="wb-pg-"))
    server = embedded.start(folder / "pgdata", stop_on_exit=False)
    url = embedded.ensure_database(embedded.sqlalchemy_url(server.get_uri()), "workbench")
    upgrade(url)
    scratch = Scratch(server, url)
    yield scratch
    try:
        scratch.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def on_scratch(scratch_server):
    """Point this process at the scratch database (empty tables) for one test, then back."""
    saved = os.environ["DATABASE_URL"]

    def use(url: str) -> None:
        os.environ["DATABASE_URL"] = url
        reset_settings_cache()
        dispose_engine()
        jobs.reset_app()

    use(scratch_server.url)
    with session_scope() as s:
        tables = s.execute(sa.text("select tablename from pg_tables where schemaname = 'public' "
                                   "and tablename <> 'alembic_version'")).scalars().all()
        s.execute(sa.text("truncate " + ", ".join(f'"{t}"' for t in tables) + " restart identity cascade"))
    try:
        yield scratch_server
    finally:
        use(saved)


def test_postgres_stopped_and_restarted_mid_run_leaves_nothing_stuck(on_scratch, editor):
    ch = characters.create_character(data=CharacterInput(name="Kira Voss", traits=["cyber arm"]), editor=editor)
    references.add_reference_upload(character_id=ch.id, data=image_bytes(), filename="r.png", claimed_mime=None,
                                    editor=editor)
    req = generation.request_run(character_id=ch.id, requested_by=editor)
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "worker-outage.log"
    worker = subprocess.Popen(
        [sys.executable, "workbench.py", "worker", "--queues", "generation", "--concurrency", "4"], cwd=ROOT,
        env={**os.environ, "DATABASE_URL": on_scratch.url, "OFFLINE_LATENCY_S": "1.5", "STALLED_AFTER_S": "3",
             "RECOVERY_INTERVAL_S": "1", "SLOT_TIMEOUT_S": "40"},
        stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    try:
        def mid_run():
            states = [v.status for v in slots(req.run_id)]
            return "completed" in states and "generating" in states
        wait_for(mid_run, timeout=90, what="slots completed and others generating")
        on_scratch.stop()
        time.sleep(5)  # slots finish their provider calls and cannot write anything
        on_scratch.start()
        dispose_engine()  # this process's pool holds connections the stop killed

        def settled():
            st = generation.run_status(run_id=req.run_id)
            return not st.active and st
        st = wait_for(settled, timeout=120, what="the run to settle after the outage", interval=0.5)
        assert worker.poll() is None, "the worker died in the outage"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    rows = slots(req.run_id)
    assert {v.status for v in rows} <= {"completed", "failed"}, [(v.slot_key, v.status) for v in rows]
    assert all(v.error for v in rows if v.status == "failed")
    assert "failed" in {v.status for v in rows} or st.status == "completed"
    with session_scope() as s:
        assert s.execute(sa.select(sa.func.count()).where(AICall.status == "running")).scalar_one() == 0
    assert_files_match_rows(req.run_id)
    # the run is closed: a new request makes a new run instead of returning the stuck one
    assert generation.request_run(character_id=ch.id, requested_by=editor).created


def _open_app(editor: str) -> AppTest:
    """A fresh session's first run goes through app.py, as the server runs every page (later AppTest runs
    of the same session execute the page file alone, bypassing app.py)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["editor_name"] = editor
    return at.run()


def test_pages_show_database_unavailable_and_recover_by_themselves(on_scratch, editor):
    characters.create_character(data=CharacterInput(name="Kira Voss"), editor=editor)
    at = _open_app(editor)
    assert not at.exception and not at.warning
    on_scratch.stop()
    try:
        at = _open_app(editor)
        assert not at.exception  # no OperationalError traceback
        assert any("Database unavailable" in w.value and "Retrying" in w.value for w in at.warning)
    finally:
        on_scratch.start()
    at = _open_app(editor)
    assert not at.exception and not any("Database unavailable" in w.value for w in at.warning)


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)")
def test_open_page_recovers_by_itself_after_an_outage(on_scratch, editor):
    """A real server and browser: the deep-linked Characters page shows the retrying state during the
    outage and comes back without anyone reloading it."""
    characters.create_character(data=CharacterInput(name="Kira Voss"), editor=editor)
    with streamlit_server({"DATABASE_URL": on_scratch.url}) as url, browser_page() as page:
        page.goto(f"{url}/characters")
        page.get_by_text("1 character(s)").wait_for()
        on_scratch.stop()
        try:
            page.reload()
            page.get_by_text("Database unavailable.").wait_for()
            assert page.get_by_text("OperationalError").count() == 0
        finally:
            on_scratch.start()
        page.get_by_text("1 character(s)").wait_for(timeout=30_000)  # no reload: the page polled
        page.get_by_text("Database unavailable.").wait_for(state="detached")
