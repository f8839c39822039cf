"""Members and roles on real Postgres: admins manage them, identities and roles are checked, the workbench
always keeps an admin, every change leaves one audit row; the Members page refuses non-admins."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import DuplicateError, NotFoundError, PermissionDenied, ValidationError
from core.team import access, audit, members
from db.engine import session_scope

ROOT = Path(__file__).resolve().parent.parent
BOSS = "boss@example.com"


@pytest.fixture
def signed_in(tmp_path, settings_override):
    """Sign-in on (an [auth] section exists) with one ADMIN_EMAILS person; strangers get no role."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n')
    settings_override(streamlit_secrets_file=secrets, admin_emails="Boss@Example.com", default_role="none")


def _role(who: str) -> str:
    with session_scope() as s:
        return access.role_of(s, who=who)


def test_admin_adds_changes_and_deactivates_members_each_with_one_audit_row(signed_in):
    m = members.add_member(identity="  Ann@Example.COM ", role="reviewer", display_name="Ann", editor=BOSS)
    assert (m.identity, m.role, m.created_by) == ("ann@example.com", "reviewer", BOSS)
    assert _role("ann@example.com") == "reviewer"
    members.set_role(identity="ann@example.com", role="editor", editor=BOSS)
    assert _role("ANN@example.com") == "editor"
    members.deactivate(identity="ann@example.com", editor=BOSS)
    assert _role("ann@example.com") == access.NO_ROLE
    members.reactivate(identity="ann@example.com", editor=BOSS)
    assert _role("ann@example.com") == "editor"
    rows = sorted(audit.history(entity="member", entity_id=m.id), key=lambda e: e.id)
    assert [r.changes for r in rows] == [
        {"identity": [None, "ann@example.com"], "display_name": [None, "Ann"], "role": [None, "reviewer"],
         "active": [None, True]},
        {"role": ["reviewer", "editor"]}, {"active": [True, False]}, {"active": [False, True]}]
    assert {(r.actor, r.role, r.action) for r in rows} == {(BOSS, "admin", "member.manage")}
    members.set_role(identity="ann@example.com", role="editor", editor=BOSS)  # no change: no row
    assert audit.count(filters=audit.AuditFilter(entity="member")) == 4


def test_the_list_shows_admin_emails_people_until_they_are_added(signed_in):
    members.add_member(identity="ann@example.com", role="viewer", editor=BOSS)
    listed = {r.identity: r for r in members.list_members()}
    assert listed[BOSS].role_label == "admin (from ADMIN_EMAILS)" and listed[BOSS].id is None
    assert listed["ann@example.com"].role_label == "viewer"
    members.add_member(identity=BOSS, role="admin", display_name="The Boss", editor=BOSS)
    listed = {r.identity: r for r in members.list_members()}
    assert listed[BOSS].role_label == "admin" and listed[BOSS].id is not None


def test_only_admins_manage_members_and_the_refusal_names_the_role(signed_in):
    members.add_member(identity="ed@example.com", role="editor", editor=BOSS)
    before = audit.count()
    with pytest.raises(PermissionDenied, match="Managing members and roles needs the admin role; you are an editor"):
        members.add_member(identity="friend@example.com", role="admin", editor="ed@example.com")
    with pytest.raises(PermissionDenied, match="not a member of this workbench yet"):
        members.set_role(identity="ed@example.com", role="admin", editor="stranger@example.com")
    assert _role("ed@example.com") == "editor" and _role("friend@example.com") == access.NO_ROLE
    assert audit.count() == before


@pytest.mark.parametrize("identity, message", [
    ("", "Enter the person's e-mail"),
    ("ann@", "is not an e-mail address"),
    ("ann@example", "is not an e-mail address"),
    ("a b@example.com", "is not an e-mail address"),
    ("x" * 81, "A local name is at most 80 characters"),
    ("ann\u202e@example.com", "Identity"),  # a bidi override is refused by the shared text rule
])
def test_bad_identities_are_refused_with_a_clear_message(signed_in, identity, message):
    with pytest.raises(ValidationError, match=message):
        members.add_member(identity=identity, role="viewer", editor=BOSS)
    assert [r.identity for r in members.list_members()] == [BOSS]


