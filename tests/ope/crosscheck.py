#!/usr/bin/env python3
"""Cross-check keel's off-policy evaluation against obp 0.5.7 (Open Bandit Pipeline).

For every campaign of the Open Bandit Dataset sample (all, men, women: the obp 0.5.7 source
package ships all three), two checks:

A. The estimators' arithmetic. obp loads random/<campaign>, builds its Bernoulli TS policy
   with the ZOZOTOWN prior, its action distribution, a RegressionModel (logistic regression, no
   cross-fitting) for q_hat, and estimates DM, IPW, SNIPW, DR, SNDR, Switch-DR and DR-OS. The
   SAME action_dist and q_hat go to keel (`cargo run -p keel-ope --example crosscheck`), which
   reads the CSV itself, checks every row against obp's and runs its estimators.

B. The whole `keel ope obd` path. The keel binary evaluates candidates (uniform random, and
   epsilon-greedy warmed up on the first half of the log) on random/<campaign> and
   bts/<campaign>; keel builds the candidate's distribution and its reward model itself. This
   script builds both independently from their documented definitions, runs obp's estimators
   on them, and compares every value, standard error and diagnostic with keel's --json output.

Rows are aligned the way keel orders them: by timestamp, then file order among equal
timestamps (obp's sort is not stable, so it may order such ties otherwise); obp's arrays are
permuted to that order. Tolerances, all stated: estimates, standard errors and diagnostics
RTOL = 1e-9 relative; propensities and item features read by keel and by pandas within 2 ulps
(pandas' default CSV float parser is not correctly rounded; keel's is); everything else equal.

Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RTOL = 1e-9
SEED = 12345
# Switch-DR tau and DR-OS lambda for check A: small enough to bite on these logs (weights up to
# about 40 under Bernoulli TS against a uniform logger), so the switching and shrinking are tested.
A_SWITCH_TAU = 10.0
A_DROS_LAMBDA = 100.0
# keel's CLI defaults (keel_ope::Settings::default), used in check B.
B_SWITCH_TAU = 100.0
B_DROS_LAMBDA = 10_000.0
TRAIN_FRACTION = 0.5
EPSILON = 0.1
ESTIMATORS = ["dm", "ipw", "snipw", "dr", "sndr", "switch-dr", "dr-os"]


def import_obp() -> Path:
    """Imports obp's estimators, dataset and policies without obp/__init__.py.

    obp's package __init__ imports every module, and with them torch (obp.utils imports it for
    type checks of its neural learners), matplotlib and seaborn (plots). None is used by what
    this script calls, so the CI environment installs obp with --no-deps and only numpy, scipy,
    scikit-learn, pandas, pyyaml and tqdm; the packages are registered here as plain namespaces,
    and when torch is absent a stand-in module with a `Tensor` type satisfies obp.utils' import.
    With a full install (setup.sh), the real torch is used.
    """
    spec = importlib.util.find_spec("obp")
    if spec is None or spec.origin is None:
        raise SystemExit("obp is not installed: run tests/ope/setup.sh (or scripts/ope-crosscheck-env)")
    root = Path(spec.origin).parent
    for name in ["obp", "obp.ope", "obp.policy", "obp.dataset"]:
        module = types.ModuleType(name)
        module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = module
    if importlib.util.find_spec("torch") is None:
        torch = types.ModuleType("torch")

        class Tensor:  # noqa: D401 - a type obp.utils only names
            pass

        torch.Tensor = Tensor
        torch.tensor = Tensor
        sys.modules["torch"] = torch
    return root


OBP_ROOT = import_obp()
from obp.dataset.real import OpenBanditDataset  # noqa: E402
from obp.ope.estimators import (  # noqa: E402
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    InverseProbabilityWeighting,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SwitchDoublyRobust,
)
from obp.ope.regression_model import RegressionModel  # noqa: E402
from obp.policy.contextfree import BernoulliTS  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402


def obp_estimators(tau: float, lam: float) -> list:
    return [
        DirectMethod(),
        InverseProbabilityWeighting(),
        SelfNormalizedInverseProbabilityWeighting(),
        DoublyRobust(),
        SelfNormalizedDoublyRobust(),
        SwitchDoublyRobust(lambda_=tau),
        DoublyRobustWithShrinkage(lambda_=lam),
    ]


def rel_diff(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def write_f64(path: Path, arr: np.ndarray) -> None:
    np.ascontiguousarray(arr, dtype="<f8").tofile(path)


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.checked = 0
        self.max_rel = 0.0

    def close(self, what: str, obp: float, keel: float, rtol: float = RTOL) -> None:
        self.checked += 1
        d = rel_diff(obp, keel)
        self.max_rel = max(self.max_rel, d)
        if not d <= rtol:
            self.items.append(f"{what}: obp {obp!r} keel {keel!r} (rel diff {d:.2e} > {rtol:g})")

    def equal(self, what: str, want, got) -> None:
        self.checked += 1
        if want != got:
            self.items.append(f"{what}: expected {want!r}, keel {got!r}")


def keel_order(dataset: OpenBanditDataset) -> np.ndarray:
    """Permutation of obp's rows into keel's order: timestamp, then file order among ties."""
    ts = pd.to_datetime(dataset.data["timestamp"]).values.astype("int64")
    file_row = dataset.data.index.values  # obp reads the unnamed first column, 0..n-1 in file order
    return np.lexsort((file_row, ts))


def load(data_path: Path | None, behavior: str, campaign: str):
    dataset = OpenBanditDataset(behavior_policy=behavior, campaign=campaign, data_path=data_path)
    bf = dataset.obtain_batch_bandit_feedback()
    perm = keel_order(dataset)
    for key in ["action", "position", "reward", "pscore", "context"]:
        bf[key] = bf[key][perm]
    return dataset, bf, perm


def csv_path(data_path: Path, behavior: str, campaign: str) -> Path:
    return data_path / behavior / campaign / f"{campaign}.csv"


def diagnostics(action: np.ndarray, position: np.ndarray, pscore: np.ndarray, dist: np.ndarray) -> dict:
    """keel's documented diagnostics (crates/keel-ope/src/diagnostics.rs), computed here from
    their definitions: raw importance weights and the candidate's mass on rare actions."""
    n, n_actions, len_list = dist.shape
    w = dist[np.arange(n), action, position] / pscore
    counts = np.zeros((n_actions, len_list))
    np.add.at(counts, (action, position), 1.0)
    per_position = counts.sum(axis=0)
    threshold = 1.0 / (10.0 * n_actions)
    with np.errstate(invalid="ignore", divide="ignore"):
        rare = (per_position == 0) | (counts / per_position < threshold)
    mass = np.array([dist[i, rare[:, position[i]], position[i]].sum() for i in range(n)]).mean()
    return dict(ess=w.sum() ** 2 / (w**2).sum(), max=w.max(), mean=w.mean(), rare_mass=mass)


