"""Vowpal Wabbit's side of the learner study (bench/experiments/learners.sh).

Reads a world written by `cargo run --example learners -- dump SEED CUSTOMERS [DRIFT_AT]`
(per round: 17 context features as keel encodes them, the k promotions' conversion
probabilities in force at that round, and the round's uniform draw u), and runs VW's
contextual bandit with action-dependent features on it, online, one customer per round, the
same way keel's learners run: predict the pmf, sample it, the customer converts when
u < p[chosen], learn at once (cost -1 for a conversion, 0 otherwise, with the logged
probability). Prints one JSON line like keel's learners: the share of the oracle's lift over
uniform kept (expected conversions), and with a drift the share in the window before the
shift, in the window ending 20,000 rounds after it, and over everything after it.

usage: vw_study.py CSV SEED DRIFT_AT|- NAME VW_ARGS
"""

import json
import random
import sys
import time

import numpy as np
import vowpalwabbit

FEATURES = 17
NAMES = ["recency_days", "visits_per_month", "avg_spend", "tenure_months", "age", "open_rate",
         "discount_affinity", "device_ios", "device_android", "device_web", "region_north",
         "region_south", "region_east", "region_west", "loyalty_bronze", "loyalty_silver",
         "loyalty_gold"]
RECOVERY_ROUNDS = 20_000
RECOVERY_WINDOW = 5_000


def share(chosen, p, lo, hi):
    rate = chosen[lo:hi].mean()
    uniform = p[lo:hi].mean(axis=1).mean()
    oracle = p[lo:hi].max(axis=1).mean()
    return float((rate - uniform) / (oracle - uniform))


def main():
    path, seed, drift_at, name, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    data = np.loadtxt(path, delimiter=",")
    x, p, u = data[:, :FEATURES], data[:, FEATURES:-1], data[:, -1]
    n, k = p.shape
    vw = vowpalwabbit.Workspace(f"{args} --quiet --random_seed {seed}")
    rng = random.Random(11 ^ seed)
    actions = [f"|a promo=p{a}" for a in range(k)]
    chosen = np.zeros(n)
    started = time.time()
    for i in range(n):
        shared = "shared |s " + " ".join(f"{NAMES[j]}:{x[i, j]:.6g}" for j in range(FEATURES) if x[i, j] != 0.0)
        example = [shared] + actions
        pmf = vw.predict(example)
        total = sum(pmf)
        r, acc, a = rng.random() * total, 0.0, k - 1
        for j, q in enumerate(pmf):
            acc += q
            if r < acc:
                a = j
                break
        prob = pmf[a] / total
        chosen[i] = p[i, a]
        cost = -1.0 if u[i] < p[i, a] else 0.0
        labelled = list(example)
        labelled[1 + a] = f"0:{cost}:{prob} {actions[a]}"
        vw.learn(labelled)
    seconds = time.time() - started
    line = {"learner": "vw", "policy": name, "seed": seed, "customers": n, "share": share(chosen, p, 0, n),
            "rounds_per_second": n / seconds}
    if drift_at != "-":
        at = int(drift_at)
        end = at + RECOVERY_ROUNDS
        line["share_before_shift"] = share(chosen, p, at - RECOVERY_WINDOW, at)
        line["share_recovered"] = share(chosen, p, end - RECOVERY_WINDOW, end)
        line["share_after_shift"] = share(chosen, p, at, n)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
