"""Prompt experiments: panels (fixed test beds) and experiments (template versions run over a panel).

An experiment snapshots the body of every arm when it is created, then queues one
job per (arm, character, slot) on the normal generation queue: same worker pool,
same bound on parallel slots, same stalled-job recovery, same cost log (each cell
is one ai_call through the one engine, with the arm's body as the per-run
override). The seed of a cell is the character's base seed + the slot's offset,
identical across arms, so the template is the only thing that differs.
Cells are stored under MEDIA_ROOT/experiments/ and in their own table: they never
become variations, so the coverage grid and review queue do not see them.
Panels, experiments, cancelling and re-running need the editor role; each of these writes
leaves one audit row (entity panel or experiment) in its own transaction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.ai import prompt_registry
from core.errors import DuplicateError, NotFoundError, ValidationError, require
from core.settings import get_settings
from core.shots import shot_list, slot_by_key
from core.team.access import authorize
from core.team.audit import record, snapshot
from db.engine import session_scope
from db.models import Character, Style, utcnow
from db.models_experiments import Experiment, ExperimentCell, Panel

log = logging.getLogger(__name__)

GENERATE_CELL = "generate_experiment_cell"
TEMPLATE = "variation_prompt"
NAME_MAX = 120
MAX_PANEL_CHARACTERS = 200
MAX_CELLS = 600
ACTIVE_STATES = ("pending", "generating")
ARM_KINDS = ("active", "version", "draft", "file")
PANEL_FIELDS = ("name", "description", "character_ids", "slot_keys", "source")


def check_allowed(*, who: str, action: str) -> str:
    """Refuse early (before costly validation such as sandboxed renders); the write authorizes again in its
    own transaction, so this is an early answer, never the only check."""
    with session_scope() as s:
        return authorize(s, who=who, action=action)


# ---------------------------------------------------------------- panels
def _clean_name(name: str, what: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError(f"Give the {what} a name.")
    if len(name) > NAME_MAX:
        raise ValidationError(f"The {what} name is {len(name)} characters; the limit is {NAME_MAX}.")
    return name


def create_panel(*, name: str, character_ids: list[int], slot_keys: list[str], editor: str,
                 description: str = "", source: str = "selection") -> Panel:
    """A named test bed. No slots means the whole shot list. Characters keep the order given.
    Needs panel.create (editor); one audit row with the panel's fields."""
    check_allowed(who=editor, action="panel.create")
    name = _clean_name(name, "panel")
    ids = list(dict.fromkeys(int(c) for c in character_ids))
    if not ids:
        raise ValidationError("A panel needs at least one character.")
    if len(ids) > MAX_PANEL_CHARACTERS:
        raise ValidationError(f"A panel holds at most {MAX_PANEL_CHARACTERS} characters; {len(ids)} were chosen.")
    keys = list(dict.fromkeys(slot_keys))
    for k in keys:
        try:
            slot_by_key(k)
        except KeyError as err:
            raise ValidationError(str(err).strip("'\"")) from None
    with session_scope() as s:
        role = authorize(s, who=editor, action="panel.create")
        found = set(s.execute(sa.select(Character.id).where(Character.id.in_(ids))).scalars())
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFoundError(f"Characters {missing} no longer exist.")
        if s.execute(sa.select(Panel.id).where(sa.func.lower(Panel.name) == name.lower())).first():
            raise DuplicateError(f"A panel named '{name}' exists already.")
        panel = Panel(name=name, description=description.strip(), character_ids=ids, slot_keys=keys, source=source,
                      created_by=editor)
        s.add(panel)
        s.flush()
        record(s, who=editor, role=role, action="panel.create", entity="panel", entity_id=panel.id,
               after=snapshot(panel, PANEL_FIELDS), label=name)
        s.refresh(panel)
        return panel


def characters_matching(*, style_id: int | None = None, tag: str | None = None) -> list[int]:
    """Active characters of a style and/or carrying a tag (automatic or applied by hand), by name."""
    q = sa.select(Character.id).where(Character.archived.is_(False)).order_by(sa.func.lower(Character.name))
    if style_id is not None:
        q = q.where(Character.style_id == style_id)
    if tag:
        tagged = sa.text("select st.subject_id from subject_tag st join tag_concept t on t.id = st.tag_id "
                         "where st.subject_type = 'character' and lower(t.name) = lower(:tag)").bindparams(tag=tag)
        q = q.where(Character.id.in_(tagged.columns(sa.column("subject_id", sa.Integer))))
    with session_scope() as s:
        return list(s.execute(q).scalars())