# ---------------------------------------------------------------------------------- check A


def check_arithmetic(args, campaign: str, fails: Failures) -> None:
    data_path = args.data_path
    dataset, bf, perm = load(data_path, "random", campaign)
    n, n_actions, len_list = bf["n_rounds"], dataset.n_actions, dataset.len_list
    print(f"\n[A {campaign}] random/{campaign}: n_rounds={n} n_actions={n_actions} len_list={len_list} "
          f"dim_context={dataset.dim_context}")
    t0 = time.time()
    policy = BernoulliTS(n_actions=n_actions, len_list=len_list, is_zozotown_prior=True, campaign=campaign,
                         random_state=SEED)
    action_dist = policy.compute_batch_action_dist(n_sim=args.n_sim, n_rounds=n)
    reg = RegressionModel(n_actions=n_actions, len_list=len_list, action_context=dataset.action_context,
                          base_model=LogisticRegression(C=100, max_iter=10_000, random_state=SEED))
    q_hat = reg.fit_predict(context=bf["context"], action=bf["action"], reward=bf["reward"],
                            position=bf["position"], n_folds=1, random_state=SEED)
    print(f"  BernoulliTS action_dist and q_hat in {time.time() - t0:.1f}s")
    inputs = dict(reward=bf["reward"], action=bf["action"], position=bf["position"], pscore=bf["pscore"],
                  action_dist=action_dist, estimated_rewards_by_reg_model=q_hat)
    obp_est = {}
    for est in obp_estimators(A_SWITCH_TAU, A_DROS_LAMBDA):
        terms = est._estimate_round_rewards(**inputs)
        row = dict(value=float(est.estimate_policy_value(**inputs)),
                   std_err=float(np.std(terms, ddof=1) / np.sqrt(len(terms))))
        if args.n_bootstrap > 0:
            interval = est.estimate_interval(**inputs, n_bootstrap_samples=args.n_bootstrap, random_state=SEED)
            row["boot_low"] = float(interval[[k for k in interval if "lower" in k][0]])
            row["boot_high"] = float(interval[[k for k in interval if "upper" in k][0]])
        obp_est[est.estimator_name] = row
    ground_truth = float(OpenBanditDataset.calc_on_policy_policy_value_estimate(
        behavior_policy="bts", campaign=campaign, data_path=data_path))
    diag = diagnostics(bf["action"], bf["position"], bf["pscore"], action_dist)

    out: Path = args.out / campaign
    out.mkdir(parents=True, exist_ok=True)
    write_f64(out / "action_dist.f64", action_dist)
    write_f64(out / "q_hat.f64", q_hat)
    for key in ["action", "position", "reward", "pscore", "context"]:
        write_f64(out / f"obp_{key}.f64", bf[key])
    write_f64(out / "obp_action_context.f64", dataset.action_context)
    meta = dict(
        obd_csv=str(csv_path(data_path, "random", campaign)),
        item_context_csv=str(data_path / "random" / campaign / "item_context.csv"),
        bts_csv=str(csv_path(data_path, "bts", campaign)),
        n_rounds=int(n), n_actions=int(n_actions), len_list=int(len_list),
        dim_context=int(dataset.dim_context), dim_action_context=int(dataset.action_context.shape[1]),
        n_bootstrap=args.n_bootstrap, seed=SEED, switch_tau=A_SWITCH_TAU, dros_lambda=A_DROS_LAMBDA,
        bench=args.bench,
    )
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    cmd = ["cargo", "run", "--quiet", "-p", "keel-ope", "--example", "crosscheck"]
    if args.release:
        cmd.insert(3, "--release")
    if args.manifest_path:
        cmd += ["--manifest-path", str(args.manifest_path)]
    cmd += ["--", str(out)]
    proc = subprocess.run(cmd, cwd=REPO)
    if proc.returncode != 0:
        fails.items.append(f"A {campaign}: keel crosscheck example exited {proc.returncode}")
        return
    keel = json.loads((out / "keel.json").read_text())
    print(f"  {'estimator':9} {'obp':>14} {'keel':>14} {'rel diff':>9}  {'keel 95% CI (normal)':>26}  verdict")
    for name in ESTIMATORS:
        o, k = obp_est[name], keel["estimates"][name]
        fails.close(f"A {campaign} {name} value", o["value"], k["value"])
        fails.close(f"A {campaign} {name} std_err", o["std_err"], k["std_err"])
        print(f"  {name:9} {o['value']:14.10f} {k['value']:14.10f} {rel_diff(o['value'], k['value']):9.1e}  "
              f"[{k['ci_low']:.6f}, {k['ci_high']:.6f}]  {k['verdict']}")
        if "boot_low" in o and "boot_low" in k:
            print(f"  {'':9} bootstrap 95% CI: obp [{o['boot_low']:.6f}, {o['boot_high']:.6f}] "
                  f"keel [{k['boot_low']:.6f}, {k['boot_high']:.6f}] (different resamplers: not compared)")
    fails.close(f"A {campaign} ground truth", ground_truth, keel["ground_truth"])
    for key in ["ess", "max", "mean"]:
        fails.close(f"A {campaign} raw weights {key}", float(diag[key]), keel["raw_weights"][key])
    fails.close(f"A {campaign} rare-action mass", float(diag["rare_mass"]), keel["rare_mass"])
    print(f"  ground truth (bts/{campaign} click rate) {ground_truth:.6f}; logger (random) {bf['reward'].mean():.6f}; "
          f"ESS {diag['ess']:.1f}, max weight {diag['max']:.3f}")
    print(f"  {keel['throughput']}")


