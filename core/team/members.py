"""Members and roles: who may use the workbench and with which role (the admin's Members page).

Every change needs member.manage (admin) and leaves one audit row (entity "member") in its own
transaction. The workbench must always keep someone who can manage it: a change that would leave
no admin (no active admin member and no ADMIN_EMAILS person without a member row) is refused.
Changes are serialised by an advisory lock, so two admins demoting each other at once cannot both
pass that check. Identities are stored as `access.identity_key` makes them (trimmed, lower-cased),
the same key `role_of` looks up; ADMIN_EMAILS people are admins even before they are added here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from core.errors import DuplicateError, NotFoundError, ValidationError
from core.settings import get_settings
from core.team.access import ROLES, authorize, identity_key
from core.team.audit import record, snapshot
from core.text import clean_line
from db.engine import session_scope
from db.models import utcnow
from db.models_team import Member

IDENTITY_MAX = 254  # the longest e-mail address (RFC 5321 path limit)
LOCAL_NAME_MAX = 80  # the sidebar's typed-name limit (core.text.EDITOR_NAME_MAX)
DISPLAY_NAME_MAX = 120
FIELDS = ("identity", "display_name", "role", "active")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
FROM_SETTING = "ADMIN_EMAILS"


@dataclass(frozen=True)
class MemberRow:
    """One line of the Members page: a member row, or an ADMIN_EMAILS person not added yet (id None)."""

    id: int | None
    identity: str
    display_name: str
    role: str
    active: bool
    source: str  # "member" or FROM_SETTING
    created_by: str = ""
    updated_at: datetime | None = None

    @property
    def role_label(self) -> str:
        if self.source == FROM_SETTING:
            return f"admin (from {FROM_SETTING})"
        return self.role if self.active else f"{self.role} (deactivated)"


def clean_identity(identity: str) -> str:
    """The member key: an e-mail address (what sign-in gives) or a local name (sign-in off), lower-cased."""
    raw = clean_line(identity, field="Identity", limit=IDENTITY_MAX)
    if not raw:
        raise ValidationError("Enter the person's e-mail address (or, without sign-in, their name).")
    key = identity_key(raw)
    if "@" in key:
        if not _EMAIL.match(key):
            raise ValidationError(f"'{raw}' is not an e-mail address (expected name@domain.tld).")
    elif len(key) > LOCAL_NAME_MAX:
        raise ValidationError(f"A local name is at most {LOCAL_NAME_MAX} characters (this one has {len(key)}); "
                              "with sign-in on, use the person's e-mail address.")
    return key


def clean_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"Unknown role '{role}'; use one of {', '.join(ROLES)}.")
    return role


def _clean_display_name(name: str) -> str:
    return clean_line(name, field="Display name", limit=DISPLAY_NAME_MAX)


def list_members() -> list[MemberRow]:
    """Members by role (admins first) then identity, plus ADMIN_EMAILS people who have no row yet."""
    with session_scope() as s:
        rows = list(s.execute(sa.select(Member)).scalars())
    known = {m.identity for m in rows}
    out = [MemberRow(m.id, m.identity, m.display_name, m.role, m.active, "member", m.created_by, m.updated_at)
           for m in rows]
    out += [MemberRow(None, e, "", "admin", True, FROM_SETTING)
            for e in sorted(get_settings().admin_identities - known)]
    return sorted(out, key=lambda r: (not r.active, -ROLES.index(r.role), r.identity))


def _lock(s: Session) -> None:
    """One membership change at a time: the last-admin check must see the others' committed changes."""
    s.execute(sa.text("select pg_advisory_xact_lock(hashtext('member.manage'))"))


def _get(s: Session, identity: str) -> Member:
    member = s.execute(sa.select(Member).where(Member.identity == identity).with_for_update()).scalars().first()
    if member is None:
        hint = (f" They are an admin through {FROM_SETTING}; add them to change that."
                if identity in get_settings().admin_identities else " Add them first.")
        raise NotFoundError(f"'{identity}' is not a member.{hint}")
    return member


