"""Entry point: page config and navigation, nothing else."""
import streamlit as st

from pages._common import run_guarded

st.set_page_config(page_title="Character Workbench", page_icon="🎭", layout="wide")

pages = {
    "Workbench": [
        st.Page("pages/home.py", title="Overview", icon="🏠", default=True),
        st.Page("pages/characters.py", title="Characters", icon="🧑‍🎨"),
        st.Page("pages/styles.py", title="Styles", icon="🎨"),
        st.Page("pages/review.py", title="Review", icon="🔍"),
    ],
    "Explore": [
        st.Page("pages/search.py", title="Search", icon="🔎"),
        st.Page("pages/duplicates.py", title="Duplicates", icon="👯"),
        st.Page("pages/embeddings.py", title="Embeddings", icon="🧬"),
        st.Page("pages/map.py", title="Map", icon="🗺️"),
    ],
    "AI": [
        st.Page("pages/prompts.py", title="Prompts", icon="📝"),
        st.Page("pages/experiments.py", title="Experiments", icon="🧪"),
        st.Page("pages/activity.py", title="Activity", icon="📈"),
    ],
}
run_guarded(st.navigation(pages).run)
