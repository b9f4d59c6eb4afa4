#!/usr/bin/env bash
# The new-promotion study: on keel's e-mail world with promotions that carry features (a segment
# and a value), a sixth promotion (a more generous version of the best one) is added half-way;
# how many rounds does each learner need before it sends the new promotion to the customers it is
# best for, and to no one else (90% right over a window of 1,000 rounds)? The default learner
# (logistic Thompson, v 0.5, 1% floor) with one model per promotion against the same learner with
# one model shared across promotions over context x promotion features ("shared": true), on the
# same worlds, draws and seeds. Prints a table; bench/README.md quotes it ("A new promotion").
#   SEEDS (default 1,2,3,4,5), CUSTOMERS (default 60000; the promotion arrives at half).
# Runs in process: crates/keel-bandit/examples/new_promotion.rs (method in its doc).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
seeds=${SEEDS:-1,2,3,4,5}
customers=${CUSTOMERS:-60000}
cargo build -q --release -p keel-bandit --example new_promotion
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/new_promotion"
out="$root/bench/results/new-promotion-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
"$bin" "$seeds" "$customers" > "$out/runs.jsonl"
python3 - "$out/runs.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["seed"], {})[r["learner"].split()[-1]] = r
def fmt(v, horizon):
    return f"{v:,}" if v is not None else f"> {horizon:,}"
print(f"{'world':>5} {'new promotion':<28} {'per-variant':>12} {'shared':>9} {'ratio':>7} {'lift kept per-variant / shared (10k after)':>44}")
ratios = []
for seed in sorted(by):
    pv, sh = by[seed]["per-variant"], by[seed]["shared"]
    a, b, h = pv["rounds_to_best_response"], sh["rounds_to_best_response"], pv["horizon"]
    ratio = (b / (a if a is not None else h)) if b is not None else None
    ratios.append(ratio)
    rs = (f"{ratio:.2f}" if a is not None else f"< {ratio:.2f}") if ratio is not None else "n/a"
    print(f"{seed:>5} {pv['new_promotion']:<28} {fmt(a, h):>12} {fmt(b, h):>9} {rs:>7} {pv['lift_share_10k_after']*100:>30.1f}% / {sh['lift_share_10k_after']*100:.1f}%")
ok = all(r is not None and r <= 0.5 for r in ratios)
print(f"target (shared needs at most half the rounds of per-variant on every world): {'met' if ok else 'NOT met'}")
PY
echo "results in $out" >&2
