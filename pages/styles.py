"""Styles: the shared looks characters are drawn in."""
import streamlit as st

from core import styles
from core.text import escape_markdown as md
from pages._common import flash, report, show_flashes, sidebar, why_not

editor = sidebar()
st.title("🎨 Styles")
show_flashes()
# styles are shared vocabulary (admin); core refuses anyway, the buttons say why before a click
no_edit = why_not(editor, "style.update")

all_styles = styles.list_styles()
if all_styles:
    st.dataframe(
        [{"name": s.name, "description": s.description, "prompt fragment": s.prompt_fragment,
          "palette": " ".join(s.palette), "updated by": s.updated_by, "updated": s.updated_at} for s in all_styles],
        hide_index=True, width="stretch",
    )
else:
    st.info("No styles yet. Add one below, or load the demo cast from the Overview page.")

choices = {"➕ New style": None} | {s.name: s for s in all_styles}
picked_label = st.selectbox("Edit", list(choices), key="style_pick")
picked = choices[picked_label]
form_id = picked.id if picked else "new"
version_key = f"style_version_{form_id}"
if picked is not None:
    loaded = st.session_state.setdefault(version_key, picked.version)  # the version this form was loaded with
    if loaded != picked.version:
        st.warning(f"Someone saved this style after you opened it (now version {picked.version}, your form has "
                   f"{loaded}). Saving will be refused until you reload.")
        if st.button("Reload latest", key="style_reload"):
            for key in (version_key, f"style_name_{form_id}", f"style_palette_{form_id}"):
                st.session_state.pop(key, None)
            st.rerun()
with st.form(f"style_form_{form_id}", clear_on_submit=picked is None):
    name = st.text_input("Name", value=picked.name if picked else "", max_chars=80, key=f"style_name_{form_id}")
    description = st.text_area("Description", value=picked.description if picked else "")
    fragment = st.text_area(
        "Prompt fragment", value=picked.prompt_fragment if picked else "",
        help="Added to every image prompt of characters in this style.",
    )
    palette = st.text_input(
        "Palette (hex colours, space separated)", value=" ".join(picked.palette) if picked else "",
        help="Used by the offline renderer, e.g. #1d3557 #457b9d #e63946 #f1faee", key=f"style_palette_{form_id}",
    )
    submitted = st.form_submit_button("Save style", type="primary", disabled=not editor or bool(no_edit),
                                      help=no_edit)
if submitted:
    data = styles.StyleInput(name=name, description=description, prompt_fragment=fragment, palette=palette.split())
    try:
        if picked is None:
            styles.create_style(data=data, editor=editor)
            flash(f"Style '{md(name.strip())}' created.")
        else:
            saved = styles.update_style(style_id=picked.id, expected_version=st.session_state[version_key], data=data,
                                        editor=editor)
            st.session_state[version_key] = saved.version
            flash(f"Style '{md(name.strip())}' saved.")
        st.rerun()
    except Exception as err:
        report(err)
if picked is not None and st.button(f"Delete '{md(picked.name)}'", disabled=not editor or bool(no_edit), help=no_edit):
    try:
        styles.delete_style(style_id=picked.id, editor=editor)
        flash(f"Style '{md(picked.name)}' deleted.")
        st.rerun()
    except Exception as err:
        report(err)
if not editor:
    st.caption("Enter your name in the sidebar to save changes.")
elif no_edit:
    st.caption(no_edit)
