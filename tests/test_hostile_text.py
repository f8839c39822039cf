"""Hostile text: any script, no hidden characters, a limit on every field, shown literally, races end cleanly."""
from __future__ import annotations

import re
import threading

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from core import characters, generation, references, review, styles, tags
from core.ai import prompt_registry
from core.vectors import map_view
from core.characters import CharacterInput
from core.errors import ConflictError, DuplicateError, ValidationError
from core.text import clean_editor_name, escape_html, escape_like, escape_markdown
from db.engine import session_scope
from db.models import Character, PromptVersion, Style
from tests.helpers import image_bytes


def _count(model) -> int:
    with session_scope() as s:
        return s.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


# ---------------------------------------------------------------- names in any script, readable unique slugs
@pytest.mark.parametrize("name, slug", [
    ("Жанна Сталь", "zhanna-stal"),
    ("李小龙", "li-xiao-long"),
    ("Αθηνά Παλλάς", "athina-pallas"),
    ("محمد الفاتح", "mhmd-lfth"),
    ("Zoë Ørsted", "zoe-orsted"),
    ("ｆｕｌｌ ｗｉｄｔｈ", "full-width"),
])
def test_names_in_any_script_are_valid_and_get_readable_slugs(editor, name, slug):
    ch = characters.create_character(data=CharacterInput(name=name), editor=editor)
    assert ch.name == name and ch.slug == slug


def test_names_that_transliterate_alike_get_unique_slugs_but_the_same_name_is_a_duplicate(editor):
    a = characters.create_character(data=CharacterInput(name="Łukasz"), editor=editor)
    b = characters.create_character(data=CharacterInput(name="Lukasz"), editor=editor)
    c = characters.create_character(data=CharacterInput(name="Lúkasz"), editor=editor)
    assert (a.slug, b.slug, c.slug) == ("lukasz", "lukasz-2", "lukasz-3")
    with pytest.raises(DuplicateError, match=r"slug 'lukasz-2' already exists \(Lukasz\)|slug 'lukasz' already"):
        characters.create_character(data=CharacterInput(name="LUKASZ"), editor=editor)
    assert _count(Character) == 3


def test_a_name_without_letters_or_digits_is_refused(editor):
    with pytest.raises(ValidationError, match="at least one letter or digit"):
        characters.create_character(data=CharacterInput(name="!!! ???"), editor=editor)


@settings(max_examples=80, deadline=None)
@given(name=st.text(min_size=1, max_size=40))
def test_slugify_is_ascii_readable_and_stable_for_any_text(name):
    slug = characters.slugify(name)
    assert slug == characters.slugify(name)
    assert slug == "" or (slug.isascii() and set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
                          and not slug.startswith("-") and not slug.endswith("-") and len(slug) <= characters.SLUG_MAX)


# ---------------------------------------------------------------- NUL, controls, bidi overrides
HIDDEN = [("\x00", "NUL byte"), ("\u202e", "U+202E"), ("\u2066", "U+2066"), ("\x1b", "U+001B")]


@pytest.mark.parametrize("bad, message", HIDDEN)
def test_hidden_characters_are_refused_in_every_text_field_and_nothing_is_saved(editor, bad, message):
    ch = characters.create_character(data=CharacterInput(name="Base"), editor=editor)
    style = styles.create_style(data=styles.StyleInput(name="Ink"), editor=editor)
    ref = references.add_reference_upload(character_id=ch.id, data=image_bytes(), filename="r.png", claimed_mime=None,
                                          editor=editor)
    attempts = {
        "Name": lambda: characters.create_character(data=CharacterInput(name=f"Eve{bad}lyn"), editor=editor),
        "Description": lambda: characters.create_character(data=CharacterInput(name="D", description=f"x{bad}"),
                                                           editor=editor),
        "Trait": lambda: characters.create_character(data=CharacterInput(name="T", traits=[f"t{bad}"]), editor=editor),
        "Style name": lambda: styles.create_style(data=styles.StyleInput(name=f"S{bad}"), editor=editor),
        "Prompt fragment": lambda: styles.update_style(
            style_id=style.id, expected_version=style.version, editor=editor,
            data=styles.StyleInput(name="Ink", prompt_fragment=f"oil{bad}")),
        "Tag name": lambda: tags.create_tag(name=f"tag{bad}", editor=editor, embed=False),
        "Tag description": lambda: tags.create_tag(name="tag", description=f"d{bad}", editor=editor, embed=False),
        "Caption": lambda: references.update_reference_text(reference_id=ref.id, expected_version=ref.version, caption=f"c{bad}", alt_text="", editor=editor),
        "Version note": lambda: prompt_registry.save_version(name="character_name", body="{{ count }}",
                                                             author=editor, note=f"n{bad}"),
        "Your name": lambda: clean_editor_name(f"Sam{bad}"),
    }
    for field, attempt in attempts.items():
        with pytest.raises(ValidationError, match=re.escape(message)) as err:
            attempt()
        assert field in str(err.value), str(err.value)
    assert _count(Character) == 1 and _count(Style) == 1 and _count(PromptVersion) == 0
    assert tags.list_tags() == [] and references.list_references(character_id=ch.id)[0].caption == ""


