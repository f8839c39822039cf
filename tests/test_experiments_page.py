"""AppTest of the Experiments page: panel form, blind compare with picks, results and promote."""
from core import characters, experiment_results, experiments
from core.ai import prompt_registry
from core.characters import CharacterInput
from core.experiments import ArmSpec
from tests.test_generation import run_worker
from tests.test_pages import _page, _texts

DRAFT = "\nDraft marker: crisp ink outlines."


def _cast(editor):
    return [characters.create_character(data=CharacterInput(name=n, traits=["t"]), editor=editor)
            for n in ("Ayla", "Bram")]


def test_empty_page_leads_to_the_panel_form_and_creates_a_panel(editor):
    cast = _cast(editor)
    at = _page("pages/experiments.py")
    assert not at.exception
    at.text_input(key="pn_name").input("two heroes")
    at.multiselect(key="pn_chars").set_value([c.id for c in cast])
    at.multiselect(key="pn_slots").set_value(["portrait_front"])
    at.button(key="pn_create").click().run()
    assert not at.exception
    [panel] = experiments.list_panels()
    assert panel.character_ids == [c.id for c in cast] and panel.slot_keys == ["portrait_front"]
    assert "Panel 'two heroes' saved: 2 characters × 1 slots." in _texts(at)


def test_new_experiment_form_queues_active_against_draft(editor):
    cast = _cast(editor)
    experiments.create_panel(name="p", character_ids=[c.id for c in cast], slot_keys=["portrait_front"], editor=editor)
    at = _page("pages/experiments.py", run=False)
    at.session_state["ex_section"] = "New experiment"
    at.run()
    assert not at.exception
    at.text_area(key="nx_draft").input(prompt_registry.file_default("variation_prompt") + DRAFT)
    at.button(key="nx_start").click().run()
    assert not at.exception
    [exp] = experiments.list_experiments()
    assert [a["label"] for a in exp.arms] == ["file default (active)", "draft"]
    assert experiments.progress(experiment_id=exp.id).counts == {"pending": 4}


def test_blind_compare_hides_versions_then_pick_read_verdict_and_promote(editor):
    cast = _cast(editor)
    panel = experiments.create_panel(name="p", character_ids=[cast[0].id], slot_keys=["portrait_front"], editor=editor)
    body = prompt_registry.file_default("variation_prompt") + DRAFT
    exp = experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("active"), ArmSpec("draft", body=body)],
                                        editor=editor)
    run_worker()
    at = _page("pages/experiments.py")
    assert not at.exception
    shown = "\n".join(m.value for m in at.markdown)
    assert "Image A" in shown and "Image B" in shown
    assert "draft" not in shown and "file default" not in shown  # no version label next to an image
    [row] = experiment_results.compare_rows(experiment_id=exp.id, blind=True, salt=at.session_state["ex_salt"])
    draft_pos = [c.arm for c in row.columns].index(1)
    at.button(key=f"cx_win_{draft_pos}").click().run()
    assert not at.exception
    res = experiment_results.results(experiment_id=exp.id)
    assert res.arms[1].wins == 1 and res.judged == 1

    at.session_state["ex_section"] = "Results"
    at.run()
    assert not at.exception
    assert any(s.value.startswith("draft wins 1 of 1 rows") for s in at.success)
    at.button(key="rs_promote_1").click().run()
    assert not at.exception
    active = prompt_registry.resolve("variation_prompt")
    assert active.body == body and f"experiment #{exp.id}" in prompt_registry.get_version(
        name="variation_prompt", version=active.version).note


def test_activity_page_shows_each_versions_production_record(editor):
    from core import generation, review

    [ch, _] = _cast(editor)
    prompt_registry.save_version(name="variation_prompt", body=prompt_registry.file_default("variation_prompt")
                                 + DRAFT, author=editor)
    req = generation.request_run(character_id=ch.id, requested_by=editor)
    run_worker()
    vids = [v.id for v in generation.run_status(run_id=req.run_id).slots]
    review.review(variation_id=vids[0], decision="approved", reviewer=editor)
    review.review(variation_id=vids[1], decision="rejected", reviewer=editor, reason_codes=["anatomy"])
    at = _page("pages/activity.py")
    assert not at.exception
    table = at.dataframe[-1].value
    assert table.to_dict("records")[0] | {"cost (USD)": 0} == {
        "version": "v1", "images": 10, "approved": 1, "rejected": 1, "approval rate": 0.5, "cost (USD)": 0,
        "per approved image": 0.0}


def test_characters_list_selection_becomes_a_panel(editor):
    cast = _cast(editor)
    at = _page("pages/characters.py")
    at.button(key="panel_shown").click().run()
    assert not at.exception
    assert at.multiselect(key="pn_chars").value == [c.id for c in cast]  # on the Experiments page, prefilled
    at.switch_page("pages/experiments.py")  # AppTest's own page pointer stays on Characters otherwise
    at.text_input(key="pn_name").input("from the list")
    at.button(key="pn_create").click().run()
    assert [p.character_ids for p in experiments.list_panels()] == [[c.id for c in cast]]


def test_open_compare_adds_one_image_to_the_variations(editor):
    from core import review

    [ayla, _] = _cast(editor)
    panel = experiments.create_panel(name="p", character_ids=[ayla.id], slot_keys=["portrait_front"], editor=editor)
    exp = experiments.create_experiment(panel_id=panel.id, specs=[ArmSpec("active"), ArmSpec(
        "draft", body=prompt_registry.file_default("variation_prompt") + DRAFT)], editor=editor)
    run_worker()
    at = _page("pages/experiments.py", run=False)
    at.session_state["cx_blind"] = False
    at.run()
    assert not at.exception
    assert "draft" in "\n".join(m.value for m in at.markdown)  # labels shown when not blind
    at.button(key="cx_promote_1").click().run()
    assert not at.exception
    [row] = review.coverage()
    assert row.cells["portrait_front"].status == "completed" and "Added to Ayla's variations" in _texts(at)
