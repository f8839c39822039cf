"""Duplicates: near-identical image pairs (within one run first), side by side, with reject / keep actions."""
import streamlit as st

from core import characters
from core.vectors import duplicates
from core.text import escape_markdown as md
from core.vectors.embedding_spaces import SPACE_LABELS, image_space
from pages._common import NAMELESS, flash, media_path, report, show_flashes, sidebar, why_not

editor = sidebar()
st.title("👯 Duplicates")
show_flashes()
st.caption(f"Pairs of reference images and variations that look near-identical to the image model "
           f"({SPACE_LABELS[image_space()]}). Pairs within one generation run come first. Rejected variations "
           "are left out; pairs you keep are not shown again.")

c1, c2, c3 = st.columns([2, 2, 1])
threshold = c1.slider("Similarity at least", 0.70, 1.0, float(duplicates.default_threshold()), 0.01, key="dup_threshold",
                      help="Cosine similarity in the image space. Lower it to see looser look-alikes.")
cast = {c.id: c.name for c in characters.list_characters()}
character_id = c2.selectbox("Character", [None] + list(cast), key="dup_character",
                            format_func=lambda c: "Whole cast" if c is None else cast[c])
limit = c3.number_input("Show", 10, 500, 50, 10, key="dup_limit")

try:
    pairs = duplicates.find_pairs(threshold=threshold, character_id=character_id, limit=int(limit))
except Exception as err:
    report(err)
    st.stop()

if not pairs:
    st.info("No pairs at this threshold. Images must be embedded first (the Embeddings page shows what is missing); "
            "a lower threshold finds looser look-alikes.")
    st.stop()

st.markdown(f"**{len(pairs)} pair(s)**")


def _side(col, side) -> None:
    if media_path(side.thumb):
        col.image(media_path(side.thumb), width=180)
    where = f"{side.label} · {side.run}" if side.run else side.label
    col.markdown(f"**{side.name}** · {where}")
    if side.subject_type == "variation":
        col.caption(f"variation #{side.subject_id} · {side.review}")
    else:
        col.caption(f"reference #{side.subject_id}")


reject_refused = why_not(editor, "review.bulk", nameless=NAMELESS)
keep_refused = why_not(editor, "duplicate.keep", nameless=NAMELESS)
for n, pair in enumerate(pairs):
    key = f"{pair.a.subject_type}{pair.a.subject_id}_{pair.b.subject_type}{pair.b.subject_id}"
    with st.container(border=True, key=f"dup_pair_{n}"):
        la, lb, act = st.columns([2, 2, 2])
        _side(la, pair.a)
        _side(lb, pair.b)
        act.metric("similarity", f"{pair.similarity:.3f}")
        if pair.same_run:
            act.caption("same run")
        for side, other, col_label in ((pair.b, pair.a, "right"), (pair.a, pair.b, "left")):
            if side.subject_type == "variation":
                # a short label fits the narrow action column at 1024 px; the help names the image
                if act.button(f"Reject {col_label}", key=f"dup_rej_{col_label}_{key}",
                              disabled=bool(reject_refused),
                              help=reject_refused or f"Reject {md(side.name)} · {side.label} (the {col_label} image) "
                                                     "as a near-duplicate of the other."):
                    try:
                        n_rejected = duplicates.reject_duplicate(variation_id=side.subject_id,
                                                                 of=(other.subject_type, other.subject_id),
                                                                 reviewer=editor)
                        if n_rejected:
                            flash(f"Rejected {side.name} · {side.label} as a near-duplicate.")
                        else:
                            flash(f"{side.name} · {side.label} was not rejected: it is in another reviewer's "
                                  "queue right now (or no longer a completed image).", "warning")
                        st.rerun()
                    except Exception as err:
                        report(err)
        if act.button("Keep both", key=f"dup_keep_{key}", disabled=bool(keep_refused), help=keep_refused):
            try:
                duplicates.keep_both(a=(pair.a.subject_type, pair.a.subject_id),
                                     b=(pair.b.subject_type, pair.b.subject_id), editor=editor)
                flash("Kept both; the pair is no longer listed.")
                st.rerun()
            except Exception as err:
                report(err)
