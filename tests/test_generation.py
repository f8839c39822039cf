"""Generation runs with a real procrastinate worker on the real database."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import characters, generation, media, recovery, references
from core.characters import CharacterInput
from core.errors import ValidationError
from core.jobs import make_worker_app
from db.engine import session_scope
from db.models import AICall, GenerationRun, Variation
from tests.helpers import image_bytes
from tests.openai_stub import error, image_ok, start_stub

ROOT = Path(__file__).resolve().parent.parent


def run_worker(concurrency: int = 10, queues: list[str] | None = ["generation"]) -> None:  # noqa: B006
    """Process every queued job (of these queues; None = all) in-process, then return."""
    make_worker_app().run_worker(queues=queues, wait=False, install_signal_handlers=False, concurrency=concurrency,
                         listen_notify=False, fetch_job_polling_interval=0.1)


@pytest.fixture
def character(editor):
    ch = characters.create_character(data=CharacterInput(name="Kira Voss", traits=["cyber arm"]), editor=editor)
    references.add_reference_upload(character_id=ch.id, data=image_bytes(), filename="r.png", claimed_mime=None,
                                    editor=editor)
    return ch


def _variations(run_id: int) -> list[Variation]:
    with session_scope() as s:
        return list(s.execute(sa.select(Variation).where(Variation.run_id == run_id).order_by(Variation.id)).scalars())


def _jobs() -> list[dict]:
    with session_scope() as s:
        return [dict(r._mapping) for r in s.execute(sa.text(
            "select id, status, args from procrastinate_jobs where task_name = 'generate_slot' order by id"))]


def test_run_completes_all_ten_slots_with_files_and_metadata(character, editor):
    req = generation.request_run(character_id=character.id, requested_by=editor)
    assert req.created
    run_worker()
    st = generation.run_status(run_id=req.run_id)
    assert st.status == "completed" and st.counts == {"completed": 10}
    for v in st.slots:
        assert media.exists(v.path) and media.exists(v.thumb_path)
        assert v.path == f"characters/kira-voss/variations/{req.run_id}/{v.slot_key}.png"
        assert v.seed == character.base_seed + {s.key: s.seed_offset for s in generation.shot_list()}[v.slot_key]
        assert "Kira Voss" in v.rendered_prompt and v.template_layer == "file" and v.provider == "offline"
    meta = json.loads(media.read_bytes(f"characters/kira-voss/variations/{req.run_id}/metadata.json"))
    assert meta["status"] == "completed" and len(meta["slots"]) == 10 and all(s["prompt"] for s in meta["slots"])


def test_same_run_requested_twice_is_idempotent(character, editor):
    a = generation.request_run(character_id=character.id, requested_by=editor)
    b = generation.request_run(character_id=character.id, requested_by="someone else")
    assert (a.run_id, a.created, b.run_id, b.created) == (a.run_id, True, a.run_id, False)
    assert len(_variations(a.run_id)) == 10 and len(_jobs()) == 10
    run_worker()
    c = generation.request_run(character_id=character.id, requested_by=editor)  # finished: a new run is fine
    assert c.created and c.run_id != a.run_id


def test_archived_or_missing_character_is_refused(character, editor):
    characters.set_archived(character_id=character.id, expected_version=1, archived=True, editor=editor)
    with pytest.raises(ValidationError, match="archived"):
        generation.request_run(character_id=character.id, requested_by=editor)
    with session_scope() as s:
        assert s.execute(sa.select(sa.func.count(GenerationRun.id))).scalar_one() == 0
    results = generation.request_runs(character_ids=[character.id, 999], requested_by=editor)
    assert all(isinstance(r, ValidationError) for r in results)


def test_broken_template_override_is_refused_before_anything_is_queued(character, editor):
    with pytest.raises(ValidationError, match="Unknown variable"):
        generation.request_run(character_id=character.id, requested_by=editor, template_override="{{ nope }}")
    assert _jobs() == []


def test_one_slot_refused_nine_succeed_then_retry_failed_only(character, editor, settings_override):
    stub, server = start_stub()
    try:
        settings_override(openai_api_key="sk-test", openai_base_url=stub.url, openai_max_retries=0)
        stub.script("/images/edits", *[image_ok() for _ in range(4)],
                    error(400, "Your request was rejected by our safety system.", "moderation_blocked"),
                    *[image_ok() for _ in range(5)])
        req = generation.request_run(character_id=character.id, requested_by=editor)
        run_worker(concurrency=1)  # one at a time so the scripted refusal lands on exactly one slot
        st = generation.run_status(run_id=req.run_id)
        assert st.status == "partial" and st.counts == {"completed": 9, "failed": 1}
        [failed] = [v for v in st.slots if v.status == "failed"]
        assert "content-policy" in failed.error and failed.path is None
        assert st.cost_usd > 0

        stub.script("/images/edits", image_ok())
        new_ids = generation.regenerate(run_id=req.run_id, requested_by=editor, failed_only=True)
        assert len(new_ids) == 1
        run_worker()
        st = generation.run_status(run_id=req.run_id)
        assert st.status == "completed" and st.counts == {"completed": 10}
        assert len(_variations(req.run_id)) == 11  # the failed attempt is kept as history
        assert len(stub.calls("/images/edits")) == 11
    finally:
        server.shutdown()


def test_regenerate_one_slot_feeds_rejection_reasons_into_the_prompt(character, editor):
    req = generation.request_run(character_id=character.id, requested_by=editor)
    run_worker()
    v = next(v for v in _variations(req.run_id) if v.slot_key == "action_pose")
    with session_scope() as s:
        s.execute(sa.update(Variation).where(Variation.id == v.id).values(
            review_status="rejected", reason_codes=["wrong_outfit", "anatomy"], review_note="left hand has six fingers"))
    [new_id] = generation.regenerate(run_id=req.run_id, requested_by=editor, slot_keys=["action_pose"])
    run_worker()
    with session_scope() as s:
        new = s.get(Variation, new_id)
    assert new.attempt == 2 and new.status == "completed" and new.path.endswith("action_pose-attempt2.png")
    assert "wrong outfit" in new.rendered_prompt and "six fingers" in new.rendered_prompt
    assert media.exists(v.path)  # the first attempt stays for side-by-side comparison


def test_cancel_before_the_worker_runs(character, editor):
    req = generation.request_run(character_id=character.id, requested_by=editor)
    assert generation.cancel_run(run_id=req.run_id, requested_by=editor) == 10
    run_worker()
    st = generation.run_status(run_id=req.run_id)
    assert st.status == "cancelled" and st.counts == {"cancelled": 10}
    assert {j["status"] for j in _jobs()} == {"cancelled"}
    with session_scope() as s:
        assert s.execute(sa.select(sa.func.count(AICall.id))).scalar_one() == 0


def test_unwritable_media_folder_fails_slots_clearly_without_orphans(character, editor, settings_override, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the media folder should be")
    settings_override(media_root=str(blocker / "media"))
    req = generation.request_run(character_id=character.id, requested_by=editor)
    run_worker()
    st = generation.run_status(run_id=req.run_id)
    assert st.status == "failed" and st.counts == {"failed": 10}
    assert all("Not a directory" in v.error or "No such file" in v.error for v in st.slots)
    assert all(v.path is None for v in st.slots)


def test_worker_killed_mid_run_is_recovered_and_completed_slots_kept(character, editor):
    env = dict(os.environ, OFFLINE_LATENCY_S="1.5", STALLED_AFTER_S="2", RECOVERY_INTERVAL_S="3600")
    req = generation.request_run(character_id=character.id, requested_by=editor)
    worker = subprocess.Popen([sys.executable, "workbench.py", "worker", "--concurrency", "3"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [v.status for v in _variations(req.run_id)]
            if states.count("completed") >= 3 and "generating" in states:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"worker never got going: {states}")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before = {v.slot_key: (v.status, v.finished_at) for v in _variations(req.run_id)}
    stuck = [k for k, (s, _) in before.items() if s == "generating"]
    assert stuck, before
    time.sleep(2.5)  # the dead worker's heartbeat goes stale
    # every slot stuck in 'generating' had a job in 'doing'; a job fetched but not yet claimed is recovered too
    assert recovery.recover_stalled(seconds_since_heartbeat=2) >= len(stuck)
    run_worker()
    after = {v.slot_key: (v.status, v.finished_at) for v in _variations(req.run_id)}
    assert all(s == "completed" for s, _ in after.values()), after
    for k, (s, finished) in before.items():
        if s == "completed":
            assert after[k][1] == finished  # completed slots were kept, not redone
    assert generation.run_status(run_id=req.run_id).status == "completed"
