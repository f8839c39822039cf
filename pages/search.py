"""Search the cast by meaning: free text → characters, and "find similar" from any result."""
import streamlit as st

from core import characters, embeddings, review
from pages._common import media_path, report, sidebar

sidebar()
st.title("🔎 Search")

query = st.text_input("Describe who you are looking for", key="search_q",
                      placeholder="e.g. a quiet fighter who hides in shadows")
similar_to = st.session_state.get("similar_to")
k = st.slider("Results", 3, 30, 10, key="search_k")

hits: list = []
title = ""
try:
    if similar_to is not None:
        ch = characters.get_character(character_id=similar_to)
        title = f"Most similar to **{ch.name}**"
        hits = embeddings.similar_to(subject_type="character", subject_id=similar_to, k=k)
        if st.button("Clear “find similar”", key="clear_similar"):
            st.session_state.pop("similar_to")
            st.rerun()
    elif query.strip():
        title = f"Closest to “{query.strip()}”"
        with st.spinner("Searching (the first search loads the embedding model, a few seconds)…"):
            hits = embeddings.search_text(query=query, k=k)
except Exception as err:
    report(err)

if not hits:
    if not (query.strip() or similar_to):
        st.info("Type a description to search by meaning. Characters must be embedded first "
                "(the Embeddings page shows what is missing).")
    elif title:
        st.info("No embedded characters yet: open the Embeddings page and run the backfill.")
    st.stop()

st.markdown(title)
rows = {r.id: r for r in characters.list_characters(archived=None, ids=[h.subject_id for h in hits])}
avatars = review.avatar_paths([h.subject_id for h in hits])
cols = st.columns(5)
for i, h in enumerate(hits):
    row = rows.get(h.subject_id)
    if row is None:
        continue
    with cols[i % 5].container(border=True):
        if media_path(avatars.get(h.subject_id)):
            st.image(media_path(avatars[h.subject_id]), width="stretch")
        st.markdown(f"**{row.name}**")
        st.caption(f"similarity {h.similarity:.3f} · {row.style_name or 'no style'}")
        if st.button("Find similar", key=f"sim_{h.subject_id}", width="stretch"):
            st.session_state["similar_to"] = h.subject_id
            st.rerun()
