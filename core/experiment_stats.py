"""Statistics of prompt experiments, as pure functions (no database, no I/O).

Why Wilson: with the 10–40 rows a panel gives, the normal-approximation interval
runs past 0 or 1 and is far too narrow near the edges; Wilson's score interval
stays inside [0, 1] and keeps its coverage at small n. The sign test answers
"could this split of decisive rows between two arms be a coin toss?".
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when there are no trials."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges, not 0.9999999999999999
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def sign_test_p(wins_a: int, wins_b: int) -> float:
    """Two-sided exact sign test (binomial, p = 0.5) on the decisive rows between two arms."""
    n = wins_a + wins_b
    if n == 0:
        return 1.0
    k = min(wins_a, wins_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class CellFact:
    """What the statistics need of one generated cell."""

    arm: int
    row: tuple[int, str]  # (character_id, slot_key)
    status: str
    cost_usd: Decimal | None
    duration_ms: int | None
    drift: float | None = None


@dataclass(frozen=True)
class PickFact:
    row: tuple[int, str]
    outcome: str  # win | tie | both_bad
    winner_arm: int | None
    reason_codes: tuple[str, ...] = ()


@dataclass
class ArmResult:
    arm: int
    label: str
    images: int = 0
    failed: int = 0
    cost_usd: Decimal = Decimal(0)
    judged: int = 0
    wins: int = 0
    ties: int = 0
    both_bad: int = 0
    latencies_ms: list[int] = field(default_factory=list)
    drifts: list[float] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)

    @property
    def approved(self) -> int:
        """Images a tuner would keep: the row's winner, or either image of a tie."""
        return self.wins + self.ties

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.judged if self.judged else None

    @property
    def win_ci(self) -> tuple[float, float]:
        return wilson_interval(self.wins, self.judged)

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.judged if self.judged else None

    @property
    def cost_per_image(self) -> Decimal | None:
        return self.cost_usd / self.images if self.images else None

    @property
    def cost_per_approved(self) -> Decimal | None:
        return self.cost_usd / self.approved if self.approved else None

    @property
    def cost_per_win(self) -> Decimal | None:
        return self.cost_usd / self.wins if self.wins else None

    @property
    def mean_drift(self) -> float | None:
        """Mean identity drift of the arm's images (None when no reference image was embedded)."""
        return sum(self.drifts) / len(self.drifts) if self.drifts else None

    @property
    def median_latency_ms(self) -> float | None:
        if not self.latencies_ms:
            return None
        xs = sorted(self.latencies_ms)
        mid = len(xs) // 2
        return float(xs[mid]) if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def arm_results(labels: list[str], cells: Iterable[CellFact], picks: Iterable[PickFact]) -> list[ArmResult]:
    """Per arm: images, failures, cost, latency; over judged rows: wins, ties, both-bad and reasons.

    A row counts as judged for every arm; the reasons of a pick are charged to the arms
    that did not win it (the loser of a win, every arm of a 'both bad').
    """
    out = [ArmResult(arm=i, label=lab) for i, lab in enumerate(labels)]
    for c in cells:
        r = out[c.arm]
        if c.status == "completed":
            r.images += 1
            if c.duration_ms is not None:
                r.latencies_ms.append(c.duration_ms)
            if c.drift is not None:
                r.drifts.append(c.drift)
        elif c.status == "failed":
            r.failed += 1
        r.cost_usd += c.cost_usd or Decimal(0)
    for p in picks:
        for r in out:
            r.judged += 1
            if p.outcome == "tie":
                r.ties += 1
            elif p.outcome == "both_bad":
                r.both_bad += 1
                r.reasons.update(p.reason_codes)
            elif p.winner_arm == r.arm:
                r.wins += 1
            else:
                r.reasons.update(p.reason_codes)
    return out


def _pct(x: float) -> str:
    return f"{round(x * 100)} %"


def verdict(results: list[ArmResult]) -> str:
    """One plain sentence: who wins how many rows, the 95 % CI, and the cost per approved image change."""
    judged = results[0].judged if results else 0
    if judged == 0:
        return "No rows judged yet: pick the better image per row in the compare view."
    ranked = sorted(results, key=lambda r: (r.wins, r.approved), reverse=True)
    best, runner = ranked[0], ranked[1]
    lo, hi = best.win_ci
    if best.wins == runner.wins:
        head = f"No winner yet: {best.label} and {runner.label} each win {best.wins} of {judged} rows"
    else:
        head = (f"{best.label} wins {best.wins} of {judged} rows ({_pct(best.win_rate)}, 95 % CI "
                f"{_pct(lo)}–{_pct(hi)}); {runner.label} wins {runner.wins}")
        if len(results) == 2:
            p = sign_test_p(best.wins, runner.wins)
            head += f", sign test p = {p:.2f}" + (" (could still be chance)" if p >= 0.05 else "")
    ties = best.ties
    bad = best.both_bad
    if ties or bad:
        head += f"; {ties} tie(s), {bad} both bad"
    a, b = best.cost_per_approved, runner.cost_per_approved
    if a is not None and b is not None and b > 0:
        change = (a - b) / b * 100
        head += f"; cost per approved image {change:+.0f} % vs {runner.label}"
    elif a is not None and a == 0 and (b is None or b == 0):
        head += "; no spend (offline images are free)"
    return head + "."
