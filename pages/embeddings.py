"""Embedding status: every character's embedding per space, with backfill as a background job."""
import streamlit as st

from core import embeddings, jobs
from pages._common import flash, report, show_flashes, sidebar

editor = sidebar()
st.title("🧬 Embeddings")
show_flashes()
st.caption("Characters are embedded with all-MiniLM-L6-v2 (offline, 384-d). Unchanged content is never re-embedded: "
           "a content hash is checked before the model is called.")

running = jobs.pending_jobs(jobs.EMBED_BACKFILL) > 0


@st.fragment(run_every=2 if running else None)
def status_view() -> None:
    rows = embeddings.character_status()
    if not rows:
        st.info("No characters yet. Create some (or load the demo cast on the Overview page) and embed them here.")
        return
    counts = {s: sum(r["status"] == s for r in rows) for s in embeddings.STATUS_ORDER}
    cols = st.columns(len(counts))
    for col, (name, n) in zip(cols, counts.items()):
        col.metric(name, n)
    todo = counts["missing"] + counts["stale"] + counts["failed"]
    busy = jobs.pending_jobs(jobs.EMBED_BACKFILL) > 0
    if busy:
        st.progress(counts["current"] / len(rows), text="Embedding in the background…")
    if st.button(f"Embed missing, stale and failed ({todo})", type="primary", disabled=busy or todo == 0 or not editor,
                 key="embed_backfill"):
        try:
            jobs.defer_embed_backfill()
            flash("Embedding queued: the table updates as the worker finishes.")
            st.rerun()
        except Exception as err:
            report(err)
    show = st.multiselect("Status", list(embeddings.STATUS_ORDER), key="emb_status_filter")
    st.dataframe([{k: r[k] for k in ("name", "space", "status", "model", "dims", "updated_at", "error")}
                  for r in rows if not show or r["status"] in show], hide_index=True, width="stretch")
    if running and not busy:
        st.rerun()


status_view()
