"""Review page parts: the decision form, the claimed review queue, the Adjudicate queue.

The queue a reviewer sees is the set of images core claimed for them (core/review_claims.py):
another reviewer never gets the same image while it is held, and with double review the card
shows nothing of the other votes. Buttons core would refuse are disabled, with the refusal as help.
"""
from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from core import generation, references, review
from core.text import escape_markdown as md
from core.vectors import drift
from pages._common import flash, media_path, report, why_not

QUEUE_LIST = 50  # queue entries listed under the current image


def refused(who: str | None, action: str) -> str | None:
    """Why `who` may not do `action` (None = allowed): the disabled button's help."""
    return why_not(who, action, nameless="Enter your name in the sidebar to review.")


def _shown_at(variation_id: int) -> datetime:
    """When this session first showed the image: the decision's time is measured from it."""
    shown = st.session_state.setdefault("rv_shown", {})
    return shown.setdefault(variation_id, datetime.now(timezone.utc))


def decision_form(v, *, who: str | None, key_prefix: str) -> None:
    codes = list(generation.REASON_CODES)
    reasons = st.multiselect("Reasons (for a rejection)", codes, default=v.reason_codes,
                             format_func=generation.REASON_CODES.get, key=f"{key_prefix}_reasons_{v.id}")
    note = st.text_input("Note", value=v.review_note, key=f"{key_prefix}_note_{v.id}")
    c1, c2, c3 = st.columns(3)
    why_not = refused(who, "review.decide")
    disabled = bool(why_not) or v.status != "completed"
    if c1.button("Approve", type="primary", disabled=disabled, key=f"{key_prefix}_approve_{v.id}", shortcut="A",
                 help=why_not):
        _decide(who, v.id, "approved", [], note)
    if c2.button("Reject", disabled=disabled, key=f"{key_prefix}_reject_{v.id}", shortcut="X", help=why_not):
        _decide(who, v.id, "rejected", reasons, note)
    regen_refused = refused(who, "generation.regenerate")
    if c3.button("Regenerate slot", disabled=bool(regen_refused), key=f"{key_prefix}_regen_{v.id}",
                 help=regen_refused or "A new attempt; this one's rejection reasons go into its prompt."):
        try:
            generation.regenerate(run_id=v.run_id, requested_by=who, slot_keys=[v.slot_key])
            flash(f"{v.slot_key}: new attempt queued.")
            st.rerun()
        except Exception as err:
            report(err)


def _decide(who: str, variation_id: int, decision: str, reasons: list[str], note: str) -> None:
    try:
        done = review.decide(variation_id=variation_id, decision=decision, reviewer=who, reason_codes=reasons,
                             note=note, shown_at=st.session_state.get("rv_shown", {}).get(variation_id))
        st.session_state["rv_last_decision"] = done
        if done.final == "unreviewed" and decision != "unreviewed":
            flash(f"Your vote ({decision}) on {md(done.label)} is in; it needs {review.votes_required()} "
                  "independent votes.")
        elif done.final == "disputed":
            flash(f"Voted {decision}: {md(done.label)} — the reviewers disagree; it goes to Adjudicate.")
        else:
            flash(f"Marked {decision}: {md(done.label)}.")
        st.rerun()
    except Exception as err:
        report(err)


def release_claims(who: str | None) -> None:
    """Give the queue back when the reviewer leaves it (others can take the images at once)."""
    if who and st.session_state.pop("rv_claimed", False):
        try:
            review.release(reviewer=who)
        except Exception as err:
            report(err)