def test_unknown_roles_duplicates_and_missing_members_are_refused(signed_in):
    with pytest.raises(ValidationError, match="Unknown role 'owner'; use one of viewer, reviewer, editor, admin"):
        members.add_member(identity="ann@example.com", role="owner", editor=BOSS)
    members.add_member(identity="ann@example.com", role="viewer", editor=BOSS)
    with pytest.raises(DuplicateError, match="is a member already"):
        members.add_member(identity="ANN@example.com", role="editor", editor=BOSS)
    with pytest.raises(NotFoundError, match="is not a member. Add them first"):
        members.set_role(identity="bob@example.com", role="editor", editor=BOSS)
    with pytest.raises(NotFoundError, match="admin through ADMIN_EMAILS"):
        members.deactivate(identity=BOSS, editor=BOSS)


def test_the_last_admin_cannot_be_demoted_or_deactivated(tmp_path, settings_override):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n')
    settings_override(streamlit_secrets_file=secrets, admin_emails="", default_role="none")
    with session_scope() as s:  # the first admin, as the operator seeds it
        from db.models_team import Member

        s.add(Member(identity="root@example.com", role="admin"))
    before = audit.count()
    with pytest.raises(ValidationError, match="would leave the workbench without an admin"):
        members.set_role(identity="root@example.com", role="editor", editor="root@example.com")
    with pytest.raises(ValidationError, match="would leave the workbench without an admin"):
        members.deactivate(identity="root@example.com", editor="root@example.com")
    assert _role("root@example.com") == "admin" and audit.count() == before
    members.add_member(identity="two@example.com", role="admin", editor="root@example.com")
    members.set_role(identity="root@example.com", role="editor", editor="two@example.com")  # another admin: fine
    assert _role("root@example.com") == "editor"


def test_two_admins_demoting_each_other_at_once_leave_one_admin(tmp_path, settings_override):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n')
    settings_override(streamlit_secrets_file=secrets, admin_emails="", default_role="none")
    from db.models_team import Member

    with session_scope() as s:
        s.add_all([Member(identity="a@example.com", role="admin"), Member(identity="b@example.com", role="admin")])
    results: list = []
    go = threading.Barrier(2)

    def demote(me: str, other: str) -> None:
        go.wait()
        try:
            results.append(members.set_role(identity=other, role="viewer", editor=me))
        except (ValidationError, PermissionDenied) as err:
            results.append(err)

    threads = [threading.Thread(target=demote, args=p) for p in (("a@example.com", "b@example.com"),
                                                                  ("b@example.com", "a@example.com"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(_role(w) for w in ("a@example.com", "b@example.com")) == ["admin", "viewer"]
    assert sum(isinstance(r, Exception) for r in results) == 1


# ---------------------------------------------------------------- the page
def _members_page(who: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "members.py"), default_timeout=60)
    at.session_state["editor_name"] = who
    return at.run()


def test_members_page_refuses_non_admins_and_lets_an_admin_add_and_demote(signed_in):
    members.add_member(identity="ed@example.com", role="editor", editor=BOSS)
    at = _members_page("ed@example.com")
    assert not at.exception
    assert any("needs the admin role; you are an editor" in w.value for w in at.warning)
    assert not at.button and not at.get("form")

    at = _members_page(BOSS)
    assert not at.exception and not at.warning
    table = at.dataframe[0].value
    assert set(table["identity"]) == {BOSS, "ed@example.com"}
    assert "admin (from ADMIN_EMAILS)" in set(table["role"])
    at.text_input(key="member_identity").input("Ann@Example.com")
    at.selectbox(key="member_role").select("reviewer")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and _role("ann@example.com") == "reviewer"
    at.selectbox(key="member_pick").select("ann@example.com").run()
    at.selectbox(key="member_new_role_ann@example.com").select("viewer").run()
    next(b for b in at.button if b.label == "Save role").click().run()
    assert not at.exception and _role("ann@example.com") == "viewer"
    next(b for b in at.button if b.label == "Deactivate").click().run()
    assert _role("ann@example.com") == access.NO_ROLE
