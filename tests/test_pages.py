"""AppTest smoke and behaviour tests: every page renders without an exception."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import characters, references, styles
from core.characters import CharacterInput
from tests.helpers import image_bytes

TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent


def _page(path: str, editor: str | None = "Tess Tester", run: bool = True, **params: str) -> AppTest:
    """Open a page through app.py's navigation, as the browser does."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if editor:
        at.session_state["editor_name"] = editor
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(path)
    return at.run() if run else at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [i.value for i in at.info] + [e.value for e in at.error] + [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


def test_app_entry_runs_default_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("Character Workbench" in t.value for t in at.title)


def test_home_empty_state_offers_demo_and_loads_it():
    at = _page("pages/home.py")
    assert not at.exception
    assert "The workbench is empty" in "\n".join(s.value for s in at.subheader)
    assert any("Offline mode" in i.value for i in at.sidebar.info)
    at.button(key="demo_home").click().run()
    assert not at.exception
    assert characters.count_characters() == 12
    assert any("Demo cast loaded" in s.value for s in at.success)


def test_home_demo_button_needs_a_name():
    at = _page("pages/home.py", editor=None)
    assert at.button(key="demo_home").disabled


def test_characters_page_lists_searches_and_creates(editor):
    ink = styles.create_style(data=styles.StyleInput(name="Ink"), editor=editor)
    characters.create_character(data=CharacterInput(name="Ayla", traits=["storm mage"], style_id=ink.id), editor=editor)
    characters.create_character(data=CharacterInput(name="Kira", traits=["netrunner"]), editor=editor)
    at = _page("pages/characters.py")
    assert not at.exception
    text = _texts(at)
    assert "**Ayla**" in text and "**Kira**" in text
    at.text_input(key="char_search").input("storm").run()
    text = _texts(at)
    assert "**Ayla**" in text and "**Kira**" not in text
    at.text_input(key="char_search").input("nobody-has-this").run()
    assert "No characters match" in _texts(at)

    at.text_input(key="new_name").input("Bram Copperkettle")
    at.text_input(key="new_traits").input("tinker, spectacles")
    at.button[[b.label for b in at.button].index("Create character")].click().run()
    assert not at.exception
    created = [r for r in characters.list_characters() if r.name == "Bram Copperkettle"]
    assert created and created[0].traits == ["tinker", "spectacles"]
    assert str(at.query_params["character"]).strip("[]'") == str(created[0].id)  # the new character is opened


def test_characters_page_shows_validation_errors():
    at = _page("pages/characters.py")
    at.text_input(key="new_name").input("   ")
    at.button[[b.label for b in at.button].index("Create character")].click().run()
    assert not at.exception
    assert any("Name is required" in e.value for e in at.error)
    assert characters.count_characters() == 0


def test_character_detail_edit_and_stale_form(editor):
    ch = characters.create_character(data=CharacterInput(name="Sable", description="assassin"), editor=editor)
    references.add_reference_upload(character_id=ch.id, data=image_bytes(), filename="r.png", claimed_mime=None, editor=editor)
    at = _page("pages/characters.py", character=str(ch.id))
    assert not at.exception
    assert any("Sable" in t.value for t in at.title)

    # someone else saves in the meantime
    characters.update_character(
        character_id=ch.id, expected_version=1, data=CharacterInput(name="Sable", description="by Ann"), editor="Ann"
    )
    at.text_area[0].input("mine")
    at.button[[b.label for b in at.button].index("Save changes")].click().run()
    assert not at.exception
    assert any("changed by Ann" in e.value for e in at.error)
    assert characters.get_character(character_id=ch.id).description == "by Ann"
    # reload, then save succeeds
    at.button(key="reload_latest").click().run()
    at.text_area[0].input("mine, after reload")
    at.button[[b.label for b in at.button].index("Save changes")].click().run()
    assert characters.get_character(character_id=ch.id).description == "mine, after reload"


def test_styles_page_create_and_duplicate():
    at = _page("pages/styles.py")
    assert not at.exception
    assert any("No styles yet" in i.value for i in at.info)
    at.text_input(key="style_name_new").input("Watercolor")
    at.text_input(key="style_palette_new").input("#112233 #445566")
    at.button[[b.label for b in at.button].index("Save style")].click().run()
    assert not at.exception
    assert [s.name for s in styles.list_styles()] == ["Watercolor"]
    assert styles.list_styles()[0].palette == ["#112233", "#445566"]
    at.text_input(key="style_name_new").input("watercolor")
    at.button[[b.label for b in at.button].index("Save style")].click().run()
    assert any("already exists" in e.value for e in at.error)


@pytest.mark.parametrize("page", ["pages/home.py", "pages/characters.py", "pages/styles.py", "pages/review.py",
                                  "pages/prompts.py", "pages/activity.py", "pages/search.py",
                                  "pages/embeddings.py", "pages/map.py", "pages/duplicates.py"])
def test_every_page_renders_with_demo_content(page, editor):
    from core.demo import load_demo_cast

    load_demo_cast(editor=editor)
    at = _page(page)
    assert not at.exception


def _click(at: AppTest, label: str) -> AppTest:
    return at.button[[b.label for b in at.button].index(label)].click().run()


def test_prompts_page_save_broken_and_good_versions_and_try_it(editor):
    from core.ai import prompt_registry
    from core.demo import load_demo_cast

    at = _page("pages/prompts.py")
    assert not at.exception
    at.selectbox(key="prompt_template").select("variation_prompt").run()
    at.text_area(key="draft_variation_prompt").input("{{ character.name }} in {{ slot.fragmnt }}").run()
    _click(at, "Save as new version")
    assert any("Unknown variable" in e.value and "fragmnt" in e.value for e in at.error)
    assert prompt_registry.list_versions(name="variation_prompt") == []
    at.text_area(key="draft_variation_prompt").input("{{ character.name }}: {{ slot.fragment }}").run()
    _click(at, "Save as new version")
    assert not at.exception
    assert [v.version for v in prompt_registry.list_versions(name="variation_prompt")] == [1]
    assert prompt_registry.resolve("variation_prompt").layer == "db"

    load_demo_cast(editor=editor)
    at.run()
    assert not at.exception
    assert any(": " in c.value and "portrait" in c.value for c in at.code)  # preview rendered for a real character
    _click(at, "Try it: generate this slot with the draft")
    assert not at.exception
    assert at.session_state["last_try"]["provider"] == "offline"
    assert any("AI call #" in c.value for c in at.caption)


def test_activity_page_empty_then_with_calls(editor):
    at = _page("pages/activity.py")
    assert not at.exception
    assert any("No AI calls" in i.value for i in at.info)
    from core.ai import ai_functions

    ai_functions.suggest_names(description="a knight", traits=["brave"], style_id=None, requested_by=editor)
    from core.errors import ValidationError

    with pytest.raises(ValidationError):  # a failed call on purpose: it must appear in the failure list
        ai_functions.suggest_names(description="", traits=[], style_id=None, requested_by=editor)
    at = _page("pages/activity.py")
    assert not at.exception
    assert [m.value for m in at.metric][:1] == ["2"]
    assert any("Failures (1)" in t.label for t in at.tabs)


def test_character_form_suggest_names_fills_the_name(editor):
    at = _page("pages/characters.py")
    at.text_area(key="new_description").input("a sly fox spirit").run()
    _click(at, "✨ Suggest names")
    assert not at.exception
    names = at.session_state["new_name_suggestions"]
    assert len(names) == 5
    _click(at, names[0])
    assert at.text_input(key="new_name").value == names[0]


def test_review_page_empty_hint_then_grid_bulk_approve_and_queue(editor):
    from core import generation, review
    from tests.test_generation import run_worker

    at = _page("pages/review.py")
    assert not at.exception
    assert any("Nothing to review yet" in i.value for i in at.info)
    a = characters.create_character(data=CharacterInput(name="Ayla"), editor=editor)
    generation.request_run(character_id=a.id, requested_by=editor)
    run_worker()
    at = _page("pages/review.py")
    assert not at.exception
    at.segmented_control(key="rv_view").set_value("queue").run()
    assert any("1 of 10" in c.value for c in at.caption)
    _click(at, "Approve")  # the queue's first item
    assert not at.exception
    assert len(review.queue()) == 9
    at.segmented_control(key="rv_view").set_value("grid").run()
    _click(at, "Approve all 9 unreviewed shown")
    assert len(review.queue()) == 0
    assert any("Approved 9" in s.value for s in at.success)


def test_character_variations_tab_queues_a_run(editor):
    from core import generation

    ch = characters.create_character(data=CharacterInput(name="Bram"), editor=editor)
    at = _page("pages/characters.py", character=str(ch.id))
    assert not at.exception
    assert any("No variations yet" in i.value for i in at.info)
    _click(at, "🎬 Generate variations")
    assert not at.exception
    runs = generation.runs_for_character(character_id=ch.id)
    assert len(runs) == 1 and runs[0].status == "queued"
    assert any("queued" in s.value for s in at.success)


def _overview(at: AppTest, subject: str) -> dict:
    df = at.dataframe[0].value
    return df[df["subject"] == subject].iloc[0].to_dict()


def test_embeddings_status_jobs_bulk_reembed_then_search_and_find_similar(editor):
    from core.vectors import embedding_status
    from tests.test_generation import run_worker

    ink = styles.create_style(data=styles.StyleInput(name="Ink"), editor=editor)
    for name, traits in (("Ayla", ["storm mage", "lightning"]), ("Sable", ["assassin", "shadows"]),
                         ("Pip", ["mouse knight"])):
        characters.create_character(data=CharacterInput(name=name, traits=traits, style_id=ink.id), editor=editor)
    at = _page("pages/embeddings.py")
    assert not at.exception
    assert _overview(at, "Characters")["queued"] == 3  # each save queued its own embedding job
    run_worker(queues=None)
    at = _page("pages/embeddings.py")
    assert _overview(at, "Characters")["current"] == 3

    styles.update_style(style_id=ink.id, expected_version=ink.version, data=styles.StyleInput(name="Woodcut"), editor=editor)
    at = _page("pages/embeddings.py")
    assert _overview(at, "Characters")["queued"] == 3  # the rename queued their re-embedding by itself
    import sqlalchemy as sa

    from db.engine import session_scope

    with session_scope() as s:  # a queue that lost those jobs (say, restored from a backup): stale, not queued
        s.execute(sa.text("delete from procrastinate_jobs"))
        s.execute(sa.text("update embedding set status = 'current' where status = 'queued'"))
    at = _page("pages/embeddings.py")
    assert _overview(at, "Characters")["stale"] == 3
    _click(at, "Re-embed stale (3)")
    assert not at.exception
    assert any("Re-embed stale: 3 queued" in s.value for s in at.success)
    run_worker(queues=None)
    assert {r["status"] for r in embedding_status.character_status()} == {"current"}

    at = _page("pages/search.py")
    assert any("Type a description" in i.value for i in at.info)
    at.text_input(key="search_q").input("an assassin lurking in shadows").run()
    assert not at.exception
    names = [m.value for m in at.markdown if m.value.startswith("**")]
    assert names[0] == "**Sable**", names
    _click(at, "Find similar")
    assert not at.exception
    assert any("Most similar to **Sable**" in m.value for m in at.markdown)


def test_tags_tab_adds_a_concept_that_tags_the_cast(editor):
    from core import tags
    from tests.test_generation import run_worker

    pip = characters.create_character(data=CharacterInput(name="Pip", traits=["mouse knight", "needle sword"]),
                                      editor=editor)
    characters.create_character(data=CharacterInput(name="Unit 7", traits=["android", "chrome plating"]),
                                editor=editor)
    at = _page("pages/embeddings.py")
    at.tabs[1]  # the Tags tab renders its empty state
    assert any("No tags yet" in i.value for i in at.info)
    at.text_input(key="tag_name").input("Animal")
    at.text_input(key="tag_desc").input("an animal character: a mouse, fox, cat or bird")
    _click(at, "Add tag")
    assert not at.exception
    run_worker(queues=None)
    assert tags.tags_for(subject_type="character", subject_ids=[pip.id]) == {pip.id: ["animal"]}
    at.text_input(key="tag_name").input("animal")
    _click(at, "Add tag")
    assert any("already a tag called 'animal'" in e.value for e in at.error)


def test_editor_name_is_asked_once_per_session_not_per_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert at.button(key="demo_home").disabled
    at.sidebar.text_input(key="_editor_name_widget").input("Eve Editor").run()
    assert not at.button(key="demo_home").disabled
    at.switch_page("pages/characters.py").run()
    assert not at.exception
    assert not at.button(key="create_character").disabled
    assert at.sidebar.text_input(key="_editor_name_widget").value == "Eve Editor"


def test_creating_a_near_twin_warns_about_the_look_alike(editor):
    from core.vectors import embedding_spaces, embeddings

    embedding_spaces.get_embedder("text-local").load()  # a running server warms the model up at start
    traits = ["assassin", "hooded", "silent", "obsidian daggers"]
    characters.create_character(data=CharacterInput(name="Sable Nyx", traits=traits,
                                                    description="A silent assassin who strikes from the shadows."),
                                editor=editor)
    embeddings.embed_characters()
    at = _page("pages/characters.py")
    at.text_input(key="new_name").input("Sable Nyxe")
    at.text_input(key="new_traits").input(", ".join(traits))
    at.text_area(key="new_description").input("A silent assassin who strikes from shadows.")
    _click(at, "Create character")
    assert not at.exception
    assert any("Very close to **Sable Nyx**" in w.value for w in at.warning)
    assert characters.count_characters() == 2  # saved anyway: the guard warns, it does not block