# ---------------------------------------------------------------- a length limit on every free-text field
def test_every_free_text_field_has_a_length_limit(editor):
    ch = characters.create_character(data=CharacterInput(name="Base"), editor=editor)
    ref = references.add_reference_upload(character_id=ch.id, data=image_bytes(), filename="r.png", claimed_mime=None,
                                          editor=editor)
    long = "x" * 5000
    refusals = [
        (lambda: characters.create_character(data=CharacterInput(name=long), editor=editor), "Name is 5000"),
        (lambda: characters.create_character(data=CharacterInput(name="A", description=long), editor=editor),
         "Description is 5000"),
        (lambda: characters.create_character(data=CharacterInput(name="A", notes=long), editor=editor), "Notes is 5000"),
        (lambda: characters.create_character(data=CharacterInput(name="A", traits=["t" * 61]), editor=editor),
         "the limit is 60"),
        (lambda: styles.create_style(data=styles.StyleInput(name="S", description=long), editor=editor),
         "Description is 5000"),
        (lambda: styles.create_style(data=styles.StyleInput(name="S", prompt_fragment=long), editor=editor),
         "Prompt fragment is 5000"),
        (lambda: tags.create_tag(name="t", description=long, editor=editor, embed=False), "Tag description is 5000"),
        (lambda: references.update_reference_text(reference_id=ref.id, expected_version=ref.version, caption=long, alt_text="", editor=editor), "Caption is 5000"),
        (lambda: references.add_reference_upload(character_id=ch.id, data=image_bytes(colour="#000000"),
                                                 filename="b.png", claimed_mime=None, editor=editor, alt_text=long),
         "Alt text is 5000"),
        (lambda: prompt_registry.save_version(name="character_name", body="{{ count }}", author=editor, note=long),
         "Version note is 5000"),
        (lambda: clean_editor_name("E" * 81), "Your name is 81"),
    ]
    for attempt, message in refusals:
        with pytest.raises(ValidationError, match=message):
            attempt()
    assert _count(Character) == 1 and len(references.list_references(character_id=ch.id)) == 1


# ---------------------------------------------------------------- search boxes
def test_search_treats_like_wildcards_and_backslashes_as_plain_characters(editor):
    for name in ("100% Mage", "Snake_Case", "Back\\slash", "Plain Person"):
        characters.create_character(data=CharacterInput(name=name), editor=editor)
    names = lambda term: [r.name for r in characters.list_characters(search=term)]  # noqa: E731
    assert names("%") == ["100% Mage"]
    assert names("_") == ["Snake_Case"]
    assert names("\\") == ["Back\\slash"]
    assert names("p%n") == [] and names("pl_in") == []
    assert names("x" * 10_000) == []


# ---------------------------------------------------------------- shown literally
def test_escape_markdown_leaves_no_image_link_or_html_for_markdown_to_draw():
    hostile = "Eve ![pwn](http://127.0.0.1:9/p.png) [x](javascript:alert(1)) <img src=x onerror=alert(1)> $x$\n# h"
    out = escape_markdown(hostile)
    assert re.search(r"(?<!\\)[!\[\]<>$`*_~|]", out) is None and "\n" not in out  # every special char escaped
    assert escape_markdown("# Heading").startswith("\\#") and escape_markdown("1. item") == "1\\. item"
    assert escape_markdown("Ann O'Neil, 3.5 stars") == "Ann O'Neil, 3.5 stars"  # ordinary text unchanged


