"""Judging and reading prompt experiments: compare rows (blind or not), picks, results, export, promote,
and the production record of each template version from real review decisions.

A pick needs experiment.pick (reviewer); promoting an arm needs experiment.promote and, since it changes
which template version is live, prompt.activate (admin); adding an experiment image to the variations
needs experiment.promote (editor). Each write leaves one audit row in its own transaction.
"""
from __future__ import annotations

import difflib
import io
import json
import random
import zipfile
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from core.ai import prompt_registry
from core.errors import DuplicateError, ValidationError, require
from core.experiment_stats import ArmResult, CellFact, PickFact, arm_results, verdict
from core.experiments import cells as experiment_cells
from core.experiments import get_experiment
from core.generation import REASON_CODES
from core.team.access import authorize
from core.team.audit import record, snapshot
from db.engine import session_scope
from db.models import Character, GenerationRun, PromptVersion, Variation, utcnow
from db.models_experiments import Experiment, ExperimentCell, ExperimentPick

OUTCOMES = ("win", "tie", "both_bad")
NOTE_MAX = 2000
PICK_FIELDS = ("outcome", "winner_arm", "reason_codes", "note")


# ---------------------------------------------------------------- compare view
@dataclass(frozen=True)
class Column:
    """One image of a row as the compare view shows it. In blind mode `label` is only a letter;
    `arm` stays on the server side (the page uses it to record a pick, never displays it)."""

    label: str
    arm: int
    cell: ExperimentCell


@dataclass(frozen=True)
class CompareRow:
    character_id: int
    character_name: str
    slot_key: str
    columns: list[Column]
    pick: ExperimentPick | None

    @property
    def ready(self) -> bool:
        return all(c.cell.status == "completed" for c in self.columns)


def column_order(*, experiment_id: int, character_id: int, slot_key: str, n_arms: int, blind: bool,
                 salt: str = "") -> list[int]:
    """Arms in display order: as created, or in blind mode shuffled per row (stable for one viewer's salt,
    so the page does not reshuffle on every rerun)."""
    order = list(range(n_arms))
    if blind:
        random.Random(f"{experiment_id}:{character_id}:{slot_key}:{salt}").shuffle(order)
    return order


def compare_rows(*, experiment_id: int, blind: bool, salt: str = "") -> list[CompareRow]:
    exp = get_experiment(experiment_id=experiment_id)
    by_row: dict[tuple[int, str], dict[int, ExperimentCell]] = {}
    for c in experiment_cells(experiment_id=experiment_id):
        by_row.setdefault((c.character_id, c.slot_key), {})[c.arm] = c
    with session_scope() as s:
        names = dict(s.execute(sa.select(Character.id, Character.name).where(
            Character.id.in_({cid for cid, _ in by_row}))).all())
        picks = {(p.character_id, p.slot_key): p for p in s.execute(
            sa.select(ExperimentPick).where(ExperimentPick.experiment_id == experiment_id)).scalars()}
    rows = []
    for (cid, slot), arms in by_row.items():
        order = column_order(experiment_id=experiment_id, character_id=cid, slot_key=slot, n_arms=len(exp.arms),
                             blind=blind, salt=salt)
        cols = [Column(f"Image {chr(ord('A') + pos)}" if blind else exp.arms[arm]["label"], arm, arms[arm])
                for pos, arm in enumerate(order) if arm in arms]
        rows.append(CompareRow(cid, names.get(cid, f"#{cid}"), slot, cols, picks.get((cid, slot))))
    return rows


def prompt_diff(*, experiment_id: int, a: int = 0, b: int = 1) -> str:
    """Unified diff of two arms' template bodies (the only thing that differs between their images)."""
    exp = get_experiment(experiment_id=experiment_id)
    la, lb = exp.arms[a], exp.arms[b]
    return "\n".join(difflib.unified_diff(la["body"].splitlines(), lb["body"].splitlines(), la["label"], lb["label"],
                                          lineterm="")) or "(identical bodies)"


