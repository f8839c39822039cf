"""The demo cast: a dozen varied characters in four styles, loaded in one action.

Data lives in prompts/demo_cast.json; each character gets one reference image
drawn offline, so every screen has content without any network. Loading twice
adds nothing (existing slugs and style names are skipped).

Loading needs demo.load (admin: it adds styles and starter tags). Each style, character,
reference and tag it creates leaves its own audit row through the function that creates
it; the load itself adds one summary row (entity "demo") when it added anything.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from core import characters, references, styles
from core.settings import PROJECT_ROOT
from core.ai.sketch import draw_sketch
from core.team.access import authorize
from core.team.audit import record
from db.engine import session_scope

log = logging.getLogger(__name__)
DEMO_FILE = PROJECT_ROOT / "prompts" / "demo_cast.json"


@dataclass(frozen=True)
class DemoResult:
    styles_added: int
    characters_added: int
    characters_skipped: int


def load_demo_cast(*, editor: str, path: Path = DEMO_FILE) -> DemoResult:
    with session_scope() as s:  # refused before anything is created
        authorize(s, who=editor, action="demo.load")
    spec = json.loads(path.read_text(encoding="utf-8"))
    existing_styles = {s.name.lower(): s for s in styles.list_styles()}
    styles_added = 0
    for st_spec in spec["styles"]:
        if st_spec["name"].lower() not in existing_styles:
            created = styles.create_style(data=styles.StyleInput(**st_spec), editor=editor)
            existing_styles[created.name.lower()] = created
            styles_added += 1
    existing_slugs = {c.slug for c in characters.list_characters(archived=None)}
    added = skipped = 0
    for ch_spec in spec["characters"]:
        slug = characters.slugify(ch_spec["name"])
        if slug in existing_slugs:
            skipped += 1
            continue
        style = existing_styles[ch_spec["style"].lower()]
        ch = characters.create_character(
            data=characters.CharacterInput(
                name=ch_spec["name"], description=ch_spec["description"], traits=ch_spec["traits"], style_id=style.id,
            ),
            editor=editor,
        )
        png = draw_sketch(
            title=ch.name, subtitle=", ".join(ch.traits[:3]), seed=ch.base_seed, palette=style.palette,
            pose="reference", banner="DEMO REFERENCE SKETCH",
        )
        references.add_reference_upload(
            character_id=ch.id, data=png, filename=f"{slug}-reference.png", claimed_mime="image/png", editor=editor,
            caption=f"Reference sketch of {ch.name}: {', '.join(ch.traits)}",
            alt_text=f"Stick-figure sketch of {ch.name} in the {style.name} palette",
        )
        added += 1
    from core import tags

    tags_added = tags.load_starter_tags(editor=editor)  # so the cast gets semantic tags as soon as it is embedded
    if styles_added or added or tags_added:
        with session_scope() as s:
            role = authorize(s, who=editor, action="demo.load")
            record(s, who=editor, role=role, action="demo.load", entity="demo", entity_id="",
                   after={"styles_added": styles_added, "characters_added": added, "characters_skipped": skipped,
                          "tags_added": tags_added}, label=f"demo cast from {path.name}")
    log.info("demo cast: %d styles, %d characters added, %d skipped", styles_added, added, skipped)
    return DemoResult(styles_added, added, skipped)
