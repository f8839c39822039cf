"""Members and roles (admin). Placeholder on the sign-in branch: the team-writes-b branch brings the real page."""
import streamlit as st

from core.team.access import ACTIONS, ROLES
from pages._common import sidebar

sidebar()
st.title("👥 Members")
st.info("Member management is coming: add people by e-mail, give them a role, disable them.", icon="🚧")
st.caption("Roles, least to most: " + " < ".join(ROLES) + f". {len(ACTIONS)} actions are checked in core.")
