"""Search the cast by meaning, by character and by image; every result offers "find similar"."""
import streamlit as st

from core import characters, styles, tags
from core.vectors import similarity
from core.vectors.embedding_spaces import IMAGE_CLIP, text_space
from core.errors import ValidationError
from core.vectors.image_embedders import CLIP_HOWTO, clip_available
from core.text import escape_markdown as md
from pages._common import media_path, report, sidebar

sidebar()
st.title("🔎 Search")
st.page_link("pages/duplicates.py", label="Near-duplicate images", icon="👯")

MODES = {"text": "📝 Describe", "character": "🧑 Similar characters", "image": "🖼️ Similar images"}
FIND = {"Characters": ("character",), "Images": ("reference", "variation")}
CLIP_FIND = "Images by pixels (CLIP)"
if clip_available():
    FIND[CLIP_FIND] = ("reference", "variation")
COLS = 5

# "find similar" from a result sets the anchor; the mode follows it
anchor = st.session_state.get("similar_to")  # (subject_type, subject_id) | None
mode = st.segmented_control("Search by", list(MODES), format_func=MODES.get, key="search_mode", default="text",
                              required=True)
mode = mode or "text"

with st.expander("Filters", expanded=False):
    c1, c2, c3 = st.columns(3)
    style_opts = {s.id: s.name for s in styles.list_styles()}
    tag_opts = {t.id: t.name for t in tags.list_tags()}
    style_ids = c1.multiselect("Style", list(style_opts), format_func=style_opts.get, key="f_style")
    tag_ids = c2.multiselect("Tag", list(tag_opts), format_func=tag_opts.get, key="f_tag",
                             help="Semantic tags (nearest concepts above a threshold) and tags applied by hand.")
    review_states = c3.multiselect("Review state (variations)", list(similarity.REVIEW_STATES), key="f_review")
flt = similarity.SearchFilter(style_ids=tuple(style_ids), tag_ids=tuple(tag_ids), review_states=tuple(review_states))
k = st.slider("Results", 3, 30, 10, key="search_k")

result: similarity.SearchResult | None = None
title = ""
hint = ""
try:
    if anchor is not None:
        a_type, a_id = anchor
        cards = similarity.hit_cards([similarity.Hit(a_type, a_id, 1.0)])
        name = f"{cards[0].title} ({cards[0].subtitle})" if cards and a_type != "character" else (
            cards[0].title if cards else "a deleted item")
        title = f"Most similar to **{md(name)}**"
        if cards and media_path(cards[0].thumb_path):
            st.image(media_path(cards[0].thumb_path), width=120)
        if st.button("✖ Clear “find similar”", key="clear_similar"):
            st.session_state.pop("similar_to")
            st.rerun()
        result = similarity.similar_to(subject_type=a_type, subject_id=a_id, k=k, flt=flt)
    elif mode == "text":
        c1, c2 = st.columns([4, 1])
        query = c1.text_input("Describe who or what you are looking for", key="search_q",
                              placeholder="e.g. a quiet fighter who hides in shadows")
        find = c2.radio("Find", list(FIND), key="search_find", horizontal=True)
        if find == "Images":
            st.caption("Images match through their captions and prompts. " + (
                f"“{CLIP_FIND}” matches what the pixels show." if clip_available() else CLIP_HOWTO))
        if query.strip():
            title = f"{find} closest to “{md(query.strip())}”"
            with st.spinner("Searching (the first search loads the embedding model, a few seconds)…"):
                result = similarity.search_text(query=query, subject_types=FIND[find], k=k, flt=flt,
                                                space=IMAGE_CLIP if find == CLIP_FIND else text_space())
        else:
            hint = "Type a description to search by meaning, e.g. “a cheerful inventor”."
    elif mode == "character":
        cast = {c.id: c.name for c in characters.list_characters()}
        if not cast:
            hint = "No characters yet: create some (or load the demo cast on the Overview page)."
        else:
            cid = st.selectbox("Character", list(cast), format_func=cast.get, key="search_char", index=None,
                               placeholder="Pick a character")
            if cid is None:
                hint = "Pick a character to see the ones most like it (by description, traits and style)."
            else:
                title = f"Most similar to **{md(cast[cid])}**"
                result = similarity.similar_to(subject_type="character", subject_id=cid, k=k, flt=flt)
    else:
        up = st.file_uploader("Upload an image to find similar ones (nothing is stored)",
                              type=["png", "jpg", "jpeg", "webp", "gif"], key="search_upload")
        if up is None:
            hint = ("Upload an image, or use “find similar” on any image result. Images are compared by what a "
                    "learned image model sees in them (the same subject from another angle or crop counts as close).")
        else:
            st.image(up.getvalue(), width=120)
            title = f"Images most like **{md(up.name)}**"
            with st.spinner("Reading the image (the first search loads the image model, a few seconds)…"):
                result = similarity.search_image(data=up.getvalue(), k=k, flt=flt, filename=up.name)
except ValidationError as err:
    st.warning(md(err))
except Exception as err:
    report(err)

if result is None:
    if hint:
        st.info(hint + " Everything must be embedded first: the Embeddings page shows what is missing.")
    st.stop()
if not result.hits:
    st.info("Nothing matches. If the cast is new, open the Embeddings page and embed what is missing; "
            "otherwise loosen the filters.")
    st.stop()

st.markdown(title)
st.caption(f"{len(result.hits)} results · {result.strategy} search")
cols = st.columns(COLS)
for i, card in enumerate(similarity.hit_cards(result.hits)):
    with cols[i % COLS].container(border=True):
        if media_path(card.thumb_path):
            st.image(media_path(card.thumb_path), width="stretch")
        st.markdown(f"**{md(card.title)}**")
        st.caption(f"similarity {card.similarity:.3f} · {md(card.subtitle)}")
        if card.tags:
            st.caption(" · ".join(md(t) for t in card.tags))
        if st.button("Find similar", key=f"sim_{card.subject_type}_{card.subject_id}", width="stretch"):
            st.session_state["similar_to"] = (card.subject_type, card.subject_id)
            st.rerun()
        if card.character_id:
            st.page_link("pages/characters.py", label="Open character", icon="↗️",
                         query_params={"character": str(card.character_id)})
