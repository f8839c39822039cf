"""The editor's display name when sign-in is not configured: typed once, carried in the URL.

The name goes into audit columns (120 characters) and can come back from a bookmarked or
reloaded URL, so it is cleaned the same way wherever it comes from.
"""
from __future__ import annotations

NAME_MAX = 120  # the audit columns' width (created_by, requested_by, reviewer)


def clean_editor_name(raw: str | None) -> str | None:
    """Whitespace collapsed, control characters dropped, at most NAME_MAX characters; None when empty."""
    text = "".join(ch for ch in (raw or "") if ch.isprintable())
    text = " ".join(text.split())[:NAME_MAX].strip()
    return text or None
