"""Who may do what: roles, the permission table, and the check every writing service function makes.

The check lives here, in core/, so a page that forgot to hide a button, a worker, a
script or a crafted rerun meets the same refusal. The role comes from the member table
(by the identity the page passes: the signed-in e-mail, or the local user's name); people
not in the table get ADMIN_EMAILS → admin, else DEFAULT_ROLE when sign-in is on, or
LOCAL_ROLE when the server runs for one local user without sign-in.
"""
from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from sqlmodel import Session

from core.errors import PermissionDenied
from core.settings import get_settings
from db.engine import session_scope
from db.models_team import Member

ROLES: tuple[str, ...] = ("viewer", "reviewer", "editor", "admin")
NO_ROLE = "none"

# action -> (least role, how a refusal names it). Data, so the Members page and the docs can list it.
ACTIONS: dict[str, tuple[str, str]] = {
    # reviewer: decisions on images and experiment rows
    "review.decide": ("reviewer", "deciding on an image"),
    "review.undo": ("reviewer", "undoing a review decision"),
    "review.bulk": ("reviewer", "approving or rejecting many images"),
    "review.claim": ("reviewer", "taking images from the review queue"),
    "review.adjudicate": ("editor", "settling a review disagreement"),
    "experiment.pick": ("reviewer", "picking the better image in an experiment"),
    # editor: characters, references, generation, prompt drafts, experiments
    "character.create": ("editor", "creating a character"),
    "character.update": ("editor", "editing a character"),
    "character.archive": ("editor", "archiving or restoring a character"),
    "reference.add": ("editor", "adding a reference image"),
    "reference.update": ("editor", "editing a reference image"),
    "reference.delete": ("editor", "deleting a reference image"),
    "generation.request": ("editor", "generating variations"),
    "generation.regenerate": ("editor", "regenerating slots"),
    "generation.cancel": ("editor", "cancelling a run"),
    "ai.call": ("editor", "asking the AI for a suggestion, caption or trial image"),
    "tag.apply": ("editor", "tagging characters or images"),
    "prompt.save": ("editor", "saving a prompt draft as a version"),
    "panel.create": ("editor", "creating an experiment panel"),
    "experiment.create": ("editor", "starting an experiment"),
    "experiment.cancel": ("editor", "cancelling an experiment"),
    "experiment.rerun": ("editor", "re-running failed experiment cells"),
    "experiment.promote": ("editor", "promoting an experiment image"),
    # admin: shared vocabulary, what is live, money and people
    "style.create": ("admin", "creating a style"),
    "style.update": ("admin", "editing a style"),
    "style.delete": ("admin", "deleting a style"),
    "tag.create": ("admin", "creating a tag"),
    "tag.update": ("admin", "editing a tag"),
    "tag.delete": ("admin", "deleting a tag"),
    "prompt.activate": ("admin", "activating a prompt version"),
    "price.set": ("admin", "changing prices"),
    "member.manage": ("admin", "managing members and roles"),
    "demo.load": ("admin", "loading the demo cast (it adds styles)"),
    # review sessions (team-review): duplicates
    "duplicate.keep": ("reviewer", "keeping both images of a near-duplicate pair"),
    # character-side writes (team-writes-a): maps and bulk embedding requests
    "map.build": ("editor", "building or rebuilding a map"),
    "embedding.run": ("editor", "queueing embedding work"),
    # sign-in (core/team/signin.py): the only writes a sign-in makes, for the person signing in
    "member.first_admin": ("admin", "adding an ADMIN_EMAILS admin to the members on their first sign-in"),
    "member.profile": ("viewer", "updating your display name from the sign-in provider"),
    # admin-side writes, Members and Audit pages (team-writes-b)
    "audit.view": ("editor", "reading the audit trail"),
}


def identity_key(who: str) -> str:
    """The member-table key for a person: trimmed, lower-cased (e-mails are case-insensitive) and in Unicode NFC,
    so "josé" typed or sent precomposed or decomposed is one person (one role, one deactivation)."""
    return unicodedata.normalize("NFC", (who or "").strip().lower())


def rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1


def role_of(s: Session, *, who: str) -> str:
    """The role `who` acts with now (NO_ROLE = not allowed in)."""
    key = identity_key(who)
    if not key:
        return NO_ROLE
    member = s.execute(sa.select(Member).where(Member.identity == key)).scalars().first()
    if member is not None:
        return member.role if member.active else NO_ROLE
    settings = get_settings()
    if key in settings.admin_identities:
        return "admin"
    if not settings.auth_enabled:
        return settings.local_role if settings.local_role in ROLES else NO_ROLE
    return settings.default_role if settings.default_role in ROLES else NO_ROLE


def allowed(role: str, action: str) -> bool:
    least, _ = ACTIONS[action]
    return rank(role) >= rank(least)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def refusal_message(role: str, action: str) -> str:
    """How a refused action is explained: what it is, the role it needs, the role held."""
    least, what = ACTIONS[action]
    if role == NO_ROLE:
        return (f"{what.capitalize()} needs the {least} role; you are not a member of this "
                "workbench yet. Ask an admin to add you.")
    return f"{what.capitalize()} needs the {least} role; you are {_article(role)} {role}."


def role_now(*, who: str) -> str:
    """The role `who` holds now, in a session of its own (pages use it to disable what core would refuse)."""
    with session_scope() as s:
        return role_of(s, who=who)


def can(*, who: str, action: str) -> bool:
    """Would `authorize` pass? For greying out buttons; the write itself still calls authorize."""
    return allowed(role_now(who=who), action)


def refusal(*, who: str, action: str) -> str | None:
    """None when `who` may do `action`, else the message a refused write would show (a button's help)."""
    role = role_now(who=who)
    return None if allowed(role, action) else refusal_message(role, action)


def authorize(s: Session, *, who: str, action: str) -> str:
    """Refuse (PermissionDenied naming the role needed) unless `who` may do `action`; return their role.

    Call it inside the write's own session, before anything is changed."""
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}: add it to core.team.access.ACTIONS")
    role = role_of(s, who=who)
    if allowed(role, action):
        return role
    raise PermissionDenied(refusal_message(role, action))