def record_pick(*, experiment_id: int, character_id: int, slot_key: str, outcome: str, picked_by: str,
                winner_arm: int | None = None, reason_codes: list[str] | None = None, note: str = "") -> None:
    """Save (or change) the verdict on one row. Reasons use the review codes and describe what was wrong
    with the image(s) that did not win."""
    if not picked_by:
        raise ValidationError("Enter your name in the sidebar first (it goes into the pick).")
    if outcome not in OUTCOMES:
        raise ValidationError(f"Unknown outcome '{outcome}'; use one of {', '.join(OUTCOMES)}.")
    codes = list(dict.fromkeys(reason_codes or []))
    unknown = [c for c in codes if c not in REASON_CODES]
    if unknown:
        raise ValidationError(f"Unknown reason code(s): {', '.join(unknown)}. Known: {', '.join(REASON_CODES)}.")
    if len(note) > NOTE_MAX:
        raise ValidationError(f"The note is {len(note)} characters; the limit is {NOTE_MAX}.")
    exp = get_experiment(experiment_id=experiment_id)
    if outcome == "win":
        if winner_arm is None or not 0 <= winner_arm < len(exp.arms):
            raise ValidationError("Pick which image is better.")
    else:
        winner_arm = None
    with session_scope() as s:
        role = authorize(s, who=picked_by, action="experiment.pick")
        statuses = s.execute(sa.select(ExperimentCell.status).where(
            ExperimentCell.experiment_id == experiment_id, ExperimentCell.character_id == character_id,
            ExperimentCell.slot_key == slot_key)).scalars().all()
        if not statuses:
            raise ValidationError(f"Experiment #{experiment_id} has no row for that character and slot {slot_key}.")
        if any(st != "completed" for st in statuses):
            raise ValidationError("This row is not finished yet (or has a failed image): re-run failed cells first.")
        previous = s.execute(sa.select(ExperimentPick).where(
            ExperimentPick.experiment_id == experiment_id, ExperimentPick.character_id == character_id,
            ExperimentPick.slot_key == slot_key).with_for_update()).scalars().first()
        before = snapshot(previous, PICK_FIELDS) if previous is not None else {}
        values = dict(outcome=outcome, winner_arm=winner_arm, reason_codes=codes, note=note.strip(),
                      picked_by=picked_by, picked_at=utcnow())
        s.execute(insert(ExperimentPick).values(experiment_id=experiment_id, character_id=character_id,
                                                slot_key=slot_key, **values)
                  .on_conflict_do_update(constraint="uq_experiment_pick_row", set_=values))
        name = s.execute(sa.select(Character.name).where(Character.id == character_id)).scalar() or f"#{character_id}"
        record(s, who=picked_by, role=role, action="experiment.pick", entity="experiment", entity_id=experiment_id,
               before=before, after={k: values[k] for k in PICK_FIELDS},
               label=f"{exp.name}: {name} · {slot_key}")


# ---------------------------------------------------------------- results
@dataclass(frozen=True)
class Results:
    arms: list[ArmResult]
    rows: int
    judged: int
    verdict: str


def results(*, experiment_id: int) -> Results:
    exp = get_experiment(experiment_id=experiment_id)
    cell_rows = experiment_cells(experiment_id=experiment_id)
    with session_scope() as s:
        picks = s.execute(sa.select(ExperimentPick).where(ExperimentPick.experiment_id == experiment_id)).scalars().all()
    facts = [CellFact(c.arm, (c.character_id, c.slot_key), c.status, c.cost_usd, c.duration_ms, c.drift) for c in cell_rows]
    pfacts = [PickFact((p.character_id, p.slot_key), p.outcome, p.winner_arm, tuple(p.reason_codes)) for p in picks]
    arms = arm_results([a["label"] for a in exp.arms], facts, pfacts)
    n_rows = len({f.row for f in facts})
    return Results(arms, n_rows, len(pfacts), verdict(arms))


