"""Hostile uploads: real files built with Pillow and zlib, real Postgres, real threads.

After every hostile input the rows and files under MEDIA_ROOT match one to one
(tests/media_check.py), and every refusal is our ImageRejected with a specific message.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import threading
import unicodedata
import zlib

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from core import characters, media, references
from core.characters import CharacterInput
from core.errors import ConflictError, DuplicateError, ImageRejected, NotFoundError
from core.media.images import check_filename, inspect_image, prepare_for_storage
from db.engine import session_scope
from db.models import ReferenceImage
from tests.helpers import image_bytes
from tests.media_check import assert_media_matches_rows

LIMITS = {"max_bytes": 15 * 1024 * 1024, "max_pixels": 40_000_000}


@pytest.fixture
def character(editor):
    return characters.create_character(data=CharacterInput(name="Mira Vale"), editor=editor)


def _upload(character, editor, data, name="x.png", **kw):
    return references.add_reference_upload(
        character_id=character.id, data=data, filename=name, claimed_mime=None, editor=editor, **kw
    )


def _count() -> int:
    with session_scope() as s:
        return s.execute(sa.select(sa.func.count(ReferenceImage.id))).scalar_one()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _with_chunks(png: bytes, *chunks: bytes) -> bytes:
    """Insert chunks before the first IDAT (where Pillow reads them while opening)."""
    at = png.index(b"IDAT") - 4
    return png[:at] + b"".join(chunks) + png[at:]


def _png_declaring(width: int, height: int) -> bytes:
    data = bytearray(image_bytes("PNG", (1, 1)))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _frames(fmt: str, **kw) -> bytes:
    frames = [Image.new("RGB", (40, 30), c) for c in ("#ff0000", "#00ff00", "#0000ff")]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], **kw)
    return buf.getvalue()


# ------------------------------------------------------------------ specific refusals
@pytest.mark.parametrize("fmt,cut,needle", [
    ("PNG", 20, "inside its header"),       # inside IHDR
    ("PNG", 40, "truncated"),                # IHDR whole, IDAT cut
    ("JPEG", 30, "inside its header"),
    ("WEBP", 20, "inside its header"),
])
def test_truncation_is_refused_and_says_where(character, editor, fmt, cut, needle):
    data = image_bytes(fmt, (120, 90))
    with pytest.raises(ImageRejected, match=needle):
        _upload(character, editor, data[:cut], name=f"cut.{fmt.lower()}")
    assert _count() == 0
    assert_media_matches_rows()


def test_pillow_decompression_bomb_guard_is_a_clean_refusal(character, editor, settings_override):
    # 20000×20000 = 400 MP: Pillow raises DecompressionBombError while opening, before our own pixel check.
    with pytest.raises(ImageRejected, match="decompression-bomb guard"):
        _upload(character, editor, _png_declaring(20_000, 20_000), name="bomb.png")
    # 10000×9000 = 90 MP is above Pillow's warning threshold: with our cap raised that warning is a refusal too.
    settings_override(max_image_pixels=500_000_000)
    with pytest.raises(ImageRejected, match="decompression-bomb guard"):
        _upload(character, editor, _png_declaring(10_000, 9_000), name="bomb2.png")
    assert _count() == 0
    assert_media_matches_rows()


@pytest.mark.parametrize("chunks", [
    pytest.param([_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * 2_000_000, 9))], id="zTXt-2MB"),
    pytest.param([_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * 2_000_000, 9))], id="iCCP-2MB"),
    pytest.param([_chunk(b"iTXt", b"XML\0\1\0\0\0" + zlib.compress(b"<x/>" * 500_000, 9))], id="iTXt-2MB"),
    pytest.param([_chunk(b"zTXt", b"C%d\0\0" % i + zlib.compress(b"B" * 900_000, 9)) for i in range(10)],
                 id="ten-zTXt-900KB"),
])
def test_compressed_chunk_bombs_are_refused(character, editor, chunks):
    bomb = _with_chunks(image_bytes("PNG", (32, 32)), *chunks)
    assert len(bomb) < 100_000  # tiny on the wire
    with pytest.raises(ImageRejected, match="decompression bomb"):
        _upload(character, editor, bomb, name="meta.png")
    assert _count() == 0
    assert_media_matches_rows()


@pytest.mark.parametrize("name", ["a\x00b.png", "line\nbreak.png", "esc\x1b[31m.png", "tab\t.png",
                                  "evil\u202egnp.png", "del\x7f.png", "c1\x85.png", "sep\u2028.png"])
def test_control_characters_in_file_names_are_refused(character, editor, name):
    with pytest.raises(ImageRejected, match=r"control character U\+"):
        _upload(character, editor, image_bytes("PNG"), name=name)
    assert _count() == 0
    assert_media_matches_rows()


def test_file_name_keeps_only_its_own_name_and_is_length_capped(character, editor):
    ref = _upload(character, editor, image_bytes("PNG"), name="..\\..\\secret/dir/ok name ü.png")
    assert ref.original_filename == "ok name ü.png"
    with pytest.raises(ImageRejected, match="limit is 255"):
        _upload(character, editor, image_bytes("PNG", colour="#010203"), name="n" * 300 + ".png")


def test_other_formats_are_named_in_the_refusal(character, editor):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "GIF")
    with pytest.raises(ImageRejected, match="GIF file; only PNG, JPEG and WebP"):
        _upload(character, editor, buf.getvalue(), name=None)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "BMP")
    with pytest.raises(ImageRejected, match="BMP file"):
        _upload(character, editor, buf.getvalue(), name=None)
    assert _count() == 0


# ------------------------------------------------------------------ what is stored
@pytest.mark.parametrize("fmt,name,tail", [
    ("PNG", "poly.png", b"IEND\xaeB`\x82"), ("JPEG", "poly.jpg", b"\xff\xd9"), ("WEBP", "poly.webp", None),
])
def test_polyglot_tail_is_never_stored(character, editor, fmt, name, tail):
    payload = b"<html><script>alert(document.cookie)</script></html>PK\x03\x04zip-inside"
    data = image_bytes(fmt, (64, 48)) + payload
    ref = _upload(character, editor, data, name=name)
    stored = media.read_bytes(ref.path)
    assert b"<script>" not in stored and b"PK\x03\x04" not in stored
    if tail:
        assert stored.endswith(tail)
    else:  # a RIFF file's declared size is its whole length: nothing after it
        assert int.from_bytes(stored[4:8], "little") + 8 == len(stored)
    assert ref.sha256 == media.sha256_hex(stored) and ref.byte_size == len(stored)
    with Image.open(io.BytesIO(stored)) as im:
        im.load()
        assert (im.format, im.size) == (fmt, (64, 48))
    assert_media_matches_rows()


def test_metadata_is_dropped_and_orientation_applied(character, editor):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010E] = "secret-location-marker"
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "#cc2200").save(buf, "JPEG", exif=exif, comment=b"secret-comment")
    ref = _upload(character, editor, buf.getvalue(), name="phone.jpg")
    stored = media.read_bytes(ref.path)
    assert b"secret" not in stored
    assert (ref.width, ref.height) == (48, 64)
    with Image.open(io.BytesIO(stored)) as im:
        assert im.size == (48, 64) and not im.getexif()


def test_png_pixels_and_transparency_survive_re_encoding(character, editor):
    src = Image.new("RGBA", (30, 20), (10, 200, 30, 0))
    src.putpixel((3, 4), (255, 0, 0, 128))
    buf = io.BytesIO()
    src.save(buf, "PNG")
    ref = _upload(character, editor, buf.getvalue(), name="alpha.png")
    with Image.open(media.resolve(ref.path)) as im:
        assert im.convert("RGBA").tobytes() == src.tobytes()


@pytest.mark.parametrize("fmt,name,kw,kind", [
    ("PNG", "anim.png", {}, "animated PNG"),
    ("WEBP", "anim.webp", {"lossless": True}, "animated WEBP"),
    ("MPO", "stereo.jpg", {}, "multi-picture (MPO)"),
])
def test_multi_frame_files_keep_their_first_frame_with_a_note(character, editor, fmt, name, kw, kind):
    ref = _upload(character, editor, _frames(fmt, **kw), name=name)
    assert kind in ref.import_note and "3 frames; only the first frame was kept" in ref.import_note
    with Image.open(media.resolve(ref.path)) as im:
        assert getattr(im, "n_frames", 1) == 1
        r, g, b = im.convert("RGB").getpixel((20, 15))
        assert r > 200 and g < 60 and b < 60  # the first (red) frame
    assert references.list_references(character_id=character.id)[0].import_note == ref.import_note
    assert_media_matches_rows()


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_stored_files_follow_the_umask(character, editor, umask, mode):
    old = os.umask(umask)
    try:
        ref = _upload(character, editor, image_bytes("PNG"), name="m.png")
    finally:
        os.umask(old)
    for rel in (ref.path, ref.thumb_path):
        assert stat.S_IMODE(os.stat(media.resolve(rel)).st_mode) == mode


# ------------------------------------------------------------------ failures and races leave no orphans
def test_failure_before_the_files_are_written_leaves_nothing(character, editor):
    blocker = media.resolve(f"{media.character_dir(character.slug)}/references")
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"a file where the folder should be")  # the write step fails (even as root)
    with pytest.raises(OSError):
        _upload(character, editor, image_bytes("PNG"), name="a.png")
    blocker.unlink()
    assert _count() == 0
    assert_media_matches_rows()


@pytest.fixture
def boom_constraint():
    """The database refuses rows captioned 'boom': a real failure at the last step (the commit)."""
    with session_scope() as s:
        s.execute(sa.text("alter table reference_image add constraint ck_test_boom check (caption <> 'boom')"))
    yield
    with session_scope() as s:
        s.execute(sa.text("alter table reference_image drop constraint ck_test_boom"))


def _race(character, editor, data, captions):
    barrier = threading.Barrier(len(captions))
    outcome: dict[int, object] = {}

    def go(i, caption):
        barrier.wait()
        try:
            outcome[i] = _upload(character, editor, data, name=f"same-{i}.png", caption=caption)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            outcome[i] = err

    threads = [threading.Thread(target=go, args=(i, c)) for i, c in enumerate(captions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return [outcome[i] for i in range(len(captions))]


def test_racing_uploads_of_the_same_bytes_one_failing_keep_the_winner_whole(character, editor, boom_constraint):
    for round_ in range(6):
        data = image_bytes("PNG", (50, 40), f"#{round_ * 30:02x}4080")
        failing, good = _race(character, editor, data, ["boom", "fine"])
        assert isinstance(good, ReferenceImage), good
        assert isinstance(failing, (sa.exc.IntegrityError, DuplicateError)), failing
        assert media.read_bytes(good.path) and media.exists(good.thumb_path)
        assert _count() == round_ + 1
        assert_media_matches_rows()


def test_many_identical_uploads_at_once_store_exactly_one(character, editor):
    results = _race(character, editor, image_bytes("PNG", (70, 30), "#abcdef"), [""] * 4)
    assert sum(isinstance(r, ReferenceImage) for r in results) == 1
    assert all(isinstance(r, (ReferenceImage, DuplicateError)) for r in results), results
    assert _count() == 1
    assert_media_matches_rows()


def test_delete_then_re_upload_of_the_same_image_keeps_the_new_files(character, editor):
    data = image_bytes("PNG", (40, 40), "#445566")
    first = _upload(character, editor, data)
    references.delete_reference(reference_id=first.id, editor=editor)
    second = _upload(character, editor, data)
    assert second.path != first.path  # each attempt owns its files
    assert media.exists(second.path) and not media.exists(first.path)
    assert_media_matches_rows()


# ------------------------------------------------------------------ stale caption edits
def test_stale_caption_edit_is_refused_and_names_who_saved_first(character, editor):
    ref = _upload(character, editor, image_bytes("PNG"))
    assert ref.version == 1
    saved = references.update_reference_text(reference_id=ref.id, expected_version=1, caption="front, hood up",
                                             alt_text="Mira, front", editor="Ana")
    assert (saved.version, saved.updated_by, saved.caption) == (2, "Ana", "front, hood up")
    with pytest.raises(ConflictError, match=r"changed by Ana at .* \(version 2, your form has version 1\)"):
        references.update_reference_text(reference_id=ref.id, expected_version=1, caption="mine", alt_text="",
                                         editor="Bo")
    now = references.list_references(character_id=character.id)[0]
    assert (now.caption, now.alt_text, now.version) == ("front, hood up", "Mira, front", 2)
    references.delete_reference(reference_id=ref.id, editor=editor)
    with pytest.raises(NotFoundError, match="deleted by someone else"):
        references.update_reference_text(reference_id=ref.id, expected_version=2, caption="x", alt_text="",
                                         editor="Bo")


def test_concurrent_caption_saves_from_the_same_version_let_exactly_one_win(character, editor):
    ref = _upload(character, editor, image_bytes("PNG"))
    barrier = threading.Barrier(5)
    results: list[object] = []

    def save(i):
        barrier.wait()
        try:
            results.append(references.update_reference_text(
                reference_id=ref.id, expected_version=1, caption=f"caption {i}", alt_text="", editor=f"E{i}"))
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            results.append(err)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [r for r in results if isinstance(r, ReferenceImage)]
    assert len(winners) == 1 and all(isinstance(r, ConflictError) for r in results if r not in winners), results
    now = references.list_references(character_id=character.id)[0]
    assert now.version == 2 and now.caption == winners[0].caption


# ------------------------------------------------------------------ properties
def _samples() -> dict[str, bytes]:
    out = {fmt: image_bytes(fmt, (48, 36), "#5a7f2c") for fmt in ("PNG", "JPEG", "WEBP")}
    out |= {"APNG": _frames("PNG"), "AWEBP": _frames("WEBP"), "MPO": _frames("MPO")}
    meta = PngImagePlugin.PngInfo()
    meta.add_text("Comment", "hello" * 50, zip=True)
    buf = io.BytesIO()
    Image.new("P", (30, 30), 3).save(buf, "PNG", pnginfo=meta, transparency=3)
    out["PNG-P-zTXt"] = buf.getvalue()
    return out


SAMPLES = _samples()
_HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_refusals(data: bytes, **kw) -> None:
    try:
        stored = prepare_for_storage(data, thumb_size=64, **LIMITS, **kw)
    except ImageRejected as err:
        assert str(err)
        return
    with Image.open(io.BytesIO(stored.data)) as im:  # whatever was accepted is a whole, single-frame image
        im.load()
        assert im.format == stored.info.format and im.size == (stored.info.width, stored.info.height)
        assert getattr(im, "n_frames", 1) == 1
    assert inspect_image(stored.data, **LIMITS).format == stored.info.format


@_HYP
@given(st.binary(max_size=2048))
def test_property_arbitrary_bytes_are_refused_cleanly(data):
    _only_refusals(data)


@_HYP
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_property_truncated_or_corrupted_images_are_refused_cleanly(kind, draw):
    data = bytearray(SAMPLES[kind])
    for _ in range(draw.draw(st.integers(0, 4), label="flips")):
        data[draw.draw(st.integers(0, len(data) - 1), label="at")] = draw.draw(st.integers(0, 255), label="byte")
    cut = draw.draw(st.integers(0, len(data)), label="cut")
    _only_refusals(bytes(data[:cut]))
    _only_refusals(bytes(data[:cut]) + b"\0" * draw.draw(st.integers(0, 64), label="pad"))


@_HYP
@given(st.text(max_size=80))
def test_property_file_names_come_back_clean_or_refused(name):
    try:
        clean = check_filename(name)
    except ImageRejected as err:
        assert "control character" in str(err) or "limit is 255" in str(err)
        return
    assert "/" not in clean and "\\" not in clean and len(clean) <= 255
    assert not [ch for ch in clean if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in "\u202e\u2066"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(SAMPLES)), cut=st.floats(0.0, 1.0), tail=st.binary(max_size=32))
def test_property_every_hostile_upload_leaves_rows_and_files_matching(character, editor, kind, cut, tail):
    data = SAMPLES[kind]
    data = data[: int(len(data) * cut)] + tail
    try:
        _upload(character, editor, data, name="h.png" if kind.startswith(("PNG", "APNG")) else None)
    except (ImageRejected, DuplicateError):
        pass
    assert_media_matches_rows()


# ------------------------------------------------------------------ the page
def test_page_stale_caption_edit_shows_who_saved_and_reloads_their_text(character, editor):
    from tests.test_pages import _page

    ref = _upload(character, editor, image_bytes("PNG"))
    at = _page("pages/characters.py", character=str(character.id))
    assert not at.exception
    references.update_reference_text(reference_id=ref.id, expected_version=1, caption="by Ann", alt_text="",
                                     editor="Ann")  # someone else saves while this form is open
    at.text_area(key=f"ref_caption_{ref.id}").input("mine")
    at.button[[b.label for b in at.button].index("Save text")].click().run()
    assert not at.exception
    assert any("changed by Ann" in e.value and "Nothing was overwritten" in e.value for e in at.error)
    assert not any("Unexpected error" in e.value for e in at.error)
    assert references.list_references(character_id=character.id)[0].caption == "by Ann"
    at.button(key=f"reload_{ref.id}").click().run()
    assert at.text_area(key=f"ref_caption_{ref.id}").value == "by Ann"
    at.text_area(key=f"ref_caption_{ref.id}").input("mine, after reload")
    at.button[[b.label for b in at.button].index("Save text")].click().run()
    now = references.list_references(character_id=character.id)[0]
    assert (now.caption, now.version, now.updated_by) == ("mine, after reload", 3, editor)


def test_page_hostile_uploads_and_urls_get_specific_messages_never_unexpected_error(character, editor):
    from tests.test_pages import _page

    at = _page("pages/characters.py", character=str(character.id))
    uploader = next(u for u in at.file_uploader if u.label.startswith("Upload images"))
    uploader.set_value([
        ("cut.png", image_bytes("PNG", (90, 90))[:40], "image/png"),
        ("bomb.png", _png_declaring(20_000, 20_000), "image/png"),
        ("meta.png", _with_chunks(image_bytes("PNG"), _chunk(b"zTXt", b"C\0\0" + zlib.compress(b"A" * 2_000_000))),
         "image/png"),
        ("evil\u202egnp.png", image_bytes("PNG", colour="#102030"), "image/png"),
        ("photo.png", image_bytes("JPEG"), "image/png"),
        ("anim.png", _frames("PNG"), "image/png"),
    ])
    at.button[[b.label for b in at.button].index("Add uploaded images")].click().run()
    assert not at.exception
    shown = [e.value for e in at.error] + [i.value for i in at.info] + [s.value for s in at.success]
    assert not [m for m in shown if "Unexpected error" in m], shown
    for needle in ("truncated", "decompression-bomb guard", "decompression bomb", "control character U+202E",
                   "claims to be PNG but its content is JPEG", "only the first frame was kept"):
        assert any(needle in m for m in shown), (needle, shown)
    assert _count() == 1  # only the animated PNG (first frame)
    for url, needle in (("http://127.0.0.1/x.png", "loopback"), ("http://[::1", "not a valid URL"),
                        ("http://a:99999/x.png", "ports run from 1"), ("http://169.254.169.254/", "metadata")):
        box = next(t for t in at.text_input if t.label == "Image URL")
        box.input(url)
        at.button[[b.label for b in at.button].index("Fetch and add")].click().run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert any(needle in e for e in errors) and not any("Unexpected error" in e for e in errors), (url, errors)
    assert _count() == 1
    assert_media_matches_rows()
