"""An independent review of the team features (roles, audit trail, members, prices, review sessions):
each test is a defect found by acting as a hostile caller, or a guarantee checked against one.

Writes must be refused below their role with nothing written and no audit row; permitted writes leave
exactly one audit row; hostile input gives a WorkbenchError (ValidationError, PermissionDenied,
ConflictError) with a message, never a raw exception.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from core import review, tags
from core.ai import prices
from core.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError, WorkbenchError
from core.team import audit, audit_view, members
from core.vectors import projection
from db.engine import session_scope
from db.models import Character, Projection
from db.models_team import AuditEvent, Member

from tests.team import ADMIN, EDITOR, REVIEWER, VIEWER, add_team, last_audit_id


@pytest.fixture(autouse=True)
def team(tmp_path, settings_override):
    settings_override(streamlit_secrets_file=tmp_path / "absent.toml")
    add_team()


_last_id = last_audit_id


def _rows_since(mark: int) -> list[AuditEvent]:
    return sorted([e for e in audit.events(limit=10_000) if e.id > mark], key=lambda e: e.id)


def _jobs(task: str) -> int:
    with session_scope() as s:
        return s.execute(sa.text("select count(*) from procrastinate_jobs where task_name = :t"),
                         {"t": task}).scalar_one()


# ---------------------------------------------------------------- map placement (was: no role check, no audit)
def _ready_map() -> int:
    with session_scope() as s:
        p = Projection(space="text-local", subject_type="character", n_neighbors=15, min_dist=0.1, metric="cosine",
                       status="ready", created_by=EDITOR)
        s.add(p)
        s.flush()
        return p.id


def test_placing_new_points_on_a_map_needs_the_editor_role_and_leaves_one_audit_row():
    from core.jobs import COMPUTE_PROJECTION

    pid = _ready_map()
    mark = _last_id()
    with pytest.raises(PermissionDenied, match="Building or rebuilding a map needs the editor role; you are a viewer"):
        projection.request_placement(projection_id=pid, editor=VIEWER)
    assert _rows_since(mark) == [] and _jobs(COMPUTE_PROJECTION) == 0
    assert projection.request_placement(projection_id=pid, editor=EDITOR) is not None
    [row] = _rows_since(mark)
    assert (row.action, row.entity, row.entity_id, row.actor, row.role) == (
        "map.build", "projection", str(pid), EDITOR, "editor")
    assert _jobs(COMPUTE_PROJECTION) == 1
    mark = _last_id()
    assert projection.request_placement(projection_id=pid, editor=EDITOR) is None  # one already waits
    assert _rows_since(mark) == [] and _jobs(COMPUTE_PROJECTION) == 1
    with pytest.raises(NotFoundError):
        projection.request_placement(projection_id=pid + 999, editor=EDITOR)


# ---------------------------------------------------------------- audit filters
def test_audit_filters_take_any_date_and_refuse_wrong_types_and_unstorable_text_clearly():
    f = audit_view.make_filter(since=date.min, until=date.max)  # was OverflowError (until + 1 day)
    assert f.until is None and f.since is not None
    assert audit_view.page_of(who="tess", filters=f).total == 0
    with pytest.raises(ValidationError, match="start date"):
        audit_view.make_filter(since="2026-01-01")
    with pytest.raises(ValidationError, match="end date"):
        audit_view.make_filter(until=12)
    # a datetime is a date: its day is used (comparing it with a date used to raise TypeError)
    f = audit_view.make_filter(since=datetime(2026, 1, 2, 15, 0), until=date(2026, 1, 3))
    assert f.since.date() == date(2026, 1, 2) and f.until.date() == date(2026, 1, 4)
    for bad in ({"actor": "ann\x00"}, {"entity": "x\x00"}, {"action": "a\x00"}, {"entity_id": "1\x00"}):
        with pytest.raises(ValidationError):
            audit_view.make_filter(**bad)
    # an unknown entity or action is not an error: it matches nothing
    assert audit_view.page_of(who="tess", filters=audit_view.make_filter(entity="nope", action="no.such")).total == 0


@pytest.mark.parametrize("page,page_size", [(10**30, 50), ("2", 50), (1, 0), (1, -5), (1, 10**9), (float("inf"), 50)])
def test_audit_paging_never_raises_a_raw_exception(page, page_size):
    try:
        got = audit_view.page_of(who="tess", filters=audit_view.make_filter(), page=page, page_size=page_size)
    except ValidationError:
        return
    assert got.page == 1 and got.rows == []


# ---------------------------------------------------------------- members
@pytest.mark.parametrize("identity,display_name,role", [
    ("ann\x00@example.com", "", "viewer"),
    ("ann@example.com", "Ann\u202eevil", "viewer"),
    ("a" * 250 + "@example.com", "", "viewer"),
    ("x" * 81, "", "viewer"),
    ("ann@example.com", "n" * 121, "viewer"),
    ("ann@example.com", "", "owner"),
    ("ann@example.com", "", None),
    ("", "", "viewer"),
    ("not@an@address", "", "viewer"),
])
def test_hostile_member_input_is_a_validation_error_and_writes_nothing(identity, display_name, role):
    mark = _last_id()
    with pytest.raises(ValidationError):
        members.add_member(identity=identity, role=role, editor=ADMIN, display_name=display_name)
    assert _rows_since(mark) == []
    assert {m.identity for m in members.list_members()} == {ADMIN, EDITOR, REVIEWER, VIEWER}


def test_a_deactivated_member_and_a_demoted_admin_are_refused_on_their_next_write():
    members.add_member(identity="boss@example.com", role="admin", editor=ADMIN)
    members.set_role(identity="editor@example.com", role="reviewer", editor="boss@example.com")  # boss may
    members.set_role(identity="boss@example.com", role="editor", editor=ADMIN)
    mark = _last_id()
    with pytest.raises(PermissionDenied, match="needs the admin role; you are an editor"):
        members.set_role(identity=VIEWER, role="editor", editor="BOSS@example.com ")
    with pytest.raises(PermissionDenied, match="needs the admin role"):
        prices.set_price(model="gpt-image-1", rates={"per_image": "1"}, editor="boss@example.com")
    members.deactivate(identity=REVIEWER, editor=ADMIN)
    mark = _last_id()
    with pytest.raises(PermissionDenied, match="not a member of this workbench yet"):
        review.claim_next(reviewer=REVIEWER)
    assert _rows_since(mark) == []
    members.reactivate(identity=REVIEWER, editor=ADMIN)
    assert review.claim_next(reviewer=REVIEWER) == []


def test_the_last_admin_cannot_demote_or_deactivate_themselves():
    with pytest.raises(ValidationError, match="without an admin"):
        members.set_role(identity=ADMIN, role="editor", editor=ADMIN)
    with pytest.raises(ValidationError, match="without an admin"):
        members.deactivate(identity=ADMIN, editor=ADMIN)
    assert [m.role_label for m in members.list_members() if m.identity == ADMIN] == ["admin"]


# ---------------------------------------------------------------- prices
@pytest.mark.parametrize("model,rates", [
    ("gpt-image-1", {"per_image": "NaN"}), ("gpt-image-1", {"per_image": "-1"}), ("gpt-image-1", {"per_image": "1e999"}),
    ("gpt-image-1", {"per_image": "Infinity"}), ("gpt-image-1", {"per_image": "1,5"}), ("gpt-image-1", {"bogus": 1}),
    ("gpt-image-1", {}), ("gpt-image-1", None), ("gpt-image-1", "0.5"), ("", {"per_image": 1}),
    ("a" * 121, {"per_image": 1}), ("../../etc", {"per_image": 1}), ("gpt\x00", {"per_image": 1}),
])
def test_hostile_prices_are_validation_errors_and_write_nothing(model, rates):
    mark = _last_id()
    with pytest.raises(ValidationError):
        prices.set_price(model=model, rates=rates, editor=ADMIN)
    assert _rows_since(mark) == [] and [p for p in prices.list_prices() if p.source == "team"] == []


def test_resetting_a_price_someone_changed_meanwhile_is_a_conflict_not_a_silent_loss():
    shown = prices.set_price(model="gpt-image-1", rates={"per_image": "0.04"}, editor=ADMIN)
    prices.set_price(model="gpt-image-1", rates={"per_image": "0.07"}, editor=ADMIN,
                     expected_version=shown.version)  # another admin, meanwhile
    mark = _last_id()
    with pytest.raises(ConflictError, match="changed by"):
        prices.reset_price(model="gpt-image-1", editor=ADMIN, expected_version=shown.version)
    assert _rows_since(mark) == []
    assert prices.effective_rates(model="gpt-image-1")["per_image"] == Decimal("0.07")
    with pytest.raises(PermissionDenied):
        prices.reset_price(model="gpt-image-1", editor=EDITOR, expected_version=shown.version + 1)
    assert prices.reset_price(model="gpt-image-1", editor=ADMIN, expected_version=shown.version + 1)
    assert len(_rows_since(mark)) == 1


# ---------------------------------------------------------------- review sessions
@pytest.fixture
def images(settings_override):
    from bench._fill import fill_cast

    fill_cast(characters=1, styles=1, reviewed_every=10**6)
    return review.queue()


@pytest.mark.parametrize("n", [0, -1, 201, "5", 2.5, None])
def test_a_claim_of_a_strange_number_of_images_is_a_validation_error(images, n):
    mark = _last_id()
    with pytest.raises(ValidationError):
        review.claim_next(reviewer=REVIEWER, n=n)
    assert _rows_since(mark) == []


def test_a_review_name_filter_with_a_nul_byte_is_a_validation_error(images):
    with pytest.raises(ValidationError):
        review.claim_next(reviewer=REVIEWER, filters=review.ReviewFilter(search="ann\x00"))


def test_adjudicating_an_image_that_is_no_longer_disputed_is_a_conflict(images, settings_override):
    settings_override(review_votes_required=2)
    vid = images[0]
    review.decide(variation_id=vid, decision="approved", reviewer="ann")
    review.decide(variation_id=vid, decision="rejected", reviewer="bob", reason_codes=["anatomy"])
    assert review.get_variation(variation_id=vid).review_status == "disputed"
    review.adjudicate(variation_id=vid, decision="approved", editor=EDITOR)  # the first editor settles it
    mark = _last_id()
    with pytest.raises(ConflictError, match="not disputed"):  # a second editor, on the stale Adjudicate view
        review.adjudicate(variation_id=vid, decision="rejected", editor=ADMIN, reason_codes=["anatomy"])
    assert review.get_variation(variation_id=vid).review_status == "approved" and _rows_since(mark) == []
    with pytest.raises(ConflictError, match="not disputed"):  # an image nobody disagreed on
        review.adjudicate(variation_id=images[1], decision="approved", editor=EDITOR)
    with pytest.raises(ValidationError):
        review.adjudicate(variation_id=vid, decision="unreviewed", editor=EDITOR)


# ---------------------------------------------------------------- tags on subjects
@pytest.mark.parametrize("subject_type,ids", [("banana", [1]), ("x" * 40, [1]), ("character", ["abc"]),
                                              ("character", [2**40]), ("character", [999_999])])
def test_tagging_unknown_subjects_is_a_validation_error_and_writes_nothing(subject_type, ids):
    with session_scope() as s:
        s.add(Character(slug="ann", name="Ann"))
    tags.create_tag(name="villain", editor=ADMIN, embed=False)
    mark = _last_id()
    with pytest.raises(ValidationError):
        tags.apply_tag(subject_type=subject_type, subject_ids=ids, tag_name="villain", editor=EDITOR)
    assert _rows_since(mark) == []
    with session_scope() as s:
        assert s.execute(sa.text("select count(*) from subject_tag")).scalar_one() == 0


def test_errors_raised_here_are_workbench_errors():
    assert issubclass(ConflictError, WorkbenchError) and issubclass(PermissionDenied, WorkbenchError)


@pytest.mark.parametrize("field,value", [("style_id", "abc"), ("run_id", "1; drop table x"), ("style_id", 2**40),
                                         ("run_id", 1.5), ("search", 5)])
def test_a_review_filter_with_a_non_id_is_a_validation_error(images, field, value):
    mark = _last_id()
    with pytest.raises(ValidationError):
        review.claim_next(reviewer=REVIEWER, filters=review.ReviewFilter(**{field: value}))
    assert _rows_since(mark) == []


def test_an_identity_is_the_same_person_whatever_its_unicode_normalisation():
    from unicodedata import normalize

    from core.team.access import role_of

    nfc, nfd = normalize("NFC", "josé@example.com"), normalize("NFD", "josé@example.com")
    assert nfc != nfd
    members.add_member(identity=nfc, role="editor", editor=ADMIN)
    with session_scope() as s:
        assert role_of(s, who=nfd) == "editor"  # what another provider or a typed name may send
    members.deactivate(identity=nfd, editor=ADMIN)
    with session_scope() as s:  # deactivation holds for either spelling (it used to fall back to DEFAULT_ROLE)
        assert role_of(s, who=nfd) == role_of(s, who=nfc) == "none"


def test_a_reviewer_cannot_withdraw_another_reviewers_vote(images, settings_override):
    settings_override(review_votes_required=2)
    with session_scope() as s:
        s.add(Member(identity="ann@example.com", role="reviewer"))
        s.add(Member(identity="bob@example.com", role="reviewer"))
    vid = images[0]
    anns = review.decide(variation_id=vid, decision="approved", reviewer="ann@example.com")
    mark = _last_id()
    with pytest.raises(PermissionDenied, match="ann@example.com"):
        review.undo(decision=anns, who="bob@example.com")  # bob would remove ann's vote from the count
    assert _rows_since(mark) == []
    review.decide(variation_id=vid, decision="rejected", reviewer="bob@example.com", reason_codes=["anatomy"])
    assert review.get_variation(variation_id=vid).review_status == "disputed"


def test_a_member_with_a_long_but_valid_e_mail_can_write_everywhere_their_name_is_stored(images):
    from core import characters, styles
    from core.characters import CharacterInput

    long = "a" * 130 + "@example.com"  # members and sign-in accept up to 254 characters (RFC 5321)
    members.add_member(identity=long, role="admin", editor=ADMIN)
    style = styles.create_style(data=styles.StyleInput(name="Ink", description="lines"), editor=long)
    ch = characters.create_character(data=CharacterInput(name="Zed", style_id=style.id), editor=long)
    tags.create_tag(name="hero", editor=long, embed=False)
    tags.apply_tag(subject_type="character", subject_ids=[ch.id], tag_name="hero", editor=long)
    review.decide(variation_id=images[0], decision="approved", reviewer=long)
    assert review.get_variation(variation_id=images[0]).reviewed_by == long
    with session_scope() as s:
        widths = dict(s.execute(sa.text(
            "select table_name || '.' || column_name, character_maximum_length from information_schema.columns "
            "where table_schema = 'public' and column_name <> 'placed_by' and (column_name like '%\\_by' or column_name in ('author', 'actor', "
            "'reviewer', 'identity'))")).all())
    assert {col: w for col, w in widths.items() if w is not None and w < 254} == {}


@pytest.mark.parametrize("a,b", [(("banana", 1), ("variation", 2)), (("variation", "x"), ("variation", 2)),
                                 (("variation", 2**40), ("variation", 2)), (None, ("variation", 2)),
                                 (("variation", 999_999), ("variation", 2))])
def test_keeping_a_pair_of_unknown_images_is_a_validation_error(images, a, b):
    from core.vectors import duplicates

    b = ("variation", images[1])
    mark = _last_id()
    with pytest.raises(ValidationError):
        duplicates.keep_both(a=a, b=b, editor=REVIEWER)
    assert _rows_since(mark) == []
    with session_scope() as s:
        assert s.execute(sa.text("select count(*) from duplicate_kept")).scalar_one() == 0
    duplicates.keep_both(a=("variation", images[0]), b=b, editor=REVIEWER)
    assert [r.action for r in _rows_since(mark)] == ["duplicate.keep"]


@pytest.mark.parametrize("ids", [["x"], [None], [2**40], [-1]])
def test_bulk_review_of_non_ids_is_a_validation_error_or_nothing(images, ids):
    mark = _last_id()
    try:
        assert review.bulk_approve(variation_ids=ids, reviewer=REVIEWER) == 0
    except ValidationError:
        pass
    assert _rows_since(mark) == []


@pytest.mark.parametrize("ids", [["x"], [None], [2**40]])
def test_releasing_non_ids_is_a_validation_error_or_nothing(images, ids):
    review.claim_next(reviewer=REVIEWER)
    mark = _last_id()
    try:
        assert review.release(reviewer=REVIEWER, variation_ids=ids) == 0
    except ValidationError:
        pass
    assert _rows_since(mark) == []


def test_an_admin_email_setting_in_either_unicode_form_names_the_same_person(settings_override):
    from unicodedata import normalize

    from core.team.access import role_of

    from core.settings import get_settings

    settings_override(admin_emails=normalize("NFD", "rené@example.com"), local_role="viewer")
    assert get_settings().admin_identities == {normalize("NFC", "rené@example.com")}
    with session_scope() as s:
        assert role_of(s, who=normalize("NFC", "rené@example.com")) == "admin"
