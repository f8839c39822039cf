"""The one robust JSON extractor for model output.

Models wrap JSON in code fences, put prose before it, or leave trailing
commas. This finds the first JSON object/array and parses it, or raises a
clear error showing what came back.
"""
from __future__ import annotations

import json
import re
from typing import Any

from core.errors import WorkbenchError


class ModelOutputError(WorkbenchError):
    """The model's answer could not be read as the JSON we asked for."""


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _balanced(text: str, start: int) -> str | None:
    opener = text[start]
    closer = "}" if opener == "{" else "]"
    depth, in_str, esc = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[start:i + 1] if ch == closer else None
    return None


def extract_json(text: str | None, *, expect: type = dict) -> Any:
    if text is None or not text.strip():
        raise ModelOutputError("The model returned an empty answer where JSON was expected.")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for cand in candidates:
        for start, ch in enumerate(cand):
            if ch not in "{[":
                continue
            chunk = _balanced(cand, start)
            if chunk is None:
                continue
            for attempt in (chunk, _TRAILING_COMMA.sub(r"\1", chunk)):
                try:
                    value = json.loads(attempt)
                except json.JSONDecodeError:
                    continue
                if isinstance(value, expect):
                    return value
            break  # the first balanced block is the answer; do not hunt inside it
    preview = " ".join(text.split())[:200]
    raise ModelOutputError(f"Could not find a JSON {expect.__name__} in the model's answer: “{preview}”")
