"""Experiments: panels, running template versions against each other, blind compare, results, promote."""
import secrets

import streamlit as st

from core import characters, experiment_results, experiments, styles, tags
from core.ai import prompt_registry
from core.experiments import ArmSpec
from core.generation import REASON_CODES
from core.shots import shot_list
from pages._common import flash, media_path, report, show_flashes, sidebar, why_not

editor = sidebar()
st.title("🧪 Experiments")
st.caption("Is version B better than version A on the same characters, in images and dollars?")
show_flashes()


def _why_not(action: str) -> str | None:
    return why_not(editor, action)


SLOTS = {s.key: s.label for s in shot_list()}
panels = experiments.list_panels()
exps = experiments.list_experiments()
sections = ["Compare", "Results", "New experiment", "Panels"]
if "ex_section" not in st.session_state or "ex_goto" in st.session_state:  # set before the widget exists
    st.session_state["ex_section"] = st.session_state.pop("ex_goto", None) or (
        "Compare" if exps else ("New experiment" if panels else "Panels"))
section = st.segmented_control("Section", sections, key="ex_section", label_visibility="collapsed") or "Compare"


def _panel_form() -> None:
    with st.container(border=True):
        st.subheader("New panel")
        name = st.text_input("Panel name", key="pn_name", placeholder="e.g. demo cast × portraits")
        how = st.radio("Characters", ["Pick characters", "Style / tag filter"], horizontal=True, key="pn_how")
        if how == "Pick characters":
            cast = characters.list_characters()
            chosen = st.multiselect("Characters", [c.id for c in cast], key="pn_chars",
                                    format_func={c.id: c.name for c in cast}.get)
        else:
            style_list = styles.list_styles()
            c1, c2 = st.columns(2)
            style_id = c1.selectbox("Style", [None] + [s.id for s in style_list], key="pn_style",
                                    format_func=lambda i: "any style" if i is None else
                                    next(s.name for s in style_list if s.id == i))
            tag = c2.selectbox("Tag", [None] + [t.name for t in tags.list_tags()], key="pn_tag",
                               format_func=lambda t: "any tag" if t is None else t)
        slots = st.multiselect("Slots (none = all ten)", list(SLOTS), key="pn_slots", format_func=SLOTS.get)
        why = _why_not("panel.create")
        if st.button("Create panel", type="primary", disabled=not editor or bool(why), key="pn_create", help=why):
            try:
                if how == "Pick characters":
                    p = experiments.create_panel(name=name, character_ids=chosen, slot_keys=slots, editor=editor)
                else:
                    p = experiments.panel_from_filter(name=name, style_id=style_id, tag=tag, slot_keys=slots,
                                                      editor=editor)
                flash(f"Panel '{p.name}' saved: {len(p.character_ids)} characters × "
                      f"{len(experiments.panel_slots(p))} slots.")
                st.rerun()
            except Exception as err:
                report(err)


def _new_experiment() -> None:
    if not panels:
        st.info("Make a panel first (Panels): the fixed set of characters and slots the versions are compared on.")
        return
    by_id = {p.id: p for p in panels}
    panel_id = st.selectbox("Panel", list(by_id), key="nx_panel", format_func=lambda i: by_id[i].name)
    tname = experiments.TEMPLATE
    saved = prompt_registry.list_versions(name=tname)
    options = ["active", "file"] + [f"v{v.version}" for v in saved]
    labels = {"active": "the active version", "file": "file default"}
    picked = st.multiselect("Versions", options, default=["active"], key="nx_versions",
                            format_func=lambda o: labels.get(o, o))
    use_draft = st.checkbox("Add a draft", value=True, key="nx_use_draft")
    if use_draft:
        if "nx_draft" not in st.session_state:  # the Prompts page's unsaved draft, else the text in use
            st.session_state["nx_draft"] = st.session_state.get(f"draft_{tname}") or prompt_registry.resolve(tname).body
        st.text_area("Draft body", key="nx_draft", height=200)
    specs = [ArmSpec("version", version=int(o[1:])) if o.startswith("v") else ArmSpec(o) for o in picked]
    if use_draft:
        specs.append(ArmSpec("draft", body=st.session_state["nx_draft"]))
    p = by_id[panel_id]
    n = len(p.character_ids) * len(experiments.panel_slots(p)) * len(specs)
    name = st.text_input("Experiment name (optional)", key="nx_name")
    st.caption(f"{len(p.character_ids)} characters × {len(experiments.panel_slots(p))} slots × {len(specs)} versions "
               f"= **{n} images**, queued on the normal generation queue. Seeds are equal across versions.")
    why = _why_not("experiment.create")
    if st.button("Start experiment", type="primary", disabled=not editor or bool(why), key="nx_start", help=why):
        try:
            exp = experiments.create_experiment(panel_id=panel_id, specs=specs, editor=editor, name=name)
            st.session_state["ex_pick"] = exp.id
            st.session_state["ex_goto"] = "Compare"
            flash(f"Experiment #{exp.id} queued: {n} images.")
            st.rerun()
        except Exception as err:
            report(err)


