"""Overview: what is in the workbench, and a one-click demo cast when it is empty."""
import streamlit as st

from core import characters, styles
from core.settings import get_settings
from pages._common import demo_cast_button, show_flashes, sidebar

editor = sidebar()
st.title("🎭 Character Workbench")
show_flashes()

total = characters.count_characters(include_archived=False)
archived = characters.count_characters() - total
style_count = len(styles.list_styles())

c1, c2, c3 = st.columns(3)
c1.metric("Active characters", total)
c2.metric("Archived", archived)
c3.metric("Styles", style_count)

if total == 0:
    with st.container(border=True):
        st.subheader("The workbench is empty")
        st.write(
            "Create your first character on the **Characters** page, or load the demo cast: "
            "twelve characters in four styles with reference sketches, made offline."
        )
        demo_cast_button(editor, key="demo_home")
else:
    st.page_link("pages/characters.py", label="Open the cast →", icon="🧑‍🎨")

with st.expander("Configuration"):
    st.table({"setting": list(get_settings().describe()), "value": list(get_settings().describe().values())})
