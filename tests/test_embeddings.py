"""Embeddings on real pgvector with the real local model (and the stub for openai failures)."""
import numpy as np
import pytest
import sqlalchemy as sa

from core.vectors import embedding_status
from core import characters, styles
from core.vectors import embedding_spaces, embeddings, similarity
from core.characters import CharacterInput
from db.engine import session_scope
from tests.openai_stub import error, start_stub


def _cast(editor):
    specs = [("Ayla Stormwind", ["storm mage", "silver hair"], "A wandering mage who commands lightning."),
             ("Bram Copperkettle", ["tinker", "spectacles"], "A village tinker who builds clockwork kettles."),
             ("Sable Nyx", ["assassin", "hooded"], "A silent assassin with obsidian daggers."),
             ("Pip Thimble", ["mouse knight", "needle sword"], "A tiny mouse knight guarding the pantry.")]
    return [characters.create_character(data=CharacterInput(name=n, traits=t, description=d), editor=editor)
            for n, t, d in specs]


def test_second_run_makes_zero_model_calls_and_edit_makes_stale(editor):
    cast = _cast(editor)
    first = embeddings.embed_characters()
    assert (first.embedded, first.unchanged, first.model_calls) == (4, 0, 1)
    again = embeddings.embed_characters()
    assert (again.embedded, again.unchanged, again.model_calls) == (0, 4, 0)
    assert {r["status"] for r in embedding_status.character_status()} == {"current"}
    characters.update_character(character_id=cast[1].id, expected_version=1, editor=editor,
                                data=CharacterInput(name="Bram Copperkettle", traits=["inventor"]))
    status = {r["name"]: r["status"] for r in embedding_status.character_status()}
    assert status["Bram Copperkettle"] == "queued" and status["Ayla Stormwind"] == "current"  # the save queued a job
    third = embeddings.embed_characters()
    assert (third.embedded, third.unchanged, third.model_calls) == (1, 3, 1)
    # content that changes without a save of the character (its style's name is part of its text) is queued
    # for re-embedding by the rename itself, not left stale for someone to notice
    ink = styles.create_style(data=styles.StyleInput(name="Ink"), editor=editor)
    characters.update_character(character_id=cast[0].id, expected_version=1, editor=editor,
                                data=CharacterInput(name="Ayla Stormwind", traits=["storm mage", "silver hair"],
                                                    style_id=ink.id))
    embeddings.embed_characters()
    ink = styles.get_style(style_id=ink.id)
    styles.update_style(style_id=ink.id, expected_version=ink.version,
                        data=styles.StyleInput(name="Ink", description="only words"), editor=editor)
    assert {r["status"] for r in embedding_status.character_status()} == {"current"}  # not renamed: nothing to redo
    ink = styles.get_style(style_id=ink.id)
    styles.update_style(style_id=ink.id, expected_version=ink.version, data=styles.StyleInput(name="Woodcut"),
                        editor=editor)
    status = {r["name"]: r["status"] for r in embedding_status.character_status()}
    assert status == {"Ayla Stormwind": "queued", "Bram Copperkettle": "current", "Sable Nyx": "current",
                      "Pip Thimble": "current"}
    with session_scope() as s:
        waiting = s.execute(sa.text("select count(*) from procrastinate_jobs where task_name = 'embed_pending' "
                                    "and status = 'todo'")).scalar_one()
    assert waiting == 1  # one coalesced job embeds the pending set (Ayla's row is the one marked queued)
    from tests.test_generation import run_worker

    run_worker(queues=None)  # the queued job, as a worker would run it
    status = {r["name"]: r["status"] for r in embedding_status.character_status()}
    assert set(status.values()) == {"current"}


def test_text_search_finds_the_right_neighbours_through_the_index(editor):
    cast = _cast(editor)
    embeddings.embed_characters()
    hits = similarity.search_text(query="lightning sorcery", k=2).hits
    assert hits[0].subject_id == cast[0].id and hits[0].similarity > hits[1].similarity
    assert similarity.search_text(query="small rodent with a sword", k=1).hits[0].subject_id == cast[3].id
    with session_scope() as s:
        # a four-row table is cheaper to sort than to walk an index: make the planner show its index path
        s.execute(sa.text("set local enable_seqscan = off"))
        s.execute(sa.text("set local enable_sort = off"))
        plan = "\n".join(r[0] for r in s.execute(sa.text(
            "explain select id from embedding where space = 'text-local' "
            "order by (vector::vector(384)) <=> cast(:q as vector(384)) limit 5"), {"q": "[" + ",".join(["0.1"] * 384) + "]"}))
    assert "ix_embedding_hnsw_text_local" in plan


def test_failure_keeps_the_previous_vector_and_records_the_error(editor, settings_override):
    stub, server = start_stub()
    try:
        settings_override(openai_api_key="sk-test", openai_base_url=stub.url, openai_max_retries=0)
        embedding_spaces._embedders.pop("text-openai", None)
        ch = characters.create_character(data=CharacterInput(name="Kira", traits=["netrunner"]), editor=editor)
        vec = np.random.default_rng(1).normal(size=1536).tolist()
        stub.script("/embeddings", {"status": 200, "json": {
            "object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": vec}],
            "usage": {"prompt_tokens": 5, "total_tokens": 5}}})
        assert embeddings.embed_characters(space="text-openai").embedded == 1
        characters.update_character(character_id=ch.id, expected_version=1, editor=editor,
                                    data=CharacterInput(name="Kira", traits=["netrunner", "cyber arm"]))
        stub.script("/embeddings", error(500, "upstream exploded"))
        rep = embeddings.embed_characters(space="text-openai")
        assert rep.failed == 1
        with session_scope() as s:
            row = s.execute(sa.text("select status, error, vector_dims(vector) as d, vector::text as v "
                                    "from embedding where space='text-openai'")).one()
        assert row.status == "failed" and "500" in row.error and row.d == 1536
        assert abs(float(row.v.strip("[]").split(",")[0]) - vec[0]) < 1e-5  # the old vector is still there
        with session_scope() as s:  # both requests are in the cost log, like every other paid call
            calls = s.execute(sa.text("select status, model, tokens_in, attempts, error from ai_call "
                                      "where function = 'embed_texts' order by id")).all()
        assert [(c.status, c.model, c.tokens_in) for c in calls] == [
            ("succeeded", "text-embedding-3-small", 5), ("failed", "text-embedding-3-small", 0)]
        assert "500" in calls[1].error
        # a short (partial) vector is refused by the database itself
        with pytest.raises(sa.exc.IntegrityError), session_scope() as s:
            s.execute(sa.text("update embedding set vector = '[1,2,3]' where space='text-openai'"))
    finally:
        server.shutdown()
        embedding_spaces._embedders.pop("text-openai", None)
