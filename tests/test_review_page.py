"""Review page in AppTest at a cast too big for one screen: paging, filters, the view switch, undo, export."""
from bench._fill import fill_cast
from core import review
from tests.test_pages import _click, _page


def _cell_buttons(at) -> list:
    return [b for b in at.button if str(b.key).startswith("cell_")]


def _names(at) -> list[str]:
    """The character names of the grid's rows (each row starts with the name in a tooltip'd line)."""
    import re

    return [re.search(r'title="([^"]*)"', m.value).group(1) for m in at.markdown
            if m.value.startswith('<div title="Bench character')]


def test_grid_shows_one_page_of_characters_and_pages_through_them():
    fill_cast(characters=60, styles=3)
    at = _page("pages/review.py")
    assert not at.exception
    assert len(_names(at)) == 25 and len(_cell_buttons(at)) == 250
    assert any("60 character(s)" in c.value for c in at.caption)
    first = _names(at)
    at.number_input(key="rv_page").set_value(3).run()
    assert not at.exception
    last = _names(at)
    assert len(last) == 10 and not set(first) & set(last)
    at.segmented_control(key="rv_view").set_value("queue").run()
    at.segmented_control(key="rv_view").set_value("grid").run()
    assert _names(at) == last  # the page is kept while the queue was showing
    at.text_input(key="rv_search").input("character 0002").run()  # a new filter starts at page 1
    assert _names(at) == [f"Bench character 0002{i}" for i in range(10)]
    assert at.number_input(key="rv_page").value == 1


def test_queue_view_stays_after_a_decision_which_names_the_image_and_can_be_undone(editor):
    fill_cast(characters=3, styles=1)
    at = _page("pages/review.py")
    assert not any(b.label == "Approve" for b in at.button)  # no queue shortcuts behind the grid
    at.segmented_control(key="rv_view").set_value("queue").run()
    first = review.queue_slice(filters=review.ReviewFilter(), limit=1)[0]
    n = len(review.queue())
    assert any(f"1 of {n}" in c.value for c in at.caption)
    _click(at, "Approve")
    assert not at.exception
    assert at.segmented_control(key="rv_view").value == "queue"
    assert any(f"Marked approved: {first.label}." == s.value for s in at.success)
    assert review.get_variation(variation_id=first.variation_id).review_status == "approved"
    assert any(f"1 of {n - 1}" in c.value for c in at.caption)
    _click(at, "Undo")
    assert not at.exception
    assert review.get_variation(variation_id=first.variation_id).review_status == "unreviewed"
    assert any(f"Undone: {first.label} is unreviewed again." == s.value for s in at.success)
    assert at.segmented_control(key="rv_view").value == "queue"


def test_prepared_export_is_dropped_when_the_approved_set_or_the_filters_change(editor):
    fill_cast(characters=4, styles=2)
    at = _page("pages/review.py")
    _click(at, "Prepare export")
    assert [d.label for d in at.get("download_button")] and not at.exception
    at.run()
    assert at.get("download_button")  # an unrelated rerun keeps it
    item = review.queue_slice(filters=review.ReviewFilter(), limit=1)[0]
    review.decide(variation_id=item.variation_id, decision="approved", reviewer="Ann")  # someone else approves
    at.run()
    assert not at.get("download_button")
    assert any("changed since the export was prepared" in c.value for c in at.caption)
    _click(at, "Prepare export")
    assert at.get("download_button")
    at.selectbox(key="rv_style").select_index(1).run()
    assert not at.get("download_button")
