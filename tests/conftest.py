"""Test session: a real embedded Postgres + pgvector, migrated with Alembic.

The server lives in data/pg-test (separate from the app's data/pg); each test
session recreates the `workbench_test` database and applies the migrations, and
every test starts from empty tables and an empty MEDIA_ROOT.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_STATE: dict = {}


def pytest_configure(config):
    if os.environ.get("WORKBENCH_TEST_DB_READY"):
        return
    from db import embedded

    if os.environ.get("TEST_DATABASE_URL"):
        server_url = os.environ["TEST_DATABASE_URL"]
    else:
        server = embedded.start(ROOT / "data" / "pg-test", stop_on_exit=True)
        _STATE["server"] = server
        server_url = embedded.sqlalchemy_url(server.get_uri())
    url = embedded.ensure_database(server_url, "workbench_test", recreate=True)
    media = Path(tempfile.mkdtemp(prefix="wb-media-"))
    os.environ.update(
        DATABASE_URL=url, MEDIA_ROOT=str(media), WORKBENCH_TEST_DB_READY="1", OPENAI_API_KEY="", ALLOW_PRIVATE_URLS="false"
    )
    os.environ.pop("OPENAI_API_KEY")
    _STATE["media"] = media
    from core.settings import reset_settings_cache
    from db.engine import dispose_engine
    from db.migrate import upgrade

    reset_settings_cache()
    dispose_engine()
    upgrade(url)


def pytest_unconfigure(config):
    media = _STATE.get("media")
    if media:
        shutil.rmtree(media, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_state():
    """Empty tables and media before each test, and fresh settings after it."""
    import sqlalchemy as sa

    from core.settings import get_settings, reset_settings_cache
    from db.engine import get_engine

    reset_settings_cache()
    with get_engine().begin() as conn:
        tables = conn.execute(
            sa.text("select tablename from pg_tables where schemaname='public' and tablename <> 'alembic_version'")
        ).scalars().all()
        if tables:
            conn.execute(sa.text("truncate " + ", ".join(f'"{t}"' for t in tables) + " restart identity cascade"))
    media = Path(get_settings().media_root)
    if media.exists():
        shutil.rmtree(media)
    media.mkdir(parents=True)
    yield
    reset_settings_cache()


@pytest.fixture
def editor() -> str:
    return "Tess Tester"


@pytest.fixture
def settings_override(monkeypatch):
    """Change a setting for one test through the environment, the way an operator would."""
    from core.settings import reset_settings_cache

    def _set(**values):
        for key, value in values.items():
            monkeypatch.setenv(key.upper(), str(value))
        reset_settings_cache()

    return _set
