"""Prompts: edit templates as versions, activate / roll back, diff, preview, try one slot."""
import difflib
import html

import streamlit as st

from core import characters
from core.ai import ai_functions, prompt_registry
from core.shots import shot_list
from pages._common import flash, media_path, report, show_flashes, sidebar, why_not

editor = sidebar()
st.title("📝 Prompts")
show_flashes()
# editors save drafts; only admins make a version the one in use (core refuses either way)
no_save = why_not(editor, "prompt.save")
no_activate = why_not(editor, "prompt.activate")

templates = prompt_registry.list_templates()
st.dataframe(
    [{"template": t.name, "description": t.description,
      "in use": f"v{t.active_version} (database)" if t.active_version else "file default", "versions": t.versions}
     for t in templates],
    hide_index=True, width="stretch",
)
name = st.selectbox("Template", [t.name for t in templates], key="prompt_template")
current = prompt_registry.resolve(name)
versions = prompt_registry.list_versions(name=name)
draft_key = f"draft_{name}"
if draft_key not in st.session_state:
    st.session_state[draft_key] = current.body

# keyed: saving, activating or picking a diff side reruns the page, and the editor stays on their tab
tab_edit, tab_versions, tab_try = st.tabs(["Edit draft", "Versions & diff", "Preview & try"], key="prompt_tab",
                                          on_change="rerun")

with tab_edit:
    st.caption(
        f"In use: **{'v' + str(current.version) if current.version else 'file default'}** "
        f"(layer: {current.layer}). Variables: `character.*`, `style.*`, `slot.*`, `rejection_reasons`, "
        "`existing_names`, `existing_caption`, `count`."
    )
    st.caption(prompt_registry.limits_summary())
    st.text_area("Template body (Jinja2, sandboxed)", key=draft_key, height=260)
    note = st.text_input("Version note", key=f"note_{name}", placeholder="what changed and why")
    make_active = st.checkbox("Make it the version in use", value=not no_activate, disabled=bool(no_activate),
                              key=f"make_active_{name}", help=no_activate or "Unticked: saved as a draft version; "
                              "an admin activates it under Versions & diff.")
    c1 = c2 = c3 = st.container(horizontal=True)  # buttons at their label's width, wrapping when narrow
    if c1.button("Check draft", key="check_draft"):
        try:
            sample = prompt_registry.validate_body(st.session_state[draft_key])
            st.success("The draft renders against the sample character.")
            st.code(sample, language=None, wrap_lines=True)
        except Exception as err:
            report(err)
    if c2.button("Save as new version", type="primary", disabled=not editor or bool(no_save), key="save_version",
                 help=no_save):
        try:
            activate_it = make_active and not no_activate
            pv = prompt_registry.save_version(name=name, body=st.session_state[draft_key], author=editor, note=note,
                                              activate=activate_it)
            flash(f"Saved {name} v{pv.version} and made it active." if activate_it else
                  f"Saved {name} v{pv.version} as a draft version (not in use).")
            st.rerun()
        except Exception as err:
            report(err)
    if c3.button("Discard draft (reload what is in use)", key="discard_draft"):
        del st.session_state[draft_key]
        st.rerun()

