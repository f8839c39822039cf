"""The audit trail (editor). Placeholder on the sign-in branch: the team-writes-b branch brings the real page."""
import streamlit as st

from pages._common import sidebar

sidebar()
st.title("📜 Audit")
st.info("The audit trail page is coming: every write, filtered by person, entity and time.", icon="🚧")
