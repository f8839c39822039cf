"""Faults with real processes: a paused worker, hanging provider calls, SIGTERM, a cancelled claim.

Workers are real `workbench.py worker` subprocesses on the test database; the provider is the real
openai SDK against tests/openai_stub.py, which counts every request.
"""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import fencing, generation, media, recovery, review
from db.engine import session_scope
from db.models import AICall, Variation
from tests.helpers import image_bytes
from tests.openai_stub import image_ok, start_stub

from tests.test_generation import character  # noqa: F401,E402 (the same fixture: a character with a reference)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def stub(settings_override):
    stub, server = start_stub()
    settings_override(openai_api_key="sk-test", openai_base_url=stub.url, openai_max_retries=0, ai_provider="openai")
    yield stub
    server.shutdown()


def start_worker(name: str, *, concurrency: int, **env: str) -> tuple[subprocess.Popen, Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"worker-{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "workbench.py", "worker", "--queues", "generation", "--concurrency", str(concurrency),
         "--name", name], cwd=ROOT, env={**os.environ, **env}, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    return proc, log_path


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check, *, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


def slots(run_id: int) -> list[Variation]:
    with session_scope() as s:
        return list(s.execute(sa.select(Variation).where(Variation.run_id == run_id).order_by(Variation.id)).scalars())


def run_files(run_id: int) -> dict[str, str]:
    """Every file under the run's folder (relative path → sha256)."""
    folder = media.resolve(f"characters/kira-voss/variations/{run_id}")
    if not folder.is_dir():
        return {}
    return {f"characters/kira-voss/variations/{run_id}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.iterdir() if p.is_file()}


def running_calls() -> int:
    with session_scope() as s:
        return s.execute(sa.select(sa.func.count()).where(AICall.status == "running")).scalar_one()


def assert_files_match_rows(run_id: int) -> None:
    """No orphan files, no row without its files."""
    rows = slots(run_id)
    referenced = {p for v in rows for p in (v.path, v.thumb_path) if p}
    files = set(run_files(run_id)) - {f"characters/kira-voss/variations/{run_id}/metadata.json"}
    assert files == referenced, (files - referenced, referenced - files)


def test_paused_worker_resumed_after_takeover_changes_nothing_and_pays_nothing_twice(character, editor, stub):
    # worker A's two calls hang for 4 s; everything after answers at once
    stub.script("/images/edits", {**image_ok(), "sleep": 4}, {**image_ok(), "sleep": 4},
                *[image_ok() for _ in range(10)])
    req = generation.request_run(character_id=character.id, requested_by=editor)
    env = dict(OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=stub.url, OPENAI_MAX_RETRIES="0", AI_PROVIDER="openai",
               STALLED_AFTER_S="2")
    a, a_log = start_worker("paused", concurrency=2, RECOVERY_INTERVAL_S="3600", **env)
    b = None
    try:
        wait_for(lambda: len(stub.calls("/images/edits")) == 2, timeout=60, what="worker A's two provider calls")
        a.send_signal(signal.SIGSTOP)  # a VM pause / long GC past the stall window
        b, _ = start_worker("healthy", concurrency=10, RECOVERY_INTERVAL_S="1", **env)
        wait_for(lambda: generation.run_status(run_id=req.run_id).status == "completed", timeout=90,
                 what="worker B to take over and finish the run")
        taken_over = [v for v in slots(req.run_id) if v.claim == 2]
        assert len(taken_over) == 2 and all(v.path.endswith("-r2.png") for v in taken_over)
        review.review(variation_id=taken_over[0].id, decision="approved", reviewer=editor)
        stop(b)
        before_rows = [(v.id, v.status, v.path, v.thumb_path, v.finished_at, v.ai_call_id, v.claim, v.review_status)
                       for v in slots(req.run_id)]
        before_files = run_files(req.run_id)
        calls_before = len(stub.calls("/images/edits"))
        assert calls_before == 12  # ten slots paid once by B, plus A's two calls in flight when it froze

        a.send_signal(signal.SIGCONT)
        wait_for(lambda: a_log.read_text().count("was superseded") == 2, timeout=30,
                 what="worker A to discard its two stale results")
        time.sleep(1)  # anything else A might do would happen now
        after_rows = [(v.id, v.status, v.path, v.thumb_path, v.finished_at, v.ai_call_id, v.claim, v.review_status)
                      for v in slots(req.run_id)]
        assert after_rows == before_rows  # the approved image and every committed row are untouched
        assert run_files(req.run_id) == before_files  # same files, same bytes; A's own files were removed
        assert len(stub.calls("/images/edits")) == calls_before  # no second provider call after resuming
        assert_files_match_rows(req.run_id)
        assert running_calls() == 0
    finally:
        stop(a)
        if b is not None:
            stop(b)


def test_sigterm_with_hanging_provider_calls_exits_within_the_bound(character, editor, stub):
    stub.script("/images/edits", *[{**image_ok(), "sleep": 120} for _ in range(10)])
    req = generation.request_run(character_id=character.id, requested_by=editor)
    worker, log_path = start_worker("hanging", concurrency=3, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=stub.url,
                                    OPENAI_MAX_RETRIES="0", AI_PROVIDER="openai", STALLED_AFTER_S="5",
                                    RECOVERY_INTERVAL_S="3600")
    try:
        wait_for(lambda: len(stub.calls("/images/edits")) == 3, timeout=60, what="three hanging provider calls")
        worker.send_signal(signal.SIGTERM)
        # the bound is 0.8 x STALLED_AFTER_S = 4 s; 30 s is a liveness check, not a timing benchmark
        assert worker.wait(timeout=30) == 0, log_path.read_text()[-3000:]
    finally:
        stop(worker)
    assert "abandoning them to recovery" in log_path.read_text()
    rows = slots(req.run_id)
    # the three abandoned slots were handed to new jobs at once: pending again, nothing left 'generating'
    assert [v.status for v in rows].count("pending") == 10, [(v.slot_key, v.status, v.error) for v in rows]
    assert sum(1 for v in rows if v.error and "worker stopped" in v.error) == 3
    assert running_calls() == 0
    with session_scope() as s:
        lost = s.execute(sa.select(AICall.error).where(AICall.status == "failed")).scalars().all()
    assert len(lost) == 3 and all(e.startswith("worker lost") for e in lost)


def test_cancel_stops_a_claimed_slot_before_the_provider_call(character, editor, stub):
    stub.script("/images/edits", *[image_ok() for _ in range(10)])
    req = generation.request_run(character_id=character.id, requested_by=editor)
    first = slots(req.run_id)[0]
    claim = fencing.claim_slot(variation_id=first.id, job_id=first.job_id)  # a worker has taken it
    assert isinstance(claim, fencing.Claim)
    assert generation.cancel_run(run_id=req.run_id, requested_by=editor) == 10  # nine pending + the claimed one
    assert generation.run_claimed(claim) == "lost"  # the worker carries on and stops at the gate
    assert stub.calls("/images/edits") == []  # nothing was paid for
    st = generation.run_status(run_id=req.run_id)
    assert st.status == "cancelled" and st.counts == {"cancelled": 10}
    assert set(run_files(req.run_id)) == {f"characters/kira-voss/variations/{req.run_id}/metadata.json"}


def test_a_slot_taken_over_during_a_retry_wait_is_not_paid_again(character, editor, stub, settings_override):
    """The fencing gate runs before every provider attempt: a worker frozen in a retry wait (429 with
    Retry-After) whose slot recovery handed to another job stops at the gate instead of paying again."""
    import threading

    from tests.openai_stub import error

    settings_override(openai_max_retries=2)
    stub.script("/images/edits", error(429, "slow down", headers={"retry-after": "2"}), image_ok())
    req = generation.request_run(character_id=character.id, requested_by=editor)
    first = slots(req.run_id)[0]
    claim = fencing.claim_slot(variation_id=first.id, job_id=first.job_id)
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(generation.run_claimed(claim)))
    worker.start()
    wait_for(lambda: stub.calls("/images/edits"), timeout=30, what="the first (rate-limited) attempt")
    with session_scope() as s:  # recovery hands the slot to a new job while this worker waits to retry
        s.execute(sa.update(Variation).where(Variation.id == first.id).values(claim=Variation.claim + 1))
    worker.join(30)
    assert result == ["lost"]
    assert len(stub.calls("/images/edits")) == 1  # the retry was never sent


