"""Shared page furniture: editor identity, mode badge, flash messages, images.

Not a page: with st.navigation only the files app.py lists are pages.
"""
from __future__ import annotations

import logging

import streamlit as st

from core import media
from core.errors import WorkbenchError
from core.identity import NAME_MAX, clean_editor_name
from core.settings import get_settings

log = logging.getLogger(__name__)
EDITOR_KEY = "editor_name"
EDITOR_PARAM = "editor"


def _login_name() -> str | None:
    try:
        user = st.user
        if user.get("is_logged_in"):
            return str(user.get("name") or user.get("email") or "") or None
    except Exception as err:  # st.user raises when auth is half-configured; fall back to a typed name
        log.warning("st.user unavailable, falling back to typed editor name: %s", err)
    return None


@st.cache_resource(show_spinner=False)
def _warm_up_embedder() -> bool:
    """Once per server process: load the text model in the background before the first search or save."""
    from core.embedding_spaces import warm_up

    warm_up()
    return True


def _keep_editor(value: str | None) -> None:
    st.session_state[EDITOR_KEY] = value
    if value:
        st.query_params[EDITOR_PARAM] = value
    else:
        st.query_params.pop(EDITOR_PARAM, None)


def _typed_editor_name() -> str | None:
    """The typed name, kept in the session and in the URL (`?editor=`) so a reload or a bookmark keeps it.

    It lives under a plain session key: a widget's own state is dropped when the editor switches
    pages, which would ask for the name again on every page."""
    name = st.session_state.get(EDITOR_KEY)
    if name is None and EDITOR_PARAM in st.query_params:  # a reloaded or bookmarked page
        name = clean_editor_name(st.query_params.get(EDITOR_PARAM))
        st.session_state[EDITOR_KEY] = name
    if name and st.query_params.get(EDITOR_PARAM) != name:  # page switches drop the URL's parameters
        st.query_params[EDITOR_PARAM] = name
    st.text_input(
        "Your name", key="_editor_name_widget", value=name or "", max_chars=NAME_MAX,
        placeholder="e.g. Sam (shown in audit columns)",
        help="Recorded as created/updated by. Kept in this page's address, so a reload or a bookmark keeps it.",
        on_change=lambda: _keep_editor(clean_editor_name(st.session_state["_editor_name_widget"])),
    )
    return st.session_state.get(EDITOR_KEY) or None


def sidebar() -> str | None:
    """Render the shared sidebar; return the editor's display name (None until given)."""
    settings = get_settings()
    _warm_up_embedder()
    with st.sidebar:
        name = _login_name()
        if name:
            st.caption(f"Signed in as **{name}**")
        else:
            name = _typed_editor_name()
            if not name:
                st.caption("Enter your name to save changes.")
        if settings.openai_api_key is None:
            st.info("**Offline mode**: no OpenAI key configured; AI features use the offline provider.", icon="📴")
        else:
            st.success("OpenAI key configured.", icon="🔑")
    return name


def flash(message: str, kind: str = "success") -> None:
    """Show a message after the next rerun (st.rerun drops what was drawn)."""
    st.session_state.setdefault("_flash", []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop("_flash", []):
        getattr(st, kind)(message)


def report(err: Exception) -> None:
    """Editor-facing errors are shown as written; anything else is logged and summarised."""
    if isinstance(err, WorkbenchError):
        st.error(str(err))
    else:
        log.exception("unexpected error in page")
        st.error(f"Unexpected error ({err.__class__.__name__}); details are in the server log.")


def media_path(rel: str | None) -> str | None:
    if not rel:
        return None
    path = media.resolve(rel)
    return str(path) if path.is_file() else None


def demo_cast_button(editor: str | None, *, key: str) -> None:
    """The one-click demo cast for an empty workbench (Overview and Characters pages)."""
    from core.demo import load_demo_cast

    if st.button("Load demo cast", type="primary", disabled=not editor, key=key):
        try:
            with st.spinner("Creating the demo cast…"):
                res = load_demo_cast(editor=editor)
            flash(f"Demo cast loaded: {res.characters_added} characters, {res.styles_added} styles.")
            st.rerun()
        except Exception as err:
            report(err)
    if not editor:
        st.caption("Enter your name in the sidebar first (it goes into the audit columns).")