# ---------------------------------------------------------------------------------- check B


def epsilon_greedy(train_actions: np.ndarray, train_rewards: np.ndarray, n_actions: int) -> np.ndarray:
    """keel-bandit's epsilon_greedy after replaying the warm-up: per-action running means
    (updated as keel does, mean += (r - mean) / pulls), untried actions first, else argmax with
    ties to the lowest index; greedy with probability 1 - epsilon, uniform with epsilon."""
    pulls = np.zeros(n_actions, dtype=np.int64)
    mean = [0.0] * n_actions
    for a, r in zip(train_actions.tolist(), train_rewards.tolist()):
        pulls[a] += 1
        mean[a] += (r - mean[a]) / float(pulls[a])
    untried = np.flatnonzero(pulls == 0)
    best = int(untried[0]) if len(untried) else max(range(n_actions), key=lambda a: (mean[a], -a))
    p = np.zeros(n_actions)
    p[best] = 1.0
    return (1.0 - EPSILON) * p + EPSILON / n_actions


def reward_model(actions, positions, rewards, n_actions: int, len_list: int) -> np.ndarray:
    """keel's reward model for OPE (keel_experiments::offline::ope): the mean reward per
    (action, position) over the warm-up rounds, shrunk with weight 10 to their overall mean."""
    sums = np.zeros((n_actions, len_list))
    counts = np.zeros((n_actions, len_list))
    np.add.at(sums, (actions, positions), rewards)
    np.add.at(counts, (actions, positions), 1.0)
    overall = rewards.mean()
    return (sums + 10.0 * overall) / (counts + 10.0)


