"""Entry point: page config, who is acting, and the navigation their role may open; nothing else.

Hiding a page is convenience, not protection: every write is checked again in core/.
"""
import functools

import streamlit as st

from core.team.access import NO_ROLE
from pages._review_queue import release_claims
from pages._common import PageSpec, acting, gate_screen, may_open, page_refusal, run_guarded, sign_in_screen

st.set_page_config(page_title="Character Workbench", page_icon="🎭", layout="wide")

# Viewers browse everything read-only (core refuses their writes and pages grey those buttons out);
# only the audit trail (editor) and member management (admin) are hidden below those roles.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("Workbench", "pages/home.py", "Overview", "🏠", "viewer", default=True),
    PageSpec("Workbench", "pages/characters.py", "Characters", "🧑‍🎨", "viewer"),
    PageSpec("Workbench", "pages/styles.py", "Styles", "🎨", "viewer"),
    PageSpec("Workbench", "pages/review.py", "Review", "🔍", "viewer"),
    PageSpec("Explore", "pages/search.py", "Search", "🔎", "viewer"),
    PageSpec("Explore", "pages/duplicates.py", "Duplicates", "👯", "viewer"),
    PageSpec("Explore", "pages/embeddings.py", "Embeddings", "🧬", "viewer"),
    PageSpec("Explore", "pages/map.py", "Map", "🗺️", "viewer"),
    PageSpec("AI", "pages/prompts.py", "Prompts", "📝", "viewer"),
    PageSpec("AI", "pages/experiments.py", "Experiments", "🧪", "viewer"),
    PageSpec("AI", "pages/activity.py", "Activity", "📈", "viewer"),
    PageSpec("Team", "pages/audit.py", "Audit", "📜", "editor"),
    PageSpec("Team", "pages/members.py", "Members", "👥", "admin"),
)

REVIEW_PAGE = "pages/review.py"


def main() -> None:
    person = acting()
    if person.auth and not person.signed_in and not person.problem:
        screen = sign_in_screen
    elif person.problem or person.role == NO_ROLE:
        screen = functools.partial(gate_screen, person)
    else:
        screen = None
    if screen is not None:  # every address shows the same screen: nothing of the workbench before sign-in
        if person.identity:  # shut out (deactivated, no role): what they held goes back to the others now
            release_claims(person.identity)
        gate = [st.Page(screen, title=p.title, url_path=p.path.removeprefix("pages/").removesuffix(".py"),
                        default=p.default) for p in PAGES]
        st.navigation(gate, position="hidden").run()
        return
    sections: dict[str, list] = {}
    by_page = {}
    for spec in PAGES:
        allowed = may_open(person.role, spec)
        page = st.Page(spec.path, title=spec.title, icon=spec.icon, default=spec.default,
                       visibility="visible" if allowed else "hidden")  # hidden: a direct link gets the refusal
        sections.setdefault(spec.section if allowed else "", []).append(page)
        by_page[id(page)] = spec
    selected = st.navigation(sections)
    spec = by_page[id(selected)]
    if spec.path != REVIEW_PAGE:  # leaving Review gives its claimed queue back at once (not after the TTL)
        release_claims(person.identity)
    if may_open(person.role, spec):
        selected.run()
    else:
        st.title(f"{spec.icon} {spec.title}")
        st.error(page_refusal(person.role, spec), icon="🔒")


run_guarded(main)
