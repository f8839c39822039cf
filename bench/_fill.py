"""A studio-sized cast in seconds: N characters × the shot list, written with a few set-based SQL statements.

Used by bench/pages.py and by the scale tests. Rows are real rows (characters, styles, one completed run per
character, one completed variation per slot), the image files are a handful of real PNGs + WebP thumbnails
shared by all variations (a page renders the same bytes as it would for distinct files of that size).
"""
from __future__ import annotations

import io

import sqlalchemy as sa
from PIL import Image

from core import media
from core.media.images import make_thumbnail
from core.settings import get_settings
from core.shots import shot_list
from db.engine import get_engine

PALETTE = ("#884422", "#225588", "#338855", "#775599", "#aa9933")


def _shared_images() -> list[tuple[str, str]]:
    """A few real image files (path, thumbnail) under MEDIA_ROOT/bench/."""
    out = []
    for i, colour in enumerate(PALETTE):
        buf = io.BytesIO()
        Image.new("RGB", (256, 320), colour).save(buf, format="PNG")
        rel = f"bench/shared-{i}.png"
        thumb = f"bench/shared-{i}.thumb.webp"
        media.write_atomic(rel, buf.getvalue())
        media.write_atomic(thumb, make_thumbnail(buf.getvalue(), size=get_settings().thumbnail_size))
        out.append((rel, thumb))
    return out


def fill_cast(*, characters: int, styles: int = 8, editor: str = "bench", reviewed_every: int = 7) -> int:
    """Insert `characters` characters with one completed run each and one completed variation per slot.

    Every `reviewed_every`-th variation is approved and the one after it rejected, so review filters have
    something to find. Returns the number of variations written.
    """
    slots = shot_list()
    images = _shared_images()
    with get_engine().begin() as conn:
        conn.execute(sa.text(
            "insert into style (name, created_by, updated_by) "
            "select 'Bench style ' || g, :ed, :ed from generate_series(1, :n) g"), {"ed": editor, "n": styles})
        conn.execute(sa.text(
            "insert into character (slug, name, description, traits, style_id, base_seed, created_by, updated_by) "
            "select 'bench-' || g, 'Bench character ' || lpad(g::text, 5, '0'), 'A bench character number ' || g, "
            "  jsonb_build_array('trait ' || (g % 13), 'trait ' || (g % 7)), "
            "  (select id from style order by id offset (g % :ns) limit 1), g * 100, :ed, :ed "
            "from generate_series(1, :n) g"), {"ed": editor, "n": characters, "ns": styles})
        conn.execute(sa.text(
            "insert into generation_run (character_id, status, requested_by, provider, started_at, finished_at) "
            "select id, 'completed', :ed, 'offline', now(), now() from character where slug like 'bench-%'"),
            {"ed": editor})
        slot_rows = sa.text(
            "select * from unnest(cast(:keys as text[]), cast(:offs as int[])) with ordinality as s(key, off, pos)")
        n = conn.execute(sa.text(
            "insert into variation (run_id, character_id, slot_key, attempt, seed, status, rendered_prompt, provider,"
            "  model, path, thumb_path, review_status, reason_codes, reviewed_by, reviewed_at, drift_score, "
            "  started_at, finished_at) "
            "select r.id, r.character_id, s.key, 1, c.base_seed + s.off, 'completed', "
            "  c.name || ', ' || s.key, 'offline', 'offline-sketch', "
            "  (cast(:paths as text[]))[1 + ((r.id + s.pos) % :ni)], "
            "  (cast(:thumbs as text[]))[1 + ((r.id + s.pos) % :ni)], "
            "  case (r.id * 10 + s.pos) % :every when 0 then 'approved' when 1 then 'rejected' else 'unreviewed' end,"
            "  case (r.id * 10 + s.pos) % :every when 1 then '[\"anatomy\"]'::jsonb else '[]'::jsonb end, "
            "  case when (r.id * 10 + s.pos) % :every in (0, 1) then :ed end, "
            "  case when (r.id * 10 + s.pos) % :every in (0, 1) then now() end, "
            "  ((r.id * 7919 + s.pos * 104729) % 1000) / 1000.0, now(), now() "
            f"from generation_run r join character c on c.id = r.character_id cross join ({slot_rows.text}) s "
            "where c.slug like 'bench-%'"),
            {"keys": [s.key for s in slots], "offs": [s.seed_offset for s in slots],
             "paths": [p for p, _ in images], "thumbs": [t for _, t in images], "ni": len(images),
             "every": reviewed_every, "ed": editor}).rowcount
        conn.execute(sa.text("analyze character; analyze variation; analyze generation_run"))
    return n
