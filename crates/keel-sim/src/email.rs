//! `keel simulate email`: run policies against the e-mail world through a live server.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::world::{World, context_spec};

/// How a simulation is run.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub url: String,
    pub prefix: String,
    pub customers: usize,
    pub promotions: usize,
    pub base_rate: f64,
    /// Seed of the simulated world (customers, their tastes, their conversions).
    pub seed: u64,
    /// Draw the promotions' appeal from `seed` too ([`World::drawn`]) instead of keel's own world.
    pub drawn_world: bool,
    /// The promotions' appeal shifts from this customer on ([`World::shifting_at`]); the expected
    /// rates (uniform, best single, oracle) are then over the customers as each one found it.
    pub drift_at: Option<usize>,
    /// Seed of keel's own randomness (the deployments' `seed`), apart from the world's so the
    /// policy's draws never echo the world's.
    pub policy_seed: u64,
    pub concurrency: usize,
    /// Rewards arrive this many decisions later (0: immediately).
    pub delay_decisions: usize,
    /// Feedback is sent in batches of this many events (1: one call per event).
    pub batch: usize,
    /// Policies to compare: uniform, best_single, thompson, contextual (square_cb), lin_ucb...
    pub policies: Vec<String>,
    /// Share of customers held out as a control group: the status quo before keel, rotating
    /// the promotions uniformly at random (sticky per customer).
    pub control_share: f64,
    /// Buckets of the traffic-share-over-time table.
    pub share_buckets: usize,
    /// API token sent with every request (needs the deploy, decide and view scopes), for a
    /// server that requires authentication.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    pub policy: String,
    pub deployment: String,
    pub decisions: usize,
    pub conversions: u64,
    pub rate: f64,
    /// Expected conversions given the promotions chosen (less noisy than conversions).
    pub expected_rate: f64,
    pub lift_over_uniform: f64,
    pub lift_over_best_single: f64,
    /// Expected conversions lost against the oracle, per 1,000 customers.
    pub regret_per_1000: f64,
    pub share_over_time: Vec<Vec<f64>>,
    pub decisions_per_second: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmailReport {
    pub world: serde_json::Value,
    pub uniform_rate: f64,
    pub best_single: (String, f64),
    pub oracle_rate: f64,
    pub results: Vec<PolicyResult>,
}

/// The deployment spec the simulator creates for `policy` (`uniform`, `thompson`, `contextual`,
/// ...) over the world's promotions, with the configured control group and seed.
pub fn policy_spec(policy: &str, world: &World, cfg: &EmailConfig) -> anyhow::Result<serde_json::Value> {
    let k = world.k();
    let policy_json = match policy {
        "uniform" => json!({"type": "fixed_weights", "weights": vec![1.0; k]}),
        "best_single" => {
            let (best, _) = world.best_single();
            let w: Vec<f64> = (0..k).map(|a| if a == best { 1.0 } else { 0.0 }).collect();
            json!({"type": "fixed_weights", "weights": w})
        }
        "thompson" | "thompson_beta" => json!({"type": "thompson_beta"}),
        "ucb1" => json!({"type": "ucb1"}),
        "epsilon_greedy" => json!({"type": "epsilon_greedy", "epsilon": 0.1}),
        // keel's recommended contextual learner, as a marketer who does not tune would write it.
        "contextual" => json!({"type": "contextual"}),
        "square_cb" => json!({"type": "square_cb", "gamma": 400.0, "floor": 0.01}),
        "logistic_thompson" => json!({"type": "logistic_thompson", "v": 0.5, "floor": 0.01}),
        "lin_ucb" => json!({"type": "lin_ucb", "alpha": 0.5, "floor": 0.01}),
        "linear_thompson" => json!({"type": "linear_thompson", "v": 0.05, "floor": 0.01}),
        other => bail!(
            "unknown policy '{other}'; use uniform, best_single, thompson, ucb1, epsilon_greedy, contextual (keel's recommended learner), square_cb, lin_ucb, linear_thompson or logistic_thompson"
        ),
    };
    let variants: Vec<serde_json::Value> = world.promotions.iter().map(|p| json!({"name": p})).collect();
    let mut spec = json!({
        "description": format!("e-mail promotions, simulated ({policy})"),
        "variants": variants,
        "policy": policy_json,
        "context": context_spec(),
        "reward": {"kind": "binary", "min": 0.0, "max": 1.0, "default": 0.0, "window_seconds": 3600},
        "seed": cfg.policy_seed,
    });
    if cfg.control_share > 0.0 {
        spec["control"] = json!({"policy": "uniform", "share": cfg.control_share});
    }
    Ok(spec)
}

