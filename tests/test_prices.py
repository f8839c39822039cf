"""The team's prices: an admin sets a model's rates; every cost computed afterwards uses them, in every process."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from core import characters, generation
from core.ai import ai_functions, prices
from core.characters import CharacterInput
from core.errors import ConflictError, PermissionDenied, ValidationError
from core.team import audit
from db.engine import session_scope
from db.models import AICall
from db.models_team import Member

ROOT = Path(__file__).resolve().parents[1]


def _member(identity: str, role: str) -> None:
    with session_scope() as s:
        s.add(Member(identity=identity, role=role))


def _last_cost() -> Decimal | None:
    with session_scope() as s:
        return s.execute(sa.select(AICall.cost_usd).order_by(AICall.id.desc()).limit(1)).scalar_one()


def test_an_admin_price_is_used_for_the_next_call_and_the_change_is_audited(editor):
    ch = characters.create_character(data=CharacterInput(name="Priced Pia"), editor=editor)
    ai_functions.try_slot(character_id=ch.id, slot_key="portrait_front", requested_by=editor)
    assert _last_cost() == 0  # the shipped default for the offline model
    row = prices.set_price(model="offline-sketch", rates={"per_image": "0.05"}, editor=editor, expected_version=0)
    assert (row.source, row.version, row.rates) == ("team", 1, {"per_image": Decimal("0.05")})
    ai_functions.try_slot(character_id=ch.id, slot_key="portrait_front", requested_by=editor)
    assert _last_cost() == Decimal("0.05")
    [event] = audit.events(filters=audit.AuditFilter(entity="price"))
    assert (event.action, event.entity_id, event.actor) == ("price.set", "offline-sketch", editor)
    assert event.changes["rates"][1] == {"per_image": "0.05"} and event.changes["rates"][0]["per_image"] == "0.0"
    assert prices.reset_price(model="offline-sketch", editor=editor)
    ai_functions.try_slot(character_id=ch.id, slot_key="portrait_front", requested_by=editor)
    assert _last_cost() == 0
    assert [e.label for e in audit.events(filters=audit.AuditFilter(entity="price"))][0] == \
        "offline-sketch back to the default"
    assert prices.reset_price(model="offline-sketch", editor=editor) is False  # nothing left to reset


def test_a_worker_process_prices_its_slots_with_the_team_rate(editor):
    from tests.browser import worker_process

    prices.set_price(model="offline-sketch", rates={"per_image": "0.042"}, editor=editor)
    ch = characters.create_character(data=CharacterInput(name="Worker Wim"), editor=editor)
    run = generation.request_run(character_id=ch.id, requested_by=editor).run_id
    with worker_process():
        for _ in range(600):
            if not generation.run_status(run_id=run).active:
                break
            __import__("time").sleep(0.2)
    with session_scope() as s:
        costs = s.execute(sa.select(AICall.cost_usd).where(AICall.function == "variation_image")).scalars().all()
    assert len(costs) == 10 and set(costs) == {Decimal("0.042")}


def test_only_admins_change_prices_and_a_refusal_changes_nothing(editor):
    _member("ed@studio.test", "editor")
    with pytest.raises(PermissionDenied, match="Changing prices needs the admin role; you are an editor."):
        prices.set_price(model="gpt-image-1", rates={"per_image": "0"}, editor="ed@studio.test")
    assert [r.source for r in prices.list_prices() if r.model == "gpt-image-1"] == ["default"]
    assert audit.count(filters=audit.AuditFilter(entity="price")) == 0


@pytest.mark.parametrize("model, rates, message", [
    ("gpt-image-1", {"per_image": "-1"}, "between 0 and"),
    ("gpt-image-1", {"per_image": "NaN"}, "between 0 and"),
    ("gpt-image-1", {"per_image": "1e9"}, "between 0 and"),
    ("gpt-image-1", {"per_image": "cheap"}, "is not a number"),
    ("gpt-image-1", {"per_call": "1"}, "Unknown rate per_call"),
    ("gpt-image-1", {"per_image": None}, "at least one rate"),
    ("gpt image\u202e1", {"per_image": "1"}, "Model name"),
    ("", {"per_image": "1"}, "Model name"),
])
def test_bad_prices_are_refused_with_a_message_and_nothing_is_stored(editor, model, rates, message):
    with pytest.raises(ValidationError, match=message):
        prices.set_price(model=model, rates=rates, editor=editor)
    assert all(r.source == "default" for r in prices.list_prices())


def test_a_price_changed_since_the_form_opened_is_refused_not_overwritten(editor):
    prices.set_price(model="gpt-4o", rates={"input_per_1m": "2", "output_per_1m": "8"}, editor="Ann",
                     expected_version=0)
    with pytest.raises(ConflictError, match="changed by Ann"):
        prices.set_price(model="gpt-4o", rates={"input_per_1m": "3"}, editor=editor, expected_version=0)
    assert next(r for r in prices.list_prices() if r.model == "gpt-4o").rates["input_per_1m"] == 2


def _activity(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["editor_name"] = name
    at.switch_page("pages/activity.py")
    return at.run()


def test_the_activity_page_lists_prices_and_only_an_admin_gets_the_form(editor):
    _member("vic", "viewer")
    at = _activity("vic")
    assert not at.exception
    assert any("Changing prices needs the admin role; you are a viewer." in c.value for c in at.caption)
    assert not [b for b in at.button if b.label == "Save price"]

    at = _activity(editor)
    at.selectbox(key="price_model").set_value("offline-sketch").run()
    at.number_input(key="price_per_image_offline-sketch").set_value(0.25).run()
    next(b for b in at.button if b.label == "Save price").click().run()
    assert not at.exception
    assert any("Price of offline-sketch saved" in s.value for s in at.success)
    assert next(r for r in prices.list_prices() if r.model == "offline-sketch").rates["per_image"] == Decimal("0.25")
