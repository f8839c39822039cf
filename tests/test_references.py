"""Reference images: real files through Pillow, real HTTP from a local server."""
import http.server
import os
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from core import characters, media, references
from core.characters import CharacterInput
from core.errors import DuplicateError, FetchError, ImageRejected, ValidationError
from db.engine import session_scope
from db.models import ReferenceImage
from tests.helpers import image_bytes
from tests.media_check import assert_media_matches_rows


@pytest.fixture
def character(editor):
    return characters.create_character(data=CharacterInput(name="Ayla Stormwind"), editor=editor)


def _media_files() -> list[Path]:
    root = media.media_root()
    return sorted(p for p in root.rglob("*") if p.is_file())


def _ref_count() -> int:
    with session_scope() as s:
        return s.execute(sa.select(sa.func.count(ReferenceImage.id))).scalar_one()


@pytest.mark.parametrize("fmt,name", [("PNG", "a.png"), ("JPEG", "b.jpg"), ("WEBP", "c.webp")])
def test_upload_stores_file_thumbnail_and_hash(character, editor, fmt, name):
    data = image_bytes(fmt, (640, 480))
    ref = references.add_reference_upload(
        character_id=character.id, data=data, filename=name, claimed_mime=None, editor=editor, caption="front"
    )
    assert ref.path.startswith("characters/ayla-stormwind/references/")
    stored = media.read_bytes(ref.path)  # re-encoded by Pillow, never the upload's own bytes
    assert ref.sha256 == media.sha256_hex(stored) and ref.byte_size == len(stored)
    assert (ref.width, ref.height) == (640, 480)
    import io

    from PIL import Image

    with Image.open(io.BytesIO(stored)) as im:
        assert (im.format, im.size) == (fmt, (640, 480))
        if fmt == "PNG":
            with Image.open(io.BytesIO(data)) as src:
                assert im.tobytes() == src.tobytes()
    with Image.open(media.resolve(ref.thumb_path)) as thumb:
        assert max(thumb.size) <= 256
    assert_media_matches_rows()  # no temp files left behind by the atomic writer, nothing orphaned


def test_not_an_image_is_refused_and_nothing_written(character, editor):
    with pytest.raises(ImageRejected, match="not an image"):
        references.add_reference_upload(
            character_id=character.id, data=b"hello, I am text", filename="x.png", claimed_mime="image/png",
            editor=editor,
        )
    assert _media_files() == [] and _ref_count() == 0


def test_file_that_lies_about_its_type_is_refused(character, editor):
    with pytest.raises(ImageRejected, match="claims to be PNG but its content is JPEG"):
        references.add_reference_upload(
            character_id=character.id, data=image_bytes("JPEG"), filename="photo.png", claimed_mime="image/png",
            editor=editor,
        )
    with pytest.raises(ImageRejected, match="only PNG, JPEG and WebP"):
        references.add_reference_upload(
            character_id=character.id, data=image_bytes("GIF"), filename=None, claimed_mime=None, editor=editor,
        )
    assert _media_files() == [] and _ref_count() == 0


