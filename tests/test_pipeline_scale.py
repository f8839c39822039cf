"""Issue 12 (2-5): bulk queuing, worker lanes, coalesced embedding, the ONNX text model, exact kNN for maps."""
from __future__ import annotations

import time

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, settings, strategies as st

from core.vectors import embedding_status
from core import characters, generation, jobs
from core.vectors import embedding_spaces, embeddings, projection
from core.characters import CharacterInput
from db.engine import get_engine, session_scope
from tests.test_generation import run_worker


def _cast(n: int, editor: str, prefix: str = "Bulk") -> list[int]:
    return [characters.create_character(data=CharacterInput(name=f"{prefix} {i:03d}", traits=["red scarf"]),
                                        editor=editor).id for i in range(n)]


def _jobs(task: str) -> list[dict]:
    with session_scope() as s:
        return [dict(r._mapping) for r in s.execute(sa.text(
            "select id, status, args, priority from procrastinate_jobs where task_name = :t order by id"), {"t": task})]


def _count_statements(fn) -> int:
    seen = []

    def count(*_args):
        seen.append(1)

    sa.event.listen(get_engine(), "before_cursor_execute", count)
    try:
        fn()
    finally:
        sa.event.remove(get_engine(), "before_cursor_execute", count)
    return len(seen)


# ---------------------------------------------------------------- 12.3 bulk queuing
def test_bulk_request_creates_n_runs_and_ten_n_jobs_in_a_constant_number_of_statements(editor):
    ids = _cast(30, editor)
    small = _count_statements(lambda: generation.request_runs(character_ids=ids[:3], requested_by=editor))
    big = _count_statements(lambda: generation.request_runs(character_ids=ids[3:], requested_by=editor))
    assert big == small  # 27 characters cost what 3 do: batched inserts, not a round trip per slot
    with session_scope() as s:
        runs = s.execute(sa.text("select character_id, status from generation_run")).all()
        vids = s.execute(sa.text("select id, job_id from variation")).all()
    assert sorted(r.character_id for r in runs) == sorted(ids) and {r.status for r in runs} == {"queued"}
    slot_jobs = _jobs(jobs.GENERATE_SLOT)
    assert len(vids) == 300 and len(slot_jobs) == 300
    assert {v.job_id for v in vids} == {j["id"] for j in slot_jobs}  # every slot knows its job (cancel, recovery)
    assert {j["args"]["variation_id"] for j in slot_jobs} == {v.id for v in vids}
    assert {j["priority"] for j in slot_jobs} == {jobs.SLOT_PRIORITY}


def test_bulk_request_keeps_one_active_run_per_character_and_reports_refusals(editor):
    a, b, c = _cast(3, editor)
    first = generation.request_run(character_id=a, requested_by=editor)
    characters.set_archived(character_id=c, expected_version=1, archived=True, editor=editor)
    res = generation.request_runs(character_ids=[a, b, b, c, 999_999], requested_by=editor)
    assert res[0].run_id == first.run_id and not res[0].created  # the active run comes back, no new slots
    assert res[1].created and res[2].run_id == res[1].run_id and not res[2].created
    assert "archived" in str(res[3]) and "does not exist" in str(res[4])
    assert len(_jobs(jobs.GENERATE_SLOT)) == 20
    again = generation.request_runs(character_ids=[a, b], requested_by=editor)
    assert [r.created for r in again] == [False, False] and len(_jobs(jobs.GENERATE_SLOT)) == 20
    run_worker()
    st = generation.run_status(run_id=res[1].run_id)
    assert st.status == "completed" and st.counts == {"completed": 10}