@st.fragment(run_every=2)
def _progress(exp_id: int) -> None:
    pr = experiments.progress(experiment_id=exp_id)
    if pr.active:
        st.progress(pr.done / max(pr.total, 1), text=f"{pr.done} of {pr.total} images done · "
                    + " · ".join(f"{k} {v}" for k, v in sorted(pr.counts.items())))
        why = _why_not("experiment.cancel")
        if st.button("Cancel pending", key="ex_cancel", disabled=not editor or bool(why), help=why):
            try:
                n = experiments.cancel(experiment_id=exp_id, editor=editor)
                flash(f"Cancelled {n} pending image(s).", "info")
                st.rerun()
            except Exception as err:
                report(err)
    elif st.session_state.get("ex_was_active") == exp_id:
        st.session_state["ex_was_active"] = None
        st.rerun()  # the last image landed: redraw the compare rows once
    bad = pr.counts.get("failed", 0) + pr.counts.get("cancelled", 0)
    if pr.active:
        st.session_state["ex_was_active"] = exp_id
    if bad and not pr.active:
        st.warning(f"{bad} image(s) failed or were cancelled.")
        why = _why_not("experiment.rerun")
        if st.button(f"Re-run the {bad} failed", key="ex_rerun", disabled=not editor or bool(why), help=why):
            try:
                experiments.rerun_failed(experiment_id=exp_id, editor=editor)
                st.rerun()
            except Exception as err:
                report(err)


def _pick(exp_id: int, row, outcome: str, arm: int | None) -> None:
    try:
        experiment_results.record_pick(
            experiment_id=exp_id, character_id=row.character_id, slot_key=row.slot_key, outcome=outcome,
            winner_arm=arm, reason_codes=st.session_state.get("cx_reasons", []), picked_by=editor or "")
        st.session_state["cx_clear"] = True
        st.session_state["cx_pos"] = st.session_state.get("cx_pos", 0) + 1
        st.rerun()
    except Exception as err:
        report(err)


def _compare(exp) -> None:
    no_pick = _why_not("experiment.pick")
    if no_pick:
        st.caption(no_pick)
    blind = st.toggle("Blind mode (hide and shuffle versions per row)", value=True, key="cx_blind")
    salt = st.session_state.setdefault("ex_salt", secrets.token_hex(4))
    rows = experiment_results.compare_rows(experiment_id=exp.id, blind=blind, salt=salt)
    with st.expander("Prompt diff between the versions"):
        st.code(experiment_results.prompt_diff(experiment_id=exp.id), language="diff")
    picked = sum(1 for r in rows if r.pick)
    st.caption(f"{picked} of {len(rows)} rows judged. Keys: **1**/**2**/… pick that image, **T** tie, "
               "**B** both bad, **J**/**K** next / previous row.")
    if not rows:
        return
    pos = st.session_state.get("cx_pos")
    if pos is None:  # a newly opened experiment starts at its first unjudged row
        pos = next((i for i, r in enumerate(rows) if not r.pick), 0)
    pos %= len(rows)
    st.session_state["cx_pos"] = pos
    row = rows[pos]
    st.markdown(f"**Row {pos + 1} of {len(rows)} · {row.character_name} · {SLOTS.get(row.slot_key, row.slot_key)}**"
                + (f" — judged: {row.pick.outcome.replace('_', ' ')}" if row.pick else ""))
    cols = st.columns(len(row.columns))
    for i, (col, c) in enumerate(zip(cols, row.columns)):
        with col.container(border=True):
            st.markdown(f"**{c.label}**")
            if media_path(c.cell.path):
                st.image(media_path(c.cell.path), width="stretch")
            else:
                st.caption(f"{c.cell.status}" + (f": {c.cell.error}" if c.cell.error else ""))
            with st.popover("Prompt" + (" (reveals the version)" if blind else "")):
                st.code(c.cell.rendered_prompt or "(not built yet)", language=None, wrap_lines=True)
            no_promote = _why_not("experiment.promote")
            if not blind and st.button(f"Add to {row.character_name}'s variations", key=f"cx_promote_{i}",
                                       disabled=not editor or c.cell.status != "completed" or bool(no_promote),
                                       help=no_promote or "Copies this image into the character's variations, "
                                       "for review"):
                try:
                    experiment_results.promote_image(cell_id=c.cell.id, editor=editor)
                    flash(f"Added to {row.character_name}'s variations ({row.slot_key}); review it on Review.")
                    st.rerun()
                except Exception as err:
                    report(err)
            if st.button(f"{c.label} is better", key=f"cx_win_{i}", disabled=not (editor and row.ready) or bool(no_pick),
                         shortcut=str(i + 1), type="primary", help=no_pick):
                _pick(exp.id, row, "win", c.arm)
    if st.session_state.pop("cx_clear", False):
        st.session_state["cx_reasons"] = []
    st.multiselect("What was wrong with the other image(s)", list(REASON_CODES), key="cx_reasons",
                   format_func=REASON_CODES.get)
    b1, b2, b3, b4 = st.columns(4)
    if b1.button("Tie", key="cx_tie", shortcut="T", disabled=not (editor and row.ready) or bool(no_pick), help=no_pick):
        _pick(exp.id, row, "tie", None)
    if b2.button("Both bad", key="cx_bad", shortcut="B", disabled=not (editor and row.ready) or bool(no_pick),
                 help=no_pick):
        _pick(exp.id, row, "both_bad", None)
    if b3.button("Previous row", key="cx_prev", shortcut="K"):
        st.session_state["cx_pos"] = pos - 1
        st.rerun()
    if b4.button("Next row", key="cx_next", shortcut="J"):
        st.session_state["cx_pos"] = pos + 1
        st.rerun()