with tab_versions:
    if not versions:
        st.info("No saved versions yet: the file default in prompts/templates/ is in use. Save a draft to create v1.")
    else:
        st.dataframe(
            [{"version": v.version, "active": "✅" if v.is_active else "", "author": v.author, "note": v.note,
              "created": v.created_at} for v in versions],
            hide_index=True, width="stretch",
        )
        options = [None] + [v.version for v in versions]
        in_use = next((v.version for v in versions if v.is_active), None)
        # starts at what is in use (a stray click changes nothing); keyed by it, so it follows every activation
        pick = st.selectbox("Make active", options, index=options.index(in_use), key=f"activate_pick_{name}_{in_use}",
                            format_func=lambda v: ("file default" if v is None else f"v{v}")
                            + (" (in use)" if v == in_use else ""))
        if st.button("Activate", disabled=not editor or pick == in_use or bool(no_activate), key="activate_btn",
                     help=no_activate or ("Pick another version above to switch to it." if pick == in_use else None)):
            try:
                prompt_registry.activate(name=name, version=pick, editor=editor)
                flash(f"{name}: {'file default' if pick is None else f'v{pick}'} is now in use.")
                st.rerun()
            except Exception as err:
                report(err)

    st.subheader("Compare")
    sources = {"file default": prompt_registry.file_default(name), "draft": st.session_state[draft_key]}
    sources |= {f"v{v.version}": v.body for v in versions}
    labels = list(sources)
    d1, d2 = st.columns(2)
    left = d1.selectbox("Left", labels, index=labels.index(f"v{versions[0].version}") if versions else 0, key="diff_l")
    right = d2.selectbox("Right", labels, index=labels.index("draft"), key="diff_r")
    if sources[left] == sources[right]:
        st.caption("The two sides are identical.")
    else:
        table = difflib.HtmlDiff(wrapcolumn=70).make_table(
            sources[left].splitlines(), sources[right].splitlines(), html.escape(left), html.escape(right),
        )
        st.html(
            # fixed layout + wrapping cells: long lines wrap inside the page instead of widening it
            "<style>table.diff{font-family:monospace;font-size:12px;border-collapse:collapse;width:100%;"
            "table-layout:fixed}table.diff td{overflow-wrap:anywhere;white-space:pre-wrap}"
            "table.diff td.diff_header,table.diff td.diff_next{width:2.5em}"
            "table.diff th.diff_next,table.diff colgroup{width:auto}"
            ".diff_add{background:#d4f8d4}.diff_chg{background:#fff3b0}.diff_sub{background:#ffd6d6}"
            "td,th{padding:1px 4px;vertical-align:top}</style>" + table.replace("&nbsp;", " ")
        )

with tab_try:
    cast = characters.list_characters()
    if not cast:
        st.info("Preview needs a character: create one or load the demo cast. Until then drafts render against the "
                "built-in sample character (use **Check draft**).")
    else:
        p1, p2 = st.columns(2)
        by_id = {c.id: c for c in cast}
        char_id = p1.selectbox("Character", list(by_id), format_func=lambda i: by_id[i].name, key="try_char")
        slots = {s.key: s for s in shot_list()}
        slot_key = p2.selectbox("Slot", list(slots), format_func=lambda k: slots[k].label, key="try_slot")
        try:
            rendered = ai_functions.preview_template(
                name=name, body=st.session_state[draft_key], character_id=char_id, slot_key=slot_key
            )
            st.code(rendered, language=None, wrap_lines=True)
        except Exception as err:
            report(err)
            rendered = None
        if name == "variation_prompt":
            if st.button("Try it: generate this slot with the draft", type="primary", disabled=not editor or not rendered,
                         key="try_btn"):
                with st.status("Generating…", expanded=True) as status:
                    bar = st.progress(0, text="starting")
                    try:
                        out = ai_functions.try_slot(
                            character_id=char_id, slot_key=slot_key, requested_by=editor,
                            override=st.session_state[draft_key],
                            progress=lambda phase, pct: bar.progress(pct, text=phase),
                        )
                        status.update(label="Done", state="complete")
                        st.session_state["last_try"] = {"path": out.value["path"], "cost": out.cost_usd,
                                                        "call": out.call_id, "model": out.model, "ms": out.duration_ms,
                                                        "provider": out.provider, "seed_used": out.value["seed_used"]}
                    except Exception as err:
                        status.update(label="Failed", state="error")
                        report(err)
            last = st.session_state.get("last_try")
            if last and media_path(last["path"]):
                st.image(media_path(last["path"]), width=384)
                cost = "unknown (model not in the pricing table)" if last["cost"] is None else f"${last['cost']:.4f}"
                st.caption(
                    f"AI call #{last['call']} · {last['provider']} / {last['model']} · {last['ms']} ms · cost {cost}"
                    + ("" if last["seed_used"] else " · OpenAI has no seed parameter: the seed is provenance only")
                )
        else:
            st.caption("“Try it” runs image slots; this template is used by the name and caption buttons on the "
                       "Characters page.")
