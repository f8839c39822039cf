"""Sign-in end to end: Chromium, the workbench's real Streamlit server and a real OpenID Connect provider.

The provider (tests/oidc_provider.py, Authlib's server components) runs on 127.0.0.1; the workbench gets a
secrets.toml [auth] pointing at it. Clicking "Sign in" runs the whole authorization-code flow (redirect to
/authorize, code back to /oauth2callback, the server's token exchange with PKCE, ID-token check against the
JWKS); nothing in Streamlit is patched. Each person then sees the pages of their role.
"""
from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa

from db.engine import session_scope
from db.models_team import AuditEvent, Member
from tests.browser import ARTIFACTS, browser_page, chromium_available, streamlit_server
from tests.oidc_provider import OIDCProvider

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="Debian chromium not installed (.ci/run installs it)"),
]

CLIENT_ID, CLIENT_SECRET = "workbench", "client-secret-for-tests-only"
ADMIN = {"sub": "u-ann", "email": "Ann.Admin@Example.com", "name": "Ann Admin"}
VIEWER = {"sub": "u-vic", "email": "vic@example.com", "name": "Vic Viewer"}
STRANGER = {"sub": "u-sam", "email": "sam@elsewhere.org", "name": "Sam Stranger"}
NO_EMAIL = {"sub": "u-anon", "name": "No Mail"}


def _nav_titles(page) -> list[str]:
    """The page titles in the sidebar navigation (a link's text is its icon, then its title)."""
    more = page.get_by_text(re.compile(r"^View \d+ more$"))
    if more.count():
        more.first.click()
        page.get_by_text("View less").wait_for()
    return [t.strip().splitlines()[-1].strip() for t in
            page.locator("[data-testid='stSidebarNavLink']").all_inner_texts() if t.strip()]


def _sign_in(page, url: str) -> None:
    page.context.clear_cookies()
    page.goto(url)
    page.get_by_role("button", name="Sign in").click()  # -> /auth/login -> provider /authorize -> /oauth2callback


def test_sign_in_through_a_real_oidc_provider_lands_each_person_on_their_role_s_pages(tmp_path):
    with session_scope() as s:
        s.add(Member(identity="vic@example.com", display_name="Vic", role="viewer", created_by="test"))
    with OIDCProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri="", user=ADMIN) as idp:
        secrets = tmp_path / "secrets.toml"
        secrets.write_text(
            "[auth]\n"
            'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
            'cookie_secret = "a-long-random-cookie-secret-for-the-test"\n'
            f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'server_metadata_url = "{idp.metadata_url}"\n')
        env = {"STREAMLIT_SECRETS_FILE": str(secrets), "ADMIN_EMAILS": "ann.admin@example.com", "DEFAULT_ROLE": "none"}
        with streamlit_server(env) as url, browser_page() as page:
            idp.server.clients[CLIENT_ID].redirect_uris.append(f"{url}/oauth2callback")

            # nobody signed in: the sign-in screen and nothing of the workbench, on any address
            page.goto(f"{url}/characters")
            page.get_by_role("button", name="Sign in").wait_for()
            assert _nav_titles(page) == [] and page.get_by_text("Local mode").count() == 0

            # the first admin (from ADMIN_EMAILS) signs in through the provider
            t0 = time.perf_counter()
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("Signed in as").wait_for(timeout=60_000)
            print(f"sign-in round trip (click -> workbench as the admin): {time.perf_counter() - t0:.2f} s")
            assert idp.requests.count("GET /authorize") == 1 and idp.requests.count("POST /token") == 1
            sidebar = page.locator("[data-testid='stSidebar']")
            assert "Ann Admin" in sidebar.inner_text() and "ann.admin@example.com" in sidebar.inner_text()
            assert re.search(r"Role:\s*admin", sidebar.inner_text())
            page.screenshot(path=str(ARTIFACTS / "signin-admin.png"), full_page=True)
            titles = _nav_titles(page)
            assert {"Overview", "Characters", "Review", "Audit", "Members"} <= set(titles)
            with session_scope() as s:
                ann = s.execute(sa.select(Member).where(Member.identity == "ann.admin@example.com")).scalar_one()
                assert (ann.role, ann.display_name) == ("admin", "Ann Admin")
                actions = s.execute(sa.select(AuditEvent.action, AuditEvent.actor)).all()
                assert actions == [("member.first_admin", "ann.admin@example.com")]
            page.get_by_role("link", name="Members").click()
            page.get_by_role("heading", name="Members").wait_for()
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="Sign in").wait_for()
            assert _nav_titles(page) == []

            # a viewer member: browses, but no Audit or Members, admin-only buttons greyed out, links refused
            idp.user = VIEWER
            _sign_in(page, url)
            page.get_by_text("Signed in as").wait_for(timeout=60_000)
            assert re.search(r"Role:\s*viewer", page.locator("[data-testid='stSidebar']").inner_text())
            titles = _nav_titles(page)
            assert {"Overview", "Characters", "Search", "Review", "Map"} <= set(titles)
            assert "Members" not in titles and "Audit" not in titles
            assert page.get_by_role("button", name="Load demo cast").is_disabled()
            page.screenshot(path=str(ARTIFACTS / "signin-viewer.png"), full_page=True)
            page.goto(f"{url}/members")
            page.get_by_text("The Members page needs the admin role; you are a viewer.").wait_for()
            page.goto(f"{url}/audit")
            page.get_by_text("The Audit page needs the editor role; you are a viewer.").wait_for()

            # a stranger (DEFAULT_ROLE=none): only the "ask an admin" page
            idp.user = STRANGER
            _sign_in(page, url)
            page.get_by_text("not a member of this workbench yet").wait_for(timeout=60_000)
            assert _nav_titles(page) == []
            page.get_by_role("button", name="Sign out").wait_for()

            # a provider that sends no e-mail: refused with the reason, nothing written
            idp.user = NO_EMAIL
            _sign_in(page, url)
            page.get_by_text("did not send an e-mail address").wait_for(timeout=60_000)
            assert _nav_titles(page) == []
            page.screenshot(path=str(ARTIFACTS / "signin-no-email.png"), full_page=True)
    with session_scope() as s:
        trail = s.execute(sa.select(AuditEvent.action, AuditEvent.actor, AuditEvent.changes)
                          .order_by(AuditEvent.id)).all()
        assert [(a, who) for a, who, _ in trail] == [("member.first_admin", "ann.admin@example.com"),
                                                     ("member.profile", "vic@example.com")]
        assert trail[1][2] == {"display_name": ["Vic", "Vic Viewer"]}  # the provider's name replaced the typed one
        assert sorted(s.execute(sa.select(Member.identity)).scalars()) == ["ann.admin@example.com", "vic@example.com"]
