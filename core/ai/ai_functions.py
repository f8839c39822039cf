"""The AI functions of the workbench, each a set of phases the engine runs.

- suggest_names: names for a (new or existing) character
- caption_reference: caption + alt text for a reference image
- slot_image: one variation slot's image (the prompt tuner's "try it"; the
  generation pipeline reuses the same prompt building)
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from core import media
from core.ai import prompt_registry
from core.ai.ai_engine import AIFunction, AIOutcome, ProgressFn, RunContext, run
from core.errors import ValidationError, require
from core.media.images import inspect_image
from core.ai.json_extract import ModelOutputError, extract_json
from core.ai.prompt_context import character_context
from core.ai.providers import MAX_REFERENCE_IMAGES, ImageResult, TextResult
from core.settings import get_settings
from core.shots import slot_by_key
from db.engine import session_scope
from db.models import Character, ReferenceImage, Style

NAME_COUNT = 5


class SuggestNames(AIFunction):
    name = "suggest_names"
    template = "character_name"
    subject_type = "character"

    def validate(self, inputs: dict[str, Any]) -> None:
        if not (inputs.get("description") or inputs.get("traits")):
            raise ValidationError("Write a description or a few traits first; names are suggested from them.")

    def prepare(self, rc: RunContext) -> None:
        i = rc.inputs
        with session_scope() as s:
            style = s.get(Style, i["style_id"]) if i.get("style_id") else None
            existing = s.execute(sa.select(Character.name).order_by(Character.id.desc()).limit(200)).scalars().all()
        rc.variables = {
            "character": {"name": i.get("name", ""), "slug": "", "description": i.get("description", ""),
                          "traits": list(i.get("traits", [])), "notes": "", "base_seed": 0},
            "style": {"name": style.name if style else "", "description": style.description if style else "",
                      "prompt_fragment": style.prompt_fragment if style else "",
                      "palette": list(style.palette) if style else []},
            "slot": {}, "rejection_reasons": [], "existing_names": list(existing), "existing_caption": "",
            "count": int(i.get("count", NAME_COUNT)),
        }

    def call(self, rc: RunContext) -> TextResult:
        return rc.provider.complete_json(prompt=rc.prompt, task="character_name", context=rc.variables)

    def parse(self, rc: RunContext, raw: TextResult) -> list[str]:
        data = extract_json(raw.text, expect=dict)
        names = data.get("names")
        if not isinstance(names, list):
            raise ModelOutputError("The model's JSON has no 'names' list.")
        taken = {n.lower() for n in rc.variables["existing_names"]}
        clean: list[str] = []
        for n in names:
            n = " ".join(str(n).split())[:100]
            if n and n.lower() not in taken and n not in clean:
                clean.append(n)
        if not clean:
            raise ModelOutputError("The model suggested no new names (all empty or already in the cast).")
        return clean

    def save(self, rc: RunContext, parsed: list[str]) -> tuple[list[str], dict[str, Any]]:
        return parsed, {"names": parsed}


class CaptionReference(AIFunction):
    name = "caption_reference"
    template = "image_caption"
    subject_type = "reference_image"

    def validate(self, inputs: dict[str, Any]) -> None:
        if not inputs.get("subject_id"):
            raise ValidationError("No reference image chosen.")

    def prepare(self, rc: RunContext) -> None:
        with session_scope() as s:
            ref = require(s.get(ReferenceImage, rc.inputs["subject_id"]), "That reference image no longer exists.")
            character_id, path, mime, caption = ref.character_id, ref.path, ref.mime, ref.caption
        rc.variables = character_context(character_id=character_id, existing_caption=caption)
        rc.extra = {"image": media.read_bytes(path), "mime": mime}

    def call(self, rc: RunContext) -> TextResult:
        return rc.provider.caption_image(prompt=rc.prompt, image=rc.extra["image"], mime=rc.extra["mime"],
                                         context=rc.variables)

    def parse(self, rc: RunContext, raw: TextResult) -> dict[str, str]:
        data = extract_json(raw.text, expect=dict)
        caption, alt = str(data.get("caption", "")).strip(), str(data.get("alt_text", "")).strip()
        if not caption:
            raise ModelOutputError("The model's JSON has no 'caption'.")
        return {"caption": caption[:1000], "alt_text": (alt or caption)[:1000]}

    def save(self, rc: RunContext, parsed: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
        # A suggestion: the editor reviews it in the form and saves it; nothing is overwritten here.
        return parsed, parsed


class CaptionVariation(CaptionReference):
    """A generated image described by the vision model, so text search finds it by what it shows
    (not only by the prompt that asked for it). Stored in the call's output, never over editor text."""

    name = "caption_variation"
    subject_type = "variation"

    def validate(self, inputs: dict[str, Any]) -> None:
        if not inputs.get("subject_id"):
            raise ValidationError("No variation chosen.")

    def prepare(self, rc: RunContext) -> None:
        from db.models import Variation

        with session_scope() as s:
            v = require(s.get(Variation, rc.inputs["subject_id"]), "That variation no longer exists.")
            character_id, path = v.character_id, v.path
        if not path:
            raise ValidationError("This variation has no image yet.")
        rc.variables = character_context(character_id=character_id, existing_caption="")
        rc.extra = {"image": media.read_bytes(path), "mime": "image/png" if path.endswith(".png") else "image/webp"}


