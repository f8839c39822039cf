"""Shared page furniture: who is acting (signed-in e-mail or typed local name) and with which role, the
sign-in and not-a-member screens, mode badge, flash messages, images.

Not a page: with st.navigation only the files app.py lists are pages.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from core import media
from core.errors import ValidationError, WorkbenchError
from core.settings import get_settings
from core.team import access, signin
from core.text import EDITOR_NAME_MAX, clean_editor_name, escape_markdown
from db.engine import database_unavailable, ping

log = logging.getLogger(__name__)
EDITOR_KEY = "editor_name"
DB_RETRY_S = 3
EDITOR_PARAM = "editor"
SIGNIN_RECORDED_KEY = "_signin_recorded_for"


@dataclass(frozen=True)
class Acting:
    """Who acts in this rerun. `identity` is what pages pass to core (e-mail when signed in, the typed name
    locally; None until known); `role` is what core will check (access.NO_ROLE = not allowed in)."""

    identity: str | None
    display: str | None
    role: str
    auth: bool  # sign-in is configured
    signed_in: bool
    problem: str | None = None  # why a sign-in cannot be used (shown instead of the workbench)


@dataclass(frozen=True)
class PageSpec:
    """One page of the navigation and the least role that may open it (app.py lists them as data)."""

    section: str
    path: str
    title: str
    icon: str
    least_role: str = "viewer"
    default: bool = False


def may_open(role: str, spec: PageSpec) -> bool:
    return access.rank(role) >= access.rank(spec.least_role)


def page_refusal(role: str, spec: PageSpec) -> str:
    """What a direct link to a page above the person's role shows (named like core's refusals)."""
    if role == access.NO_ROLE:
        return (f"The {spec.title} page needs the {spec.least_role} role; you are not a member of this workbench "
                "yet. Ask an admin to add you.")
    article = "an" if role[:1] in ("a", "e", "i", "o", "u") else "a"
    return f"The {spec.title} page needs the {spec.least_role} role; you are {article} {role}."


def _typed_name_from_state() -> str | None:
    """The local user's typed name from the session, or from the URL (`?editor=`) of a reloaded page."""
    name = st.session_state.get(EDITOR_KEY)
    if name is None and EDITOR_PARAM in st.query_params:  # a reloaded or bookmarked page
        try:
            name = clean_editor_name(st.query_params.get(EDITOR_PARAM)) or None
        except ValidationError as err:  # a hand-edited URL: ignored, the box asks again
            log.info("editor name in the URL refused: %s", err)
            name = None
        st.session_state[EDITOR_KEY] = name
    return name or None


def _signed_in_claims() -> dict | None:
    """st.user's claims after a sign-in, else None."""
    user = st.user.to_dict()
    return dict(user) if user.get("is_logged_in") else None


def _resolve_acting() -> Acting:
    settings = get_settings()
    try:
        auth = settings.auth_enabled
    except RuntimeError as err:  # an unreadable secrets.toml: nobody may act until it is fixed
        return Acting(None, None, access.NO_ROLE, auth=True, signed_in=False, problem=str(err))
    if not auth:
        name = _typed_name_from_state()
        role = access.role_now(who=name) if name else settings.local_role
        return Acting(name, name, role if role in access.ROLES else access.NO_ROLE, auth=False, signed_in=False)
    claims = _signed_in_claims()
    if claims is None:
        return Acting(None, None, access.NO_ROLE, auth=True, signed_in=False)
    try:
        person = signin.person_from_claims(claims)
    except signin.SignInRefused as err:
        return Acting(None, None, access.NO_ROLE, auth=True, signed_in=True, problem=str(err))
    if st.session_state.get(SIGNIN_RECORDED_KEY) != person.identity:  # once per browser session
        res = signin.record_sign_in(claims=claims)
        st.session_state[SIGNIN_RECORDED_KEY] = person.identity
        role = res.role
    else:
        role = access.role_now(who=person.identity)  # every rerun: an admin's change applies at once
    return Acting(person.identity, person.display_name, role, auth=True, signed_in=True)


def acting() -> Acting:
    """Who acts in this rerun and with which role. app.py asks to build the navigation, sidebar() asks again
    (one small query): a page never shows a role older than this rerun, even if it runs without app.py."""
    return _resolve_acting()


