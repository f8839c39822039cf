"""`workbench.py backup` / `restore` as real processes: into an empty embedded server in a temp folder."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import characters, generation, references
from core.characters import CharacterInput
from core.settings import get_settings
from db import embedded
from db.engine import get_engine
from tests.helpers import image_bytes
from tests.test_generation import run_worker

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env.update(env)
    return subprocess.run([sys.executable, "workbench.py", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=300)


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(sa.text("select tablename from pg_tables where schemaname = 'public'")).scalars()
            return {t: conn.execute(sa.text(f'select count(*) from "{t}"')).scalar_one() for t in tables}
    finally:
        engine.dispose()


@pytest.fixture
def empty_instance():
    folder = Path(tempfile.mkdtemp(prefix="wb-restore-"))
    yield folder
    pgdata = folder / "pg"
    if (pgdata / "postmaster.pid").exists():
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=embedded.start(pgdata, stop_on_exit=False).system_user)
    shutil.rmtree(folder, ignore_errors=True)


def test_backup_then_restore_into_an_empty_instance_gives_the_same_rows_and_bytes(editor, empty_instance):
    ch = characters.create_character(data=CharacterInput(name="Kira Voss", traits=["cyber arm"]), editor=editor)
    references.add_reference_upload(character_id=ch.id, data=image_bytes(), filename="r.png", claimed_mime=None,
                                    editor=editor)
    req = generation.request_run(character_id=ch.id, requested_by=editor)
    run_worker()
    assert generation.run_status(run_id=req.run_id).status == "completed"
    source_url = get_engine().url.render_as_string(hide_password=False)
    source_counts = _counts(source_url)
    source_media = _tree(Path(get_settings().media_root))
    assert source_counts["variation"] == 10 and len(source_media) > 20

    archive = empty_instance / "backup.tar.gz"
    done = _cli("backup", str(archive), DATABASE_URL=source_url)
    assert done.returncode == 0, done.stderr[-3000:]

    target = dict(PG_DATA_DIR=str(empty_instance / "pg"), MEDIA_ROOT=str(empty_instance / "media"))
    done = _cli("restore", str(archive), **target)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _tree(empty_instance / "media") == source_media  # byte-identical media

    server = embedded.start(empty_instance / "pg", stop_on_exit=False)  # the restore process stopped it on exit
    restored_url = embedded.sqlalchemy_url(server.get_uri(), database="workbench")
    assert _counts(restored_url) == source_counts

    # a second restore into the now non-empty instance is refused and changes nothing
    refused = _cli("restore", str(archive), **target)
    assert refused.returncode == 2 and "not empty" in refused.stderr and "--force" in refused.stderr
    assert _counts(restored_url) == source_counts
    forced = _cli("restore", "--force", str(archive), **target)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert _counts(restored_url) == source_counts
    assert _tree(empty_instance / "media") == source_media