def panel_from_filter(*, name: str, slot_keys: list[str], editor: str, style_id: int | None = None,
                      tag: str | None = None) -> Panel:
    """A panel of the active characters of a style and/or tag (panel.create, editor)."""
    check_allowed(who=editor, action="panel.create")
    if style_id is None and not tag:
        raise ValidationError("Choose a style or a tag to build the panel from.")
    ids = characters_matching(style_id=style_id, tag=tag)
    parts = []
    if style_id is not None:
        with session_scope() as s:
            style = require(s.get(Style, style_id), f"Style #{style_id} does not exist.")
            parts.append(f"style {style.name}")
    if tag:
        parts.append(f"tag {tag}")
    if not ids:
        raise ValidationError(f"No active character matches {' and '.join(parts)}.")
    return create_panel(name=name, character_ids=ids, slot_keys=slot_keys, editor=editor, source=" + ".join(parts))


def list_panels() -> list[Panel]:
    with session_scope() as s:
        return list(s.execute(sa.select(Panel).order_by(Panel.id.desc())).scalars())


def panel_slots(panel: Panel) -> list[str]:
    return list(panel.slot_keys) or [slot.key for slot in shot_list()]


# ---------------------------------------------------------------- experiments
@dataclass(frozen=True)
class ArmSpec:
    """One column of an experiment: the active version, a saved version, a draft body or the file default."""

    kind: str
    version: int | None = None
    body: str | None = None


def resolve_arms(*, template_name: str, specs: list[ArmSpec]) -> list[dict[str, Any]]:
    """Snapshot each arm's body now (a later edit must not change what was measured); validate each."""
    if len(specs) < 2:
        raise ValidationError("Pick at least two versions to compare.")
    arms: list[dict[str, Any]] = []
    for spec in specs:
        if spec.kind not in ARM_KINDS:
            raise ValidationError(f"Unknown kind of version '{spec.kind}'; use one of {', '.join(ARM_KINDS)}.")
        if spec.kind == "active":
            resolved = prompt_registry.resolve(template_name)
            body, version = resolved.body, resolved.version
            label = f"v{version} (active)" if version is not None else "file default (active)"
        elif spec.kind == "version":
            pv = prompt_registry.get_version(name=template_name, version=int(spec.version or 0))
            body, version, label = pv.body, pv.version, f"v{pv.version}"
        elif spec.kind == "file":
            body, version, label = prompt_registry.file_default(template_name), None, "file default"
        else:
            body, version, label = (spec.body or ""), None, "draft"
        try:
            prompt_registry.validate_body(body)
        except prompt_registry.TemplateProblem as err:
            raise ValidationError(f"{label}: {err}") from None
        arms.append({"label": label, "kind": spec.kind, "version": version, "body": body})
    seen: dict[str, str] = {}
    for arm in arms:
        if arm["body"] in seen:
            raise ValidationError(f"{seen[arm['body']]} and {arm['label']} have the same text: nothing to compare.")
        seen[arm["body"]] = arm["label"]
    labels = [a["label"] for a in arms]
    for arm in arms:  # two drafts would otherwise share a label
        if labels.count(arm["label"]) > 1:
            arm["label"] = f"{arm['label']} {chr(ord('A') + arms.index(arm))}"
    return arms


def create_experiment(*, panel_id: int, specs: list[ArmSpec], editor: str, name: str = "",
                      template_name: str = TEMPLATE) -> Experiment:
    """Write the experiment and all its pending cells in one transaction, then queue one job per cell.
    Needs experiment.create (editor); one audit row for the experiment (arms with their bodies, cell count)."""
    check_allowed(who=editor, action="experiment.create")
    arms = resolve_arms(template_name=template_name, specs=specs)
    with session_scope() as s:
        role = authorize(s, who=editor, action="experiment.create")
        panel = require(s.get(Panel, panel_id), f"Panel #{panel_id} does not exist.")
        chars = {c.id: c for c in s.execute(sa.select(Character).where(Character.id.in_(panel.character_ids))).scalars()}
        order = [chars[i] for i in panel.character_ids if i in chars]
        if not order:
            raise ValidationError(f"None of the characters of panel '{panel.name}' exist any more.")
        archived = [c.name for c in order if c.archived]
        if archived:
            raise ValidationError(f"Archived characters in panel '{panel.name}': {', '.join(archived)}. "
                                  "Restore them or build a new panel.")
        slots = [slot_by_key(k) for k in panel_slots(panel)]
        n_cells = len(order) * len(slots) * len(arms)
        if n_cells > MAX_CELLS:
            raise ValidationError(f"That is {n_cells} images; one experiment makes at most {MAX_CELLS}. "
                                  "Use fewer characters, slots or versions.")
        exp = Experiment(name=_clean_name(name or f"{panel.name}: {' vs '.join(a['label'] for a in arms)}"[:NAME_MAX],
                                          "experiment"),
                         panel_id=panel.id, template_name=template_name, arms=arms, created_by=editor)
        s.add(exp)
        s.flush()
        provider = get_settings().provider_name
        cells = [ExperimentCell(experiment_id=exp.id, arm=a, character_id=ch.id, slot_key=slot.key,
                                seed=ch.base_seed + slot.seed_offset, provider=provider)
                 for ch in order for slot in slots for a in range(len(arms))]
        s.add_all(cells)
        s.flush()
        record(s, who=editor, role=role, action="experiment.create", entity="experiment", entity_id=exp.id,
               after=snapshot(exp, ("name", "panel_id", "template_name", "arms")) | {"cells": len(cells)},
               label=exp.name)
        s.refresh(exp)
        cell_ids = [c.id for c in cells]
    _defer(cell_ids)
    return exp


