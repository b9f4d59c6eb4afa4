"""An independent computation of the report's anytime-valid figures.

The golden report of crates/keel-experiments/tests/golden (rebuilt by keel from a decision log
and compared there field by field) is recomputed here from its own counts with nothing but
Python's math module: Robbins' beta-binomial mixture sequence of each binary rate (by bisection
on lgamma), the normal-mixture sequence of every lift (Waudby-Smith et al., tuned to 10,000
rewarded decisions), and which variants may still be best. No keel code runs here, so a slip
in keel's arithmetic cannot hide in the check.
"""

import json
import math
import pathlib

GOLDEN = pathlib.Path(__file__).resolve().parents[2] / "crates/keel-experiments/tests/golden/v1-report.json"
ALPHA = 0.05
TUNING_N = 10_000.0


def bernoulli_cs(s, n, alpha):
    if n == 0:
        return (0.0, 1.0)
    f = n - s
    log_mix = math.lgamma(1 + s) + math.lgamma(1 + f) - math.lgamma(2 + n)

    def outside(p):
        ll = (s * math.log(p) if s else 0.0) + (f * math.log(1 - p) if f else 0.0)
        return log_mix - ll >= math.log(1 / alpha)

    def edge(inside, out):
        for _ in range(200):
            mid = (inside + out) / 2
            if outside(mid):
                out = mid
            else:
                inside = mid
        return out

    p = s / n
    return (0.0 if s == 0 else edge(p, 0.0), 1.0 if f == 0 else edge(p, 1.0))


def radius(n, alpha=ALPHA, n_star=TUNING_N):
    l = -2 * math.log(alpha)
    rho2 = (l + math.log(1 + l)) / n_star
    a = n * rho2 + 1
    return math.sqrt(2 * a / (n * n * rho2) * math.log(math.sqrt(a) / alpha))


def var_of_mean(conversions, n):
    """Sample variance of n binary rewards (ddof 1) over n."""
    p = conversions / n
    return p * (1 - p) * n / (n - 1) / n


def close(a, b, tol=1e-9):
    assert abs(a - b) <= tol * max(1.0, abs(b)), (a, b)


def settled(conversions, rewards):
    """The rule keel states for giving a normal-mixture sequence (0/1 rewards)."""
    return rewards >= 100 and conversions >= 25 and rewards - conversions >= 25


def check_rates(r):
    """Each rate's sequence and who may be best, from the report's counts (0/1 rewards)."""
    serving = [v for v in r["variants"] if not v["shadow"]]
    bounds = []
    for v in r["variants"]:
        lo, hi = bernoulli_cs(v["conversions"], v["rewards"], ALPHA)
        close(v["rate_cs"][0], lo)
        close(v["rate_cs"][1], hi)
        # the sequence holds the fixed-horizon interval
        assert v["rate_cs"][0] <= v["rate_ci"][0] and v["rate_ci"][1] <= v["rate_cs"][1]
    for v in serving:
        bounds.append(bernoulli_cs(v["conversions"], v["rewards"], ALPHA / len(serving)))
    best_lower = max(b[0] for b in bounds)
    assert [v["may_be_best"] for v in serving] == [b[1] >= best_lower for b in bounds]
    for g in ("control_group", "treated_group"):
        group = r[g]
        if group is None:
            continue
        lo, hi = bernoulli_cs(round(group["rate"] * group["rewards"]), group["rewards"], ALPHA)
        close(group["rate_cs"][0], lo)
        close(group["rate_cs"][1], hi)


def difference_cs(t, nt, vt, b, nb, vb):
    n = nt + nb
    half = math.sqrt((vt + vb) * n) * radius(n)
    return (t - b, t - b - half, t - b + half)


def relative_cs(t, nt, vt, b, nb, vb):
    n = nt + nb
    half = math.sqrt((vt / t**2 + vb / b**2) * n) * radius(n)
    log_ratio = math.log(t / b)
    return (t / b - 1, math.exp(log_ratio - half) - 1, math.exp(log_ratio + half) - 1)


def check_lifts(r, baseline_counts):
    """Each lift's sequences from the report's counts; `baseline_counts[name]` lists the
    (conversions, rewards) of the groups averaged into that baseline (one group: its rate).
    Returns how many lifts had sequences."""
    checked = 0
    for name, lift in r["lifts"].items():
        if name == "method" or lift is None:
            continue
        t, b = lift["treated_rate"], lift["baseline_rate"]
        nt, nb = lift["treated_rewards"], lift["baseline_rewards"]
        ct = round(t * nt)
        parts = baseline_counts[name]
        assert sum(n for _, n in parts) == nb
        close(b, sum(c / n for c, n in parts) / len(parts))
        vt = var_of_mean(ct, nt)
        vb = sum(var_of_mean(c, n) for c, n in parts) / len(parts) ** 2
        if not (settled(ct, nt) and all(settled(c, n) for c, n in parts)):
            assert lift["difference_cs"] is None and lift["relative_cs"] is None, lift
            continue
        for got, want in zip(lift["difference_cs"], difference_cs(t, nt, vt, b, nb, vb)):
            close(got, want)
        for got, want in zip(lift["relative_cs"], relative_cs(t, nt, vt, b, nb, vb)):
            close(got, want)
        # wider than the fixed-horizon interval
        assert lift["difference_cs"][1] < lift["difference"][1] and lift["difference"][2] < lift["difference_cs"][2]
        checked += 1
    return checked


def test_the_golden_report_by_an_independent_computation():
    r = json.loads(GOLDEN.read_text())
    check_rates(r)
    # Its baselines: the average of the variants over every decision that got them (the control
    # group gets variant free_dessert), and the best variant family_feast.
    held = r["control_group"]
    totals = [
        (v["conversions"], v["rewards"])
        if v["name"] != r["control"]["variant"]
        else (v["conversions"] + round(held["rate"] * held["rewards"]), v["rewards"] + held["rewards"])
        for v in r["variants"]
    ]
    best = [(v["conversions"], v["rewards"]) for v in r["variants"] if v["name"] == "family_feast"]
    # 31 rewards: too few for any lift's sequence.
    assert check_lifts(r, {"over_uniform": totals, "over_best_variant": best}) == 0
    assert r["lift_over_control_group_cs"] is None
    assert all(v["lift_vs_control_cs"] is None for v in r["variants"])
    assert r["statistics"]["alpha"] == ALPHA and r["statistics"]["tuning_n"] == TUNING_N
