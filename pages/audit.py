"""Audit: every write, who made it and what changed (before → after), filtered and paged in SQL."""
import logging

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from core.team import audit_view
from core.text import escape_markdown as md
from pages._audit_rows import changes_block
from pages._common import NAMELESS, report, sidebar, why_not

log = logging.getLogger(__name__)
PAGE_KEY = "audit_page"
ANY = None

who = sidebar()
st.title("🧾 Audit trail")
why = why_not(who, "audit.view", nameless=NAMELESS)
if why:
    st.warning(why, icon="🔒")
    st.stop()


def _first_page() -> None:
    st.session_state[PAGE_KEY] = 1


choices = audit_view.choices()
c1, c2, c3, c4, c5 = st.columns([3, 2, 3, 2, 2])
actor = c1.selectbox("Person", [ANY] + choices.actors, key="audit_actor", on_change=_first_page,
                     format_func=lambda v: "anyone" if v is None else v)
entity = c2.selectbox("Entity", [ANY] + choices.entities, key="audit_entity", on_change=_first_page,
                      format_func=lambda v: "any" if v is None else v)
action = c3.selectbox("Action", [ANY] + choices.actions, key="audit_action", on_change=_first_page,
                      format_func=lambda v: "any" if v is None else v)
since = c4.date_input("From", value=None, key="audit_since", on_change=_first_page, format="YYYY-MM-DD")
until = c5.date_input("To (included)", value=None, key="audit_until", on_change=_first_page, format="YYYY-MM-DD")

try:
    filters = audit_view.make_filter(actor=actor, entity=entity, action=action, since=since, until=until)
    page = audit_view.page_of(who=who, filters=filters, page=st.session_state.get(PAGE_KEY, 1))
except Exception as err:
    report(err)
    st.stop()
st.session_state[PAGE_KEY] = page.page

if not page.rows:
    filtered = any((actor, entity, action, since, until))
    st.info("No audit rows match these filters. Widen the dates or set a filter back to “any”."
            if filtered else "The audit trail is empty: every write (create, edit, delete, review, prompt save, "
            "tag, member change) appears here as soon as it is made.")
    st.stop()


def _turn(delta: int) -> None:
    st.session_state[PAGE_KEY] = page.page + delta


nav = st.container(horizontal=True, vertical_alignment="center")
nav.button("← Newer", key="audit_prev", disabled=page.page <= 1, on_click=_turn, args=(-1,))
nav.caption(f"Rows {page.first:,}–{page.last:,} of {page.total:,} · page {page.page} of {page.pages}")
nav.button("Older →", key="audit_next", disabled=page.page >= page.pages, on_click=_turn, args=(1,))


def _link(row: audit_view.Row, where) -> None:
    if row.link is None:
        return
    try:
        where.page_link(row.link.page, label=row.link.label, icon="↗️", query_params=row.link.query_params or None)
    except StreamlitPageNotFoundError as err:  # the page is not in this person's navigation: say where, no link
        log.info("audit link to %s not available: %s", row.link.page, err)
        where.caption(f"({md(row.link.label)} on {row.link.page})")


for row in page.rows:
    with st.container(border=True):
        head, link = st.columns([3, 1.3], vertical_alignment="center")
        head.markdown(f"**{md(row.action)}** · {md(row.entity_text)}  \n"
                      f"{row.when} · {md(row.actor)}" + (f" ({md(row.role)})" if row.role else ""))
        _link(row, link)
        changes_block(row)
