"""Roles are resolved in core/: members table first, then ADMIN_EMAILS, then the sign-in mode's default."""
from __future__ import annotations

import pytest

from core.errors import PermissionDenied
from core.team import access, audit
from db.engine import session_scope
from db.models_team import Member


def _member(identity: str, role: str, active: bool = True) -> None:
    with session_scope() as s:
        s.add(Member(identity=identity, role=role, active=active))


def _role(who: str) -> str:
    with session_scope() as s:
        return access.role_of(s, who=who)


def test_local_mode_makes_the_single_user_admin_and_members_keep_their_role(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    assert _role("Tess Tester") == "admin"
    _member("viewer@example.com", "viewer")
    assert _role("Viewer@Example.com ") == "viewer"


def test_signed_in_strangers_get_the_default_role_and_admin_emails_are_admins(tmp_path, settings_override):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n')
    settings_override(streamlit_secrets_file=secrets, admin_emails="Boss@Example.com, x@y.z", default_role="none")
    assert _role("stranger@example.com") == access.NO_ROLE
    assert _role("boss@example.com") == "admin"
    _member("gone@example.com", "editor", active=False)
    assert _role("gone@example.com") == access.NO_ROLE


def test_a_refusal_names_the_role_needed_and_the_role_held():
    _member("rev@example.com", "reviewer")
    with session_scope() as s:
        assert access.authorize(s, who="rev@example.com", action="review.decide") == "reviewer"
        with pytest.raises(PermissionDenied, match="needs the editor role; you are a reviewer"):
            access.authorize(s, who="rev@example.com", action="character.create")


def test_audit_rows_keep_only_changed_fields_and_roll_back_with_the_write():
    with session_scope() as s:
        audit.record(s, who="A@B.C", action="character.update", entity="character", entity_id=7,
                     before={"name": "Old", "notes": "same"}, after={"name": "New", "notes": "same"})
    [row] = audit.history(entity="character", entity_id=7)
    assert (row.actor, row.changes) == ("a@b.c", {"name": ["Old", "New"]})
    with pytest.raises(RuntimeError):
        with session_scope() as s:
            audit.record(s, who="a@b.c", action="character.update", entity="character", entity_id=8)
            raise RuntimeError("the write failed")
    assert audit.history(entity="character", entity_id=8) == []


def test_pages_can_ask_before_showing_a_button_and_get_the_same_message():
    _member("view@example.com", "viewer")
    assert access.can(who="view@example.com", action="review.decide") is False
    assert access.refusal(who="view@example.com", action="review.decide") == (
        "Deciding on an image needs the reviewer role; you are a viewer.")
    _member("ed@example.com", "editor")
    assert access.can(who="ed@example.com", action="generation.request")
    assert access.refusal(who="ed@example.com", action="generation.request") is None