def export_zip(*, experiment_id: int) -> tuple[bytes, int]:
    """Every completed image with a manifest row (prompt, seed, cost, pick), plus results.json and the arms'
    template bodies, through the one zip-with-manifest writer."""
    from core import media

    exp = get_experiment(experiment_id=experiment_id)
    res = results(experiment_id=experiment_id)
    entries = []
    for row in compare_rows(experiment_id=experiment_id, blind=False):
        pick = row.pick
        for col in row.columns:
            c = col.cell
            ext = (c.path or ".png").rsplit(".", 1)[-1]
            entries.append((f"images/{row.character_name}/{row.slot_key}/arm{col.arm}-{col.label}.{ext}", c.path, {
                "experiment": exp.id, "character": row.character_name, "slot": row.slot_key, "arm": col.arm,
                "version": col.label, "seed": c.seed, "prompt": c.rendered_prompt, "provider": c.provider,
                "model": c.model, "cost_usd": str(c.cost_usd) if c.cost_usd is not None else "",
                "duration_ms": c.duration_ms, "pick": pick.outcome if pick else "",
                "winner": pick is not None and pick.winner_arm == col.arm,
            }))
    data, n = media.zip_with_manifest(entries)
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr("results.json", json.dumps({
            "experiment": {"id": exp.id, "name": exp.name, "template": exp.template_name},
            "verdict": res.verdict, "rows": res.rows, "judged": res.judged,
            "arms": [{"label": r.label, "version": exp.arms[r.arm]["version"], "images": r.images,
                      "failed": r.failed, "wins": r.wins, "ties": r.ties, "both_bad": r.both_bad,
                      "win_rate": r.win_rate, "win_ci95": list(r.win_ci), "approval_rate": r.approval_rate,
                      "cost_usd": str(r.cost_usd), "cost_per_image": str(r.cost_per_image),
                      "cost_per_approved": str(r.cost_per_approved), "median_latency_ms": r.median_latency_ms, "mean_drift": r.mean_drift,
                      "reasons": dict(r.reasons)} for r in res.arms],
        }, indent=2))
        for i, arm in enumerate(exp.arms):
            zf.writestr(f"templates/arm{i}.j2", arm["body"])
    return buf.getvalue(), n


# ---------------------------------------------------------------- promote
def promote(*, experiment_id: int, arm: int, editor: str) -> int | None:
    """Activate an arm's template: a saved version is activated, a draft is saved as a new active version,
    the file default becomes active again. The version's note records the experiment. Returns the version
    now active (None = file default).

    Needs experiment.promote and prompt.activate (it changes what is live: admin). Activation, note and
    the experiment's promoted_* columns commit together with one audit row (entity experiment)."""
    if not editor:
        raise ValidationError("Enter your name in the sidebar first (it goes into the version's audit note).")
    with session_scope() as s:  # refuse before the draft's (sandboxed) render check
        authorize(s, who=editor, action="experiment.promote")
        authorize(s, who=editor, action="prompt.activate")
    exp = get_experiment(experiment_id=experiment_id)
    if not 0 <= arm < len(exp.arms):
        raise ValidationError(f"Experiment #{experiment_id} has no arm {arm}.")
    a = exp.arms[arm]
    stamp = f"Promoted by {editor} from experiment #{exp.id} ({exp.name}) on {utcnow():%Y-%m-%d}."
    if a["version"] is None and a["kind"] == "draft":
        prompt_registry.validate_body(a["body"])
    with session_scope() as s:
        role = authorize(s, who=editor, action="experiment.promote")
        authorize(s, who=editor, action="prompt.activate")
        row = require(s.get(Experiment, experiment_id), f"Experiment #{experiment_id} does not exist.")
        before = snapshot(row, ("promoted_arm", "promoted_version", "promoted_by"))
        if a["version"] is not None:
            version = a["version"]
            was, _ = prompt_registry.activate_in(s, name=exp.template_name, version=version)
            s.execute(sa.update(PromptVersion).where(PromptVersion.template_name == exp.template_name,
                                                     PromptVersion.version == version)
                      .values(note=sa.func.trim(sa.func.concat(PromptVersion.note, " ", stamp))))
        elif a["kind"] == "draft":
            pv, was, _ = prompt_registry.save_in(s, name=exp.template_name, body=a["body"], author=editor,
                                                 note=stamp, activate=True)
            version = pv.version
        else:
            version = None
            was, _ = prompt_registry.activate_in(s, name=exp.template_name, version=None)
        row.promoted_arm, row.promoted_version, row.promoted_by, row.promoted_at = arm, version, editor, utcnow()
        s.add(row)
        s.flush()
        record(s, who=editor, role=role, action="experiment.promote", entity="experiment", entity_id=experiment_id,
               before=before | {"active_version": was["active_version"]},
               after=snapshot(row, ("promoted_arm", "promoted_version", "promoted_by")) | {"active_version": version},
               label=f"{exp.name}: {a['label']} → {exp.template_name} "
                     f"{'file default' if version is None else f'v{version}'}")
    return version


