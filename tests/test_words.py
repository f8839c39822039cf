"""Words the editor reads: rendered prompts are clean sentences whatever the fields look like."""
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from core import characters, styles
from core.ai import ai_functions, prompt_registry
from core.characters import CharacterInput
from core.ai.prompt_text import tidy_prompt


def test_description_written_as_a_sentence_joins_cleanly(editor):
    style = styles.create_style(data=styles.StyleInput(name="Ink", prompt_fragment="Ink wash."), editor=editor)
    ch = characters.create_character(editor=editor, data=CharacterInput(
        name="Ayla Stormwind", description="A wandering storm mage.", traits=["silver hair."], style_id=style.id))
    prompt = ai_functions.preview_template(name="variation_prompt", body=prompt_registry.file_default("variation_prompt"),
                                           character_id=ch.id, slot_key="portrait_front")
    first = prompt.splitlines()[0]
    assert first == "Ayla Stormwind, a wandering storm mage."
    assert ", A " not in prompt
    assert not re.search(r"(?<!\.)\.\.(?!\.)", prompt), prompt
    assert "Style: Ink wash." in prompt


def test_names_and_ellipses_and_json_examples_are_left_alone():
    assert tidy_prompt("Bram, The Hague native...") == "Bram, The Hague native..."
    assert tidy_prompt('Answer with JSON only: {"names": ["...", "..."]}') == \
        'Answer with JSON only: {"names": ["...", "..."]}'
    assert tidy_prompt("Kira, An Nguyen, sees you.") == "Kira, An Nguyen, sees you."
    assert tidy_prompt("Wow!.\nStyle: neon , .") == "Wow!\nStyle: neon."


_field = st.text(alphabet="aAbB .,!?…\t", max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(_field, min_size=1, max_size=4))
def test_tidying_is_idempotent_keeps_lines_and_leaves_no_double_stop(fields):
    raw = "\n".join(f"{f}." for f in fields)  # each line is a field the template closes with a period
    once = tidy_prompt(raw)
    assert tidy_prompt(once) == once
    assert once.count("\n") == raw.count("\n")
    for line in once.splitlines():
        assert not re.search(r"(?<!\.)\.[ \t]*\.(?!\.)", line), line
        assert not re.search(r"[ \t][,.;:!?](\s|$)", line), line


def test_generation_calls_are_credited_to_the_editor_who_requested_the_run(editor):
    import sqlalchemy as sa

    from core import generation
    from db.engine import session_scope
    from tests.test_generation import run_worker

    ch = characters.create_character(editor=editor, data=CharacterInput(name="Pip Thimble"))
    generation.request_run(character_id=ch.id, requested_by="Rita Requester")
    run_worker()
    with session_scope() as s:
        who = s.execute(sa.text("select requested_by, count(*) from ai_call where function = :f group by 1"),
                        {"f": generation.VARIATION_IMAGE.name}).all()
    assert who == [("Rita Requester", 10)]


def test_cluster_labels_are_distinct_and_named_after_members():
    from core.vectors.map_view import cluster_labels

    terms = [["brave", "mage"], ["brave", "mage"], ["brave", "mage", "red scarf"], ["brave", "mage"],
             ["tinker"], ["gears"], []]
    labels = cluster_labels([0, 0, 1, 1, 2, 2, 3], terms)
    words = {c: label.split(": ", 1)[-1] for c, label in labels.items()}
    assert len({frozenset(w.split(", ")) for w in words.values()}) == len(words)  # no two read the same
    assert labels[1] == "2: mage, red scarf"
    assert not labels[2].startswith("cluster")  # members with one trait each still name their cluster
    assert labels[3] == "cluster 4"  # no traits or tags at all


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), max_size=3)),
                min_size=1, max_size=30))
def test_a_cluster_whose_members_have_terms_is_never_just_a_number(members):
    from core.vectors.map_view import cluster_labels

    clusters, terms = [c for c, _ in members], [t for _, t in members]
    labels = cluster_labels(clusters, terms)
    for c, label in labels.items():
        has_terms = any(t for cc, t in members if cc == c)
        assert label.startswith("cluster ") != has_terms, (c, label)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab c,.", max_size=80), st.integers(2, 60))
def test_clipped_captions_end_with_an_ellipsis_at_a_word_boundary(text, limit):
    from core.ai.prompt_text import clip_words

    out = clip_words(text, limit)
    flat = " ".join(text.split())
    assert len(out) <= limit
    if out == flat:
        return
    assert out.endswith("…")
    kept = out[:-1]
    assert flat.startswith(kept)
    after = flat[len(kept):]
    # the cut falls between words unless the first word alone is longer than the limit
    assert after[:1] in ("", " ", ",", ";", ":", ".", "-") or " " not in flat[:limit] or not kept


def test_clip_words_example():
    from core.ai.prompt_text import clip_words

    assert clip_words("Ayla on a cliff in a thunderstorm at dusk", 20) == "Ayla on a cliff in…"
    assert clip_words("short", 20) == "short"