def test_truncated_image_is_refused(character, editor):
    data = image_bytes("PNG", (300, 300), "#123456")
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        references.add_reference_upload(
            character_id=character.id, data=data[: len(data) // 2], filename="t.png", claimed_mime=None, editor=editor
        )


def test_byte_cap_and_pixel_cap(character, editor, settings_override):
    settings_override(max_upload_bytes=1000)
    big = image_bytes("PNG", (400, 400))
    big = big + b"\0" * max(0, 1001 - len(big))
    with pytest.raises(ImageRejected, match="the limit is"):
        references.add_reference_upload(character_id=character.id, data=big, filename="b.png", claimed_mime=None, editor=editor)
    settings_override(max_upload_bytes=10_000_000, max_image_pixels=1_000_000)
    # A decompression bomb: tiny file, huge canvas. Refused from the header, before decoding.
    bomb = image_bytes("PNG", (5000, 5000), "#000000")
    assert len(bomb) < 200_000
    with pytest.raises(ImageRejected, match="25 megapixels.*decompression bombs"):
        references.add_reference_upload(character_id=character.id, data=bomb, filename="bomb.png", claimed_mime=None, editor=editor)
    assert _media_files() == [] and _ref_count() == 0


def test_same_image_twice_is_refused(character, editor):
    data = image_bytes()
    references.add_reference_upload(character_id=character.id, data=data, filename="a.png", claimed_mime=None, editor=editor)
    with pytest.raises(DuplicateError, match="already a reference of 'Ayla Stormwind'"):
        references.add_reference_upload(character_id=character.id, data=data, filename="a2.png", claimed_mime=None, editor=editor)
    assert _ref_count() == 1


def test_archived_character_takes_no_new_images(character, editor):
    characters.set_archived(character_id=character.id, expected_version=1, archived=True, editor=editor)
    with pytest.raises(ValidationError, match="archived"):
        references.add_reference_upload(
            character_id=character.id, data=image_bytes(), filename="a.png", claimed_mime=None, editor=editor
        )


def test_failed_row_commit_leaves_no_file(character, editor, monkeypatch):
    """If the database refuses the row, the files written just before are removed."""
    with session_scope() as s:  # a constraint the insert will violate: the DB, not our code, refuses
        s.execute(sa.text("alter table reference_image add constraint ck_test_caption check (caption <> 'boom')"))
    try:
        with pytest.raises(sa.exc.IntegrityError):
            references.add_reference_upload(
                character_id=character.id, data=image_bytes(), filename="a.png", claimed_mime=None, editor=editor,
                caption="boom",
            )
        assert _media_files() == [] and _ref_count() == 0
    finally:
        with session_scope() as s:
            s.execute(sa.text("alter table reference_image drop constraint ck_test_caption"))


def test_caption_edit_and_delete_removes_files(character, editor):
    ref = references.add_reference_upload(
        character_id=character.id, data=image_bytes(), filename="a.png", claimed_mime=None, editor=editor
    )
    updated = references.update_reference_text(reference_id=ref.id, expected_version=ref.version,
                                               caption=" side view ", alt_text="Ayla, side", editor=editor)
    assert (updated.caption, updated.alt_text, updated.version) == ("side view", "Ayla, side", 2)
    references.delete_reference(reference_id=ref.id, editor=editor)
    assert _media_files() == [] and references.list_references(character_id=character.id) == []


# ------------------------------------------------------------------ URL fetching
class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        kind, payload = self.routes.get(self.path, ("status", 404))
        if kind == "status":
            self.send_response(payload)
            self.end_headers()
        elif kind == "sleep":
            time.sleep(payload)
            self.send_response(200)
            self.end_headers()
        elif kind == "redirect":
            self.send_response(302)
            self.send_header("Location", payload)
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Handler.routes
    server.shutdown()
    _Handler.routes.clear()


def test_url_to_loopback_is_refused_by_default(character, editor, http_server):
    base, routes = http_server
    routes["/a.png"] = ("image/png", image_bytes())
    with pytest.raises(FetchError, match="127.0.0.1 is a loopback address.*are blocked"):
        references.add_reference_url(character_id=character.id, url=f"{base}/a.png", editor=editor)
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/x.png", "http://[::1]/x.png"):
        with pytest.raises(FetchError, match="blocked"):
            references.add_reference_url(character_id=character.id, url=url, editor=editor)
    with pytest.raises(FetchError, match="not an http"):
        references.add_reference_url(character_id=character.id, url="file:///etc/passwd", editor=editor)
    assert _ref_count() == 0


def test_url_fetch_success_when_private_allowed(character, editor, http_server, settings_override):
    base, routes = http_server
    settings_override(allow_private_urls=True)
    data = image_bytes("JPEG", (120, 90))
    routes["/img"] = ("image/jpeg", data)
    routes["/moved"] = ("redirect", "/img")
    ref = references.add_reference_url(character_id=character.id, url=f"{base}/moved", editor=editor)
    assert ref.source == "url" and ref.source_url.endswith("/img") and (ref.width, ref.height) == (120, 90)
    assert ref.mime == "image/jpeg" and ref.sha256 == media.sha256_hex(media.read_bytes(ref.path))
    assert_media_matches_rows()


def test_url_timeout_too_large_and_not_image(character, editor, http_server, settings_override):
    base, routes = http_server
    settings_override(allow_private_urls=True, url_fetch_timeout_s=0.5, url_fetch_max_bytes=5000)
    routes["/slow"] = ("sleep", 2)
    routes["/big"] = ("image/png", image_bytes("PNG", (100, 100)) + os.urandom(6000))
    routes["/html"] = ("text/html", b"<html>not an image</html>")
    routes["/missing"] = ("status", 404)
    with pytest.raises(FetchError, match="Timed out after 0.5 s"):
        references.add_reference_url(character_id=character.id, url=f"{base}/slow", editor=editor)
    with pytest.raises(FetchError, match="limit of 5000 bytes|the limit is 5000"):
        references.add_reference_url(character_id=character.id, url=f"{base}/big", editor=editor)
    with pytest.raises(ImageRejected, match="not an image"):
        references.add_reference_url(character_id=character.id, url=f"{base}/html", editor=editor)
    with pytest.raises(FetchError, match="HTTP 404"):
        references.add_reference_url(character_id=character.id, url=f"{base}/missing", editor=editor)
    assert _media_files() == [] and _ref_count() == 0
