"""Characters: browse and search the cast, create, edit, archive, manage reference images."""
import logging

import streamlit as st

from core import characters, generation, references, review, styles
from core.ai import ai_functions
from core.vectors import embedding_spaces, similarity
from core.text import escape_markdown as md
from pages._common import demo_cast_button, flash, media_path, report, show_flashes, sidebar, why_not
from pages._history import history_section
from pages._references import flash_upload_error, reference_section
from pages._variations import variations_section

log = logging.getLogger(__name__)

PAGE_SIZE = 24
COLUMNS = 4
CARDS_LIVE_S = 3  # how often the cast cards refresh while one of them is generating

editor = sidebar()
show_flashes()


def _why_not(action: str) -> str | None:
    return why_not(editor, action)

style_list = styles.list_styles()
style_names = {s.id: s.name for s in style_list}


def _style_select(label: str, current: int | None, key: str) -> int | None:
    options = [None] + list(style_names)
    return st.selectbox(
        label, options, index=options.index(current) if current in options else 0, key=key,
        format_func=lambda sid: "— no style —" if sid is None else style_names[sid],
    )


def _open(character_id: int | None) -> None:
    if character_id is None:
        st.query_params.pop("character", None)
    else:
        st.query_params["character"] = str(character_id)


def _loaded_version(ch) -> int:
    """The version this browser session's form was loaded at: stale forms are detected on save."""
    key = f"loaded_version_{ch.id}"
    if key not in st.session_state:
        st.session_state[key] = ch.version
    return st.session_state[key]


def _reload(character_id: int) -> None:
    st.session_state.pop(f"loaded_version_{character_id}", None)


# ---------------------------------------------------------------- detail view
def detail_view(character_id: int) -> None:
    try:
        ch = characters.get_character(character_id=character_id)
    except Exception as err:
        report(err)
        if st.button("← Back to the cast"):
            _open(None)
            st.rerun()
        return
    version = _loaded_version(ch)
    top = st.columns([1, 5, 2], vertical_alignment="center")  # room for "← Back" at 1024 px
    avatar = media_path(review.avatar_paths([ch.id]).get(ch.id))
    if avatar:
        top[0].image(avatar, width=96)
    else:
        top[0].caption("no image")
    top[1].title(f"{md(ch.name)}{' (archived)' if ch.archived else ''}")
    if top[2].button("← Back", key="back"):
        _open(None)
        st.rerun()
    st.caption(
        f"slug `{ch.slug}` · created by {md(ch.created_by or '—')} {ch.created_at:%Y-%m-%d %H:%M} · "
        f"updated by {md(ch.updated_by or '—')} {ch.updated_at:%Y-%m-%d %H:%M} · version {ch.version}"
    )
    if ch.version != version:
        st.warning(
            f"Someone saved this character after you opened it (now version {ch.version}, your form has "
            f"{version}). Saving will be refused until you reload."
        )
        if st.button("Reload latest", key="reload_latest"):
            _reload(ch.id)
            st.rerun()

    tab_details, tab_refs, tab_vars, tab_hist = st.tabs(["Details", "Reference images", "Variations", "History"],
                                                        key=f"char_tabs_{ch.id}", on_change="rerun")
    no_edit, no_archive, no_ai = _why_not("character.update"), _why_not("character.archive"), _why_not("ai.call")
    with tab_details:
        name_key = f"edit_name_{ch.id}_{version}"
        st.session_state.setdefault(name_key, ch.name)
        _name_suggestions(name_key)
        with st.form(f"edit_{ch.id}_{version}"):
            name = st.text_input("Name", max_chars=characters.NAME_MAX, key=name_key)
            description = st.text_area("Description", value=ch.description)
            traits = st.text_area("Traits (comma or newline separated)", value=", ".join(ch.traits))
            style_id = _style_select("Style", ch.style_id, key=f"edit_style_{ch.id}_{version}")
            base_seed = st.number_input(
                "Base seed", min_value=0, max_value=characters.SEED_MAX, value=int(ch.base_seed), step=1,
                help="Variation seeds are base seed + slot offset (1..10).",
            )
            notes = st.text_area("Notes", value=ch.notes)
            saved = st.form_submit_button("Save changes", type="primary", disabled=not editor or ch.archived
                                          or bool(no_edit), help=no_edit)
        if saved:
            try:
                updated = characters.update_character(
                    character_id=ch.id, expected_version=version, editor=editor,
                    data=characters.CharacterInput(
                        name=name, description=description, traits=characters.parse_traits(traits),
                        style_id=style_id, base_seed=int(base_seed), notes=notes,
                    ),
                )
                st.session_state[f"loaded_version_{ch.id}"] = updated.version
                flash(f"Saved '{md(updated.name)}' (version {updated.version}).")
                _warn_if_look_alike(updated.id)
                st.rerun()
            except Exception as err:
                report(err)
        b1, b2 = st.columns([1, 4])
        if b2.button("✨ Suggest names", key=f"suggest_{ch.id}", disabled=not editor or ch.archived or bool(no_ai),
                     help=no_ai or "From the saved description, traits and style."):
            _suggest_names(description=ch.description, traits=ch.traits, style_id=ch.style_id, target_key=name_key)
            st.rerun()
        label = "Restore" if ch.archived else "Archive"
        if b1.button(label, key=f"archive_{ch.id}", disabled=not editor or bool(no_archive), help=no_archive):
            try:
                updated = characters.set_archived(
                    character_id=ch.id, expected_version=version, archived=not ch.archived, editor=editor
                )
                st.session_state[f"loaded_version_{ch.id}"] = updated.version
                flash(f"'{md(ch.name)}' {'restored' if ch.archived else 'archived'}.")
                st.rerun()
            except Exception as err:
                report(err)
        if ch.archived:
            st.caption("Archived characters are read-only; restore to edit.")

    with tab_refs:
        reference_section(ch, editor=editor)

    with tab_vars:
        variations_section(ch, editor=editor, visible=bool(tab_vars.open))

    with tab_hist:
        history_section(ch)