def _sign_out_button(key: str) -> None:
    if st.button("Sign out", key=key, icon=":material/logout:"):
        st.session_state.pop(SIGNIN_RECORDED_KEY, None)
        st.logout()


def sign_in_screen() -> None:
    """What everyone sees while sign-in is on and nobody is signed in in this browser."""
    st.title("🎭 Character Workbench")
    st.write("This workbench is shared by a team. Sign in with your organisation's account to continue.")
    if st.button("Sign in", type="primary", icon=":material/login:", key="sign_in"):
        try:
            st.login()
        except Exception as err:  # StreamlitAuthError: a half-configured [auth]; say what to fix
            log.error("sign-in is misconfigured: %s", err)
            st.error(f"Sign-in is not configured correctly: {escape_markdown(err)}")


def gate_screen(person: Acting) -> None:
    """Instead of the workbench: why this person cannot use it, and the way out."""
    st.title("🎭 Character Workbench")
    if person.problem:
        st.error(escape_markdown(person.problem))
    elif person.signed_in:
        st.warning(f"You are signed in as **{escape_markdown(person.identity)}**, but you are not a member of "
                   "this workbench yet. Ask an admin to add you on the Members page, then reload this page.",
                   icon="🔒")
    elif person.identity:
        st.warning(f"**{escape_markdown(person.identity)}** is not allowed in: that name belongs to a "
                   "member who is disabled. Ask an admin, or use another name.", icon="🔒")
    else:
        st.warning("Sign-in is off and LOCAL_ROLE lets nobody in. Set LOCAL_ROLE to a role, or configure "
                   "sign-in (README, 'Sign-in and roles').", icon="🔒")
    if person.signed_in:
        _sign_out_button("sign_out_gate")
    elif not person.auth:
        with st.sidebar:
            _typed_editor_name()


@st.cache_resource(show_spinner=False)
def _warm_up_embedder() -> bool:
    """Once per server process: load the text model in the background before the first search or save."""
    from core.vectors.embedding_spaces import warm_up

    warm_up()
    return True


def _keep_editor(raw: str | None) -> None:
    """The typed name, cleaned by the same rule as every other text field (a refusal is shown under the box),
    kept in the session and in the URL (`?editor=`) so a reload or a bookmark keeps it."""
    try:
        value = clean_editor_name(raw) or None
        st.session_state.pop("_editor_name_error", None)
    except ValidationError as err:
        value = None
        st.session_state["_editor_name_error"] = str(err)
    st.session_state[EDITOR_KEY] = value
    if value:
        st.query_params[EDITOR_PARAM] = value
    else:
        st.query_params.pop(EDITOR_PARAM, None)


def _typed_editor_name() -> str | None:
    """The name lives under a plain session key: a widget's own state is dropped when the editor switches
    pages, which would ask for the name again on every page."""
    name = _typed_name_from_state()
    if name and st.query_params.get(EDITOR_PARAM) != name:  # page switches drop the URL's parameters
        st.query_params[EDITOR_PARAM] = name
    st.text_input(
        "Your name", key="_editor_name_widget", value=name or "", max_chars=EDITOR_NAME_MAX,
        placeholder="e.g. Sam (shown in audit columns)",
        help="Recorded as created/updated by. Kept in this page's address, so a reload or a bookmark keeps it.",
        on_change=lambda: _keep_editor(st.session_state["_editor_name_widget"]),
    )
    name = st.session_state.get(EDITOR_KEY) or None
    if st.session_state.get("_editor_name_error"):
        st.error(st.session_state["_editor_name_error"])
    elif name:
        st.caption(f"Saving as **{escape_markdown(name)}**")
    return name


def sidebar() -> str | None:
    """Render the shared sidebar; return the acting identity pages pass to core as editor/reviewer/requested_by:
    the signed-in e-mail, or locally the typed name (None until given)."""
    settings = get_settings()
    _warm_up_embedder()
    person = acting()
    with st.sidebar:
        if person.signed_in and person.identity:
            st.caption(f"Signed in as **{escape_markdown(person.display)}** ({escape_markdown(person.identity)})  \n"
                       f"Role: **{person.role}**")
            _sign_out_button("sign_out")
            name = person.identity
        else:
            st.info(f"**Local mode**: sign-in is off; anyone on this machine acts as {settings.local_role}.",
                    icon="🏠")
            name = _typed_editor_name()
            if not name:
                st.caption("Enter your name to save changes.")
            elif person.identity == name:
                st.caption(f"Role: **{person.role}**")
        if settings.openai_api_key is None:
            st.info("**Offline mode**: no OpenAI key configured; AI features use the offline provider.", icon="📴")
        else:
            st.success("OpenAI key configured.", icon="🔑")
    # the role this rerun acts with, read once: every disabled button's reason on the page comes from it
    st.session_state[ROLE_THIS_RUN] = (name, person.role if name and person.identity == name else None)
    return name


