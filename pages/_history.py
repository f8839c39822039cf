"""The History tab of a character: who changed what and when, from the audit trail, newest first.

Not a page (the leading underscore): pages/characters.py draws it inside its tab. Each entry says
when, who (with the role they acted with), the action, and each changed field as before → after;
long values are cut to one line, the full text is one click away.
"""
import streamlit as st

from core.team import history
from core.team.audit_view import Row
from core.text import escape_markdown as md
from pages._audit_rows import changes_block

ENTITY_WORDS = {"character": "character", "reference": "reference image", "run": "run", "variation": "variation"}


def _subject(entry: Row) -> str:
    """What the row is about, when it is not the character itself ('reference image #12 · front.png')."""
    if entry.entity == "character":
        return ""
    word = ENTITY_WORDS.get(entry.entity, entry.entity)
    label = entry.label.split(" · ", 1)[1] if " · " in entry.label else ""
    return f" · {word} #{entry.entity_id}" + (f" ({md(label)})" if label else "")


def _entry(entry: Row) -> None:
    with st.container(border=True):
        role = f" ({entry.role})" if entry.role else ""
        st.markdown(f"**{entry.when}** · {md(entry.actor)}{md(role)} · {md(entry.what)}{_subject(entry)}")
        changes_block(entry)


def history_section(ch) -> None:
    """The character's audit history, paged."""
    total = history.count_character_history(character_id=ch.id)
    if total == 0:
        st.info("No history yet. Edits, archiving, reference images, generation runs and tags of this character "
                "appear here with who made them and what changed (the Audit page shows the whole trail).")
        return
    pages = max(1, -(-total // history.PAGE_SIZE))
    page = 1
    if pages > 1:
        page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key=f"hist_page_{ch.id}")
    st.caption(f"{total} change(s), newest first.")
    for entry in history.character_history(character_id=ch.id, limit=history.PAGE_SIZE,
                                           offset=(page - 1) * history.PAGE_SIZE):
        _entry(entry)