def _admins_left(s: Session) -> int:
    """People who can still manage members: active admin members + ADMIN_EMAILS people without a row."""
    members = dict(s.execute(sa.select(Member.identity, sa.and_(Member.active, Member.role == "admin"))).all())
    return sum(1 for ok in members.values() if ok) + len(get_settings().admin_identities - set(members))


def _refuse_if_no_admin_left(s: Session, member: Member, what: str, admins_before: int) -> None:
    """Refuse a change that takes the admin count from some to none (with none to begin with, e.g. local
    mode, where the local user is admin through LOCAL_ROLE, there is nothing to protect)."""
    s.flush()
    if admins_before > 0 and _admins_left(s) == 0:
        raise ValidationError(f"{what} would leave the workbench without an admin ({member.identity} is the last "
                              "active one). Make someone else an admin first.")


def add_member(*, identity: str, role: str, editor: str, display_name: str = "") -> Member:
    """Add a person with a role (member.manage, admin). An existing identity is refused, active or not."""
    key, role, display_name = clean_identity(identity), clean_role(role), _clean_display_name(display_name)
    with session_scope() as s:
        _lock(s)  # first: the actor's own role is read after any change that was committed before ours
        actor_role = authorize(s, who=editor, action="member.manage")
        admins_before = _admins_left(s)
        if s.execute(sa.select(Member.id).where(Member.identity == key)).first():
            raise DuplicateError(f"'{key}' is a member already: change their role instead.")
        member = Member(identity=key, role=role, display_name=display_name, created_by=editor)
        s.add(member)
        s.flush()
        # ADMIN_EMAILS people count as admins only while they have no row: adding one as a viewer demotes them
        _refuse_if_no_admin_left(s, member, f"Adding {key} as {role}", admins_before)
        record(s, who=editor, role=actor_role, action="member.manage", entity="member", entity_id=member.id,
               after=snapshot(member, FIELDS), label=f"added {key} as {role}")
        s.refresh(member)
        return member


def _change(*, identity: str, editor: str, what: str, label: str, **values) -> Member:
    key = clean_identity(identity)
    with session_scope() as s:
        _lock(s)  # first: the actor's own role is read after any change that was committed before ours
        actor_role = authorize(s, who=editor, action="member.manage")
        admins_before = _admins_left(s)
        member = _get(s, key)
        before = snapshot(member, FIELDS)
        for field, value in values.items():
            setattr(member, field, value)
        if snapshot(member, FIELDS) == before:  # nothing changes: no write, no audit row
            return member
        member.updated_at = utcnow()
        s.add(member)
        _refuse_if_no_admin_left(s, member, what, admins_before)
        record(s, who=editor, role=actor_role, action="member.manage", entity="member", entity_id=member.id,
               before=before, after=snapshot(member, FIELDS), label=label)
        s.refresh(member)
        return member


def set_role(*, identity: str, role: str, editor: str) -> Member:
    """Change a member's role; demoting the last admin is refused."""
    role = clean_role(role)
    key = clean_identity(identity)
    return _change(identity=key, editor=editor, role=role, what=f"Making {key} a {role}",
                   label=f"{key}: role {role}")


def set_display_name(*, identity: str, display_name: str, editor: str) -> Member:
    key = clean_identity(identity)
    return _change(identity=key, editor=editor, display_name=_clean_display_name(display_name),
                   what=f"Renaming {key}", label=f"{key}: display name")


def deactivate(*, identity: str, editor: str) -> Member:
    """Take a member's access away (the row stays, so the trail and a later reactivation keep their name).
    Deactivating the last admin is refused."""
    key = clean_identity(identity)
    return _change(identity=key, editor=editor, active=False, what=f"Deactivating {key}",
                   label=f"{key}: deactivated")


def reactivate(*, identity: str, editor: str) -> Member:
    key = clean_identity(identity)
    return _change(identity=key, editor=editor, active=True, what=f"Reactivating {key}",
                   label=f"{key}: reactivated")
