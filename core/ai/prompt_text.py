"""Clean sentences from rendered templates, whatever the editors' fields look like.

Templates join fields that editors write as sentences of their own: "{{ name }}, {{ description }}."
with a description "A wandering storm mage." renders "Ayla, A wandering storm mage.." A template
cannot guard against every shape of input, so every rendered prompt passes through `tidy_prompt`:
doubled sentence ends collapse, an article or pronoun that opens a joined clause is lowered, and stray
spaces before punctuation go. It only touches text between the template's own lines and never rewrites
an ellipsis ("..." or "…"), names, or JSON examples such as ["...", "..."].
"""
from __future__ import annotations

import re

# words that open a description as a sentence ("A wandering mage") but read lower-case after a comma;
# names and other capitalised words are left alone
_CLAUSE_OPENERS = ("A", "An", "The", "This", "That", "These", "Those", "His", "Her", "Their", "Its", "Our",
                   "One", "Some", "Each", "Every", "He", "She", "They", "It", "Who", "Which", "With", "Wearing")
_OPENER_AFTER_COMMA = re.compile(r"([,;:] )(" + "|".join(_CLAUSE_OPENERS) + r")\b(?! [A-Z])")
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([,.;:!?])(?=\s|$|[,.;:!?])")
_DOUBLE_END = re.compile(r"(?<!\.)([.!?])[ \t]*\.(?!\.)")  # "mage.." / "mage! ." / "mage. ." -> one end
_COMMA_BEFORE_END = re.compile(r",[ \t]*([.!?])")  # "mage, ." -> "mage."
_MULTI_SPACE = re.compile(r"(?<=\S)[ \t]{2,}")


def tidy_line(line: str) -> str:
    """One line of a rendered prompt as a clean sentence (see the module docstring)."""
    previous = None
    while previous != line:  # "mage..." is an ellipsis and stays; "mage.." and "mage. ." lose one end
        previous = line
        line = _MULTI_SPACE.sub(" ", line)
        line = _SPACE_BEFORE_PUNCT.sub(r"\1", line)
        line = _COMMA_BEFORE_END.sub(r"\1", line)
        line = _DOUBLE_END.sub(r"\1", line)
    return _OPENER_AFTER_COMMA.sub(lambda m: m.group(1) + m.group(2).lower(), line)


def tidy_prompt(text: str) -> str:
    """Every line tidied; line breaks (the template's structure) are kept."""
    return "\n".join(tidy_line(line) for line in text.split("\n"))


def clip_words(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary and ending with "…" when anything was cut
    (captions and errors shown in cards: a cut mid-word reads like a typo)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:max(1, limit - 1)]
    if " " in head and not text[len(head)].isspace():
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:.-") + "…"
