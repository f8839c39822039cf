"""Shared page furniture: editor identity, mode badge, flash messages, images.

Not a page: with st.navigation only the files app.py lists are pages.
"""
from __future__ import annotations

import functools
import logging

import streamlit as st

from core import media
from core.errors import WorkbenchError
from core.settings import get_settings

log = logging.getLogger(__name__)
EDITOR_KEY = "editor_name"


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


def sidebar() -> str | None:
    """Render the shared sidebar; return the editor's display name (None until given)."""
    settings = get_settings()
    _warm_up_embedder()
    with st.sidebar:
        name = _login_name()
        if name:
            st.caption(f"Signed in as **{name}**")
        else:
            # The name lives under a plain session key: a widget's own state is dropped when the
            # editor switches pages, which would ask for the name again on every page.
            st.text_input(
                "Your name", key="_editor_name_widget", value=st.session_state.get(EDITOR_KEY, ""),
                placeholder="e.g. Sam (shown in audit columns)",
                help="Recorded as created/updated by. Asked once per browser session.",
                on_change=lambda: st.session_state.update(
                    {EDITOR_KEY: st.session_state["_editor_name_widget"].strip()}),
            )
            name = st.session_state.get(EDITOR_KEY) or None
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


GRID_THUMB_PX = 120  # a coverage-grid cell is about this wide at common screen widths


@functools.lru_cache(maxsize=4096)  # not st.cache_data: its per-call hashing and copying cost more than the read
def _grid_thumbnail(root: str, rel: str) -> str:
    from core.images import data_uri

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
