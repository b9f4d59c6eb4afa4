"""decide+feedback pairs per second through the Python client on one connection.

Three ways to make the same pairs (a decision for a unit, then its reward), each on one
kept-alive HTTP connection, one after the other for DURATION seconds each:

  anchor         raw `requests.Session` calls: POST .../decide, then POST .../feedback
  client-single  keel_client.Client.decide + Client.feedback (the client's overhead on the anchor)
  client-batch   keel_client.Client.decide_batch(BATCH) + Client.feedback_batch(BATCH)

Prints one JSON object per mode and a Markdown table of pairs/s with the ratio to the anchor.
Every decision is acknowledged only once durably logged, as a single decide; every answer is
checked (a failed item stops the run).

    python bench/client/load.py URL DEPLOYMENT [--token T] [--duration 10] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable, Dict

import requests

from keel_client import Client, Decision, FeedbackResult


def timed(duration: float, step: Callable[[int], int]) -> Dict[str, float]:
    """Runs `step(i)` (which makes some pairs and returns how many) for `duration` seconds."""
    pairs, calls, i = 0, 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        pairs += step(i)
        calls += 1
        i += 1
    elapsed = time.perf_counter() - start
    return {"pairs": pairs, "seconds": round(elapsed, 3), "pairs_per_s": round(pairs / elapsed, 1), "steps": calls}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("deployment")
    ap.add_argument("--token", default="")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    base = args.url.rstrip("/") + f"/v1/deployments/{args.deployment}"
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}

    raw = requests.Session()
    raw.headers.update(headers)

    def anchor(i: int) -> int:
        r = raw.post(base + "/decide", json={"unit_id": f"a{i}", "context": {"x": i % 7}})
        r.raise_for_status()
        f = raw.post(base + "/feedback", json={"decision_id": r.json()["decision_id"], "reward": i % 2})
        f.raise_for_status()
        return 1

    keel = Client(args.url, token=args.token or None)

    def single(i: int) -> int:
        d = keel.decide(args.deployment, unit_id=f"s{i}", context={"x": i % 7})
        keel.feedback(args.deployment, d.decision_id, float(i % 2))
        return 1

    def batch(i: int) -> int:
        items = [{"unit_id": f"b{i}-{j}", "context": {"x": j % 7}} for j in range(args.batch)]
        decisions = keel.decide_batch(args.deployment, items)
        events = []
        for j, d in enumerate(decisions):
            if not isinstance(d, Decision):
                raise SystemExit(f"item {j} refused: {d}")
            events.append((d.decision_id, float(j % 2)))
        fed = keel.feedback_batch(args.deployment, events)
        bad = [f for f in fed if not isinstance(f, FeedbackResult)]
        if bad:
            raise SystemExit(f"feedback refused: {bad[:3]}")
        return len(events)

    # A short warm-up of each, unreported.
    for step in (anchor, single, batch):
        timed(0.5, step)
    results = {
        "anchor": timed(args.duration, anchor),
        "client-single": timed(args.duration, single),
        "client-batch": timed(args.duration, batch),
    }
    base_rate = results["anchor"]["pairs_per_s"]
    for name, r in results.items():
        r["ratio_to_anchor"] = round(r["pairs_per_s"] / base_rate, 2) if base_rate else None
        print(json.dumps({"mode": name, "batch": args.batch if name == "client-batch" else 1, **r}))
    print()
    print("| mode | items per call | pairs/s | ratio to anchor |")
    print("|---|---|---|---|")
    for name, r in results.items():
        size = args.batch if name == "client-batch" else 1
        print(f"| {name} | {size} | {r['pairs_per_s']:,.0f} | {r['ratio_to_anchor']:.2f} |")


if __name__ == "__main__":
    main()
