"""The one prompt registry: file defaults, database versions, per-run overrides.

Resolution order: override → active database version → file default in
prompts/templates/. Every render happens in a jinja2 SandboxedEnvironment with
StrictUndefined and no loader, so a template can neither reach Python
internals nor the filesystem, and a typo'd variable fails loudly.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
import sqlalchemy as sa
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from sqlmodel import select

from core.errors import NotFoundError, ValidationError
from core.prompt_text import tidy_prompt
from core.settings import PROJECT_ROOT
from db.engine import session_scope
from db.models import PromptVersion

PROMPTS_DIR = PROJECT_ROOT / "prompts"
MANIFEST = PROMPTS_DIR / "templates.json"
BODY_MAX = 20_000

LAYER_OVERRIDE, LAYER_DB, LAYER_FILE = "override", "db", "file"


class TemplateProblem(ValidationError):
    """A template that does not parse or render; the message names the line or variable."""


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
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=None, undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
        trim_blocks=True, lstrip_blocks=True,
    )


@lru_cache(maxsize=1)
def manifest() -> dict[str, dict[str, str]]:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def template_names() -> list[str]:
    return sorted(manifest())


def file_default(name: str) -> str:
    if name not in manifest():
        raise NotFoundError(f"Unknown prompt template '{name}'. Known: {', '.join(template_names())}.")
    return (PROMPTS_DIR / "templates" / manifest()[name]["file"]).read_text(encoding="utf-8")


@lru_cache(maxsize=256)
def _compile(body: str) -> jinja2.Template:
    return _env().from_string(body)


def render_body(body: str, context: dict[str, Any]) -> str:
    """Render in the sandbox; raise TemplateProblem with line number or variable name."""
    try:
        template = _compile(body)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(f"Syntax error on line {err.lineno}: {err.message}") from None
    try:
        rendered = template.render(**context).strip()
    except jinja2.UndefinedError as err:
        raise TemplateProblem(f"Unknown variable: {err.message}. Available: {', '.join(sorted(context))}.") from None
    except SecurityError as err:
        raise TemplateProblem(f"Not allowed in a template: {err}") from None
    except jinja2.TemplateError as err:
        raise TemplateProblem(f"Template error: {err}") from None
    except (TypeError, ValueError, AttributeError, KeyError, ZeroDivisionError) as err:
        raise TemplateProblem(f"Template failed while rendering: {err.__class__.__name__}: {err}") from None
    return tidy_prompt(rendered)  # clean sentences whatever the fields look like (core.prompt_text)


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sample_context() -> dict[str, Any]:
    """Every variable a template may use, with plausible values: drafts must render against it."""
    from core.prompt_context import SAMPLE_CONTEXT

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


def validate_body(body: str) -> str:
    """Parse and render against the sample context; return the rendered sample."""
    if not body or not body.strip():
        raise TemplateProblem("The template is empty.")
    if len(body) > BODY_MAX:
        raise TemplateProblem(f"The template is {len(body)} characters; the limit is {BODY_MAX}.")
    return render_body(body, sample_context())


def save_version(*, name: str, body: str, author: str, note: str = "", activate: bool = True) -> PromptVersion:
    """Nothing is saved unless the body renders against the sample context."""
    if name not in manifest():
        raise NotFoundError(f"Unknown prompt template '{name}'.")
    validate_body(body)
    with session_scope() as s:
        s.execute(sa.text("select pg_advisory_xact_lock(hashtext(:n))"), {"n": f"prompt:{name}"})
        latest = s.execute(
            sa.select(sa.func.coalesce(sa.func.max(PromptVersion.version), 0)).where(PromptVersion.template_name == name)
        ).scalar_one()
        if activate:
            s.execute(
                sa.update(PromptVersion).where(PromptVersion.template_name == name).values(is_active=False)
            )
        pv = PromptVersion(template_name=name, version=latest + 1, body=body, author=author, note=note.strip(),
                           is_active=activate)
        s.add(pv)
        s.flush()
        s.refresh(pv)
        return pv


def activate(*, name: str, version: int | None) -> None:
    """Make `version` the active one; None means 'use the file default'."""
    with session_scope() as s:
        if version is not None:
            exists = s.exec(
                select(PromptVersion).where(PromptVersion.template_name == name, PromptVersion.version == version)
            ).first()
            if exists is None:
                raise NotFoundError(f"'{name}' has no version {version}.")
        s.execute(sa.update(PromptVersion).where(PromptVersion.template_name == name).values(is_active=False))
        if version is not None:
            s.execute(
                sa.update(PromptVersion)
                .where(PromptVersion.template_name == name, PromptVersion.version == version)
                .values(is_active=True)
            )


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