def promote_image(*, cell_id: int, editor: str) -> int:
    """Copy one experiment image into its character's variations (a completed one-slot run), so it can be
    reviewed and exported like any variation. Only an editor's explicit choice does this; returns the variation id.
    The file is written before the rows commit and removed if they do not."""
    from core import jobs, media
    from core.fencing import variation_rel_path

    if not editor:
        raise ValidationError("Enter your name in the sidebar first.")
    with session_scope() as s:
        role = authorize(s, who=editor, action="experiment.promote")
        cell = require(s.get(ExperimentCell, cell_id), f"Experiment image #{cell_id} does not exist.")
        if cell.status != "completed" or not cell.path:
            raise ValidationError("Only a finished experiment image can be added to the variations.")
        if cell.ai_call_id is not None and s.execute(sa.select(Variation.id).where(
                Variation.ai_call_id == cell.ai_call_id)).first():
            raise DuplicateError("This image is already among the character's variations.")
        exp, ch = s.get(Experiment, cell.experiment_id), s.get(Character, cell.character_id)
        arm = exp.arms[cell.arm]
        run = GenerationRun(character_id=ch.id, requested_by=editor, provider=cell.provider, status="completed",
                            template_override=arm["body"] if arm["version"] is None else None,
                            started_at=cell.started_at, finished_at=cell.finished_at)
        s.add(run)
        s.flush()
        ext = cell.path.rsplit(".", 1)[-1]
        rel = variation_rel_path(ch.slug, run.id, cell.slot_key, 1, 1, ext)
        thumb = rel.rsplit(".", 1)[0] + ".thumb.webp"
        media.write_atomic(rel, media.read_bytes(cell.path))
        media.write_atomic(thumb, media.read_bytes(cell.thumb_path))
        try:
            v = Variation(run_id=run.id, character_id=ch.id, slot_key=cell.slot_key, seed=cell.seed, status="completed",
                          rendered_prompt=cell.rendered_prompt, template_version=arm["version"],
                          template_layer="db" if arm["version"] is not None else "override", provider=cell.provider,
                          model=cell.model, path=rel, thumb_path=thumb, cost_usd=cell.cost_usd,
                          ai_call_id=cell.ai_call_id, review_note=f"from experiment #{exp.id} ({arm['label']})",
                          started_at=cell.started_at, finished_at=cell.finished_at)
            s.add(v)
            s.flush()
            vid = v.id
            record(s, who=editor, role=role, action="experiment.promote", entity="variation", entity_id=vid,
                   after=snapshot(v, ("character_id", "run_id", "slot_key", "seed", "template_version", "path",
                                      "review_note")),
                   label=f"{ch.name} · {cell.slot_key} from experiment #{exp.id} ({arm['label']})")
            s.commit()
        except BaseException:
            media.remove(rel, thumb)
            raise
    jobs.request_embedding(subject_type="variation", ids=[vid])  # pixels, prompt text, drift
    return vid


# ---------------------------------------------------------------- production feedback
@dataclass(frozen=True)
class VersionRecord:
    """How one template version does in everyday runs, from real review decisions."""

    label: str
    images: int
    approved: int
    rejected: int
    cost_usd: Decimal

    @property
    def approval_rate(self) -> float | None:
        decided = self.approved + self.rejected
        return self.approved / decided if decided else None

    @property
    def cost_per_approved(self) -> Decimal | None:
        return self.cost_usd / self.approved if self.approved else None


def production_record() -> list[VersionRecord]:
    """Per template version used by generation runs (variations only: experiment images are not production)."""
    label = sa.case((Variation.template_layer == "db", sa.func.concat("v", sa.cast(Variation.template_version, sa.Text))),
                    (Variation.template_layer == "file", "file default"), else_="per-run override")
    q = (sa.select(label.label("label"), sa.func.count(),
                   sa.func.count().filter(Variation.review_status == "approved"),
                   sa.func.count().filter(Variation.review_status == "rejected"),
                   sa.func.coalesce(sa.func.sum(Variation.cost_usd), 0))
         .where(Variation.status == "completed").group_by(label).order_by(label))
    with session_scope() as s:
        return [VersionRecord(lab, n, a, r, Decimal(c)) for lab, n, a, r, c in s.execute(q).all()]
