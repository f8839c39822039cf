"""The Audit page's queries over a 100,000-row trail (one bulk INSERT … SELECT), as the page runs them.

Each case is what one page view costs: `audit_view.page_of` (a COUNT and one page of rows, both
filtered and paged in SQL) for the unfiltered trail, one person, one entity type (rare and common)
and a 7-day window, on the first page and on a deep page; plus the filter boxes' choices (distinct
people, entities, actions). Prints p50 / p95 per case, the plan's access path, and one JSON line.
The action filter is served by ix_audit_event_action (migration 0023).
"""
from __future__ import annotations

import json
import os
import statistics
import time
from datetime import date, timedelta

import sqlalchemy as sa

from _setup import bench_database

N = 100_000
REPEAT = 15
DAYS = 180
ACTORS = 25


def seed(engine) -> None:
    """Realistic mix: a few busy people, most rows about characters and variations, spread over DAYS days."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"""
            insert into audit_event (at, actor, role, action, entity, entity_id, label, changes)
            select now() - (interval '1 second' * ({DAYS} * 86400.0 * g / {N})),
                   'person' || (floor(power(random(), 2) * {ACTORS}))::int || '@example.com',
                   (array['viewer','reviewer','editor','admin'])[1 + (g % 4)],
                   e.action, e.entity, (g % 5000)::text, 'row ' || g,
                   jsonb_build_object('name', jsonb_build_array('before ' || g, 'after ' || g),
                                      'description', jsonb_build_array(null, repeat('text ', 1 + g % 40)))
            from generate_series(1, {N}) g
            cross join lateral (
                select case when r < 0.45 then 'character.update' when r < 0.60 then 'review.decide'
                            when r < 0.75 then 'generation.request' when r < 0.85 then 'reference.add'
                            when r < 0.90 then 'tag.apply' when r < 0.93 then 'style.update'
                            when r < 0.96 then 'prompt.save' when r < 0.99 then 'experiment.pick'
                            else 'member.manage' end as action,
                       case when r < 0.45 then 'character' when r < 0.60 then 'variation'
                            when r < 0.75 then 'run' when r < 0.85 then 'reference' when r < 0.90 then 'character'
                            when r < 0.93 then 'style' when r < 0.96 then 'prompt' when r < 0.99 then 'experiment'
                            else 'member' end as entity
                from (select random() + g * 0 as r) x) e
        """))
        conn.execute(sa.text("analyze audit_event"))


def timed(fn, repeat: int = REPEAT) -> tuple[float, float]:
    fn()  # warm the cache and the pool
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def access_path(engine, filters, offset: int) -> str:
    """The scan nodes Postgres picks for the page query (index name or Seq Scan)."""
    from core.team.audit import _where
    from db.models_team import AuditEvent

    q = (sa.select(AuditEvent).where(*_where(filters)).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
         .offset(offset).limit(50))
    sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = conn.execute(sa.text("explain (format json) " + sql)).scalar_one()
    nodes: list[str] = []

    def walk(node: dict) -> None:
        if "Scan" in node["Node Type"]:
            nodes.append(node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else ""))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return ", ".join(nodes)


def main() -> None:
    bench_database("bench_audit")
    from core.team import audit_view
    from db.engine import get_engine

    engine = get_engine()
    t0 = time.perf_counter()
    seed(engine)
    seed_s = time.perf_counter() - t0
    with engine.connect() as conn:
        busiest = conn.execute(sa.text("select actor, count(*) from audit_event group by actor "
                                       "order by count(*) desc limit 1")).one()
        quiet = conn.execute(sa.text("select actor, count(*) from audit_event group by actor "
                                     "order by count(*) asc limit 1")).one()
    print(f"seeded {N:,} audit rows in {seed_s:.1f} s; busiest person {busiest[0]} ({busiest[1]:,} rows), "
          f"quietest {quiet[0]} ({quiet[1]:,} rows)")

    today = date.today()
    cases = {
        "all": audit_view.make_filter(),
        "person_busy": audit_view.make_filter(actor=busiest[0]),
        "person_quiet": audit_view.make_filter(actor=quiet[0]),
        "entity_style": audit_view.make_filter(entity="style"),
        "entity_character": audit_view.make_filter(entity="character"),
        "action_prompt_save": audit_view.make_filter(action="prompt.save"),
        "week": audit_view.make_filter(since=today - timedelta(days=97), until=today - timedelta(days=91)),
        "person_and_week": audit_view.make_filter(actor=busiest[0], since=today - timedelta(days=97),
                                                  until=today - timedelta(days=91)),
    }
    figures: dict[str, dict[str, float | int | str]] = {}
    print(f"{'case':<20} {'rows':>7}  {'first p50/p95 ms':>17}  {'deep p50/p95 ms':>16}  deep page  access path (deep)")
    for name, f in cases.items():
        first = audit_view.page_of(who="bench", filters=f, page=1)
        deep_page = max(1, first.pages // 2)
        p50, p95 = timed(lambda f=f: audit_view.page_of(who="bench", filters=f, page=1))
        d50, d95 = timed(lambda f=f, p=deep_page: audit_view.page_of(who="bench", filters=f, page=p))
        path = access_path(engine, f, (deep_page - 1) * audit_view.PAGE_SIZE)
        figures[name] = {"rows": first.total, "first_p50_ms": round(p50, 1), "first_p95_ms": round(p95, 1),
                         "deep_page": deep_page, "deep_p50_ms": round(d50, 1), "deep_p95_ms": round(d95, 1),
                         "plan": path}
        print(f"{name:<20} {first.total:>7,}  {p50:>8.1f} / {p95:<6.1f}  {d50:>7.1f} / {d95:<6.1f}  "
              f"{deep_page:>9}  {path}")
    c50, c95 = timed(audit_view.choices)
    print(f"filter choices (distinct people, entities, actions): p50 {c50:.1f} ms, p95 {c95:.1f} ms")
    worst_first = max(v["first_p95_ms"] for v in figures.values())
    worst_deep = max(v["deep_p95_ms"] for v in figures.values())
    print(f"worst first page p95 {worst_first:.1f} ms; worst deep page p95 {worst_deep:.1f} ms")
    print(json.dumps({"rows": N, "seed_s": round(seed_s, 1), "worst_first_page_p95_ms": worst_first,
                      "worst_deep_page_p95_ms": worst_deep, "choices_p50_ms": round(c50, 1),
                      "choices_p95_ms": round(c95, 1), "cases": figures}))


if __name__ == "__main__":
    main()