# ---------------------------------------------------------------- list view
def _warn_if_look_alike(character_id: int) -> None:
    """The distinctness guard: saved anyway, but the editor hears about a near-twin right away.
    A save never waits for the model to load: right after a server start the check is skipped."""
    if not embedding_spaces.text_embedder_ready():
        flash("The look-alike check was skipped: the embedding model is still loading. "
              "Search → Similar characters shows this character's closest neighbours.", "info")
        return
    try:
        with st.spinner("Checking the cast for look-alikes…"):
            twin = similarity.look_alike(character_id=character_id)
    except Exception as err:  # the save succeeded; a failed check must not hide that
        log.warning("look-alike check for character %s failed: %s", character_id, err)
        return
    if twin:
        flash(f"⚠️ Very close to **{md(twin.name)}** (similarity {twin.similarity:.2f}): editors and the image model "
              "may confuse them. Consider making the description, traits or style more distinct.", "warning")


def _suggest_names(*, description: str, traits: list[str], style_id: int | None, target_key: str) -> None:
    """Ask the AI path for names; show them as buttons that fill the name field."""
    try:
        with st.spinner("Asking for names…"):
            out = ai_functions.suggest_names(description=description, traits=traits, style_id=style_id,
                                             requested_by=editor)
        st.session_state[f"{target_key}_suggestions"] = out.value
    except Exception as err:
        report(err)


def _name_suggestions(target_key: str) -> None:
    names = st.session_state.get(f"{target_key}_suggestions")
    if not names:
        return
    st.caption("Suggestions: click one to use it.")
    cols = st.columns(len(names))
    for col, n in zip(cols, names):
        col.button(md(n), key=f"{target_key}_use_{n}", on_click=lambda n=n: st.session_state.update({target_key: n}))


def create_form(*, expanded: bool) -> None:
    nonce = st.session_state.setdefault("new_nonce", 0)
    with st.expander("➕ New character", expanded=expanded):
        st.text_input("Name", max_chars=characters.NAME_MAX, key="new_name")
        _name_suggestions("new_name")
        description = st.text_area("Description", key="new_description")
        traits = st.text_input("Traits (comma separated)", key="new_traits", placeholder="brave, red scarf, left-handed")
        style_id = _style_select("Style", None, key="new_style")
        notes = st.text_area("Notes", key="new_notes")
        files = st.file_uploader(
            "Reference images (optional)", type=["png", "jpg", "jpeg", "webp"], accept_multiple_files=True,
            key=f"new_files_{nonce}",
        )
        b1, b2 = st.columns([1, 1])
        no_create, no_ai = _why_not("character.create"), _why_not("ai.call")
        if b2.button("✨ Suggest names", key="suggest_new", disabled=not editor or bool(no_ai),
                     help=no_ai or "From the description, traits and style (offline: a seeded name generator)."):
            _suggest_names(description=description, traits=characters.parse_traits(traits), style_id=style_id,
                           target_key="new_name")
            st.rerun()
        created = b1.button("Create character", type="primary", disabled=not editor or bool(no_create),
                            key="create_character", help=no_create)
        if not editor:
            st.caption("Enter your name in the sidebar to create characters.")
        if created:
            try:
                ch = characters.create_character(
                    editor=editor,
                    data=characters.CharacterInput(
                        name=st.session_state.get("new_name", ""), description=description,
                        traits=characters.parse_traits(traits), style_id=style_id, notes=notes,
                    ),
                )
            except Exception as err:
                report(err)
                return
            problems = 0
            for f in files or []:
                try:
                    references.add_reference_upload(
                        character_id=ch.id, data=f.getvalue(), filename=f.name, claimed_mime=f.type, editor=editor
                    )
                except Exception as err:  # noqa: BLE001 - the character itself was created; shown after the rerun
                    problems += 1
                    flash_upload_error(err, ch.id)
            flash(f"Created '{md(ch.name)}'" + (f" ({problems} image(s) rejected, see above)." if problems else "."))
            _warn_if_look_alike(ch.id)
            for k in ("new_name", "new_description", "new_traits", "new_notes", "new_name_suggestions"):
                st.session_state.pop(k, None)
            st.session_state["new_nonce"] = nonce + 1
            _open(ch.id)
            st.rerun()


