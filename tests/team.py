"""Shared test furniture for the team features: one member per role, and reading the audit trail's tail."""
from __future__ import annotations

import sqlalchemy as sa

from db.engine import session_scope
from db.models_team import AuditEvent, Member

ADMIN, EDITOR, REVIEWER, VIEWER = "admin@example.com", "editor@example.com", "reviewer@example.com", "viewer@example.com"


def add_team() -> None:
    """One member per role, each named after it (admin@…, editor@…, reviewer@…, viewer@…)."""
    with session_scope() as s:
        for who in (ADMIN, EDITOR, REVIEWER, VIEWER):
            s.add(Member(identity=who, role=who.split("@")[0], created_by="test"))


def last_audit_id() -> int:
    with session_scope() as s:
        return s.execute(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.id), 0))).scalar_one()
