"""Hostile templates: every render is bounded in time, memory and output, and a breach names the limit."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import characters, generation
from core.ai import ai_functions, prompt_registry
from core.characters import CharacterInput
from core.ai.prompt_registry import BODY_MAX, TemplateLimitError, TemplateProblem
from core.ai.template_sandbox import OUTPUT_MAX, RANGE_MAX
from db.engine import session_scope
from db.models import PromptVersion

SAMPLE = prompt_registry.sample_context()

# Cheap on the sample character (2 traits: 2**5 = 32 iterations), ruinous on a real one (30 traits: 24 million).
# Six nested loops: 30 traits make 729 million iterations (minutes on any machine; five levels, 24 million,
# finished inside the 1 s limit on a quiet machine), the sample's few traits make a few hundred.
EXPENSIVE_ON_REAL_DATA = (
    "{{ character.name }}, {{ slot.fragment }}"
    "{% for a in character.traits %}{% for b in character.traits %}{% for c in character.traits %}"
    "{% for d in character.traits %}{% for e in character.traits %}{% for f in character.traits %}"
    "{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
)


@pytest.mark.parametrize("body, limit", [
    ("{{ 'a' * 10**9 }}", "output limit"),
    ("{{ [1, 2] * 100000000 }}", "output limit"),
    ("{{ ('x' * 15000) + ('y' * 15000) }}", "output limit"),
    ("{{ 7 ** 100000 }}", "bits"),
    ("{{ (10 ** 1000) * (10 ** 1000) }}", "bits"),
    ("{{ 1.5 ** 100000 }}", "overflows"),
    ("{% for i in range(10**8) %}x{% endfor %}", f"limit of {RANGE_MAX}"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nest deeper"),
    ("{{ 'a'|center(999999999) }}", "output limit"),
    ("{{ '%999999999d' % 1 }}", "format width"),
    ("{{ '%s'|format(1) }}{{ '%0999999999d'|format(1) }}", "format width"),
    ("{{ '{:>999999999}'.format(1) }}", "format width"),
    ("{{ 'a'.ljust(999999999) }}", "output limit"),
    ("{{ ('x' * 10000)|replace('x', 'yyyyyyyyyy') }}", "output limit"),
    ("{% for i in range(5000) %}abcde{% endfor %}", "output limit"),
])
def test_constant_bombs_are_refused_before_they_are_computed(body, limit):
    with pytest.raises(TemplateLimitError, match=limit):
        prompt_registry.validate_body(body)


@pytest.mark.parametrize("body, expected", [
    ("{{ character.traits|join(', ') }}", "storm mage, silver hair"),
    ("{{ ', '.join(character.traits) }}", "storm mage, silver hair"),
    ("{{ character.name|replace('Ayla', 'Ayla the') }}", "Ayla the Stormwind"),
    ("[{{ 'x'|center(5) }}]", "[ x ]"),  # rendered "[  x  ]", then tidied (runs of spaces collapse)
    ("{{ '%s-%03d'|format(slot.key, 7) }} {{ '%s!' % count }}", "portrait_front-007 5!"),
    ("{{ '{} / {}'.format(slot.seed, count) }} {{ 'ab' * 3 }} {{ 2 ** 10 }} {{ [1] + [2] }}", "1235 / 5 ababab 1024 [1, 2]"),
    ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
])
def test_ordinary_templates_still_render(body, expected):
    assert prompt_registry.validate_body(body) == expected


def test_string_doubling_hits_the_memory_limit_and_the_next_render_works(settings_override):
    settings_override(template_render_memory_mb=64)
    doubling = "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ 1 }}"
    with pytest.raises(TemplateLimitError, match="memory"):
        prompt_registry.validate_body(doubling)
    assert prompt_registry.validate_body("{{ character.name }}") == "Ayla Stormwind"


def test_a_slow_template_is_stopped_at_the_time_limit_and_the_child_is_replaced(settings_override):
    settings_override(template_render_timeout_s=1)
    slow = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateLimitError, match=r"render time limit \(1 s\)"):
        prompt_registry.validate_body(slow)
    assert prompt_registry.validate_body("{{ slot.key }}") == "portrait_front"


def test_save_refuses_a_bomb_and_saves_nothing(editor):
    with pytest.raises(TemplateLimitError, match="output limit"):
        prompt_registry.save_version(name="variation_prompt", body="{{ 'ab' * 10**9 }}", author=editor)
    with session_scope() as s:
        assert s.execute(sa.select(sa.func.count(PromptVersion.id))).scalar_one() == 0


def test_preview_and_run_overrides_apply_the_same_size_rule_as_saving(editor):
    ch = characters.create_character(data=CharacterInput(name="Oona Reed", traits=["reed flute"]), editor=editor)
    huge = "{{ character.name }}" + " " * BODY_MAX
    for call in (
        lambda: prompt_registry.validate_body(huge),
        lambda: ai_functions.preview_template(name="variation_prompt", body=huge, character_id=ch.id,
                                              slot_key="portrait_front"),
        lambda: ai_functions.preview_template(name="variation_prompt", body=huge, character_id=None,
                                              slot_key="portrait_front"),
        lambda: generation.request_run(character_id=ch.id, requested_by=editor, template_override=huge),
    ):
        with pytest.raises(TemplateProblem, match=f"the limit is {BODY_MAX}"):
            call()


def test_try_it_with_a_template_that_explodes_on_a_real_character_fails_with_the_limit(editor, settings_override):
    settings_override(template_render_timeout_s=1)
    ch = characters.create_character(data=CharacterInput(name="Many Traits", traits=[f"t{i}" for i in range(30)]),
                                     editor=editor)
    assert prompt_registry.validate_body(EXPENSIVE_ON_REAL_DATA).startswith("Ayla Stormwind")  # cheap on the sample
    with pytest.raises(TemplateLimitError, match="render time limit"):
        ai_functions.try_slot(character_id=ch.id, slot_key="portrait_front", requested_by=editor,
                              override=EXPENSIVE_ON_REAL_DATA)


def test_renders_from_many_threads_share_the_pool():
    bodies = [f"{{{{ character.name }}}} #{i} {{{{ 'ab' * {i} }}}}" for i in range(24)]
    with ThreadPoolExecutor(max_workers=8) as ex:
        out = list(ex.map(lambda b: prompt_registry.render_body(b, SAMPLE), bodies))
    assert out == [f"Ayla Stormwind #{i} {'ab' * i}".strip() for i in range(24)]


# ---------------------------------------------------------------- property: arbitrary templates
_atoms = st.sampled_from([
    "character.name", "character.traits", "character.base_seed", "style.palette", "slot.seed", "count", "x",
    "'ab'", "[1, 2, 3]", "7", "99999", "10**6", "1.5", "range(50)", "range(10**9)", "existing_names", "''",
    "character.__class__", "'%s-%5d'", "'{:>30}'", "none", "(1, 2)",
])
_binops = st.sampled_from([" * ", " ** ", " + ", " ~ ", " % ", " // ", " - ", " / "])
_filters = st.sampled_from(["", "|length", "|join(', ')", "|upper", "|center(100000)", "|list", "|replace('a', 'bb')",
                            "|format(1)", "|indent(99999)", "|first", "|sum", "|string"])


@st.composite
def _expr(draw, depth: int = 0):
    if depth > 3 or draw(st.booleans()):
        return draw(_atoms) + draw(_filters)
    return "(" + draw(_expr(depth + 1)) + draw(_binops) + draw(_expr(depth + 1)) + ")" + draw(_filters)


@st.composite
def _template(draw):
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["text", "expr", "for", "if", "macro", "broken"]))
        if kind == "text":
            parts.append(draw(st.text(max_size=30)))
        elif kind == "expr":
            parts.append("{{ " + draw(_expr()) + " }}")
        elif kind == "for":
            parts.append("{% for i in " + draw(_expr()) + " %}{{ i }}" + draw(st.sampled_from(["", "{{ loop.index }}"]))
                         + "{% endfor %}")
        elif kind == "if":
            parts.append("{% if " + draw(_expr()) + " %}yes{% else %}no{% endif %}")
        elif kind == "macro":
            parts.append("{% macro m(n) %}{{ n }}{{ m(n ~ 'x') }}{% endmacro %}{{ m(" + draw(_expr()) + ") }}")
        else:
            parts.append(draw(st.sampled_from(["{{", "{% for %}", "{{ a.b.c }}", "{% endif %}", "{{ 1 +* 2 }}"])))
    return "".join(parts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_template())
def test_arbitrary_templates_only_raise_our_refusals_and_stay_within_the_output_limit(body):
    try:
        out = prompt_registry.render_body(body, SAMPLE)
    except TemplateProblem as err:
        assert str(err)  # an editor-facing message, never empty
    else:
        assert isinstance(out, str) and len(out) <= OUTPUT_MAX


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_as_a_template_renders_or_is_refused_with_a_message(text):
    try:
        prompt_registry.render_body(text, SAMPLE)
    except TemplateProblem as err:
        assert str(err)


# ---------------------------------------------------------------- the worker survives
def test_worker_fails_slots_of_an_expensive_active_template_and_stays_usable(editor):
    from tests.browser import worker_process

    heavy = characters.create_character(
        data=CharacterInput(name="Thirty Traits", traits=[f"trait {i}" for i in range(30)]), editor=editor)
    light = characters.create_character(data=CharacterInput(name="Two Traits", traits=["a", "b"]), editor=editor)
    prompt_registry.save_version(name="variation_prompt", body=EXPENSIVE_ON_REAL_DATA, author=editor,
                                 note="looks cheap on the sample")  # activated: it renders fine on the sample

    def wait_done(run_id: int) -> generation.RunStatus:
        for _ in range(600):
            status = generation.run_status(run_id=run_id)
            if not status.active:
                return status
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not finish: {status.counts}")

    with worker_process({"TEMPLATE_RENDER_TIMEOUT_S": "1"}, concurrency=4):
        bad = generation.request_run(character_id=heavy.id, requested_by=editor)
        status = wait_done(bad.run_id)
        assert status.status == "failed" and status.counts == {"failed": 10}
        assert all("render time limit (1 s)" in v.error for v in status.slots)

        prompt_registry.activate(name="variation_prompt", version=None, editor=editor)  # back to the file default
        good = generation.request_run(character_id=light.id, requested_by=editor)
        status = wait_done(good.run_id)
        assert status.status == "completed" and status.counts == {"completed": 10}


# ---------------------------------------------------------------- the page: a refusal, never "Unexpected error"
def test_prompts_page_shows_the_limit_for_a_bomb_in_check_preview_and_save(editor):
    from streamlit.testing.v1 import AppTest

    from tests.test_pages import ROOT, TIMEOUT

    characters.create_character(data=CharacterInput(name="Page Person", traits=["x"]), editor=editor)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["editor_name"] = editor
    at.switch_page("pages/prompts.py")
    at.run()
    assert any("Limits for every render" in c.value for c in at.caption)
    at.selectbox(key="prompt_template").select("variation_prompt").run()
    at.text_area(key="draft_variation_prompt").input("{{ 'x' * 10**9 }}").run()  # the preview tab renders it too
    for label in ("Check draft", "Save as new version"):
        at.button[[b.label for b in at.button].index(label)].click().run()
        errors = [e.value for e in at.error]
        assert not at.exception and any("output limit" in e for e in errors), errors
        assert not any("Unexpected error" in e for e in errors)
    assert prompt_registry.list_versions(name="variation_prompt") == []