ROLE_THIS_RUN = "_role_this_run"
NAMELESS = "Enter your name in the sidebar first."


def why_not(who: str | None, action: str, *, nameless: str | None = None) -> str | None:
    """Why `who` may not do `action` (a disabled button's help), None when they may; `nameless` when nobody
    is named yet. Uses the role sidebar() read for this rerun (one query per rerun, not one per button); it is
    only a hint: core refuses the write itself whatever the page shows."""
    if not who:
        return nameless
    known, role = st.session_state.get(ROLE_THIS_RUN, (None, None))
    if known != who or role is None:
        role = access.role_now(who=who)
    return None if access.allowed(role, action) else access.refusal_message(role, action)


def flash(message: str, kind: str = "success") -> None:
    """Show a message after the next rerun (st.rerun drops what was drawn)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop("_flash", []):
        getattr(st, kind)(message)


def report(err: Exception) -> None:
    """Editor-facing errors are shown as written; anything else is logged and summarised."""
    if isinstance(err, WorkbenchError):
        st.error(escape_markdown(err))  # messages quote editor text (names, template lines): shown literally
    elif database_unavailable(err):
        log.warning("database unavailable during an action: %s", err)
        st.warning("The database is unavailable right now, so this was not saved. Try again in a moment.", icon="⏳")
    else:
        log.exception("unexpected error in page")
        st.error(f"Unexpected error ({err.__class__.__name__}); details are in the server log.")


def media_path(rel: str | None) -> str | None:
    if not rel:
        return None
    path = media.resolve(rel)
    return str(path) if path.is_file() else None


GRID_THUMB_PX = 120  # a coverage-grid cell is about this wide at common screen widths


@functools.lru_cache(maxsize=4096)  # not st.cache_data: its per-call hashing and copying cost more than the read
def _grid_thumbnail(root: str, rel: str) -> str:
    from core.media.images import data_uri

    return data_uri(media.read_bytes(rel), size=GRID_THUMB_PX)  # a missing file raises, and is not cached


def grid_thumbnail(rel: str | None) -> str | None:
    """A stored thumbnail as a small data URI for dense grids, cached per server process.
    Safe to key on the path: variation files are never rewritten in place (run and attempt are in the path)."""
    if not rel:
        return None
    try:
        return _grid_thumbnail(get_settings().media_root, rel)  # the setting, not media_root(): no filesystem call
    except FileNotFoundError:
        return None


def demo_cast_button(editor: str | None, *, key: str) -> None:
    """The one-click demo cast for an empty workbench (Overview and Characters pages)."""
    from core.demo import load_demo_cast

    refused = why_not(editor, "demo.load")
    if st.button("Load demo cast", type="primary", disabled=not editor or bool(refused), key=key, help=refused):
        try:
            with st.spinner("Creating the demo cast…"):
                res = load_demo_cast(editor=editor)
            flash(f"Demo cast loaded: {res.characters_added} characters, {res.styles_added} styles.")
            st.rerun()
        except Exception as err:
            report(err)
    if not editor:
        st.caption("Enter your name in the sidebar first (it goes into the audit columns).")


def run_guarded(render: Callable[[], None]) -> None:
    """Run a page; if the database is unreachable show a calm "unavailable, retrying" state instead of a
    traceback, poll every DB_RETRY_S seconds and rerun the page by itself once the database answers."""
    try:
        render()
    except Exception as err:
        if not database_unavailable(err):
            raise
        log.warning("page could not reach the database: %s", err.__class__.__name__)
        st.warning("**Database unavailable.** The workbench cannot reach its database right now (restarting, "
                   f"or the server is down). Retrying every {DB_RETRY_S} s; this page comes back by itself.", icon="⏳")
        _retry_when_reachable()


@st.fragment(run_every=DB_RETRY_S)
def _retry_when_reachable() -> None:
    if ping():
        st.rerun(scope="app")
    st.caption("Still waiting for the database…")
