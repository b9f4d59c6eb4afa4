"""Tables of the learner study (bench/experiments/learners.sh) from its JSON lines.

usage: learners_table.py RESULTS_DIR
"""

import json
import os
import sys


def load(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def by_policy(rows, key):
    table = {}
    for r in rows:
        table.setdefault(r["policy"], {})[r["seed"]] = r
    return table


def pct(v):
    return f"{v * 100:.1f}"


def main():
    out = sys.argv[1]
    rows = load(os.path.join(out, "keel.jsonl")) + load(os.path.join(out, "vw.jsonl"))
    seeds = sorted({r["seed"] for r in rows})
    table = by_policy(rows, "share")
    print(f"\nShare of the oracle's lift over uniform kept, {rows[0]['customers']} customers per world (%)\n")
    print("| learner | " + " | ".join(f"world {s}" for s in seeds) + " | mean | min | rounds/s |")
    print("|---" * (len(seeds) + 4) + "|")
    order = sorted(table, key=lambda p: -sum(r["share"] for r in table[p].values()) / len(table[p]))
    for p in order:
        cells = [pct(table[p][s]["share"]) if s in table[p] else "" for s in seeds]
        shares = [r["share"] for r in table[p].values()]
        speed = sum(r["rounds_per_second"] for r in table[p].values()) / len(shares)
        print(f"| {p} | " + " | ".join(cells) + f" | {pct(sum(shares) / len(shares))} | {pct(min(shares))} | {speed:,.0f} |")
    default = table.get("contextual")
    vw = [p for p in table if p.startswith("vw ")]
    if default:
        mean = sum(r["share"] for r in default.values()) / len(default)
        print(f"\ntarget: the default keeps >= 90% of the oracle's lift on average: {pct(mean)}% "
              f"{'MET' if mean >= 0.9 else 'MISSED'}")
        if vw:
            beats = [s for s in seeds if all(default[s]["share"] > table[v][s]["share"] for v in vw if s in table[v])]
            margin = min(default[s]["share"] - max(table[v][s]["share"] for v in vw) for s in seeds)
            print(f"target: the default beats VW's best explorer on every world: on {len(beats)} of {len(seeds)} "
                  f"(smallest margin {margin * 100:+.1f} points) {'MET' if len(beats) == len(seeds) else 'MISSED'}")
    drift = load(os.path.join(out, "keel-drift.jsonl")) + load(os.path.join(out, "vw-drift.jsonl"))
    if not drift:
        return
    dt = by_policy(drift, "share_recovered")
    print("\nDrifting appeal: share of the oracle's lift kept (%, mean over worlds; min in brackets)\n")
    print("| learner | last 5,000 before the shift | 15,000-20,000 after the shift | all after the shift |")
    print("|---|---|---|---|")
    order = sorted(dt, key=lambda p: -sum(r["share_recovered"] for r in dt[p].values()))
    for p in order:
        rs = list(dt[p].values())

        def cell(key):
            vals = [r[key] for r in rs]
            return f"{pct(sum(vals) / len(vals))} ({pct(min(vals))})"

        print(f"| {p} | {cell('share_before_shift')} | {cell('share_recovered')} | {cell('share_after_shift')} |")
    discounted = [p for p in dt if "half_life" in p]
    if discounted:
        best = max(discounted, key=lambda p: min(r["share_recovered"] for r in dt[p].values()))
        worst = min(r["share_recovered"] for r in dt[best].values())
        print(f"\ntarget: a discounted policy recovers >= 80% of the new oracle's lift within 20,000 rounds "
              f"(window 15,000-20,000 after the shift, every world): best is {best}, min {pct(worst)}% "
              f"{'MET' if worst >= 0.8 else 'MISSED'}")


if __name__ == "__main__":
    main()