def list_view() -> None:
    st.title("🧑‍🎨 Characters")
    empty = characters.count_characters() == 0
    if empty:
        with st.container(border=True):
            st.write("**No characters yet.** Create one below, or load the demo cast (twelve characters, four styles).")
            demo_cast_button(editor, key="demo_chars")
    create_form(expanded=empty)

    f1, f2, f3 = st.columns([3, 2, 1.4])
    search = f1.text_input("Search by name or trait", key="char_search", placeholder="e.g. mage, silver hair")
    style_filter = f2.selectbox(
        "Style", [None] + list(style_names), key="char_style_filter",
        format_func=lambda sid: "All styles" if sid is None else style_names[sid],
    )
    show = f3.selectbox("Show", ["Active", "Archived", "All"], key="char_show")
    archived = {"Active": False, "Archived": True, "All": None}[show]
    rows = characters.list_characters(search=search, style_id=style_filter, archived=archived)
    if not rows:
        if search or style_filter is not None or archived is not False:
            st.info("No characters match these filters. Clear the search or choose another style.")
        return
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = 1
    if pages > 1:
        page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, key="char_page")
    g1, g2 = st.columns([3, 2])
    g1.caption(f"{len(rows)} character(s)")
    no_generate = _why_not("generation.request")
    if g2.button(f"🎬 Generate for all {len(rows)} shown", key="generate_shown", disabled=not editor or bool(no_generate),
                 help=no_generate or "Queues a ten-slot run for every active character in this list."):
        try:
            results = generation.request_runs(character_ids=[r.id for r in rows if not r.archived],
                                              requested_by=editor)
        except Exception as err:
            report(err)
            return
        created = sum(1 for r in results if isinstance(r, generation.RunRequest) and r.created)
        refused = [str(r) for r in results if isinstance(r, Exception)]
        flash(f"{created} run(s) queued; {len(results) - created - len(refused)} already in progress."
              + (f" Refused: {md('; '.join(refused))}" if refused else ""))
        st.rerun()
    if g1.button(f"🧪 Experiment panel of these {len(rows)}", key="panel_shown", help="A prompt-experiment test bed"):
        st.session_state.update(pn_chars=[r.id for r in rows if not r.archived], pn_how="Pick characters",
                                ex_goto="Panels")
        st.switch_page("pages/experiments.py")
    chunk = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    ids = [r.id for r in chunk]
    summary = review.generation_summary(ids)
    cast_cards(chunk, summary, live=any(gs.get("active_run") for gs in summary.values()))


def _progress_line(gs: dict[str, int]) -> str:
    return (("🔄 generating · " if gs.get("active_run") else "") + f"{gs.get('completed', 0)}/10 done · "
            f"{gs.get('approved', 0)} approved" + (f" · {gs['failed']} failed" if gs.get("failed") else ""))


def cast_cards(chunk: list, first_summary: dict[int, dict[str, int]], *, live: bool) -> None:
    """The card grid; while any shown character is generating it re-reads the progress lines by itself."""
    first = {"summary": first_summary}

    @st.fragment(run_every=CARDS_LIVE_S if live else None)
    def _grid() -> None:
        summary = first.pop("summary", None) or review.generation_summary([r.id for r in chunk])
        avatars = review.avatar_paths([r.id for r in chunk])
        for start in range(0, len(chunk), COLUMNS):
            cols = st.columns(COLUMNS)
            for col, row in zip(cols, chunk[start:start + COLUMNS]):
                with col.container(border=True):
                    thumb = media_path(avatars.get(row.id))
                    if thumb:
                        st.image(thumb, width="stretch")
                    else:
                        st.caption("🖼️ no reference image yet")
                    st.markdown(f"**{md(row.name)}**" + (" · _archived_" if row.archived else ""))
                    st.caption(f"{md(row.style_name or 'no style')} · {md(', '.join(row.traits[:4]) or 'no traits')}")
                    if summary.get(row.id):
                        st.caption(_progress_line(summary[row.id]))
                    if st.button("Open", key=f"open_{row.id}", width="stretch"):
                        _open(row.id)
                        st.rerun()
        if live and not any(gs.get("active_run") for gs in summary.values()):
            st.rerun()  # everything finished: one full rerun switches the polling off

    _grid()


selected = st.query_params.get("character")
if selected and selected.isdigit():
    detail_view(int(selected))
else:
    list_view()
