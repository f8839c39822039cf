"""The one AI path: validate → prepare → build prompt → call → parse → save.

Every run leaves exactly one ai_call row: inserted as 'running' when the run
starts (so a live log shows it), updated with the phase reached, usage, cost,
timings and error when it ends. Progress (phase, percent) goes to an optional
callback that a page or a job displays.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from core.ai import prompt_registry
from core.ai.pricing import Usage, cost_usd
from core.ai.providers import ImageResult, Provider, TextResult, get_provider
from core.team.access import authorize
from core.team.audit import record
from db.engine import session_scope
from db.models import AICall

log = logging.getLogger(__name__)

PHASES: tuple[tuple[str, int], ...] = (
    ("validate", 5), ("prepare", 15), ("build_prompt", 25), ("call", 35), ("parse", 85), ("save", 92), ("done", 100),
)
ProgressFn = Callable[[str, int], None]


@dataclass
class RunContext:
    """What flows between the phases of one run."""

    inputs: dict[str, Any]
    provider: Provider
    requested_by: str
    variables: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # bytes etc. that are not template variables
    template: prompt_registry.ResolvedTemplate | None = None
    prompt: str = ""
    call_id: int | None = None


class AIFunction:
    """Subclass per function; the engine drives the phases in order."""

    name: str = ""
    template: str | None = None
    subject_type: str | None = None

    def validate(self, inputs: dict[str, Any]) -> None:
        """Raise ValidationError for bad inputs before anything is spent."""

    def prepare(self, rc: RunContext) -> None:
        """Fill rc.variables (template context) and rc.extra (e.g. image bytes)."""

    def call(self, rc: RunContext) -> TextResult | ImageResult:
        raise NotImplementedError

    def parse(self, rc: RunContext, raw: TextResult | ImageResult) -> Any:
        return raw

    def save(self, rc: RunContext, parsed: Any) -> tuple[Any, dict[str, Any]]:
        """Persist what the call produced; return (value for the caller, JSON summary for the log)."""
        return parsed, {}


@dataclass(frozen=True)
class AIOutcome:
    value: Any
    call_id: int
    cost_usd: Decimal | None
    usage: Usage
    model: str
    provider: str
    prompt: str
    template: prompt_registry.ResolvedTemplate | None
    duration_ms: int


def _start_row(fn: AIFunction, rc: RunContext, subject_id: int | None, job_id: int | None,
               action: str | None) -> int:
    """Insert the 'running' ai_call row; for a call a person starts (`action`), check their role first
    and append the audit row in the same transaction, so a refused call leaves no row and costs nothing."""
    with session_scope() as s:
        role = authorize(s, who=rc.requested_by, action=action) if action is not None else ""
        row = AICall(
            function=fn.name, phase="validate", status="running", provider=rc.provider.name,
            subject_type=fn.subject_type, subject_id=subject_id, job_id=job_id, requested_by=rc.requested_by,
            template_name=fn.template,
        )
        s.add(row)
        s.flush()
        if action is not None:
            record(s, who=rc.requested_by, role=role, action=action, entity="ai_call", entity_id=row.id,
                   label=fn.name, after={"function": fn.name, "subject_type": fn.subject_type,
                                         "subject_id": subject_id, "provider": rc.provider.name})
        return row.id


def _finish_row(call_id: int, **values: Any) -> None:
    with session_scope() as s:
        s.execute(sa.update(AICall).where(AICall.id == call_id).values(**values))


def run(
    fn: AIFunction,
    *,
    inputs: dict[str, Any],
    requested_by: str,
    override: str | None = None,
    progress: ProgressFn | None = None,
    provider: Provider | None = None,
    job_id: int | None = None,
    action: str | None = None,
) -> AIOutcome:
    """Run one AI function through every phase.

    `action` names the permission a person needs for this call (e.g. "ai.call"): it is checked before
    anything is recorded or paid, and the call gets an audit row. `action=None` is the system path:
    a call a job makes as part of work its requester was already authorized for (a run's slots, an
    experiment's cells, captions for embedding); `requested_by` then only credits the cost log.
    """
    provider = provider or get_provider()
    rc = RunContext(inputs=inputs, provider=provider, requested_by=requested_by)
    subject_id = inputs.get("subject_id")
    rc.call_id = _start_row(fn, rc, subject_id, job_id, action)
    steps: list[dict[str, Any]] = []
    t_run = time.perf_counter()
    phase = "validate"
    raw: TextResult | ImageResult | None = None
    parsed: Any = None
    value: Any = None
    summary: dict[str, Any] = {}

    def enter(name: str) -> float:
        nonlocal phase
        phase = name
        if progress:
            progress(name, dict(PHASES)[name])
        return time.perf_counter()

    def done(name: str, t0: float) -> None:
        steps.append({"phase": name, "ms": round((time.perf_counter() - t0) * 1000, 2)})

    try:
        t = enter("validate")
        fn.validate(inputs)
        done("validate", t)
        t = enter("prepare")
        fn.prepare(rc)
        done("prepare", t)
        t = enter("build_prompt")
        if fn.template:
            rc.template = prompt_registry.resolve(fn.template, override=override)
            rc.prompt = prompt_registry.render_body(rc.template.body, rc.variables)
        done("build_prompt", t)
        t = enter("call")
        raw = fn.call(rc)
        done("call", t)
        t = enter("parse")
        parsed = fn.parse(rc, raw)
        done("parse", t)
        t = enter("save")
        value, summary = fn.save(rc, parsed)
        done("save", t)
        enter("done")
        status, error = "succeeded", None
    except BaseException as err:
        status = "refused" if getattr(err, "kind", None) == "refused" else "failed"
        error = str(err) or err.__class__.__name__
        log.warning("ai function %s failed in phase %s (call %s): %s", fn.name, phase, rc.call_id, error)
        _record(fn, rc, raw, steps, phase, status, error, t_run, summary, err)
        raise
    outcome_cost, usage, model, ms = _record(fn, rc, raw, steps, phase, status, error, t_run, summary, None)
    return AIOutcome(value, rc.call_id, outcome_cost, usage, model, provider.name, rc.prompt, rc.template, ms)


def _record(fn, rc, raw, steps, phase, status, error, t_run, summary, err):
    usage = raw.usage if raw is not None else Usage()
    model = raw.model if raw is not None else ""
    attempts = raw.attempts if raw is not None else getattr(err, "attempts", 1 if phase in ("call", "parse", "save", "done") else 0)
    cost = cost_usd(model, usage) if raw is not None else None
    ms = int((time.perf_counter() - t_run) * 1000)
    _finish_row(
        rc.call_id, phase=phase, status=status, model=model, error=error, steps=steps, output=summary,
        template_version=rc.template.version if rc.template else None,
        template_layer=rc.template.layer if rc.template else None,
        prompt_hash=prompt_registry.prompt_hash(rc.prompt) if rc.prompt else None,
        tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, images=usage.images_out, cost_usd=cost,
        duration_ms=ms, attempts=attempts,
    )
    return cost, usage, model, ms


def record_call(*, function: str, provider: str, model: str, status: str, usage: Usage, attempts: int,
                duration_ms: int, error: str | None = None, subject_type: str | None = None,
                requested_by: str = "", output: dict[str, Any] | None = None) -> int:
    """One ai_call row for a provider call that is not a templated AI function (embeddings),
    so the cost log and Activity page see every paid call."""
    with session_scope() as s:
        row = AICall(function=function, phase="done" if status == "succeeded" else "call", status=status,
                     provider=provider, model=model, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
                     cost_usd=cost_usd(model, usage) if status == "succeeded" else None, duration_ms=duration_ms,
                     attempts=attempts, error=error, subject_type=subject_type, requested_by=requested_by,
                     output=output or {})
        s.add(row)
        s.flush()
        return row.id


__all__ = ["AIFunction", "AIOutcome", "RunContext", "run", "record_call", "PHASES"]
