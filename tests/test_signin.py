"""Sign-in claims -> workbench identity, and the member bookkeeping a sign-in does (real Postgres)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.team import access, audit, signin
from core.team.signin import SignInRefused, person_from_claims, record_sign_in
from db.engine import session_scope
from db.models_team import AuditEvent, Member


@pytest.fixture
def auth_on(tmp_path, settings_override):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "x"\n')

    def _on(**values):
        settings_override(streamlit_secrets_file=secrets, **values)
    return _on


def _members() -> list[Member]:
    with session_scope() as s:
        return list(s.execute(sa.select(Member).order_by(Member.id)).scalars())


def _audit_rows() -> list[AuditEvent]:
    with session_scope() as s:
        return list(s.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars())


def test_identity_is_the_lower_cased_email_and_the_name_falls_back_sensibly():
    p = person_from_claims({"email": "  Ann.Lee@Example.COM ", "name": "Ann Lee", "email_verified": True})
    assert p == signin.Person(identity="ann.lee@example.com", display_name="Ann Lee")
    assert person_from_claims({"email": "a@b.io", "given_name": "Ann", "family_name": "Lee"}).display_name == "Ann Lee"
    assert person_from_claims({"email": "a@b.io", "preferred_username": "alee"}).display_name == "alee"
    assert person_from_claims({"email": "ann@b.io", "name": "   "}).display_name == "ann"
    # a provider's odd name is cleaned for display, not a reason to refuse
    shown = person_from_claims({"email": "a@b.io", "name": "Eve\u202e\x07  Evil " + "x" * 300}).display_name
    assert shown.startswith("Eve Evil x") and len(shown) == signin.DISPLAY_NAME_MAX and "\u202e" not in shown


@pytest.mark.parametrize("claims, words", [
    ({"name": "No Mail", "sub": "123"}, "did not send an e-mail address"),
    ({"email": "", "name": "Empty"}, "did not send an e-mail address"),
    ({"email": 42}, "did not send an e-mail address"),
    ({"email": "a@b.io", "email_verified": False}, "not verified"),
    ({"email": "a@b.io", "email_verified": "false"}, "not verified"),
    ({"email": "not-an-address"}, "not a valid address"),
    ({"email": "a@b.io\nadmin@b.io"}, "not a valid address"),
    ({"email": "a" * 250 + "@b.io"}, "at most 254"),
])
def test_unusable_claims_are_refused_with_a_clear_message(claims, words):
    with pytest.raises(SignInRefused, match=words):
        person_from_claims(claims)


def test_first_sign_in_of_an_admin_email_adds_them_once_with_one_audit_row(auth_on):
    auth_on(admin_emails="Boss@Example.com", default_role="none")
    first = record_sign_in(claims={"email": "BOSS@example.com", "name": "The Boss", "is_logged_in": True})
    assert (first.role, first.wrote) == ("admin", "member.first_admin")
    [member] = _members()
    assert (member.identity, member.display_name, member.role, member.created_by) == (
        "boss@example.com", "The Boss", "admin", "ADMIN_EMAILS")
    [row] = _audit_rows()
    assert (row.actor, row.action, row.entity, row.entity_id) == ("boss@example.com", "member.first_admin",
                                                                  "member", str(member.id))
    assert row.changes["role"] == [None, "admin"] and row.changes["display_name"] == [None, "The Boss"]

    again = record_sign_in(claims={"email": "boss@example.com", "name": "The Boss"})
    assert (again.role, again.wrote) == ("admin", None)
    assert len(_members()) == 1 and len(_audit_rows()) == 1  # no audit spam: nothing changed


def test_a_member_s_changed_provider_name_is_updated_and_audited_only_when_it_changes(auth_on):
    auth_on(default_role="viewer")
    with session_scope() as s:
        s.add(Member(identity="rev@example.com", display_name="Rev", role="reviewer", created_by="boss@example.com"))
    assert record_sign_in(claims={"email": "rev@example.com", "name": "Rev"}).wrote is None
    assert _audit_rows() == []
    res = record_sign_in(claims={"email": "Rev@Example.com", "name": "Reva Viewer"})
    assert (res.role, res.wrote) == ("reviewer", "member.profile")
    [row] = _audit_rows()
    assert row.changes == {"display_name": ["Rev", "Reva Viewer"]} and row.role == "reviewer"
    assert [e.action for e in audit.history(entity="member", entity_id=_members()[0].id)] == ["member.profile"]
    assert record_sign_in(claims={"email": "rev@example.com", "name": "Reva Viewer"}).wrote is None
    assert len(_audit_rows()) == 1


def test_strangers_and_disabled_members_write_nothing_and_get_the_configured_role(auth_on):
    auth_on(default_role="none")
    stranger = record_sign_in(claims={"email": "who@example.com", "name": "Who"})
    assert (stranger.role, stranger.wrote) == (access.NO_ROLE, None)
    with session_scope() as s:
        s.add(Member(identity="gone@example.com", display_name="Old", role="editor", active=False))
    gone = record_sign_in(claims={"email": "gone@example.com", "name": "New Name"})
    assert (gone.role, gone.wrote) == (access.NO_ROLE, None)
    assert [m.display_name for m in _members()] == ["Old"] and _audit_rows() == []

    auth_on(default_role="viewer")
    assert record_sign_in(claims={"email": "who@example.com"}).role == "viewer"
    assert _audit_rows() == []


def test_a_refused_sign_in_writes_nothing(auth_on):
    auth_on(admin_emails="boss@example.com")
    with pytest.raises(SignInRefused):
        record_sign_in(claims={"email": "boss@example.com", "email_verified": False, "name": "Fake Boss"})
    assert _members() == [] and _audit_rows() == []


def test_sign_in_actions_are_in_the_permission_table():
    assert access.ACTIONS["member.first_admin"][0] == "admin"
    assert access.ACTIONS["member.profile"][0] == "viewer"


# --- pages: the navigation and the gate, through app.py as the browser opens them (local mode) ---------------

from pathlib import Path  # noqa: E402

from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _open(path: str, name: str | None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    if name:
        at.session_state["editor_name"] = name
    at.run()  # first through app.py, so the page is opened through its navigation (AppTest's rule)
    at.switch_page(path)
    return at.run()


def _add(identity: str, role: str, active: bool = True) -> None:
    with session_scope() as s:
        s.add(Member(identity=identity, role=role, active=active, display_name=identity))


def test_local_mode_says_so_and_the_local_user_is_admin(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    at = _open("pages/members.py", "Tess Tester")
    assert not at.exception
    assert any("Local mode" in i.value and "admin" in i.value for i in at.sidebar.info)
    assert any("Role: **admin**" in c.value for c in at.sidebar.caption)
    assert any("Members" in t.value for t in at.title) and not at.error


def test_a_viewer_browses_but_admin_only_buttons_are_greyed_out_with_the_reason(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    _add("vera", "viewer")
    home = _open("pages/home.py", "Vera")
    assert not home.exception
    assert any("Role: **viewer**" in c.value for c in home.sidebar.caption)
    button = home.button(key="demo_home")
    assert button.disabled and "needs the admin role; you are a viewer" in button.help


def test_page_refusals_name_the_role_needed():
    from pages._common import PageSpec, may_open, page_refusal

    members = PageSpec("Team", "pages/members.py", "Members", "👥", "admin")
    assert not may_open("editor", members) and may_open("admin", members)
    assert page_refusal("viewer", members) == "The Members page needs the admin role; you are a viewer."
    assert page_refusal("editor", members) == "The Members page needs the admin role; you are an editor."
    assert "not a member of this workbench yet" in page_refusal(access.NO_ROLE, members)


def test_a_disabled_member_sees_only_the_way_out(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    _add("gone", "editor", active=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["editor_name"] = "Gone"
    at.run()
    assert not at.exception
    assert any("not allowed in" in w.value for w in at.warning)
    assert not at.metric  # the Overview page itself did not run
    assert at.sidebar.text_input(key="_editor_name_widget").value == "Gone"  # the way out: another name


def test_local_role_none_lets_nobody_in_and_says_how_to_fix_it(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml", local_role="none")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and not at.metric
    assert any("LOCAL_ROLE lets nobody in" in w.value for w in at.warning)
