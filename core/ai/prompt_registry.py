"""The one prompt registry: file defaults, database versions, per-run overrides.

Resolution order: override → active database version → file default in
prompts/templates/. Every render happens in a jinja2 SandboxedEnvironment with
StrictUndefined and no loader, so a template can neither reach Python
internals nor the filesystem, and a typo'd variable fails loudly; it runs in a
child process with time, memory and output limits (core/ai/template_sandbox.py,
core/ai/template_runner.py), so no template can exhaust a worker or the app.

Saving a version needs prompt.save (editor); making a version the one in use needs
prompt.activate (admin), also when it happens as part of a save: an editor saves drafts,
an admin decides what runs. Each save or activation leaves one audit row.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import select

from core.ai import template_runner
from core.errors import NotFoundError
from core.ai.prompt_text import tidy_prompt
from core.settings import PROJECT_ROOT
from core.team.access import authorize
from core.team.audit import record
from core.ai.template_runner import TemplateLimitError, TemplateProblem  # noqa: F401 (the registry's errors)
from core.text import NOTE_MAX, clean_text
from db.engine import session_scope
from db.models import PromptVersion

PROMPTS_DIR = PROJECT_ROOT / "prompts"
MANIFEST = PROMPTS_DIR / "templates.json"
BODY_MAX = 20_000

LAYER_OVERRIDE, LAYER_DB, LAYER_FILE = "override", "db", "file"


@dataclass(frozen=True)
class ResolvedTemplate:
    name: str
    body: str
    layer: str
    version: int | None  # database version number; None for file defaults and overrides


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    description: str
    active_version: int | None
    layer: str
    versions: int


@lru_cache(maxsize=1)
def manifest() -> dict[str, dict[str, str]]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def template_names() -> list[str]:
    return sorted(manifest())


def file_default(name: str) -> str:
    if name not in manifest():
        raise NotFoundError(f"Unknown prompt template '{name}'. Known: {', '.join(template_names())}.")
    return (PROMPTS_DIR / "templates" / manifest()[name]["file"]).read_text(encoding="utf-8")


def render_body(body: str, context: dict[str, Any]) -> str:
    """Render in the sandbox, in a child process under time, memory and output limits, then tidy it.

    Every render goes through here (save check, preview, "try it", worker slots), so one
    limit applies everywhere; TemplateProblem names the line, variable or limit. The result is
    tidied into clean sentences whatever the fields look like (core.ai.prompt_text).
    """
    check_body_size(body)
    return tidy_prompt(template_runner.render(body, context))


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sample_context() -> dict[str, Any]:
    """Every variable a template may use, with plausible values: drafts must render against it."""
    from core.ai.prompt_context import SAMPLE_CONTEXT

    return SAMPLE_CONTEXT


def resolve(name: str, *, override: str | None = None) -> ResolvedTemplate:
    if name not in manifest():
        raise NotFoundError(f"Unknown prompt template '{name}'.")
    if override is not None and override.strip():
        return ResolvedTemplate(name, override, LAYER_OVERRIDE, None)
    with session_scope() as s:
        active = s.exec(
            select(PromptVersion).where(PromptVersion.template_name == name, PromptVersion.is_active.is_(True))
        ).first()
    if active is not None:
        return ResolvedTemplate(name, active.body, LAYER_DB, active.version)
    return ResolvedTemplate(name, file_default(name), LAYER_FILE, None)


def check_body_size(body: str) -> None:
    """The size rule for a template body, the same for saving, preview, "try it" and run overrides."""
    if not body or not body.strip():
        raise TemplateProblem("The template is empty.")
    if len(body) > BODY_MAX:
        raise TemplateProblem(f"The template is {len(body)} characters; the limit is {BODY_MAX}.")


def limits_summary() -> str:
    """What every render is held to, in the editor's words (the Prompts page shows it)."""
    from core.ai import template_sandbox as sb
    from core.settings import get_settings

    s = get_settings()
    return (f"Limits for every render (check, preview, try it, runs): template ≤ {BODY_MAX:,} characters, "
            f"output ≤ {sb.OUTPUT_MAX:,} characters, {s.template_render_timeout_s:g} s, "
            f"{s.template_render_memory_mb} MB, range() ≤ {sb.RANGE_MAX:,} items, calls nested ≤ {sb.CALL_DEPTH_MAX}.")


def validate_body(body: str) -> str:
    """Parse and render against the sample context; return the rendered sample."""
    return render_body(body, sample_context())


