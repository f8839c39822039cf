"""The Variations tab of a character: generate, follow the newest run live, retry, cancel.

Not a page (the leading underscore): pages/characters.py draws it inside its tab.
"""
import streamlit as st

from core import generation
from core.ai.prompt_text import clip_words
from core.shots import shot_list
from core.text import escape_markdown as md
from pages._common import flash, media_path, report, why_not

RUN_WATCH_S = 5  # how often an idle Variations tab looks for a run started elsewhere
SLOT_CARD_PX = 160  # a slot card: wide enough for the longest word of a slot label
STATUS_ICON = {"pending": "⏳", "generating": "🔄", "completed": "✅", "failed": "❌", "cancelled": "⛔"}
REVIEW_ICON = {"approved": "👍", "rejected": "👎", "unreviewed": ""}
SLOT_LABELS = {s.key: s.label for s in shot_list()}


def variations_section(ch, *, editor: str | None, visible: bool) -> None:
    runs = generation.runs_for_character(character_id=ch.id)
    active = next((r for r in runs if r.status in generation.RUN_ACTIVE), None)
    c1, c2 = st.columns([2, 3])  # the button's label fits at 1024 px
    refused = why_not(editor, "generation.request")
    slot = c1.empty()
    if active is not None:
        slot.button(f"⏳ Run #{active.id} {'queued' if active.status == 'queued' else 'generating'}…", disabled=True,
                    key=f"generate_busy_{ch.id}", help="One run at a time per character.")
    elif slot.button("🎬 Generate variations", type="primary", disabled=not editor or ch.archived or bool(refused),
                     key=f"generate_{ch.id}",
                     help=refused or "Ten slots from the shot list, generated in the background."):
        # drawn before the slow part (ten jobs are deferred): the editor sees the click land at once
        slot.button("⏳ Queuing…", disabled=True, key=f"generate_queuing_{ch.id}")
        try:
            req = generation.request_run(character_id=ch.id, requested_by=editor)
            flash(f"Run #{req.run_id} queued: ten slots are generating in the background." if req.created
                  else f"Run #{req.run_id} is already in progress.")
            st.rerun()
        except Exception as err:
            report(err)
    if active is not None:
        c2.caption("A run is in progress; you can keep working elsewhere, this view refreshes by itself.")
    if not runs:
        if visible:
            _watch_for_first_run(ch.id)
        st.info("No variations yet. **Generate variations** makes the ten-slot shot list for this character "
                "(offline sketches without an API key).")
        return
    by_id = {r.id: r for r in runs}
    run_id = st.selectbox(
        # keyed by the newest run: a new run (this editor's or anyone's) is selected as soon as it exists,
        # while an older run the editor picked stays picked until then. No status in the label: a keyed
        # selectbox keeps its first labels, the panel below says the status.
        "Run", list(by_id), key=f"run_pick_{ch.id}_{runs[0].id}",
        format_func=lambda i: f"Run #{i} · {by_id[i].created_at:%Y-%m-%d %H:%M} · by {md(by_id[i].requested_by)}",
    )
    run_panel(run_id, editor=editor, live=by_id[run_id].status in generation.RUN_ACTIVE, archived=ch.archived,
              watch=(ch.id, runs[0].id) if visible else None)


def _newest_run_id(character_id: int) -> int | None:
    runs = generation.runs_for_character(character_id=character_id, limit=1)
    return runs[0].id if runs else None


def _watch_for_first_run(character_id: int) -> None:
    """No runs yet: notice the first one, whoever starts it (another editor, "Generate for all")."""

    @st.fragment(run_every=RUN_WATCH_S)
    def _watch() -> None:
        if _newest_run_id(character_id) is not None:
            st.rerun()

    _watch()


def run_panel(run_id: int, *, editor: str | None, live: bool, archived: bool, watch: tuple[int, int] | None) -> None:
    """Live while the run is active: the fragment re-reads the run every 2 s without rerunning the page.
    With `watch` (character, newest run id; the tab is open) it also polls slowly while idle, and reruns the
    page when a newer run appears, so a run someone else starts is selected and shown.
    One fragment does both: a second auto-refreshing fragment on the page stopped this one's refresh."""

    @st.fragment(run_every=2 if live else RUN_WATCH_S if watch else None)
    def _panel() -> None:
        if watch is not None and _newest_run_id(watch[0]) != watch[1]:
            st.rerun()
        status = generation.run_status(run_id=run_id)
        done = sum(status.counts.get(k, 0) for k in ("completed", "failed", "cancelled"))
        st.progress(done / max(1, len(status.slots)),
                    text=f"{status.status}: " + ", ".join(f"{n} {k}" for k, n in sorted(status.counts.items()))
                    + f" · cost ${status.cost_usd:.4f}")
        grid = st.container(horizontal=True)  # fixed-width cards that wrap: labels stay whole at any width
        for v in status.slots:
            with grid.container(border=True, width=SLOT_CARD_PX):
                path = media_path(v.thumb_path)
                if path:
                    st.image(path, width="stretch")
                # the slot's label ("Portrait, front") wraps between words; its key would break mid-word
                st.caption(f"{STATUS_ICON.get(v.status, '')} **{SLOT_LABELS.get(v.slot_key, v.slot_key)}** "
                           f"{REVIEW_ICON.get(v.review_status, '')}"
                           + (f" · attempt {v.attempt}" if v.attempt > 1 else ""))
                if v.status == "failed" and v.error:
                    st.caption(f":red[{md(clip_words(v.error, 160))}]")
        b1, b2, b3 = st.columns(3)
        if status.active:
            refused = why_not(editor, "generation.cancel")
            if b1.button("Cancel run", key=f"cancel_{run_id}", disabled=not editor or bool(refused), help=refused):
                try:
                    n = generation.cancel_run(run_id=run_id, requested_by=editor)
                    flash(f"Run #{run_id} cancelled ({n} pending slot(s) stopped).")
                    st.rerun()
                except Exception as err:
                    report(err)
        elif status.status != "completed" or status.counts.get("failed"):
            refused = why_not(editor, "generation.regenerate")
            if b1.button("Retry failed slots", key=f"retry_{run_id}", disabled=not editor or archived or bool(refused),
                         help=refused):
                try:
                    n = len(generation.regenerate(run_id=run_id, requested_by=editor, failed_only=True))
                    flash(f"{n} slot(s) queued again.")
                    st.rerun()
                except Exception as err:
                    report(err)
        if not status.active:
            st.page_link("pages/review.py", label="Review these images →", icon="🔍")
        if live and not status.active:
            st.rerun()  # the run just finished: refresh the page so buttons and run list update

    _panel()
