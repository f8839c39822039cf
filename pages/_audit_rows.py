"""One audit row's changed fields, as the Audit page and a character's History tab both show them:
field: before → after on one line each (long values cut), the full values behind "Full values"."""
import streamlit as st

from core.team.audit_view import Row
from core.text import escape_markdown as md


def changes_block(row: Row) -> None:
    if not row.changes:
        st.caption("No field changed.")
        return
    st.markdown("\n".join(f"- **{md(c.field)}**: {md(c.before)} → {md(c.after)}" for c in row.changes))
    long = [c for c in row.changes if c.truncated]
    if long:
        with st.expander("Full values"):
            for c in long:
                st.caption(f"{c.field}: before")
                st.code(c.before_full, language=None, wrap_lines=True)
                st.caption(f"{c.field}: after")
                st.code(c.after_full, language=None, wrap_lines=True)