def save_version(*, name: str, body: str, author: str, note: str = "", activate: bool = True) -> PromptVersion:
    """Nothing is saved unless the body renders against the sample context.

    Needs prompt.save (editor) and, when `activate`, prompt.activate (admin) too: an editor may save
    a version as a draft (activate=False). One audit row (action prompt.save) holds the body, the
    note and, when it was activated, the template's active version before → after."""
    if name not in manifest():
        raise NotFoundError(f"Unknown prompt template '{name}'.")
    note = clean_text(note, field="Version note", limit=NOTE_MAX, multiline=True)
    with session_scope() as s:  # refuse before the (costly, sandboxed) render check
        authorize(s, who=author, action="prompt.save")
        if activate:
            authorize(s, who=author, action="prompt.activate")
    validate_body(body)
    with session_scope() as s:
        role = authorize(s, who=author, action="prompt.save")
        if activate:
            authorize(s, who=author, action="prompt.activate")
        pv, before, after = save_in(s, name=name, body=body, author=author, note=note, activate=activate)
        record(s, who=author, role=role, action="prompt.save", entity="prompt", entity_id=name, before=before,
               after=after, label=f"{name} v{pv.version}" + (" (made active)" if activate else " (draft)"))
        return pv


def save_in(s, *, name: str, body: str, author: str, note: str, activate: bool
            ) -> tuple[PromptVersion, dict[str, Any], dict[str, Any]]:
    """The save itself, inside the caller's transaction (already authorized, body already checked).
    Returns the new version and the audit before/after (experiment promotion records its own row)."""
    _lock_template(s, name)
    was_active = _active_version(s, name)
    latest = s.execute(
        sa.select(sa.func.coalesce(sa.func.max(PromptVersion.version), 0)).where(PromptVersion.template_name == name)
    ).scalar_one()
    if activate:
        s.execute(
            sa.update(PromptVersion).where(PromptVersion.template_name == name).values(is_active=False)
        )
    pv = PromptVersion(template_name=name, version=latest + 1, body=body, author=author, note=note,
                       is_active=activate)
    s.add(pv)
    s.flush()
    s.refresh(pv)
    before = {"active_version": was_active}
    after = {"version": pv.version, "body": body, "note": note,
             "active_version": pv.version if activate else was_active}
    return pv, before, after


def _active_version(session, name: str) -> int | None:
    return session.execute(sa.select(PromptVersion.version).where(
        PromptVersion.template_name == name, PromptVersion.is_active.is_(True))).scalar()


def _lock_template(session, name: str) -> None:
    """Serialise saves and activations of one template (the partial unique index allows one active version):
    racing "save version" and "activate" end with the later one active, never an IntegrityError."""
    session.execute(sa.text("select pg_advisory_xact_lock(hashtext(:n))"), {"n": f"prompt:{name}"})


def activate(*, name: str, version: int | None, editor: str) -> None:
    """Make `version` the active one; None means 'use the file default'. Needs prompt.activate (admin);
    one audit row with the active version before → after."""
    if name not in manifest():
        raise NotFoundError(f"Unknown prompt template '{name}'.")
    with session_scope() as s:
        role = authorize(s, who=editor, action="prompt.activate")
        before, after = activate_in(s, name=name, version=version)
        record(s, who=editor, role=role, action="prompt.activate", entity="prompt", entity_id=name,
               before=before, after=after, label=f"{name}: {'file default' if version is None else f'v{version}'}")


def activate_in(s, *, name: str, version: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The activation itself, inside the caller's transaction (already authorized); returns audit before/after."""
    _lock_template(s, name)
    if version is not None:
        exists = s.exec(
            select(PromptVersion).where(PromptVersion.template_name == name, PromptVersion.version == version)
        ).first()
        if exists is None:
            raise NotFoundError(f"'{name}' has no version {version}.")
    was_active = _active_version(s, name)
    s.execute(sa.update(PromptVersion).where(PromptVersion.template_name == name).values(is_active=False))
    if version is not None:
        s.execute(
            sa.update(PromptVersion)
            .where(PromptVersion.template_name == name, PromptVersion.version == version)
            .values(is_active=True)
        )
    return {"active_version": was_active}, {"active_version": version}


def list_versions(*, name: str) -> list[PromptVersion]:
    with session_scope() as s:
        return list(s.exec(
            select(PromptVersion).where(PromptVersion.template_name == name).order_by(PromptVersion.version.desc())
        ).all())


def get_version(*, name: str, version: int) -> PromptVersion:
    with session_scope() as s:
        pv = s.exec(
            select(PromptVersion).where(PromptVersion.template_name == name, PromptVersion.version == version)
        ).first()
    if pv is None:
        raise NotFoundError(f"'{name}' has no version {version}.")
    return pv


def list_templates() -> list[TemplateInfo]:
    with session_scope() as s:
        rows = s.execute(
            sa.select(
                PromptVersion.template_name,
                sa.func.count(),
                sa.func.max(sa.case((PromptVersion.is_active, PromptVersion.version))),
            ).group_by(PromptVersion.template_name)
        ).all()
    stats = {name: (count, active) for name, count, active in rows}
    out = []
    for name in template_names():
        count, active = stats.get(name, (0, None))
        out.append(TemplateInfo(name, manifest()[name]["description"], active, LAYER_DB if active else LAYER_FILE, count))
    return out