def _results(exp) -> None:
    res = experiment_results.results(experiment_id=exp.id)
    (st.success if res.judged else st.info)(res.verdict)
    st.dataframe([{
        "version": r.label, "images": r.images, "failed": r.failed, "wins": r.wins, "ties": r.ties,
        "both bad": r.both_bad, "win rate": r.win_rate, "95 % CI": f"{r.win_ci[0]:.0%}–{r.win_ci[1]:.0%}",
        "approval rate": r.approval_rate, "cost (USD)": float(r.cost_usd),
        "per image": float(r.cost_per_image) if r.cost_per_image is not None else None,
        "per approved": float(r.cost_per_approved) if r.cost_per_approved is not None else None,
        "per win": float(r.cost_per_win) if r.cost_per_win is not None else None,
        "median ms": r.median_latency_ms, "mean drift": r.mean_drift, "reasons": ", ".join(f"{REASON_CODES.get(k, k)} {v}"
                                                               for k, v in r.reasons.most_common()),
    } for r in res.arms], hide_index=True, width="stretch", column_config={
        "win rate": st.column_config.NumberColumn(format="percent"),
        "approval rate": st.column_config.NumberColumn(format="percent"),
        **{k: st.column_config.NumberColumn(format="$%.4f") for k in ("cost (USD)", "per image", "per approved",
                                                                      "per win")}})
    st.caption("Approved = the row's winner, or both images of a tie. Win rate and CI are over judged rows.")
    if exp.promoted_arm is not None:
        st.info(f"Promoted {exp.arms[exp.promoted_arm]['label']} by {exp.promoted_by} on {exp.promoted_at:%Y-%m-%d}.")
    cols = st.columns(len(res.arms) + 1)
    best = max(res.arms, key=lambda r: r.wins)
    no_promote = _why_not("experiment.promote") or _why_not("prompt.activate")  # it changes what is live
    for col, r in zip(cols, res.arms):
        if col.button(f"Activate {r.label}", key=f"rs_promote_{r.arm}", disabled=not editor or bool(no_promote),
                      help=no_promote,
                      type="primary" if r is best and r.wins else "secondary"):
            try:
                v = experiment_results.promote(experiment_id=exp.id, arm=r.arm, editor=editor)
                flash(f"{exp.template_name}: {'v' + str(v) if v else 'file default'} is now active "
                      f"(noted: experiment #{exp.id}).")
                st.rerun()
            except Exception as err:
                report(err)
    if cols[-1].button("Prepare export zip", key="rs_export"):
        st.session_state["rs_zip"] = (exp.id, *experiment_results.export_zip(experiment_id=exp.id))
    if st.session_state.get("rs_zip", (None,))[0] == exp.id:
        _, data, n = st.session_state["rs_zip"]
        st.download_button(f"⬇️ Download ({n} images + manifest + results)", data=data,
                           file_name=f"experiment-{exp.id}.zip", mime="application/zip", key="rs_dl")


if section == "Panels":
    if panels:
        st.dataframe([{"panel": p.name, "characters": len(p.character_ids),
                       "slots": ", ".join(p.slot_keys) or "all ten", "from": p.source, "by": p.created_by,
                       "created": p.created_at} for p in panels], hide_index=True, width="stretch")
    _panel_form()
elif section == "New experiment":
    _new_experiment()
elif not exps:
    st.info("No experiments yet. Start one under **New experiment**.")
else:
    by_id = {e.id: e for e in exps}
    if st.session_state.get("ex_pick") not in by_id:
        st.session_state["ex_pick"] = exps[0].id
    exp_id = st.selectbox("Experiment", list(by_id), key="ex_pick", format_func=lambda i: f"#{i} {by_id[i].name}",
                          on_change=lambda: st.session_state.update(cx_pos=None))
    _progress(exp_id)
    (_compare if section == "Compare" else _results)(by_id[exp_id])
