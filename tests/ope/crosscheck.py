#!/usr/bin/env python3
"""Cross-check keel-ope's off-policy estimators against obp 0.5.7 (Open Bandit Pipeline).

Loads the Open Bandit Dataset 'random' campaign 'all' with obp, builds obp's Bernoulli TS
policy with the ZOZOTOWN prior, computes its action distribution, fits obp's RegressionModel
(logistic regression, no cross-fitting), estimates the policy's value with obp's DM, IPW,
SNIPW, DR and SNDR, then hands the SAME action_dist and q_hat to keel
(`cargo run -p keel-ope --example crosscheck`), which reads the CSV itself. Every keel
estimate and standard error must equal obp's to 1e-9 relative; the script exits 1 otherwise.

The ground truth is the click rate actually observed in the bts log (Bernoulli TS on-policy).

Run with the venv from setup.sh:  tests/ope/.venv/bin/python tests/ope/crosscheck.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from obp.dataset import OpenBanditDataset
from obp.ope import (
    DirectMethod,
    DoublyRobust,
    InverseProbabilityWeighting,
    RegressionModel,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
)
from obp.policy import BernoulliTS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RTOL = 1e-9
SEED = 12345


def default_data_path() -> Path:
    env = os.environ.get("KEEL_OBD_DIR")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data" / "obd"


def rel_diff(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def write_f64(path: Path, arr: np.ndarray) -> None:
    np.ascontiguousarray(arr, dtype="<f8").tofile(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-path", type=Path, default=default_data_path(), help="folder holding random/ and bts/")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="where the exchanged files go")
    ap.add_argument("--n-sim", type=int, default=100_000, help="Monte Carlo draws for BernoulliTS action_dist")
    ap.add_argument("--n-bootstrap", type=int, default=10_000, help="bootstrap resamples for intervals")
    ap.add_argument("--manifest-path", type=Path, help="Cargo.toml to run the example from (default: the workspace)")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data_path: Path = args.data_path.resolve()

    # 1. the logged data, as obp sees it
    dataset = OpenBanditDataset(behavior_policy="random", campaign="all", data_path=data_path)
    bf = dataset.obtain_batch_bandit_feedback()
    n, n_actions, len_list = bf["n_rounds"], dataset.n_actions, dataset.len_list
    print(f"obd random/all: n_rounds={n} n_actions={n_actions} len_list={len_list} dim_context={dataset.dim_context}")

    # 2. the evaluation policy: Bernoulli TS with the production prior (obp examples/quickstart)
    t0 = time.time()
    policy = BernoulliTS(
        n_actions=n_actions, len_list=len_list, is_zozotown_prior=True, campaign="all", random_state=SEED
    )
    action_dist = policy.compute_batch_action_dist(n_sim=args.n_sim, n_rounds=n)
    print(f"BernoulliTS action_dist {action_dist.shape} in {time.time() - t0:.1f}s")

    # 3. the reward model: logistic regression per position, fitted on all rounds (no cross-fitting)
    reg = RegressionModel(
        n_actions=n_actions,
        len_list=len_list,
        action_context=dataset.action_context,
        base_model=LogisticRegression(C=100, max_iter=10_000, random_state=SEED),
    )
    q_hat = reg.fit_predict(
        context=bf["context"],
        action=bf["action"],
        reward=bf["reward"],
        position=bf["position"],
        n_folds=1,
        random_state=SEED,
    )

    # 4. obp's estimates, per-round terms (for the standard error) and bootstrap intervals
    inputs = dict(
        reward=bf["reward"],
        action=bf["action"],
        position=bf["position"],
        pscore=bf["pscore"],
        action_dist=action_dist,
        estimated_rewards_by_reg_model=q_hat,
    )
    estimators = [
        DirectMethod(),
        InverseProbabilityWeighting(),
        SelfNormalizedInverseProbabilityWeighting(),
        DoublyRobust(),
        SelfNormalizedDoublyRobust(),
    ]
    obp_est = {}
    for est in estimators:
        value = float(est.estimate_policy_value(**inputs))
        terms = est._estimate_round_rewards(**inputs)
        interval = est.estimate_interval(**inputs, n_bootstrap_samples=args.n_bootstrap, random_state=SEED)
        lo_key = [k for k in interval if "lower" in k][0]
        hi_key = [k for k in interval if "upper" in k][0]
        obp_est[est.estimator_name] = dict(
            value=value,
            std_err=float(np.std(terms, ddof=1) / np.sqrt(len(terms))),
            boot_low=float(interval[lo_key]),
            boot_high=float(interval[hi_key]),
        )

    ground_truth = float(
        OpenBanditDataset.calc_on_policy_policy_value_estimate(behavior_policy="bts", campaign="all", data_path=data_path)
    )
    random_mean = float(bf["reward"].mean())

    # 5. hand everything to keel
    write_f64(out / "action_dist.f64", action_dist)
    write_f64(out / "q_hat.f64", q_hat)
    write_f64(out / "obp_action.f64", bf["action"])
    write_f64(out / "obp_position.f64", bf["position"])
    write_f64(out / "obp_reward.f64", bf["reward"])
    write_f64(out / "obp_pscore.f64", bf["pscore"])
    write_f64(out / "obp_context.f64", bf["context"])
    write_f64(out / "obp_action_context.f64", dataset.action_context)
    meta = dict(
        obd_csv=str(data_path / "random" / "all" / "all.csv"),
        item_context_csv=str(data_path / "random" / "all" / "item_context.csv"),
        bts_csv=str(data_path / "bts" / "all" / "all.csv"),
        n_rounds=int(n),
        n_actions=int(n_actions),
        len_list=int(len_list),
        dim_context=int(dataset.dim_context),
        dim_action_context=int(dataset.action_context.shape[1]),
        n_bootstrap=args.n_bootstrap,
        seed=SEED,
        obp=obp_est,
        ground_truth=ground_truth,
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2))

    cmd = ["cargo", "run", "--quiet", "--release", "-p", "keel-ope", "--example", "crosscheck"]
    if args.manifest_path:
        cmd += ["--manifest-path", str(args.manifest_path)]
    cmd += ["--", str(out)]
    print("running:", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=REPO)
    if proc.returncode != 0:
        print(f"FAIL: keel crosscheck example exited {proc.returncode}", file=sys.stderr)
        return 1
    keel = json.loads((out / "keel.json").read_text())

    # 6. compare
    failures = []
    max_rel = 0.0
    print()
    print(f"{'estimator':9} {'obp':>14} {'keel':>14} {'rel diff':>9}  {'keel 95% CI (normal)':>27}  "
          f"{'obp 95% CI (bootstrap)':>27}  {'keel 95% CI (bootstrap)':>27}")
    for name, o in obp_est.items():
        k = keel["estimates"][name]
        d_val = rel_diff(o["value"], k["value"])
        d_se = rel_diff(o["std_err"], k["std_err"])
        max_rel = max(max_rel, d_val, d_se)
        if d_val > RTOL or d_se > RTOL:
            failures.append(f"{name}: value obp={o['value']!r} keel={k['value']!r} ({d_val:.2e}); "
                            f"std_err obp={o['std_err']!r} keel={k['std_err']!r} ({d_se:.2e})")
        print(f"{name:9} {o['value']:14.10f} {k['value']:14.10f} {d_val:9.1e}  "
              f"[{k['ci_low']:.6f}, {k['ci_high']:.6f}]  "
              f"[{o['boot_low']:.6f}, {o['boot_high']:.6f}]  "
              f"[{k['boot_low']:.6f}, {k['boot_high']:.6f}]")
    gt_keel = keel["ground_truth"]
    if rel_diff(gt_keel, ground_truth) > RTOL:
        failures.append(f"ground truth: obp={ground_truth!r} keel={gt_keel!r}")
    print()
    print(f"ground truth (bts/all observed click rate): obp {ground_truth:.6f}, keel {gt_keel:.6f}")
    print(f"random/all observed click rate (logging policy value): {random_mean:.6f}")
    print(f"max relative difference keel vs obp (values and std errs): {max_rel:.3e} (tolerance {RTOL:g})")
    print(f"keel throughput: {keel['throughput']}")
    if failures:
        print("FAIL:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print("OK: keel-ope matches obp 0.5.7")
    return 0


if __name__ == "__main__":
    sys.exit(main())
