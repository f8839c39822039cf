"""Free text from editors: one cleaning rule on the way in, one escaping rule on the way out.

In: `clean_text` normalises (NFC), refuses NUL and other control characters
and the invisible bidi override/embedding/isolate characters (which make a
name display as something other than what it is), and applies the field's
length limit, with a message naming the field.

Out: pages render most text as Markdown, and Streamlit's Markdown (labels
included) draws images and links, so `![x](https://…)` in a name would make
every other editor's browser fetch that URL. `escape_markdown` makes any
editor text literal wherever a page shows it; `escape_html` does the same for
Plotly hover labels (which understand a few HTML tags). `escape_like` makes a
search term literal inside a SQL LIKE pattern.
"""
from __future__ import annotations

import html
import re
import unicodedata

from core.errors import ValidationError

# Limits of the free-text fields (the README's "Input paths and limits" table lists them).
EDITOR_NAME_MAX = 80
NOTE_MAX = 1_000  # prompt version notes, tag descriptions
CAPTION_MAX = 1_000  # reference captions and alt text
DESCRIPTION_MAX = 4_000
SEARCH_MAX = 500

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_SINGLE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_text(value: str | None, *, field: str, limit: int, multiline: bool = False) -> str:
    """`value` stripped and NFC-normalised; ValidationError naming `field` for controls, bidi overrides or length."""
    text = unicodedata.normalize("NFC", value or "")
    bad = (_CONTROL if multiline else _CONTROL_SINGLE_LINE).search(text)
    if bad:
        what = "a NUL byte" if bad.group() == "\x00" else f"a control character (U+{ord(bad.group()):04X})"
        raise ValidationError(f"{field} contains {what}; remove it and try again.")
    hidden = sorted({c for c in text if c in BIDI_CONTROLS})
    if hidden:
        codes = ", ".join(f"U+{ord(c):04X}" for c in hidden)
        raise ValidationError(
            f"{field} contains invisible text-direction characters ({codes}) that make it display differently "
            "from what it says; remove them and try again."
        )
    text = text.strip()
    if len(text) > limit:
        raise ValidationError(f"{field} is {len(text)} characters; the limit is {limit}.")
    return text


def clean_editor_name(value: str | None) -> str:
    """The name an editor types in the sidebar (it lands in audit columns and is shown to everyone)."""
    return clean_line(value, field="Your name", limit=EDITOR_NAME_MAX)


def clean_line(value: str | None, *, field: str, limit: int) -> str:
    """A one-line field (names): runs of whitespace become one space, then `clean_text`'s rules."""
    return clean_text(" ".join(str(value or "").split()), field=field, limit=limit)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>!~$|])")  # emphasis, code, links/images, HTML, strike, LaTeX, tables
_AUTOLINK = re.compile(r"://|(?i:\bwww)\.")  # GFM turns bare URLs into links (which also swallow escapes)
_MD_BLOCK_START = re.compile(r"^(\s*\d*)([#+\-=>.)])")  # a heading, list, rule or quote at the very start


def escape_markdown(text: object) -> str:
    """`text` shown literally by st.markdown / st.caption / st.info / widget labels (no links, images, HTML,
    LaTeX, colour directives or lists). Newlines become spaces, so a value cannot start a block."""
    flat = " ".join(str(text if text is not None else "").splitlines())
    out = _MD_BLOCK_START.sub(r"\1\\\2", _MD_SPECIAL.sub(r"\\\1", flat), count=1)
    return _AUTOLINK.sub(lambda m: m.group().replace("/", "\\/").replace(".", "\\."), out)  # URLs stay plain text


def escape_html(text: object) -> str:
    """`text` shown literally in Plotly hover labels and other HTML contexts."""
    return html.escape(str(text if text is not None else ""), quote=True)


def escape_like(term: str) -> str:
    """`term` matched literally inside a LIKE pattern that uses ESCAPE '\\'."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
