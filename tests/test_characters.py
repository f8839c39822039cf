"""Character services against the real database."""
import pytest

from core import characters, styles
from core.characters import CharacterInput
from core.errors import ConflictError, DuplicateError, NotFoundError, ValidationError


def _style(editor, name="Ink"):
    return styles.create_style(data=styles.StyleInput(name=name, palette=["#000000"]), editor=editor)


def test_create_records_audit_slug_and_seed(editor):
    st = _style(editor)
    ch = characters.create_character(
        data=CharacterInput(name="  Ayla   Stormwind ", traits="storm mage, silver hair, Storm Mage", style_id=st.id),
        editor=editor,
    )
    assert ch.slug == "ayla-stormwind"
    assert ch.name == "Ayla Stormwind"
    assert ch.traits == ["storm mage", "silver hair"]  # de-duplicated case-insensitively
    assert ch.created_by == editor and ch.updated_by == editor
    assert ch.version == 1 and ch.base_seed == characters.default_seed("ayla-stormwind")
    assert characters.get_character(character_id=ch.id).style_id == st.id


@pytest.mark.parametrize(
    "name, message",
    [("", "Name is required"), ("   ", "Name is required"), ("x" * 101, "limit is 100"), ("!!!", "letter or digit")],
)
def test_bad_names_are_refused_and_nothing_saved(editor, name, message):
    with pytest.raises(ValidationError, match=message):
        characters.create_character(data=CharacterInput(name=name), editor=editor)
    assert characters.count_characters() == 0


def test_duplicate_slug_is_refused_with_the_existing_name(editor):
    characters.create_character(data=CharacterInput(name="Kira Voss"), editor=editor)
    with pytest.raises(DuplicateError, match="slug 'kira-voss' already exists \\(Kira Voss\\)"):
        characters.create_character(data=CharacterInput(name="kira  VOSS!"), editor=editor)
    assert characters.count_characters() == 1


def test_other_field_limits(editor):
    with pytest.raises(ValidationError, match="Trait"):
        characters.create_character(data=CharacterInput(name="A", traits=["t" * 61]), editor=editor)
    with pytest.raises(ValidationError, match="traits given"):
        characters.create_character(data=CharacterInput(name="A", traits=[f"t{i}" for i in range(31)]), editor=editor)
    with pytest.raises(ValidationError, match="Base seed"):
        characters.create_character(data=CharacterInput(name="A", base_seed=-1), editor=editor)
    with pytest.raises(ValidationError, match="style no longer exists"):
        characters.create_character(data=CharacterInput(name="A", style_id=999), editor=editor)
    assert characters.count_characters() == 0


def test_stale_form_is_refused_and_first_save_kept(editor):
    ch = characters.create_character(data=CharacterInput(name="Bram", description="tinker"), editor=editor)
    # Two editors open the same version.
    first = characters.update_character(
        character_id=ch.id, expected_version=ch.version, data=CharacterInput(name="Bram", description="by Ann"),
        editor="Ann",
    )
    assert first.version == 2 and first.updated_by == "Ann"
    with pytest.raises(ConflictError, match="changed by Ann.*Nothing was overwritten"):
        characters.update_character(
            character_id=ch.id, expected_version=ch.version, data=CharacterInput(name="Bram", description="by Bob"),
            editor="Bob",
        )
    current = characters.get_character(character_id=ch.id)
    assert current.description == "by Ann" and current.version == 2


def test_archive_and_restore_use_the_version_too(editor):
    ch = characters.create_character(data=CharacterInput(name="Sable"), editor=editor)
    archived = characters.set_archived(character_id=ch.id, expected_version=1, archived=True, editor=editor)
    assert archived.archived and archived.version == 2
    assert [r.name for r in characters.list_characters(archived=True)] == ["Sable"]
    assert characters.list_characters() == []
    with pytest.raises(ConflictError):
        characters.set_archived(character_id=ch.id, expected_version=1, archived=False, editor=editor)
    restored = characters.set_archived(character_id=ch.id, expected_version=2, archived=False, editor=editor)
    assert not restored.archived


def test_update_of_missing_character_says_so(editor):
    with pytest.raises(NotFoundError):
        characters.update_character(character_id=4242, expected_version=1, data=CharacterInput(name="X"), editor=editor)


def test_search_by_name_and_trait_and_filter_by_style(editor):
    ink, neon = _style(editor, "Ink"), _style(editor, "Neon")
    characters.create_character(data=CharacterInput(name="Ayla", traits=["Storm mage"], style_id=ink.id), editor=editor)
    characters.create_character(data=CharacterInput(name="Kira", traits=["netrunner"], style_id=neon.id), editor=editor)
    characters.create_character(data=CharacterInput(name="Magnus", traits=["smith"], style_id=neon.id), editor=editor)
    assert [r.name for r in characters.list_characters(search="mag")] == ["Ayla", "Magnus"]  # trait and name
    assert [r.name for r in characters.list_characters(search="NETRUN")] == ["Kira"]
    assert [r.name for r in characters.list_characters(style_id=neon.id)] == ["Kira", "Magnus"]
    assert [r.name for r in characters.list_characters(search="mag", style_id=neon.id)] == ["Magnus"]
    assert characters.list_characters()[0].style_name == "Ink"


def test_styles_unique_names_palette_and_delete_guard(editor):
    ink = _style(editor, "Ink")
    with pytest.raises(DuplicateError):
        _style(editor, "ink")
    with pytest.raises(ValidationError, match="not a #rrggbb"):
        styles.create_style(data=styles.StyleInput(name="Bad", palette=["red"]), editor=editor)
    characters.create_character(data=CharacterInput(name="Ayla", style_id=ink.id), editor=editor)
    with pytest.raises(ValidationError, match="used by 1 character"):
        styles.delete_style(style_id=ink.id, editor=editor)
    renamed = styles.update_style(style_id=ink.id, expected_version=ink.version, data=styles.StyleInput(name="Ink & Wash"), editor="Ann")
    assert renamed.name == "Ink & Wash" and renamed.updated_by == "Ann"
