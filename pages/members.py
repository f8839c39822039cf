"""Members: who may use the workbench and with which role (admins only; core refuses everyone else too)."""
import streamlit as st

from core.settings import get_settings
from core.team import access, members
from core.text import escape_markdown as md
from pages._common import NAMELESS, flash, report, show_flashes, sidebar, why_not

who = sidebar()
st.title("👥 Members")
show_flashes()
why = why_not(who, "member.manage", nameless=NAMELESS)
if why:
    st.warning(why, icon="🔒")
    st.stop()

st.caption("Roles, each including the one before: **viewer** browses, searches and downloads · **reviewer** also "
           "approves / rejects images and picks in experiments · **editor** also edits characters, references, "
           "generation, prompt drafts and experiments · **admin** also styles, tags, activating prompt versions, "
           "prices and members. People in the ADMIN_EMAILS setting are admins on first sign-in, until added here.")

if not get_settings().auth_enabled:
    st.info("Sign-in is off: this server runs for one local user, and a name typed in the sidebar that is not "
            f"listed here works as {get_settings().local_role}. Listed local names get their role; e-mail members "
            "take effect once sign-in is configured.", icon="🏠")

rows = members.list_members()
if rows:
    st.dataframe([{"identity": r.identity, "name": r.display_name, "role": r.role_label,
                   "added by": r.created_by,
                   "updated": f"{r.updated_at:%Y-%m-%d %H:%M} UTC" if r.updated_at else ""} for r in rows],
                 hide_index=True, width="stretch", key="members_table")
else:
    st.info("No members yet, and nobody in ADMIN_EMAILS. Add people below (their sign-in e-mail and a role).")

with st.form("member_add", clear_on_submit=True):
    st.markdown("**Add a person**")
    a1, a2, a3 = st.columns([3, 2, 2])
    identity = a1.text_input("E-mail (or local name without sign-in)", key="member_identity",
                             max_chars=members.IDENTITY_MAX)
    display = a2.text_input("Display name", key="member_display", max_chars=members.DISPLAY_NAME_MAX)
    role = a3.selectbox("Role", list(access.ROLES), index=0, key="member_role")
    if st.form_submit_button("Add member", type="primary"):
        try:
            m = members.add_member(identity=identity, role=role, display_name=display, editor=who)
            flash(f"{md(m.identity)} added as {m.role}.")
            st.rerun()
        except Exception as err:
            report(err)

listed = [r for r in rows if r.source == "member"]
if listed:
    st.markdown("**Change a member**")
    by_identity = {r.identity: r for r in listed}
    picked = st.selectbox("Member", list(by_identity), key="member_pick",
                          format_func=lambda i: f"{i} ({by_identity[i].role_label})")
    current = by_identity[picked]
    b1, b2 = st.columns([2, 3], vertical_alignment="bottom")
    new_role = b1.selectbox("Role", list(access.ROLES), index=access.ROLES.index(current.role),
                            key=f"member_new_role_{picked}")
    bar = b2.container(horizontal=True)
    if bar.button("Save role", key="member_save_role", disabled=new_role == current.role):
        try:
            members.set_role(identity=picked, role=new_role, editor=who)
            flash(f"{md(picked)} is now {new_role}.")
            st.rerun()
        except Exception as err:
            report(err)
    if current.active:
        if bar.button("Deactivate", key="member_deactivate", help="Takes their access away; the row and their "
                      "audit trail stay, and they can be reactivated."):
            try:
                members.deactivate(identity=picked, editor=who)
                flash(f"{md(picked)} deactivated.", "info")
                st.rerun()
            except Exception as err:
                report(err)
    elif bar.button("Reactivate", key="member_reactivate"):
        try:
            members.reactivate(identity=picked, editor=who)
            flash(f"{md(picked)} reactivated as {current.role}.")
            st.rerun()
        except Exception as err:
            report(err)

with st.expander("What each role may do"):
    st.dataframe([{"action": name, "least role": least, "what": what} for name, (least, what) in
                  sorted(access.ACTIONS.items(), key=lambda kv: (access.rank(kv[1][0]), kv[0]))],
                 hide_index=True, width="stretch")
