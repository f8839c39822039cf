"""Review sessions under load: 10 simulated reviewers decide 2,000 images concurrently through core.review.

Each reviewer is a thread (a Streamlit server serves its sessions from threads of one process, so this is
the shape of the real load) looping claim → decide each claimed image → claim, until the queue is empty.
Measured: decisions per second over the whole run, claim latency (p50 / p95 of claim_next calls, target
p95 <= 200 ms), and double claims: images two reviewers held at the same time (from each reviewer's
[claimed, decided] intervals; must be 0). Every image must end up reviewed exactly once.

    .venv/bin/python bench/review_load.py [--reviewers 10] [--images 2000] [--batch 10] [--votes 1]

--votes 2 runs double review: every image must get exactly two votes from two different reviewers.

Ends with one JSON line: {"decisions_per_s": …, "p95_claim_ms": …, "double_claims": …, …}.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time

from _setup import bench_database


def _double_claims(intervals: dict[int, list[tuple[str, float, float]]]) -> int:
    """Images held by two different reviewers over overlapping intervals. Each interval runs from the claim's
    return to the start of the decision, when the reviewer certainly holds the image (the decision's commit
    hands it on: under double review the next reviewer may claim it before the first one's call returns)."""
    bad = 0
    for spans in intervals.values():
        spans = sorted(spans, key=lambda x: x[1])
        if any(a[0] != b[0] and b[1] < a[2] for i, a in enumerate(spans) for b in spans[i + 1:]):
            bad += 1
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviewers", type=int, default=10)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=10, help="images a reviewer claims at once")
    ap.add_argument("--votes", type=int, default=1, help="REVIEW_VOTES_REQUIRED (2 = double review)")
    args = ap.parse_args()
    import os

    os.environ["REVIEW_VOTES_REQUIRED"] = str(args.votes)

    bench_database("bench_review_load")
    import sqlalchemy as sa

    from bench._fill import fill_cast
    from core import review
    from core.shots import shot_list
    from db.engine import session_scope

    characters = -(-args.images // len(shot_list()))
    n = fill_cast(characters=characters, styles=4, reviewed_every=10**9)
    print(f"{n} unreviewed images, {args.reviewers} reviewers, claiming {args.batch} at a time")

    claim_ms: list[float] = []
    intervals: dict[int, list[tuple[str, float, float]]] = {}
    decided = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(args.reviewers + 1)

    def reviewer(who: str, seed: int) -> None:
        rnd = random.Random(seed)
        try:
            start.wait()
            while True:
                t = time.perf_counter()
                batch = review.claim_next(reviewer=who, n=args.batch)
                got = time.perf_counter()
                with lock:
                    claim_ms.append((got - t) * 1000)
                if not batch:
                    return
                for item in batch:
                    held_until = time.perf_counter()  # certainly still held: the decision has not started
                    if rnd.random() < 0.8:
                        review.decide(variation_id=item.variation_id, decision="approved", reviewer=who)
                    else:
                        review.decide(variation_id=item.variation_id, decision="rejected", reviewer=who,
                                      reason_codes=[rnd.choice(["anatomy", "artifact", "wrong_outfit"])])
                    with lock:
                        intervals.setdefault(item.variation_id, []).append((who, got, held_until))
                        decided[0] += 1
        except BaseException as err:  # reported below: a failed reviewer must fail the bench
            errors.append(err)

    threads = [threading.Thread(target=reviewer, args=(f"reviewer-{i:02d}", i)) for i in range(args.reviewers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} reviewer(s) failed: {errors[0]!r}")

    with session_scope() as s:
        left = s.execute(sa.text("select count(*) from variation where review_status = 'unreviewed'")).scalar_one()
        votes = s.execute(sa.text("select count(*) from review_vote")).scalar_one()
        audit_rows = s.execute(sa.text("select count(*) from audit_event where action = 'review.decide'")).scalar_one()
    # an image decided by more reviewers than it needs votes, or twice by one reviewer
    twice = sum(1 for spans in intervals.values()
                if len(spans) > args.votes or len({w for w, _, _ in spans}) < len(spans))
    q = statistics.quantiles(claim_ms, n=100)
    out = {
        "decisions_per_s": round(decided[0] / wall, 1),
        "p95_claim_ms": round(q[94], 1),
        "p50_claim_ms": round(statistics.median(claim_ms), 1),
        "double_claims": _double_claims(intervals),
        "decisions": decided[0],
        "images": n,
        "over_decided": twice,
        "left_unreviewed": left,
        "claim_calls": len(claim_ms),
        "reviewers": args.reviewers,
        "votes_required": args.votes,
        "wall_s": round(wall, 2),
    }
    print(f"decisions: {decided[0]} in {wall:.1f} s = {out['decisions_per_s']} decisions/s")
    print(f"claim latency: p50 {out['p50_claim_ms']} ms, p95 {out['p95_claim_ms']} ms over {len(claim_ms)} claims "
          "(target p95 <= 200 ms)")
    print(f"double claims: {out['double_claims']} (must be 0); images decided more often than needed: {twice}; "
          f"left unreviewed: {left}; votes {votes}; decision audit rows {audit_rows}")
    print(json.dumps(out))
    if out["double_claims"] or twice or left or decided[0] != n * args.votes:
        raise SystemExit("FAILED: an image was claimed twice or not reviewed")


if __name__ == "__main__":
    main()
