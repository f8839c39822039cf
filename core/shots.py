"""The ten-slot shot list, read from prompts/shot_list.json (data, not code)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from core.settings import PROJECT_ROOT

SHOT_LIST_FILE = PROJECT_ROOT / "prompts" / "shot_list.json"


@dataclass(frozen=True)
class Slot:
    key: str
    label: str
    seed_offset: int
    pose: str
    fragment: str
    short: str = ""  # a column header that fits a ten-column grid at 1024 px (the label is the tooltip)

    @property
    def header(self) -> str:
        return self.short or self.label


@lru_cache(maxsize=1)
def shot_list() -> tuple[Slot, ...]:
    raw = json.loads(SHOT_LIST_FILE.read_text(encoding="utf-8"))["slots"]
    slots = tuple(Slot(**s) for s in raw)
    keys = [s.key for s in slots]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate slot keys in {SHOT_LIST_FILE}")
    return slots


def slot_by_key(key: str) -> Slot:
    for s in shot_list():
        if s.key == key:
            return s
    raise KeyError(f"unknown slot '{key}'; known: {', '.join(s.key for s in shot_list())}")