def test_recovery_fails_slots_whose_job_ended_and_cleans_their_files(character, editor):
    """What a database outage leaves behind, made directly: a slot 'generating' whose job ended as
    failed, its ai_call still 'running' and its image written without a row."""
    req = generation.request_run(character_id=character.id, requested_by=editor)
    rows = slots(req.run_id)
    lost = rows[0]
    claim = fencing.claim_slot(variation_id=lost.id, job_id=lost.job_id)
    orphan = f"characters/kira-voss/variations/{req.run_id}/{lost.slot_key}.png"
    media.write_atomic(orphan, image_bytes())
    with session_scope() as s:
        s.add(AICall(function="variation_image", phase="save", status="running", provider="offline",
                     job_id=lost.job_id, subject_type="variation", subject_id=lost.id))
        s.execute(sa.text("update procrastinate_jobs set status = 'failed' where id = :j"), {"j": lost.job_id})
        # another slot whose job was deleted outright, and one whose job was cancelled while pending
        s.execute(sa.text("delete from procrastinate_jobs where id = :j"), {"j": rows[1].job_id})
        s.execute(sa.text("update procrastinate_jobs set status = 'cancelled' where id = :j"), {"j": rows[2].job_id})
    report = recovery.reconcile()
    assert report.slots_closed == 3 and report.calls_closed == 1 and report.files_removed == [orphan]
    after = {v.id: v for v in slots(req.run_id)}
    assert after[lost.id].status == "failed" and "ended as 'failed'" in after[lost.id].error
    assert after[rows[1].id].status == "failed" and "disappeared" in after[rows[1].id].error
    assert after[rows[2].id].status == "cancelled"
    assert not media.exists(orphan)
    with session_scope() as s:
        [call] = s.execute(sa.select(AICall)).scalars().all()
    assert call.status == "failed" and call.error.startswith("database unavailable")
    # the stale claim cannot commit any more: its result would be discarded, not written over the failure
    assert claim.claim == 1 and generation.run_claimed(claim) == "lost"