/// Runs every configured policy in turn and reports.
pub async fn run(cfg: &EmailConfig, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<EmailReport> {
    let world = if cfg.drawn_world {
        World::drawn(cfg.customers, cfg.promotions, cfg.base_rate, cfg.seed)?
    } else {
        World::new(cfg.customers, cfg.promotions, cfg.base_rate, cfg.seed)?
    };
    let world = Arc::new(match cfg.drift_at {
        Some(at) => world.shifting_at(at, cfg.seed),
        None => world,
    });
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &cfg.token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("the API token contains characters a header cannot carry"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.concurrency * 2)
        .tcp_nodelay(true)
        .default_headers(headers)
        .build()?;
    let uniform = world.uniform_rate();
    let (best, best_rate) = world.best_single();
    let oracle = world.oracle_rate();
    progress(&format!(
        "world: {} customers, {} promotions; expected rates: uniform {:.4}, best single ({}) {:.4}, oracle {:.4}",
        cfg.customers,
        world.k(),
        uniform,
        world.promotions[best],
        best_rate,
        oracle
    ));
    let mut results = Vec::new();
    for policy in &cfg.policies {
        let r = run_policy(cfg, &world, &client, policy, progress).await?;
        progress(&format!(
            "{:<14} rate {:.4} (expected {:.4})  vs uniform {:+.1}%  vs best single {:+.1}%  regret/1000 {:.2}  {:.0} decisions/s",
            r.policy,
            r.rate,
            r.expected_rate,
            r.lift_over_uniform * 100.0,
            r.lift_over_best_single * 100.0,
            r.regret_per_1000,
            r.decisions_per_second
        ));
        results.push(r);
    }
    Ok(EmailReport {
        world: world.describe(),
        uniform_rate: uniform,
        best_single: (world.promotions[best].clone(), best_rate),
        oracle_rate: oracle,
        results,
    })
}

struct Shared {
    delayed: Mutex<VecDeque<(String, f64)>>,
    conversions: AtomicUsize,
    expected_micro: AtomicUsize,
    regret_micro: AtomicUsize,
    chosen: Vec<AtomicUsize>,
}

async fn run_policy(
    cfg: &EmailConfig,
    world: &Arc<World>,
    client: &reqwest::Client,
    policy: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<PolicyResult> {
    let deployment = format!("{}-{}", cfg.prefix, policy);
    let spec = policy_spec(policy, world, cfg)?;
    let url = cfg.url.trim_end_matches('/').to_string();
    let put = client
        .put(format!("{url}/v1/deployments/{deployment}"))
        .json(&json!({"spec": spec, "reason": "simulation run"}))
        .send()
        .await
        .with_context(|| format!("cannot reach keel at {url}; start it with `keel serve`"))?;
    if !put.status().is_success() {
        let body: serde_json::Value = put.json().await.unwrap_or_default();
        bail!("creating deployment {deployment} failed: {}", body["error"]);
    }
    let n = cfg.customers;
    let k = world.k();
    let shared = Arc::new(Shared {
        delayed: Mutex::new(VecDeque::new()),
        conversions: AtomicUsize::new(0),
        expected_micro: AtomicUsize::new(0),
        regret_micro: AtomicUsize::new(0),
        chosen: (0..n).map(|_| AtomicUsize::new(usize::MAX)).collect(),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..cfg.concurrency.max(1) {
        let (client, world, shared, next) = (client.clone(), world.clone(), shared.clone(), next.clone());
        let (url, deployment) = (url.clone(), deployment.clone());
        let (delay, batch, seed) = (cfg.delay_decisions, cfg.batch.max(1), cfg.seed);
        tasks.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9));
            let mut outbox: Vec<(String, f64)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let c = &world.customers[i];
                let decided: serde_json::Value = client
                    .post(format!("{url}/v1/deployments/{deployment}/decide"))
                    .json(&json!({"unit_id": c.id, "context": c.context()}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let variant = decided["variant"]
                    .as_str()
                    .context("decide answered without a variant")?;
                let a = world
                    .promotions
                    .iter()
                    .position(|p| p == variant)
                    .context("unknown variant")?;
                shared.chosen[i].store(a, Ordering::Relaxed);
                let p = world.p[i][a];
                let best = world.p[i].iter().copied().fold(0.0, f64::max);
                shared.expected_micro.fetch_add((p * 1e6) as usize, Ordering::Relaxed);
                shared
                    .regret_micro
                    .fetch_add(((best - p) * 1e6) as usize, Ordering::Relaxed);
                let converted = rng.random::<f64>() < p;
                if converted {
                    shared.conversions.fetch_add(1, Ordering::Relaxed);
                }
                let id = decided["decision_id"].as_str().context("no decision id")?.to_string();
                let reward = if converted { 1.0 } else { 0.0 };
                if delay == 0 {
                    outbox.push((id, reward));
                } else {
                    let mut q = shared.delayed.lock().await;
                    q.push_back((id, reward));
                    while q.len() > delay {
                        if let Some(e) = q.pop_front() {
                            outbox.push(e);
                        }
                    }
                }
                if outbox.len() >= batch {
                    send(&client, &url, &deployment, &mut outbox).await?;
                }
            }
            send(&client, &url, &deployment, &mut outbox).await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("simulation worker panicked")??;
    }
    let mut rest: Vec<(String, f64)> = shared.delayed.lock().await.drain(..).collect();
    send(client, &url, &deployment, &mut rest).await?;
    let seconds = started.elapsed().as_secs_f64();
    progress(&format!("  {policy}: {n} customers in {seconds:.1} s"));

    let conversions = shared.conversions.load(Ordering::Relaxed) as u64;
    let rate = conversions as f64 / n as f64;
    let expected_rate = shared.expected_micro.load(Ordering::Relaxed) as f64 / 1e6 / n as f64;
    let (_, best_rate) = world.best_single();
    let buckets = cfg.share_buckets.max(1);
    let share_over_time = (0..buckets)
        .map(|b| {
            let (lo, hi) = (b * n / buckets, (b + 1) * n / buckets);
            let mut counts = vec![0usize; k];
            for i in lo..hi {
                let a = shared.chosen[i].load(Ordering::Relaxed);
                if a < k {
                    counts[a] += 1;
                }
            }
            let total = (hi - lo).max(1) as f64;
            counts.iter().map(|c| *c as f64 / total).collect()
        })
        .collect();
    Ok(PolicyResult {
        policy: policy.to_string(),
        deployment,
        decisions: n,
        conversions,
        rate,
        expected_rate,
        lift_over_uniform: expected_rate / world.uniform_rate() - 1.0,
        lift_over_best_single: expected_rate / best_rate - 1.0,
        regret_per_1000: shared.regret_micro.load(Ordering::Relaxed) as f64 / 1e6 / n as f64 * 1000.0,
        share_over_time,
        decisions_per_second: n as f64 / seconds,
        seconds,
    })
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    deployment: &str,
    outbox: &mut Vec<(String, f64)>,
) -> anyhow::Result<()> {
    if outbox.is_empty() {
        return Ok(());
    }
    let response = if outbox.len() == 1 {
        let (id, r) = &outbox[0];
        client
            .post(format!("{url}/v1/deployments/{deployment}/feedback"))
            .json(&json!({"decision_id": id, "reward": r}))
            .send()
            .await?
    } else {
        let events: Vec<serde_json::Value> = outbox
            .iter()
            .map(|(id, r)| json!({"decision_id": id, "reward": r}))
            .collect();
        client
            .post(format!("{url}/v1/deployments/{deployment}/feedback/batch"))
            .json(&json!({"events": events}))
            .send()
            .await?
    };
    if !response.status().is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        bail!("feedback refused: {}", body["error"]);
    }
    if outbox.len() > 1 {
        let body: serde_json::Value = response.json().await?;
        if body["failed"].as_u64().unwrap_or(0) > 0 {
            bail!("some feedback was refused: {}", body["results"]);
        }
    }
    outbox.clear();
    Ok(())
}
