"""How much reviewers agree: percent agreement and Cohen's kappa per reviewer pair and per reason code.

The functions at the top are pure (lists of label pairs in, numbers out) so they can be checked by
hand; `agreement()` loads the pairs in SQL: every two reviewers' (non-adjudication) votes on the
same image make one pair, once the image is no longer open for votes (settled or disputed). Per
reason code, each vote is a binary label (the code was given or not) and the pairs of all reviewer
pairs are pooled, rater order fixed by name.

Kappa = (p_o − p_e) / (1 − p_e), p_o the observed agreement, p_e the agreement expected by chance
from each rater's label frequencies. When p_e = 1 (both raters used one and the same label on every
item) kappa is undefined and reported as None; percent agreement still says 100 %.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Hashable, Sequence

import sqlalchemy as sa

from core.generation import REASON_CODES
from db.engine import session_scope


def percent_agreement(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Share of items both raters labelled the same (None without items)."""
    if not pairs:
        return None
    return sum(a == b for a, b in pairs) / len(pairs)


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa of two raters over the items in `pairs` ((label by rater 1, label by rater 2) each)."""
    n = len(pairs)
    if not n:
        return None
    p_o = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    p_e = sum(first[label] * second[label] for label in set(first) | set(second)) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


@dataclass(frozen=True)
class Agreement:
    key: str  # "ann & bob" for a pair, the reason code for a code
    items: int  # images both raters voted on
    percent: float | None
    kappa: float | None


@dataclass(frozen=True)
class VotePair:
    variation_id: int
    reviewer_a: str  # a < b by name
    reviewer_b: str
    decision_a: str
    decision_b: str
    codes_a: tuple[str, ...]
    codes_b: tuple[str, ...]


def pair_agreement(pairs: Sequence[VotePair]) -> list[Agreement]:
    """Per reviewer pair: approved / rejected agreement, most shared images first."""
    by_pair: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for p in pairs:
        by_pair.setdefault((p.reviewer_a, p.reviewer_b), []).append((p.decision_a, p.decision_b))
    out = [Agreement(f"{a} & {b}", len(x), percent_agreement(x), cohen_kappa(x)) for (a, b), x in by_pair.items()]
    return sorted(out, key=lambda g: (-g.items, g.key))


def code_agreement(pairs: Sequence[VotePair], codes: Sequence[str] | None = None) -> list[Agreement]:
    """Per reason code: did both votes of a pair give the code (binary label), pooled over reviewer pairs.
    Codes nobody used are left out."""
    codes = list(codes) if codes is not None else sorted({c for p in pairs for c in (*p.codes_a, *p.codes_b)})
    out = []
    for code in codes:
        x = [(code in p.codes_a, code in p.codes_b) for p in pairs]
        if any(a or b for a, b in x):
            out.append(Agreement(code, len(x), percent_agreement(x), cohen_kappa(x)))
    return out


def vote_pairs(*, since: datetime | None = None, until: datetime | None = None) -> list[VotePair]:
    """Every two reviewers' votes on the same image (adjudications left out), optionally by decision time.

    Only images no longer open for votes: with k > 2 a pair on an image still waiting for its k-th vote would
    tell the next reviewer (on the Reviewers view) whether the first ones agreed, and on which reasons."""
    sql = ("select a.variation_id, a.reviewer, b.reviewer, a.decision, b.decision, a.reason_codes, b.reason_codes "
           "from review_vote a join review_vote b on b.variation_id = a.variation_id and a.reviewer < b.reviewer "
           "and not b.adjudication join variation v on v.id = a.variation_id "
           "where not a.adjudication and v.review_status <> 'unreviewed' "
           "and (cast(:since as timestamptz) is null or greatest(a.decided_at, b.decided_at) >= :since) "
           "and (cast(:until as timestamptz) is null or greatest(a.decided_at, b.decided_at) < :until) "
           "order by a.variation_id, a.reviewer, b.reviewer")
    with session_scope() as s:
        rows = s.execute(sa.text(sql), {"since": since, "until": until}).all()
    return [VotePair(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), tuple(r[6])) for r in rows]


def agreement(*, since: datetime | None = None, until: datetime | None = None
              ) -> tuple[list[Agreement], list[Agreement]]:
    """(per reviewer pair, per reason code) agreement over the stored votes."""
    pairs = vote_pairs(since=since, until=until)
    return pair_agreement(pairs), code_agreement(pairs, [c for c in REASON_CODES
                                                         if any(c in p.codes_a or c in p.codes_b for p in pairs)])