# ---------------------------------------------------------------- 12.2 worker lanes
def test_slots_start_before_an_embedding_backlog_is_worked_off(editor):
    """A real worker process: a run requested behind 30 embedding jobs starts all ten slots before even
    half of those jobs are done (one lane per kind of work; the old single lane ran them first)."""
    from tests.browser import worker_process

    ids = _cast(30, editor, prefix="Backlog")
    app = jobs.get_app()
    for cid in ids:  # a backlog of separate embedding jobs, as before coalescing or from other workers
        app.configure_task(jobs.EMBED_SUBJECTS, queue=jobs.EMBED_QUEUE).defer(subject_type="character", ids=[cid])
    req = generation.request_run(character_id=ids[0], requested_by=editor)
    with worker_process():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and (generation.run_status(run_id=req.run_id).active
                                               or jobs.pending_jobs(*jobs.EMBED_TASKS)):
            time.sleep(0.5)
    assert generation.run_status(run_id=req.run_id).counts == {"completed": 10}
    with session_scope() as s:
        slot_starts = s.execute(sa.text("select started_at from variation where run_id = :r"),
                                {"r": req.run_id}).scalars().all()
        embed_done = s.execute(sa.text(
            "select e.at from procrastinate_events e join procrastinate_jobs j on j.id = e.job_id "
            "where j.task_name = :t and e.type = 'succeeded' order by e.at"), {"t": jobs.EMBED_SUBJECTS}).scalars().all()
    assert len(embed_done) >= 30
    assert max(slot_starts) < embed_done[len(embed_done) // 2]


# ---------------------------------------------------------------- 12.4 coalesced embedding
def test_many_requests_coalesce_into_one_embedding_job(editor):
    ids = _cast(12, editor)  # each save requests its own embedding
    more = [characters.update_character(character_id=i, editor=editor, expected_version=1,
                                        data=CharacterInput(name=f"Renamed {i}", traits=["blue hat"])).id
            for i in ids[:4]]
    pending = _jobs(jobs.EMBED_PENDING)
    assert len(pending) == 1 and pending[0]["status"] == "todo"  # 16 requests, one waiting job
    assert not _jobs(jobs.EMBED_SUBJECTS)
    rows = embedding_status.character_status()
    assert {r["status"] for r in rows} == {"queued"} and len(rows) == 12
    run_worker(queues=[jobs.EMBED_QUEUE])
    assert {r["status"] for r in embedding_status.character_status()} == {"current"}
    assert len(_jobs(jobs.EMBED_PENDING)) == 1  # one job embedded all of them
    assert sorted(more) == sorted(ids[:4])
    jobs.request_embedding(subject_type="character", ids=ids[:1])  # after the job ran, a new one is queued
    assert [j["status"] for j in _jobs(jobs.EMBED_PENDING)] == ["succeeded", "todo"]


def test_a_long_backlog_continues_in_a_follow_up_job(editor):
    ids = _cast(5, editor)
    report, more = embeddings.embed_pending(limit=3)
    assert more and report.embedded == 3
    report, more = embeddings.embed_pending(limit=3)
    assert not more and report.embedded == 2
    assert {r["status"] for r in embedding_status.character_status()} == {"current"} and len(ids) == 5


# ---------------------------------------------------------------- 12.4 ONNX model
def test_onnx_vectors_match_the_torch_model():
    texts = ["Kira Voss. Style: neon noir. Traits: cyber arm, red scarf", "a fox spirit keeps the lighthouse",
             "x", "storm mage " * 300]  # the last one is cut at 256 tokens, like the torch model does
    onnx = embedding_spaces.LocalTextEmbedder()
    a = onnx.embed(texts)
    assert onnx.backend == "onnx"
    b = embedding_spaces.LocalTextEmbedder(backend="torch").embed(texts)
    assert a.shape == (4, 384) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert (a * b).sum(axis=1).min() >= 0.99


# ---------------------------------------------------------------- 12.5 exact kNN for maps
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), q=st.integers(1, 10), k=st.integers(1, 20), seed=st.integers(0, 10_000))
def test_exact_knn_matches_brute_force(n, q, k, seed):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 5)).astype(np.float32)
    qs = rng.normal(size=(q, 5)).astype(np.float32)
    idx, dist = projection.exact_knn(qs, pts, k=k)
    full = np.sqrt(((qs[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    kk = min(k, n)
    assert idx.shape == (q, kk) and dist.shape == (q, kk)
    assert np.allclose(dist, np.sort(full, axis=1)[:, :kk], atol=1e-3)  # the k smallest, nearest first
    assert np.allclose(np.take_along_axis(full, idx, axis=1), dist, atol=1e-3)  # indices point at them


@pytest.mark.parametrize("tsne_max, method", [(0, "umap"), (1500, "tsne")])
def test_new_points_land_next_to_their_fitted_neighbours(settings_override, tsne_max, method):
    settings_override(map_tsne_max_points=tsne_max)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 64))
    lab = np.repeat([0, 1, 2], 40)
    x = (centres[lab] + 0.2 * rng.normal(size=(120, 64))).astype(np.float32)
    res = projection.fit(x, projection.ProjectionParams(n_neighbors=10, n_epochs=50, random_state=1))
    assert res.method == method
    new = (centres[[0, 2]] + 0.2 * rng.normal(size=(2, 64))).astype(np.float32)
    coords, _ = projection.place(res.model, new)
    for point, c in zip(coords, (0, 2)):
        own = np.linalg.norm(res.coords[lab == c] - point, axis=1).mean()
        other = min(np.linalg.norm(res.coords[lab == o] - point, axis=1).mean() for o in {0, 1, 2} - {c})
        assert own < other  # placed inside its own cluster