def queue_view(*, who: str | None, filters: review.ReviewFilter, n_queue: int) -> None:
    if not n_queue:
        st.success("Queue empty: every completed image shown here has been reviewed.")
        return
    o1, o2 = st.columns([3, 1])
    order = o1.radio("Order", list(review.QUEUE_ORDERS), format_func=review.QUEUE_ORDERS.get, horizontal=True,
                     key="queue_order", on_change=lambda: st.session_state.update(queue_pos=0),
                     help="Identity drift = how far the image is from the character's references, as a "
                          "learned image model sees them.")
    off_only = o2.toggle("Only off-model", key="queue_off_model",
                         on_change=lambda: st.session_state.update(queue_pos=0),
                         help=f"Drift above {drift.off_model_threshold():.2f} (calibrated by bench/visual.py).")
    may_claim = who and not refused(who, "review.claim")
    if may_claim:  # the reviewer's own claimed images: nobody else gets them while they work
        ahead = review.claim_next(reviewer=who, filters=filters, order=order, off_model_only=off_only)
        st.session_state["rv_claimed"] = True
        total = review.available(reviewer=who, filters=filters, off_model_only=off_only)
    else:  # a viewer looks without taking anything
        total = review.queue_size(filters=filters, off_model_only=True) if off_only else n_queue
        ahead = review.queue_slice(filters=filters, order=order, offset=0, limit=QUEUE_LIST, off_model_only=off_only)
    if not total or not ahead:
        if may_claim and review.queue_size(filters=filters, off_model_only=off_only):
            st.info("Every image left is in another reviewer's queue (or has your vote already); held images "
                    "come back if they are not decided in time.")
        else:
            st.success("No unreviewed image is flagged off-model." if off_only else
                       "Queue empty: every completed image shown here has been reviewed.")
        return
    pos = max(0, min(st.session_state.get("queue_pos", 0), len(ahead) - 1))
    item = ahead[pos]
    v = review.get_variation(variation_id=item.variation_id)
    _shown_at(v.id)
    held = f" · {len(ahead)} held for you" if may_claim else ""
    st.caption(f"{pos + 1} of {total} · keys: **A** approve · **X** reject · **J** next · **K** previous{held}")
    q1, q2 = st.columns([2, 1])
    q1.markdown(f"**{md(item.label)}** · {review.drift_label(v.drift_score)}")
    if media_path(v.path):
        q1.image(media_path(v.path), caption=md(item.label), width="stretch")
    with q2:
        refs = references.list_references(character_id=v.character_id)
        if refs and media_path(refs[0].thumb_path):
            st.image(media_path(refs[0].thumb_path), caption="reference", width="stretch")
        decision_form(v, who=who, key_prefix="q")
        n1, n2 = st.columns(2)
        if n1.button("Previous", key="q_prev", shortcut="K", disabled=pos == 0):
            st.session_state["queue_pos"] = pos - 1
            st.rerun()
        if n2.button("Next", key="q_next", shortcut="J", disabled=pos >= len(ahead) - 1):
            st.session_state["queue_pos"] = pos + 1
            st.rerun()
    with st.expander(f"Coming up ({len(ahead)} of {total})"):
        st.dataframe([{"#": i + 1, "character": it.character_name, "slot": it.slot_key,
                       "attempt": it.attempt, "drift": it.drift_score, "off-model": drift.is_off_model(it.drift_score)}
                      for i, it in enumerate(ahead)],
                     hide_index=True, width="stretch")


def adjudicate_view(*, who: str | None) -> None:
    """Disputed images with every reviewer's vote; an editor settles each one."""
    items = review.disputed()
    if not items:
        st.success("Nothing to adjudicate: no image is disputed.")
        return
    why_not = refused(who, "review.adjudicate")
    if why_not:
        st.caption(md(why_not))
    for d in items:
        v = review.get_variation(variation_id=d.item.variation_id)
        with st.container(border=True):
            a1, a2 = st.columns([1, 2])
            if media_path(v.thumb_path):
                a1.image(media_path(v.thumb_path), width="stretch")
            a2.markdown(f"**{md(d.item.label)}**")
            for reviewer, decision, codes, note in d.votes:
                a2.caption(f"{md(reviewer)}: **{decision}**" + (f" · {', '.join(codes)}" if codes else "")
                           + (f" · {md(note)}" if note else ""))
            reasons = a2.multiselect("Reasons (for a rejection)", list(generation.REASON_CODES),
                                     default=list(v.reason_codes), format_func=generation.REASON_CODES.get,
                                     key=f"adj_reasons_{v.id}")
            b1, b2 = a2.columns(2)
            for col, decision, label in ((b1, "approved", "Approve"), (b2, "rejected", "Reject")):
                if col.button(label, key=f"adj_{decision}_{v.id}", disabled=bool(why_not), help=why_not):
                    try:
                        done = review.adjudicate(variation_id=v.id, decision=decision, editor=who,
                                                 reason_codes=reasons if decision == "rejected" else [])
                        st.session_state["rv_last_decision"] = done
                        flash(f"Settled {decision}: {md(done.label)}.")
                        st.rerun()
                    except Exception as err:
                        report(err)