def _defer(cell_ids: list[int]) -> None:
    """Queue all cells in one round trip, then record the job ids in one short transaction.

    No queueing lock: a cell is only ever claimed while 'pending', so a duplicate job is a no-op. Deferring
    first and writing job ids after keeps the cell rows unlocked while workers already claim them.
    """
    from core.jobs import GENERATION_QUEUE, get_app

    if not cell_ids:
        return
    job_ids = get_app().configure_task(GENERATE_CELL, queue=GENERATION_QUEUE).batch_defer(
        *[{"cell_id": cid} for cid in cell_ids])
    with session_scope() as s:
        s.execute(sa.text("update experiment_cell set job_id = j.jid from unnest(cast(:cids as int[]), "
                          "cast(:jids as int[])) as j(cid, jid) where id = j.cid and job_id is null"),
                  {"cids": list(cell_ids), "jids": list(job_ids)})


def list_experiments() -> list[Experiment]:
    with session_scope() as s:
        return list(s.execute(sa.select(Experiment).order_by(Experiment.id.desc())).scalars())


def get_experiment(*, experiment_id: int) -> Experiment:
    with session_scope() as s:
        return require(s.get(Experiment, experiment_id), f"Experiment #{experiment_id} does not exist.")


def cells(*, experiment_id: int) -> list[ExperimentCell]:
    with session_scope() as s:
        return list(s.execute(sa.select(ExperimentCell).where(ExperimentCell.experiment_id == experiment_id)
                              .order_by(ExperimentCell.id)).scalars())


@dataclass(frozen=True)
class Progress:
    total: int
    counts: dict[str, int]

    @property
    def active(self) -> int:
        return sum(self.counts.get(k, 0) for k in ACTIVE_STATES)

    @property
    def done(self) -> int:
        return self.total - self.active


def progress(*, experiment_id: int) -> Progress:
    with session_scope() as s:
        rows = s.execute(sa.select(ExperimentCell.status, sa.func.count()).where(
            ExperimentCell.experiment_id == experiment_id).group_by(ExperimentCell.status)).all()
    counts = {st: n for st, n in rows}
    return Progress(sum(counts.values()), counts)


def cancel(*, experiment_id: int, editor: str) -> int:
    """Pending cells are cancelled with their jobs; cells already generating finish and are kept.
    Needs experiment.cancel (editor); one audit row (cancelled, and how many cells it stopped)."""
    from core.jobs import get_app

    with session_scope() as s:
        role = authorize(s, who=editor, action="experiment.cancel")
        exp = require(s.get(Experiment, experiment_id), f"Experiment #{experiment_id} does not exist.")
        was_cancelled = exp.cancelled
        exp.cancelled = True
        s.add(exp)
        jobs = s.execute(sa.update(ExperimentCell).where(ExperimentCell.experiment_id == experiment_id,
                                                          ExperimentCell.status == "pending")
                         .values(status="cancelled", error=f"cancelled by {editor}", finished_at=utcnow())
                         .returning(ExperimentCell.job_id)).scalars().all()
        record(s, who=editor, role=role, action="experiment.cancel", entity="experiment", entity_id=experiment_id,
               before={"cancelled": was_cancelled, "cells_cancelled": 0},
               after={"cancelled": True, "cells_cancelled": len(jobs)}, label=exp.name)
    for job_id in jobs:
        if job_id is not None:
            get_app().job_manager.cancel_job_by_id(job_id)
    return len(jobs)


def rerun_failed(*, experiment_id: int, editor: str) -> list[int]:
    """Queue the failed and cancelled cells again (same seed, next attempt); completed cells are kept.
    Needs experiment.rerun (editor); one audit row naming the cells queued again (none when nothing changed)."""
    with session_scope() as s:
        role = authorize(s, who=editor, action="experiment.rerun")
        exp = require(s.get(Experiment, experiment_id), f"Experiment #{experiment_id} does not exist.")
        was_cancelled = exp.cancelled
        exp.cancelled = False
        s.add(exp)
        ids = s.execute(sa.update(ExperimentCell).where(ExperimentCell.experiment_id == experiment_id,
                                                         ExperimentCell.status.in_(("failed", "cancelled")))
                        .values(status="pending", error=None, attempt=ExperimentCell.attempt + 1, started_at=None, job_id=None,
                                finished_at=None).returning(ExperimentCell.id)).scalars().all()
        if ids or was_cancelled:
            record(s, who=editor, role=role, action="experiment.rerun", entity="experiment",
                   entity_id=experiment_id, before={"cancelled": was_cancelled, "cells_requeued": []},
                   after={"cancelled": False, "cells_requeued": sorted(ids)}, label=exp.name)
    _defer(sorted(ids))
    return sorted(ids)
