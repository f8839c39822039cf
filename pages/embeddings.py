"""Embedding status for every subject and space, bulk (re-)embedding as background jobs, and the tag list."""
import pandas as pd
import streamlit as st

from core.vectors import embedding_status
from core import jobs, tags
from core.vectors import embedding_requests, embedding_spaces, embeddings
from core.text import escape_markdown as md
from pages._common import flash, report, show_flashes, sidebar, why_not

editor = sidebar()
st.title("🧬 Embeddings")
show_flashes()
st.caption("Characters are embedded from their text; reference images and variations from their caption or prompt "
           "(text) and from their pixels (image). Unchanged content is never re-embedded: a content hash is "
           "checked before the model is called. Saves, uploads and finished slots queue their own embedding job.")

tab_status, tab_tags = st.tabs(["Status", "Tags"], key="emb_tab", on_change="rerun")
running = jobs.pending_jobs(*jobs.EMBED_TASKS) > 0


@st.fragment(run_every=2 if running else None)
def status_view() -> None:
    all_rows = embedding_status.status_all()
    overview = embedding_status.status_overview(all_rows)
    total = sum(r["total"] for r in overview)
    if total == 0:
        st.info("Nothing to embed yet. Create characters (or load the demo cast on the Overview page); "
                "they are embedded in the background as soon as they are saved.")
        return
    busy = jobs.pending_jobs(*jobs.EMBED_TASKS) > 0
    done = sum(r["current"] for r in overview)
    if busy:
        st.progress(done / total, text=f"Embedding in the background… {done} of {total} current")
    st.dataframe(pd.DataFrame([{"subject": embeddings.SUBJECT_LABELS[r["subject_type"]],
                                "space": embedding_spaces.SPACE_LABELS[r["space"]],
                                **{k: r[k] for k in ("total",) + embeddings.STATUS_ORDER}} for r in overview]),
                 hide_index=True, width="stretch")
    todo = total - done - sum(r["queued"] for r in overview)
    refused = why_not(editor, "embedding.run")
    if st.button(f"Embed everything missing, stale or failed ({todo})", type="primary",
                 disabled=busy or todo == 0 or not editor or bool(refused), key="embed_backfill", help=refused):
        try:
            queued = embedding_requests.request_backfill(editor=editor)
            flash("Embedding queued: the table updates as the worker finishes." if queued
                  else "An embedding backfill is already queued.", "success" if queued else "info")
            st.rerun()
        except Exception as err:
            report(err)

    st.subheader("Details")
    c1, c2, c3 = st.columns(3)
    subject_type = c1.selectbox("Subjects", list(embeddings.SUBJECT_TYPES), format_func=embeddings.SUBJECT_LABELS.get,
                                key="emb_type")
    space = c2.selectbox("Space", embeddings.spaces_for(subject_type), format_func=embedding_spaces.SPACE_LABELS.get,
                         key="emb_space")
    show = c3.multiselect("Status", list(embeddings.STATUS_ORDER), key="emb_status_filter")
    rows = all_rows[(subject_type, space)]
    by_status = {s: [r["subject_id"] for r in rows if r["status"] == s] for s in embeddings.STATUS_ORDER}
    actions = (("missing", "Embed missing"), ("stale", "Re-embed stale"), ("failed", "Retry failed"))
    for col, (status, label) in zip(st.columns(len(actions)), actions):
        ids = by_status[status]
        if col.button(f"{label} ({len(ids)})", key=f"bulk_{status}", disabled=not ids or not editor or bool(refused),
                      width="stretch", help=refused):
            try:
                embedding_requests.request_embed(subject_type=subject_type, ids=ids, spaces=[space], editor=editor,
                                         what=label.lower())
                flash(f"{label}: {len(ids)} queued.")
                st.rerun()
            except Exception as err:
                report(err)
    shown = [r for r in rows if not show or r["status"] in show]
    if shown:
        st.dataframe(pd.DataFrame([{k: r[k] for k in ("name", "status", "model", "dims", "updated_at", "error")}
                                   for r in shown]), hide_index=True, width="stretch")
    else:
        st.info("No rows match the status filter." if rows else "Nothing of this kind yet.")
    if running and not busy:
        st.rerun()


def tags_view() -> None:
    no_tags = why_not(editor, "tag.create")  # tag definitions: admin
    st.caption(f"A tag is a concept with a description. A character or image gets a tag when it stands out for "
               f"that tag: at least {tags.Z_MIN:g} standard deviations above the tag's similarity to the rest of its "
               f"kind, and close to its own best tag (at most {tags.MAX_AUTO_TAGS}), so a tag marks the few that fit "
               f"it. Below {tags.MIN_BACKGROUND} subjects of a kind, plain similarity decides. Tags applied by hand "
               "(from the Map page) are kept as they are.")
    items = tags.list_tags()
    if items:
        st.dataframe(pd.DataFrame([{"tag": t.name, "description": t.description, "coverage": t.coverage_text(),
                                    "embedded": "yes" if t.embedded else "queued"} for t in items]),
                     hide_index=True, width="stretch")
    else:
        st.info("No tags yet: add one below, or load the starter list.")
    if no_tags:
        st.caption(no_tags)
    if st.button("Load starter tags", key="starter_tags", disabled=not editor or bool(no_tags), help=no_tags):
        try:
            n = tags.load_starter_tags(editor=editor)
            flash(f"{n} starter tags added." if n else "All starter tags exist already.")
            st.rerun()
        except Exception as err:
            report(err)
    with st.form("new_tag", clear_on_submit=True):
        st.markdown("**Add a tag**")
        name = st.text_input("Name", key="tag_name", max_chars=tags.MAX_NAME)
        desc = st.text_input("What it means (this is what gets embedded)", key="tag_desc")
        if st.form_submit_button("Add tag", disabled=not editor or bool(no_tags), help=no_tags):
            try:
                tags.create_tag(name=name, description=desc, editor=editor)
                flash(f"Tag '{md(name.strip().lower())}' added; it is assigned once it is embedded.")
                st.rerun()
            except Exception as err:
                report(err)
    if items:
        st.markdown("**Edit or delete a tag**")
        by_id = {t.id: t for t in items}
        tid = st.selectbox("Tag", list(by_id), format_func=lambda i: by_id[i].name, key="tag_edit_pick")
        with st.form("edit_tag"):
            new_name = st.text_input("Name", value=by_id[tid].name, key=f"tag_edit_name_{tid}")
            new_desc = st.text_input("Description", value=by_id[tid].description, key=f"tag_edit_desc_{tid}")
            c1, c2 = st.columns(2)
            save = c1.form_submit_button("Save", disabled=not editor or bool(no_tags), help=no_tags)
            delete = c2.form_submit_button("Delete", disabled=not editor or bool(no_tags), help=no_tags)
        try:
            if save:
                tags.update_tag(tag_id=tid, name=new_name, description=new_desc, editor=editor)
                flash("Tag saved; assignments are recomputed in the background.")
                st.rerun()
            if delete:
                tags.delete_tag(tag_id=tid, editor=editor)
                flash(f"Tag '{md(by_id[tid].name)}' deleted.")
                st.rerun()
        except Exception as err:
            report(err)


with tab_status:
    status_view()
with tab_tags:
    tags_view()
