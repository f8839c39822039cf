"""The openai provider through the real SDK against a local stub server, via the engine."""

import pytest
import sqlalchemy as sa

from core import characters, references
from core.ai import ai_functions
from core.characters import CharacterInput
from core.ai.json_extract import ModelOutputError
from core.ai.pricing import Usage, cost_usd
from core.ai.providers import ContentRefused, OpenAIProvider, ProviderError
from db.engine import session_scope
from db.models import AICall
from tests.helpers import image_bytes
from tests.openai_stub import chat_ok, error, image_ok, start_stub


@pytest.fixture
def stub(settings_override):
    stub, server = start_stub()
    settings_override(openai_api_key="sk-test-not-a-secret", openai_base_url=stub.url, openai_timeout_s=2,
                      openai_max_retries=2, max_retry_after_s=5)
    yield stub
    server.shutdown()


@pytest.fixture
def character(editor):
    ch = characters.create_character(data=CharacterInput(name="Kira Voss", description="netrunner",
                                                         traits=["cyber arm"]), editor=editor)
    references.add_reference_upload(character_id=ch.id, data=image_bytes(), filename="r.png", claimed_mime=None,
                                    editor=editor)
    return ch


def _calls() -> list[AICall]:
    with session_scope() as s:
        return list(s.execute(sa.select(AICall).order_by(AICall.id)).scalars().all())


def test_names_success_records_usage_and_cost(stub, editor):
    stub.script("/chat/completions", chat_ok('Here you go:\n```json\n{"names": ["Nova Quill", "Ash Vey",]}\n```'))
    out = ai_functions.suggest_names(description="a netrunner", traits=["cyber arm"], style_id=None, requested_by=editor)
    assert out.value == ["Nova Quill", "Ash Vey"] and out.provider == "openai"
    [row] = _calls()
    assert (row.status, row.phase, row.tokens_in, row.tokens_out, row.attempts) == ("succeeded", "done", 120, 30, 1)
    assert row.cost_usd == cost_usd("gpt-4o-mini", Usage(120, 30)) and row.cost_usd > 0
    assert row.template_name == "character_name" and row.template_layer == "file" and len(row.prompt_hash) == 64
    assert [s["phase"] for s in row.steps] == ["validate", "prepare", "build_prompt", "call", "parse", "save"]
    sent = stub.calls("/chat/completions")[0]
    assert b"a netrunner" in sent.body and b"json_object" in sent.body


def test_429_with_retry_after_is_honoured_then_succeeds(stub, editor):
    stub.script("/chat/completions",
                error(429, "Rate limit reached", "rate_limit_exceeded", headers={"Retry-After": "1"}),
                chat_ok('{"names": ["Ivo Lark"]}'))
    out = ai_functions.suggest_names(description="x", traits=[], style_id=None, requested_by=editor)
    assert out.value == ["Ivo Lark"]
    first, second = stub.calls("/chat/completions")
    assert second.time - first.time >= 0.95  # waited as the server asked
    assert _calls()[0].attempts == 2


def test_500_is_retried_and_gives_up_with_a_clear_message(stub, editor):
    stub.script("/chat/completions", error(500, "boom"), chat_ok('{"names": ["Ola Fen"]}'))
    assert ai_functions.suggest_names(description="x", traits=[], style_id=None, requested_by=editor).value == ["Ola Fen"]
    stub.script("/chat/completions", error(500, "boom"), error(502, "bad gateway"), error(503, "down"))
    with pytest.raises(ProviderError, match="failed after 3 attempt"):
        ai_functions.suggest_names(description="x", traits=[], style_id=None, requested_by=editor)
    failed = _calls()[-1]
    assert (failed.status, failed.phase, failed.attempts) == ("failed", "call", 3)
    assert "503" in failed.error


def test_timeout_fails_clearly(stub, editor, settings_override):
    settings_override(openai_timeout_s=0.3, openai_max_retries=1)
    stub.script("/chat/completions", {**chat_ok("{}"), "sleep": 1.0}, {**chat_ok("{}"), "sleep": 1.0})
    with pytest.raises(ProviderError, match="timed out after 0.3 s") as info:
        ai_functions.suggest_names(description="x", traits=[], style_id=None, requested_by=editor)
    assert info.value.kind == "timeout" and len(stub.calls("/chat/completions")) == 2


def test_malformed_http_body_and_malformed_model_json(stub, editor):
    stub.script("/chat/completions", {"status": 200, "raw": '{"choices": [ this is not json'})
    with pytest.raises(ProviderError, match="malformed"):
        ai_functions.suggest_names(description="x", traits=[], style_id=None, requested_by=editor)
    stub.script("/chat/completions", chat_ok("Sorry, I can only answer in prose."))
    with pytest.raises(ModelOutputError, match="Could not find a JSON"):
        ai_functions.suggest_names(description="x", traits=[], style_id=None, requested_by=editor)
    rows = _calls()
    assert [(r.status, r.phase) for r in rows] == [("failed", "call"), ("failed", "parse")]
    assert rows[1].tokens_in == 120  # usage of a call that was made is kept even when parsing fails


def test_content_policy_refusal_is_not_retried(stub, editor, character):
    stub.script("/images/edits", error(400, "Your request was rejected by our safety system.",
                                       "moderation_blocked"), image_ok())
    with pytest.raises(ContentRefused, match="content-policy"):
        ai_functions.try_slot(character_id=character.id, slot_key="action_pose", requested_by=editor)
    assert len(stub.calls("/images/edits")) == 1
    row = _calls()[-1]
    assert (row.status, row.attempts) == ("refused", 1)


def test_image_edit_sends_references_and_stores_the_image(stub, editor, character):
    stub.script("/images/edits", image_ok(input_tokens=300, output_tokens=4000, image_tokens=200))
    out = ai_functions.try_slot(character_id=character.id, slot_key="portrait_front", requested_by=editor)
    req = stub.calls("/images/edits")[0]
    assert req.content_type.startswith("multipart/form-data")
    assert b'name="input_fidelity"' in req.body and b"high" in req.body and b"ref0.png" in req.body
    assert out.value["path"].endswith("-portrait_front.png") and out.value["seed_used"] is False
    row = _calls()[-1]
    assert row.images == 1 and row.cost_usd == cost_usd("gpt-image-1", Usage(300, 4000, 200, 1))


def test_secret_never_reaches_the_log_or_the_row(stub, editor, caplog):
    stub.script("/chat/completions", error(401, "Incorrect API key provided: sk-test-not-a-secret"))
    with pytest.raises(ProviderError, match="check OPENAI_API_KEY"):
        ai_functions.suggest_names(description="x", traits=[], style_id=None, requested_by=editor)
    assert "sk-test-not-a-secret" not in (_calls()[-1].error or "")
    assert "sk-test-not-a-secret" not in caplog.text
    from core.settings import get_settings

    assert "sk-test" not in repr(get_settings()) and "sk-test" not in str(get_settings().describe())


def test_provider_is_chosen_by_key(settings_override):
    from core.ai.providers import OfflineProvider, get_provider

    settings_override(openai_api_key="")
    assert isinstance(get_provider(), OfflineProvider)
    settings_override(openai_api_key="sk-x")
    assert isinstance(get_provider(), OpenAIProvider)
    settings_override(ai_provider="offline")
    assert isinstance(get_provider(), OfflineProvider)
