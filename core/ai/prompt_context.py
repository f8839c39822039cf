"""The variables prompt templates see, built the same way for every template.

One context shape for all templates keeps the preview, the sample used to
validate drafts, and real runs in agreement.
"""
from __future__ import annotations

from typing import Any

from core.errors import require
from core.shots import Slot, slot_by_key
from db.engine import session_scope
from db.models import Character, Style

SAMPLE_CONTEXT: dict[str, Any] = {
    "character": {
        "name": "Ayla Stormwind", "slug": "ayla-stormwind", "description": "A wandering storm mage.",
        "traits": ["storm mage", "silver hair"], "notes": "", "base_seed": 1234,
    },
    "style": {"name": "Dark Fantasy Oil", "description": "Painterly oils", "prompt_fragment": "dark fantasy oil painting",
              "palette": ["#1b1b1e", "#a68a64"]},
    "slot": {"key": "portrait_front", "label": "Portrait, front", "fragment": "head-and-shoulders portrait",
             "seed_offset": 1, "seed": 1235, "pose": "portrait"},
    "rejection_reasons": [],
    "existing_names": ["Bram Copperkettle"],
    "existing_caption": "",
    "count": 5,
}


def character_context(*, character_id: int, slot_key: str | None = None, **extra: Any) -> dict[str, Any]:
    with session_scope() as s:
        ch = require(s.get(Character, character_id), f"Character #{character_id} does not exist.")
        style = s.get(Style, ch.style_id) if ch.style_id else None
        ctx: dict[str, Any] = {
            "character": {
                "name": ch.name, "slug": ch.slug, "description": ch.description, "traits": list(ch.traits),
                "notes": ch.notes, "base_seed": ch.base_seed,
            },
            "style": {
                "name": style.name if style else "", "description": style.description if style else "",
                "prompt_fragment": style.prompt_fragment if style else "", "palette": list(style.palette) if style else [],
            },
        }
    slot: Slot = slot_by_key(slot_key or "portrait_front")
    ctx["slot"] = {
        "key": slot.key, "label": slot.label, "fragment": slot.fragment, "seed_offset": slot.seed_offset,
        "seed": ctx["character"]["base_seed"] + slot.seed_offset, "pose": slot.pose,
    }
    ctx.update(rejection_reasons=[], existing_names=[], existing_caption="", count=5)
    ctx.update(extra)
    return ctx
