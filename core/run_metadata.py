"""The metadata.json written next to a finished run's images: what made each slot, for people and scripts
reading the media folder without the database."""
from __future__ import annotations

from decimal import Decimal

from db.models import Character, GenerationRun, Variation


def run_metadata(*, run: GenerationRun, character: Character, rows: list[Variation]) -> dict:
    """Every attempt of the run (not only the latest), with prompt, template, provider, cost and timing."""
    return {
        "run_id": run.id,
        "character": {"id": character.id, "slug": character.slug, "name": character.name,
                      "base_seed": character.base_seed},
        "status": run.status, "requested_by": run.requested_by, "provider": run.provider,
        "created_at": run.created_at.isoformat(), "finished_at": run.finished_at.isoformat(),
        "seed_note": "OpenAI has no seed parameter: seeds are provenance only" if run.provider == "openai"
        else "offline renderer uses the seed",
        "slots": [
            {"slot": v.slot_key, "attempt": v.attempt, "status": v.status, "seed": v.seed, "prompt": v.rendered_prompt,
             "template_version": v.template_version, "template_layer": v.template_layer, "provider": v.provider,
             "model": v.model, "cost_usd": str(v.cost_usd) if v.cost_usd is not None else None, "error": v.error,
             "file": v.path, "started_at": v.started_at.isoformat() if v.started_at else None,
             "finished_at": v.finished_at.isoformat() if v.finished_at else None,
             "seconds": round((v.finished_at - v.started_at).total_seconds(), 3)
             if v.started_at and v.finished_at else None}
            for v in rows
        ],
        "total_cost_usd": str(sum((v.cost_usd or Decimal(0)) for v in rows)),
    }