def run_keel(args, csv: Path, candidate: dict, truth: Path) -> dict:
    cmd = [str(args.keel), "--json", "ope", "obd", str(csv), "--candidate", json.dumps(candidate),
           "--train-fraction", str(TRAIN_FRACTION), "--ground-truth", str(truth)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def check_cli(args, campaign: str, fails: Failures) -> None:
    data_path = args.data_path
    for behavior in ["random", "bts"]:
        dataset, bf, _ = load(data_path, behavior, campaign)
        n, n_actions, len_list = bf["n_rounds"], dataset.n_actions, dataset.len_list
        other = "bts" if behavior == "random" else "random"
        train = int(math.floor(n * TRAIN_FRACTION))
        ev = slice(train, n)
        q = reward_model(bf["action"][:train], bf["position"][:train], bf["reward"][:train], n_actions, len_list)
        candidates = {
            "uniform": ({"type": "fixed_weights", "weights": [1.0] * n_actions}, np.full(n_actions, 1.0 / n_actions)),
            "epsilon_greedy": ({"type": "epsilon_greedy", "epsilon": EPSILON},
                               epsilon_greedy(bf["action"][:train], bf["reward"][:train], n_actions)),
        }
        for label, (candidate, p) in candidates.items():
            m = n - train
            dist = np.broadcast_to(p[None, :, None], (m, n_actions, len_list)).copy()
            q_hat = np.broadcast_to(q[None, :, :], (m, n_actions, len_list)).copy()
            inputs = dict(reward=bf["reward"][ev], action=bf["action"][ev], position=bf["position"][ev],
                          pscore=bf["pscore"][ev], action_dist=dist, estimated_rewards_by_reg_model=q_hat)
            keel = run_keel(args, csv_path(data_path, behavior, campaign), candidate,
                            csv_path(data_path, other, campaign))
            what = f"B {campaign} {behavior} {label}"
            fails.equal(f"{what} rounds", m, keel["rounds_evaluated"])
            fails.close(f"{what} logger mean", float(bf["reward"][ev].mean()), keel["logging_policy_mean_reward"])
            truth = float(OpenBanditDataset.calc_on_policy_policy_value_estimate(
                behavior_policy=other, campaign=campaign, data_path=data_path))
            fails.close(f"{what} ground truth", truth, keel["ground_truth"])
            by_name = {e["estimator"]: e for e in keel["estimates"]}
            fails.equal(f"{what} estimators", ESTIMATORS, [e["estimator"] for e in keel["estimates"]])
            for est in obp_estimators(B_SWITCH_TAU, B_DROS_LAMBDA):
                k = by_name.get(est.estimator_name)
                if k is None:
                    continue
                terms = est._estimate_round_rewards(**inputs)
                fails.close(f"{what} {est.estimator_name} value", float(est.estimate_policy_value(**inputs)),
                            k["value"])
                fails.close(f"{what} {est.estimator_name} std_err",
                            float(np.std(terms, ddof=1) / np.sqrt(len(terms))), k["std_err"])
            diag = diagnostics(bf["action"][ev], bf["position"][ev], bf["pscore"][ev], dist)
            w = keel["importance_weights"]
            fails.close(f"{what} ESS", float(diag["ess"]), w["effective_sample_size"])
            fails.close(f"{what} max weight", float(diag["max"]), w["max_weight"])
            fails.close(f"{what} mean weight", float(diag["mean"]), w["mean_weight"])
            fails.close(f"{what} rare-action mass", float(diag["rare_mass"]), keel["rare_action_mass"])
            verdicts = {name: by_name[name]["diagnostics"]["verdict"] for name in by_name}
            print(f"[B {campaign}] {behavior:6} {label:14} truth {truth:.6f}  ipw {by_name['ipw']['value']:.6f}  "
                  f"dr {by_name['dr']['value']:.6f}  switch-dr {by_name['switch-dr']['value']:.6f}  "
                  f"ESS {w['effective_sample_size']:8.1f}/{m}  max w {w['max_weight']:9.1f}  "
                  f"rare {keel['rare_action_mass']:.3f}  verdicts {verdicts['ipw']}/{verdicts['dr']}/"
                  f"{verdicts['switch-dr']}")
            if campaign == "women" and behavior == "bts" and label == "uniform":
                # The issue's case: uniform random from the women campaign's Thompson log.
                fails.equal(f"{what} max weight > 20,000", True, w["max_weight"] > 20_000)
                for name in ["ipw", "snipw", "dr", "sndr"]:
                    fails.equal(f"{what} {name} verdict", "do_not_trust", verdicts[name])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-path", type=Path, default=None,
                    help="folder holding random/ and bts/ (default: $KEEL_OBD_DIR, else the sample inside obp)")
    ap.add_argument("--campaigns", default="all,men,women")
    ap.add_argument("--out", type=Path, default=HERE / "out", help="where the exchanged files go")
    ap.add_argument("--n-sim", type=int, default=100_000, help="Monte Carlo draws for BernoulliTS action_dist")
    ap.add_argument("--n-bootstrap", type=int, default=10_000, help="bootstrap resamples (0: skip intervals)")
    ap.add_argument("--keel", type=Path, default=Path(os.environ.get("KEEL_BIN", REPO / "target" / "debug" / "keel")),
                    help="the keel binary for check B (default: $KEEL_BIN, else target/debug/keel)")
    ap.add_argument("--debug", dest="release", action="store_false", help="run the example in a debug build")
    ap.add_argument("--no-bench", dest="bench", action="store_false", help="do not time evaluate")
    ap.add_argument("--manifest-path", type=Path, help="Cargo.toml to run the example from (default: the workspace)")
    ap.add_argument("--only", choices=["arithmetic", "cli"], help="run only check A (arithmetic) or B (cli)")
    args = ap.parse_args()
    if args.data_path is None:
        env = os.environ.get("KEEL_OBD_DIR")
        args.data_path = Path(env) if env else OBP_ROOT / "dataset" / "obd"
    args.data_path = args.data_path.resolve()
    args.keel = args.keel.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    campaigns = [c for c in args.campaigns.split(",") if c]
    missing = [c for c in campaigns if not csv_path(args.data_path, "random", c).is_file()]
    if missing:
        print(f"FAIL: campaigns {missing} are not in {args.data_path}", file=sys.stderr)
        return 1
    if args.only != "arithmetic" and not args.keel.is_file():
        print(f"FAIL: no keel binary at {args.keel} (cargo build -p keel, or --keel)", file=sys.stderr)
        return 1
    print(f"obp {OBP_ROOT}; data {args.data_path}; campaigns {campaigns}; keel {args.keel}")
    fails = Failures()
    if args.only != "cli":
        for campaign in campaigns:
            check_arithmetic(args, campaign, fails)
    print()
    if args.only != "arithmetic":
        for campaign in campaigns:
            check_cli(args, campaign, fails)
    print(f"\n{fails.checked} comparisons; max relative difference keel vs obp {fails.max_rel:.3e} "
          f"(tolerance {RTOL:g})")
    if fails.items:
        print("FAIL:", *fails.items, sep="\n  ", file=sys.stderr)
        return 1
    print(f"OK: keel matches obp 0.5.7 on campaigns {', '.join(campaigns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