def test_map_hover_and_legend_escape_editor_text():
    df = pd.DataFrame({"name": ["<img src=http://127.0.0.1:9/p.png>"], "slot": ["<b>x</b>"], "style": ["a&b"],
                       "placed_by": ["fit"], "stale": [False], "archived": [False]})
    (hover,) = map_view.hover_texts(df)
    assert "<img" not in hover and "&lt;img src=http://127.0.0.1:9/p.png&gt;" in hover and "&lt;b&gt;x" in hover
    assert escape_html('"<a>"') == "&quot;&lt;a&gt;&quot;" and escape_like("5%_\\") == "5\\%\\_\\\\"


# ---------------------------------------------------------------- races
def test_stale_style_edit_is_refused_naming_who_saved_first(editor):
    ink = styles.create_style(data=styles.StyleInput(name="Ink", description="v1"), editor=editor)
    first = styles.update_style(style_id=ink.id, expected_version=ink.version, editor="Ann",
                                data=styles.StyleInput(name="Ink", description="by Ann"))
    assert first.version == 2
    with pytest.raises(ConflictError, match="changed by Ann.*Nothing was overwritten"):
        styles.update_style(style_id=ink.id, expected_version=ink.version, editor="Bob",
                            data=styles.StyleInput(name="Ink", description="by Bob"))
    assert styles.get_style(style_id=ink.id).description == "by Ann"


def _race(*calls):
    """Run the calls at the same moment in threads; each result or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def go(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except Exception as err:  # collected: the test asserts which kinds
            results[i] = err

    threads = [threading.Thread(target=go, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_activate_racing_save_version_leaves_exactly_one_active_version(editor):
    prompt_registry.save_version(name="character_name", body="v1 {{ count }}", author=editor)
    for i in range(8):
        results = _race(
            lambda: prompt_registry.activate(name="character_name", version=1, editor=editor),
            lambda i=i: prompt_registry.save_version(name="character_name", body=f"v{i} {{{{ count }}}}", author=editor),
            lambda: prompt_registry.activate(name="character_name", version=None, editor=editor),
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        with session_scope() as s:
            active = s.execute(sa.select(sa.func.count()).where(PromptVersion.is_active.is_(True))).scalar_one()
        assert active <= 1


def test_concurrent_retry_of_failed_slots_queues_them_once(editor):
    from tests.test_generation import run_worker

    ch = characters.create_character(data=CharacterInput(name="Retry Race"), editor=editor)
    # fails on every slot but the first (the one the override is checked against when the run is requested)
    override = "{{ character.name }}{% if slot.key != 'portrait_front' %}{{ 1 // 0 }}{% endif %}"
    req = generation.request_run(character_id=ch.id, requested_by=editor, template_override=override)
    run_worker()
    assert generation.run_status(run_id=req.run_id).counts == {"completed": 1, "failed": 9}

    results = _race(*[lambda: generation.regenerate(run_id=req.run_id, requested_by=editor, failed_only=True)] * 3)
    queued = [r for r in results if isinstance(r, list)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(queued) == 1 and len(queued[0]) == 9
    assert len(refused) == 2 and all(isinstance(r, ValidationError) and "already queued again" in str(r)
                                     for r in refused)
    assert generation.run_status(run_id=req.run_id).counts == {"completed": 1, "pending": 9}


def test_review_note_refuses_hidden_characters(editor):
    with pytest.raises(ValidationError, match="U\\+202E"):
        review.decide(variation_id=1, decision="approved", reviewer=editor, note="fine\u202e")


def test_sidebar_name_with_hidden_characters_is_refused_with_a_message():
    from streamlit.testing.v1 import AppTest

    from tests.test_pages import ROOT, TIMEOUT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/characters.py")
    at.run()
    at.sidebar.text_input(key="_editor_name_widget").input("Sam\u202eevil").run()
    assert any("Your name contains invisible text-direction characters (U+202E)" in e.value for e in at.sidebar.error)
    assert not at.session_state["editor_name"]
    at.sidebar.text_input(key="_editor_name_widget").input("  Sam   Smith ").run()
    assert at.session_state["editor_name"] == "Sam Smith" and not at.sidebar.error
