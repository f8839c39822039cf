"""Prompt registry, sandbox, JSON extractor, offline provider and cost reconciliation."""
from decimal import Decimal

import pytest
import sqlalchemy as sa

from core import characters, references, styles
from core.ai import ai_calls, ai_functions, prompt_registry
from core.characters import CharacterInput
from core.ai.json_extract import ModelOutputError, extract_json
from core.ai.prompt_registry import TemplateProblem
from core.ai.providers import OfflineProvider
from db.engine import session_scope
from db.models import AICall
from tests.helpers import image_bytes


@pytest.fixture
def character(editor):
    st = styles.create_style(data=styles.StyleInput(name="Neon", prompt_fragment="neon rim light",
                                                    palette=["#10002b", "#ff006e", "#3a86ff", "#e0aaff"]), editor=editor)
    return characters.create_character(
        data=CharacterInput(name="Kira Voss", description="netrunner", traits=["cyber arm"], style_id=st.id),
        editor=editor)


# ------------------------------------------------------------------ extractor
@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('Sure! ```json\n{"a": [1, 2,],}\n```', {"a": [1, 2]}),
    ('The answer is {"a": "b}"} as requested.', {"a": "b}"}),
    ('```\n{"names": ["X"]}\n```', {"names": ["X"]}),
])
def test_extractor_handles_fences_prose_and_trailing_commas(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize("text", ["", "no json at all", '{"a": 1', "[1, 2]"])
def test_extractor_fails_clearly(text):
    with pytest.raises(ModelOutputError, match="JSON|empty"):
        extract_json(text, expect=dict)


# ------------------------------------------------------------------ registry
def test_resolution_order_override_db_file(character, editor):
    r = prompt_registry.resolve("variation_prompt")
    assert (r.layer, r.version) == ("file", None)
    prompt_registry.save_version(name="variation_prompt", body="DB {{ character.name }}", author=editor, note="n")
    r = prompt_registry.resolve("variation_prompt")
    assert (r.layer, r.version, r.body) == ("db", 1, "DB {{ character.name }}")
    r = prompt_registry.resolve("variation_prompt", override="OVR {{ slot.key }}")
    assert r.layer == "override"
    _, text = ai_functions.build_slot_prompt(character_id=character.id, slot_key="action_pose",
                                             override="OVR {{ slot.key }} {{ slot.seed }}")
    assert text == f"OVR action_pose {character.base_seed + 4}"


def test_file_default_renders_a_real_character(character):
    resolved, text = ai_functions.build_slot_prompt(character_id=character.id, slot_key="sitting_casual",
                                                    rejection_reasons=["wrong outfit"])
    assert resolved.layer == "file"
    assert "Kira Voss" in text and "sitting casually" in text and "neon rim light" in text and "wrong outfit" in text


def test_versions_activate_and_roll_back(editor):
    v1 = prompt_registry.save_version(name="character_name", body="v1 {{ count }}", author=editor)
    v2 = prompt_registry.save_version(name="character_name", body="v2 {{ count }}", author=editor)
    assert (v1.version, v2.version) == (1, 2)
    assert prompt_registry.resolve("character_name").version == 2
    prompt_registry.activate(name="character_name", version=1, editor=editor)
    assert prompt_registry.resolve("character_name").body == "v1 {{ count }}"
    assert [v.is_active for v in prompt_registry.list_versions(name="character_name")] == [False, True]
    prompt_registry.activate(name="character_name", version=None, editor=editor)
    assert prompt_registry.resolve("character_name").layer == "file"
    info = {t.name: t for t in prompt_registry.list_templates()}["character_name"]
    assert info.versions == 2 and info.active_version is None


@pytest.mark.parametrize("body, message", [
    ("Hello {{ character.name", "Syntax error on line 1"),
    ("line one\n{% if x %}\nno end", "Syntax error on line 3"),
    ("{{ charcter.name }}", "Unknown variable: 'charcter' is undefined"),
    ("{{ character.nickname }}", "nickname"),
    ("   ", "empty"),
])
def test_broken_drafts_are_explained_and_not_saved(editor, body, message):
    with pytest.raises(TemplateProblem, match=message):
        prompt_registry.save_version(name="variation_prompt", body=body, author=editor)
    assert prompt_registry.list_versions(name="variation_prompt") == []


@pytest.mark.parametrize("body", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ character.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].listdir('/') }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
])
def test_sandbox_blocks_python_internals_and_files(body):
    with pytest.raises(TemplateProblem) as info:
        prompt_registry.render_body(body, prompt_registry.sample_context())
    assert "root:" not in str(info.value)


