"""The Reference images tab of a character: upload or fetch by URL, captions with a version check, delete.

Not a page (the leading underscore): pages/characters.py draws it inside its tab.
"""
import logging

import streamlit as st

from core import references
from core.ai import ai_functions
from core.errors import ConflictError, WorkbenchError
from core.text import escape_markdown as md
from pages._common import flash, media_path, report, show_flashes, why_not

log = logging.getLogger(__name__)


def flash_upload_error(err: Exception, character_id: int) -> None:
    """An upload refused: our message as written, anything else logged and summarised (shown after a rerun)."""
    if isinstance(err, WorkbenchError):
        flash(f"Not added: {md(err)}", "error")
    else:
        log.error("reference upload for character %s failed", character_id, exc_info=err)
        flash(f"An image was not added: unexpected error ({err.__class__.__name__}); details are in the server log.",
              "error")


def reference_section(ch, *, editor: str | None) -> None:
    refs = references.list_references(character_id=ch.id)
    # what this person's role cannot do is greyed out with the reason; core refuses a crafted rerun anyway
    why = {a: why_not(editor, a)
           for a in ("reference.add", "reference.update", "reference.delete", "ai.call")}
    can_add = bool(editor) and not ch.archived and why["reference.add"] is None
    add_cols = st.columns(2)
    with add_cols[0].form(f"upload_{ch.id}", clear_on_submit=True):
        files = st.file_uploader(
            "Upload images (PNG, JPEG, WebP)", type=["png", "jpg", "jpeg", "webp"], accept_multiple_files=True,
        )
        do_upload = st.form_submit_button("Add uploaded images", disabled=not can_add, help=why["reference.add"])
    if do_upload:
        added = 0
        for f in files or []:
            try:
                ref = references.add_reference_upload(
                    character_id=ch.id, data=f.getvalue(), filename=f.name, claimed_mime=f.type, editor=editor
                )
                added += 1
                if ref.import_note:
                    flash(f"{md(ref.original_filename)}: {ref.import_note}", "info")
            except Exception as err:  # noqa: BLE001 - shown after the rerun below (ours as written, others logged)
                flash_upload_error(err, ch.id)
        if added:
            flash(f"{added} reference image(s) added to '{md(ch.name)}'.")
            st.rerun()
        elif not files:
            st.warning("Choose one or more image files first.")
        show_flashes()
    with add_cols[1].form(f"url_{ch.id}", clear_on_submit=True):
        url = st.text_input("Image URL", placeholder="https://…/image.png")
        do_fetch = st.form_submit_button("Fetch and add", disabled=not can_add, help=why["reference.add"])
    if do_fetch:
        try:
            with st.spinner("Fetching…"):
                ref = references.add_reference_url(character_id=ch.id, url=url, editor=editor)
            flash(f"Image from URL added to '{md(ch.name)}'." + (f" {ref.import_note}" if ref.import_note else ""))
            st.rerun()
        except Exception as err:
            report(err)

    if not refs:
        st.info("No reference images yet. Upload a few (front, side, outfit) so generations stay on-model.")
        return
    cols = st.columns(3)
    for i, ref in enumerate(refs):
        with cols[i % 3].container(border=True):
            path = media_path(ref.thumb_path)
            if path:
                st.image(path, caption=f"{ref.width}×{ref.height} {ref.mime.split('/')[-1]} · {ref.source}")
            else:
                st.warning(f"File missing on disk: {md(ref.path)}")
            if ref.import_note:
                st.caption(ref.import_note)
            cap_key, alt_key, ver_key = f"ref_caption_{ref.id}", f"ref_alt_{ref.id}", f"ref_version_{ref.id}"
            # The version the editor's text was loaded from: a save against an older one is refused.
            if st.session_state.get(ver_key) is None or cap_key not in st.session_state:
                st.session_state[cap_key], st.session_state[alt_key] = ref.caption, ref.alt_text
                st.session_state[ver_key] = ref.version
            if st.button("✨ Suggest caption", key=f"suggest_cap_{ref.id}", disabled=not editor or bool(why["ai.call"]),
                         help=why["ai.call"]):
                try:
                    with st.spinner("Captioning…"):
                        out = ai_functions.caption_reference(reference_id=ref.id, requested_by=editor)
                    st.session_state[cap_key], st.session_state[alt_key] = out.value["caption"], out.value["alt_text"]
                    flash("Caption suggested: review it and click Save text.", "info")
                    st.rerun()
                except Exception as err:
                    report(err)
            with st.form(f"ref_{ref.id}"):
                caption = st.text_area("Caption", key=cap_key, height=80)
                alt = st.text_input("Alt text", key=alt_key)
                c1, c2 = st.columns(2)
                save = c1.form_submit_button("Save text", disabled=not editor or bool(why["reference.update"]),
                                             help=why["reference.update"])
                delete = c2.form_submit_button("Delete", disabled=not editor or ch.archived
                                               or bool(why["reference.delete"]), help=why["reference.delete"])
            if save:
                try:
                    references.update_reference_text(
                        reference_id=ref.id, expected_version=st.session_state[ver_key], caption=caption,
                        alt_text=alt, editor=editor,
                    )
                    for k in (cap_key, alt_key, ver_key):
                        st.session_state.pop(k, None)
                    flash("Caption saved.")
                    st.rerun()
                except Exception as err:
                    report(err)
                    if isinstance(err, ConflictError):
                        st.session_state[f"ref_conflict_{ref.id}"] = True
            if st.session_state.get(f"ref_conflict_{ref.id}") and st.button(
                    "Reload the saved text", key=f"reload_{ref.id}",
                    help="Someone else saved this image's text after you opened it: load theirs (yours is dropped)."):
                for k in (cap_key, alt_key, ver_key, f"ref_conflict_{ref.id}"):
                    st.session_state.pop(k, None)
                st.rerun()
            if delete:
                try:
                    references.delete_reference(reference_id=ref.id, editor=editor)
                    flash("Reference image deleted.")
                    st.rerun()
                except Exception as err:
                    report(err)