def reference_images_for(character_id: int, limit: int = MAX_REFERENCE_IMAGES) -> list[tuple[bytes, str]]:
    with session_scope() as s:
        refs = s.execute(
            sa.select(ReferenceImage.path, ReferenceImage.mime).where(ReferenceImage.character_id == character_id)
            .order_by(ReferenceImage.position, ReferenceImage.id).limit(limit)
        ).all()
    return [(media.read_bytes(p), m) for p, m in refs if media.exists(p)]


class SlotImage(AIFunction):
    """One slot of one character: builds the variation prompt and makes the image.

    Inputs name the character as `character_id`; `subject_id` is what the call log
    points at (the character for "try it", the variation for a run)."""

    name = "slot_image"
    template = "variation_prompt"
    subject_type = "character"

    def validate(self, inputs: dict[str, Any]) -> None:
        slot_by_key(inputs["slot_key"])  # KeyError names the known slots
        with session_scope() as s:
            ch = require(s.get(Character, inputs["character_id"]), f"Character #{inputs['character_id']} does not exist.")
            if ch.archived:
                raise ValidationError(f"'{ch.name}' is archived; restore it before generating images.")

    def prepare(self, rc: RunContext) -> None:
        rc.variables = character_context(
            character_id=rc.inputs["character_id"], slot_key=rc.inputs["slot_key"],
            rejection_reasons=list(rc.inputs.get("rejection_reasons", [])),
        )
        rc.extra["references"] = reference_images_for(rc.inputs["character_id"])

    def call(self, rc: RunContext) -> ImageResult:
        return rc.provider.generate_image(prompt=rc.prompt, references=rc.extra["references"], context=rc.variables,
                                          before_attempt=rc.extra.get("before_attempt"))

    def parse(self, rc: RunContext, raw: ImageResult) -> ImageResult:
        s = get_settings()
        info = inspect_image(raw.data, max_bytes=max(s.max_upload_bytes, 50 * 1024 * 1024), max_pixels=s.max_image_pixels)
        rc.extra["image_info"] = info
        return raw

    def save(self, rc: RunContext, parsed: ImageResult) -> tuple[dict[str, Any], dict[str, Any]]:
        slug = rc.variables["character"]["slug"]
        ext = rc.extra["image_info"].extension
        rel = f"{media.character_dir(slug)}/tries/{rc.call_id:06d}-{rc.inputs['slot_key']}.{ext}"
        media.write_atomic(rel, parsed.data)
        out = {"path": rel, "seed": rc.variables["slot"]["seed"], "seed_used": parsed.seed_used,
               "references": len(rc.extra["references"])}
        return out, out


SUGGEST_NAMES = SuggestNames()
CAPTION_REFERENCE = CaptionReference()
CAPTION_VARIATION = CaptionVariation()
SLOT_IMAGE = SlotImage()


# Calls a person starts check their role ("ai.call", editor) before anything is spent and leave an audit row.
PERSON = "ai.call"


def suggest_names(*, description: str, traits: list[str], style_id: int | None, requested_by: str,
                  name: str = "", count: int = NAME_COUNT) -> AIOutcome:
    return run(SUGGEST_NAMES, requested_by=requested_by, action=PERSON, inputs={
        "description": description, "traits": traits, "style_id": style_id, "name": name, "count": count})


def caption_reference(*, reference_id: int, requested_by: str) -> AIOutcome:
    return run(CAPTION_REFERENCE, requested_by=requested_by, action=PERSON, inputs={"subject_id": reference_id})


def caption_image(*, subject_type: str, subject_id: int, requested_by: str) -> AIOutcome:
    """Vision caption of a stored image ('reference' or 'variation'), asked for by a person."""
    fn = CAPTION_REFERENCE if subject_type == "reference" else CAPTION_VARIATION
    return run(fn, requested_by=requested_by, action=PERSON, inputs={"subject_id": subject_id})


def caption_image_for_job(*, subject_type: str, subject_id: int, job_label: str) -> AIOutcome:
    """The embedding job's vision caption: part of embedding an image someone was allowed to add or
    generate, so no person's role is checked (the system path, action=None); `job_label` only names the
    caller in the cost log."""
    fn = CAPTION_REFERENCE if subject_type == "reference" else CAPTION_VARIATION
    return run(fn, requested_by=job_label, action=None, inputs={"subject_id": subject_id})


def try_slot(*, character_id: int, slot_key: str, requested_by: str, override: str | None = None,
             progress: ProgressFn | None = None) -> AIOutcome:
    return run(SLOT_IMAGE, requested_by=requested_by, action=PERSON, override=override, progress=progress,
               inputs={"character_id": character_id, "subject_id": character_id, "slot_key": slot_key})


def build_slot_prompt(*, character_id: int, slot_key: str, override: str | None = None,
                      rejection_reasons: list[str] | None = None) -> tuple[prompt_registry.ResolvedTemplate, str]:
    """The rendered prompt of one slot, without calling a provider (preview)."""
    resolved = prompt_registry.resolve("variation_prompt", override=override)
    ctx = character_context(character_id=character_id, slot_key=slot_key, rejection_reasons=rejection_reasons or [])
    return resolved, prompt_registry.render_body(resolved.body, ctx)


def preview_template(*, name: str, body: str, character_id: int | None, slot_key: str) -> str:
    """Render any template draft against a real character (or the sample context)."""
    if character_id is None:
        return prompt_registry.render_body(body, prompt_registry.sample_context())
    ctx = character_context(character_id=character_id, slot_key=slot_key)
    with session_scope() as s:
        ctx["existing_names"] = list(s.execute(sa.select(Character.name).limit(200)).scalars().all())
    return prompt_registry.render_body(body, ctx)