# ------------------------------------------------------------------ offline provider
def test_offline_is_deterministic_and_labelled(character, editor):
    a = ai_functions.try_slot(character_id=character.id, slot_key="action_pose", requested_by=editor)
    b = ai_functions.try_slot(character_id=character.id, slot_key="action_pose", requested_by=editor)
    from core import media

    assert media.read_bytes(a.value["path"]) == media.read_bytes(b.value["path"])
    c = ai_functions.try_slot(character_id=character.id, slot_key="portrait_front", requested_by=editor)
    assert media.read_bytes(c.value["path"]) != media.read_bytes(a.value["path"])
    assert a.provider == "offline" and a.cost_usd == Decimal("0") and a.value["seed_used"] is True
    n1 = OfflineProvider().complete_json(prompt="p", task="character_name", context={"count": 4})
    n2 = OfflineProvider().complete_json(prompt="p", task="character_name", context={"count": 4})
    assert n1.text == n2.text and len(extract_json(n1.text)["names"]) == 4


def test_offline_names_avoid_the_cast_and_caption_uses_known_text(character, editor):
    out = ai_functions.suggest_names(description="netrunner", traits=["cyber arm"], style_id=None, requested_by=editor)
    assert len(out.value) == 5 and "Kira Voss" not in out.value
    ref = references.add_reference_upload(character_id=character.id, data=image_bytes(), filename="r.png",
                                          claimed_mime=None, editor=editor, caption="front view, hood down")
    cap = ai_functions.caption_reference(reference_id=ref.id, requested_by=editor)
    assert "Kira Voss" in cap.value["caption"] and "front view, hood down" in cap.value["caption"]
    assert references.list_references(character_id=character.id)[0].caption == "front view, hood down"  # not overwritten


def test_names_need_something_to_work_from(editor):
    from core.errors import ValidationError

    with pytest.raises(ValidationError, match="description or a few traits"):
        ai_functions.suggest_names(description="", traits=[], style_id=None, requested_by=editor)
    with session_scope() as s:
        row = s.execute(sa.select(AICall)).scalar_one()
    assert (row.status, row.phase, row.attempts) == ("failed", "validate", 0)


def test_archived_character_cannot_generate(character, editor):
    from core.errors import ValidationError

    characters.set_archived(character_id=character.id, expected_version=1, archived=True, editor=editor)
    with pytest.raises(ValidationError, match="archived"):
        ai_functions.try_slot(character_id=character.id, slot_key="action_pose", requested_by=editor)


def test_cost_totals_reconcile_with_rows(editor):
    """Totals by any grouping add up to the sum of the per-call rows."""
    with session_scope() as s:
        for i in range(30):
            s.add(AICall(function=["suggest_names", "slot_image", "caption_reference"][i % 3], phase="done",
                         status="succeeded" if i % 7 else "failed", provider="openai",
                         model=["gpt-4o-mini", "gpt-image-1"][i % 2], cost_usd=Decimal("0.001234") * (i + 1),
                         tokens_in=100 + i, tokens_out=10 * i, template_name="variation_prompt",
                         template_layer="db", template_version=1 + i % 2))
    n, total, failed = ai_calls.grand_total()
    with session_scope() as s:
        row_sum = s.execute(sa.select(sa.func.sum(AICall.cost_usd))).scalar_one()
    assert n == 30 and total == row_sum == Decimal("0.001234") * sum(range(1, 31))
    assert failed == len([i for i in range(30) if i % 7 == 0])
    for by in ai_calls.GROUPINGS:
        groups = ai_calls.totals(by=by)
        assert sum(Decimal(g["cost_usd"]) for g in groups) == total, by
        assert sum(g["calls"] for g in groups) == 30
    by_version = {g["key"]: g for g in ai_calls.totals(by="template version")}
    assert set(by_version) == {"variation_prompt · v1", "variation_prompt · v2"}
    fails = ai_calls.totals(by="function", flt=ai_calls.CallFilter(statuses=("failed",)))
    assert sum(g["calls"] for g in fails) == len([i for i in range(30) if i % 7 == 0])
