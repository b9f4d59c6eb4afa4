//! `keel deployment ...` and `keel experiment report`.

use anyhow::Context as _;
use keel_experiments::offline::breakdown::Breakdown;
use keel_experiments::offline::segments;
use keel_experiments::offline::source::LogSource;
use keel_experiments::{Deployment, DeploymentSpec, Report};

use crate::cli::{DeploymentCommand, ExperimentCommand, Global};
use crate::context::{Context, author};
use crate::output;

mod log;

pub async fn run(global: &Global, cmd: DeploymentCommand) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let store = ctx.registry.store();
    match cmd {
        DeploymentCommand::Apply {
            name,
            file,
            reason,
            author: by,
        } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let spec: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))?;
            // The whole revision (name, spec, model references) is prepared once, inside
            // `revise_deployment`; here only the monitor's reference table needs the spec.
            if let Some(monitor) = &DeploymentSpec::from_json(&spec)?.monitor {
                check_reference(global, &ctx, &name, &monitor.reference).await?;
            }
            let by = author(&by);
            let revision = match keel_plan::changes::revise_deployment(
                keel_plan::approvals::Revise::Record(&ctx.registry),
                &name,
                &spec,
                reason.as_deref(),
                crate::commands::changes::cli(&by),
            )
            .await?
            {
                keel_plan::changes::Outcome::Held(change) => {
                    return crate::commands::changes::report_held(global, &change);
                }
                keel_plan::changes::Outcome::Done(revision) => revision,
            };
            if global.json {
                return output::json(&revision);
            }
            println!(
                "deployment {} revision {} recorded; a running `keel serve` picks it up on restart, \
                 or apply it through PUT /v1/deployments/{} to switch live",
                revision.name, revision.revision, revision.name
            );
        }
        DeploymentCommand::Ls => {
            let all = store.list_deployments().await?;
            if global.json {
                return output::json(&all);
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|d| {
                    let variants = d.spec["variants"]
                        .as_array()
                        .map(|v| {
                            v.iter()
                                .filter_map(|x| x["name"].as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default();
                    vec![
                        d.name.clone(),
                        d.revision.to_string(),
                        d.spec["policy"]["type"].as_str().unwrap_or("?").to_string(),
                        variants,
                        output::time(&d.created_at),
                        d.created_by.clone(),
                    ]
                })
                .collect();
            output::table(
                &["NAME", "REVISION", "POLICY", "VARIANTS", "UPDATED (UTC)", "BY"],
                &rows,
            );
        }
        DeploymentCommand::Show { name } => {
            let d = store.get_deployment(&name).await?;
            if global.json {
                return output::json(&d);
            }
            println!(
                "{} revision {} ({} by {})",
                d.name,
                d.revision,
                output::time(&d.created_at),
                d.created_by
            );
            println!("{}", serde_json::to_string_pretty(&d.spec)?);
        }
        DeploymentCommand::History { name } => {
            let h = store.deployment_history(&name).await?;
            if global.json {
                return output::json(&h);
            }
            let rows: Vec<Vec<String>> = h
                .iter()
                .map(|d| {
                    vec![
                        d.revision.to_string(),
                        output::time(&d.created_at),
                        d.created_by.clone(),
                        d.spec["policy"]["type"].as_str().unwrap_or("?").to_string(),
                        d.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["REVISION", "WHEN (UTC)", "BY", "POLICY", "REASON"], &rows);
        }
        DeploymentCommand::Verify { name } => log::verify(global, &ctx, name).await?,
        DeploymentCommand::Repair {
            name,
            from_offset,
            from_seq,
        } => log::repair(global, &ctx, name, from_offset, from_seq).await?,
    }
    Ok(())
}

pub async fn experiment(global: &Global, cmd: ExperimentCommand) -> anyhow::Result<()> {
    match cmd {
        ExperimentCommand::Report {
            name,
            url,
            segment_by,
            cuped,
            outcome,
        } => {
            let breakdown = Breakdown {
                segment_by,
                cuped,
                outcome,
            };
            breakdown.validate()?;
            let report: Report = match url {
                Some(url) => {
                    let url = format!("{}/v1/deployments/{name}/report", url.trim_end_matches('/'));
                    // the same fields, as the query (`None`s are left out)
                    let mut request = reqwest::Client::new().get(&url).query(&breakdown);
                    if let Some(token) = &global.token {
                        request = request.bearer_auth(token);
                    }
                    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
                    if !response.status().is_success() {
                        let body: serde_json::Value = response.json().await.unwrap_or_default();
                        anyhow::bail!("{}", body["error"].as_str().unwrap_or("the server refused the report"));
                    }
                    let value: serde_json::Value = response.json().await?;
                    if global.json {
                        return output::json(&value);
                    }
                    serde_json::from_value(value).context("unexpected report format")?
                }
                None => {
                    let ctx = Context::open(global).await?;
                    let d = ctx.registry.store().get_deployment(&name).await?;
                    let spec = DeploymentSpec::from_json(&d.spec)?;
                    let dir = ctx.home.join("experiments");
                    let store = ctx.registry.store();
                    let report = Deployment::offline_report_in(store, &name, &spec, d.revision, &dir).await?;
                    // Read from the log wherever it lives (files or PostgreSQL, archived parts included).
                    let log = LogSource::of(store, &dir, &name);
                    let report = tokio::task::spawn_blocking(move || {
                        let mut report = report;
                        breakdown.fill(log, &spec, &mut report).map(|()| report)
                    })
                    .await??;
                    if global.json {
                        return output::json(&report);
                    }
                    report
                }
            };
            print_report(&report);
        }
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// Every metric besides the decision metric, a table each, with the guardrails' verdicts.
fn print_metrics(r: &Report) {
    if r.variants.iter().any(|v| v.cost.is_some()) {
        let costs: Vec<String> = r
            .variants
            .iter()
            .filter_map(|v| Some(format!("{} cost {} net {:.4}", v.name, v.cost?, v.net_value?)))
            .collect();
        println!(
            "
{} minus cost (what the policy maximises): {}",
            r.reward_name.as_deref().unwrap_or("reward"),
            costs.join("; ")
        );
    }
    for m in &r.metrics {
        let guard = m.guardrail.as_ref().map_or(String::new(), |g| {
            format!(", guardrail: {:?} is better, max loss {}", g.better, g.max_loss).to_lowercase()
        });
        println!(
            "
metric {} ({:?}{guard}); compared with {}:",
            m.name,
            m.kind,
            m.baseline.as_deref().unwrap_or("- (nothing yet)")
        );
        let rows: Vec<Vec<String>> = m
            .variants
            .iter()
            .map(|v| {
                vec![
                    v.name.clone(),
                    v.values.n.to_string(),
                    format!("{:.4}", v.values.mean),
                    format!("[{:.4}, {:.4}]", v.values.mean_ci.0, v.values.mean_ci.1),
                    range_text(v.values.mean_cs),
                    v.vs_baseline
                        .as_ref()
                        .map_or("-".into(), |l| format!("{:+.4}", l.difference.0)),
                    v.guardrail
                        .as_ref()
                        .map_or("-".into(), |g| format!("{:?}", g.verdict).to_lowercase()),
                ]
            })
            .collect();
        output::table(
            &[
                "VARIANT",
                "VALUES",
                "MEAN",
                "95% CI (FIXED)",
                "95% CS (ANYTIME)",
                "VS BASELINE",
                "GUARDRAIL (ANYTIME)",
            ],
            &rows,
        );
    }
}

/// The lifts of the policy-driven traffic, one line each, with the counts they rest on.
fn print_lifts(l: &keel_experiments::report::Lifts) {
    let lifts = [
        ("control", &l.over_control),
        ("uniform", &l.over_uniform),
        ("best variant", &l.over_best_variant),
    ];
    if lifts.iter().all(|(_, x)| x.is_none()) {
        return;
    }
    println!("\nlift of the policy-driven traffic (95%: fixed-horizon interval, then anytime-valid sequence):");
    for (over, lift) in lifts {
        let Some(x) = lift else {
            println!("  over {over}: - (fewer than 2 rewards on a side)");
            continue;
        };
        let (d, lo, hi) = x.difference;
        let anytime = x.difference_cs.map_or("- (too few rewards yet)".into(), |(_, lo, hi)| {
            format!("[{lo:+.4}, {hi:+.4}]")
        });
        println!(
            "  over {over} ({}): {}, anytime {}; difference {d:+.4} [{lo:+.4}, {hi:+.4}], anytime {anytime}; rate {:.4} on {} rewards vs {:.4} on {}",
            x.baseline,
            lift_text(x.relative),
            bounds_text(x.relative_cs),
            x.treated_rate,
            x.treated_rewards,
            x.baseline_rate,
            x.baseline_rewards
        );
    }
}

/// The report by segment: each segment's rates, and its lift over the control group with the
/// Bonferroni-adjusted figures.
fn print_segments(s: &segments::Segments) {
    println!(
        "\n{} by {} ({}; {} decisions with a value, {} without the feature):",
        s.outcome, s.feature, s.kind, s.rewards, s.missing
    );
    let mut headers = vec!["SEGMENT".to_string(), "REWARDS".to_string()];
    headers.extend(s.segments.first().map_or(Vec::new(), |g| {
        g.variants
            .iter()
            .map(|v| format!("RATE {}", v.name.to_uppercase()))
            .collect()
    }));
    headers.extend(
        [
            "TREATED",
            "CONTROL",
            "DIFFERENCE (95%)",
            "DIFFERENCE (ADJUSTED)",
            "ANYTIME (ADJUSTED)",
        ]
        .map(String::from),
    );
    let rows: Vec<Vec<String>> = s
        .segments
        .iter()
        .map(|g| {
            let mut row = vec![g.value.clone(), g.rewards.to_string()];
            row.extend(g.variants.iter().map(|v| format!("{:.4} ({})", v.rate, v.rewards)));
            row.push(format!("{:.4} ({})", g.treated_rate, g.treated_rewards));
            row.push(
                g.control_rate
                    .zip(g.control_rewards)
                    .map_or("-".into(), |(r, n)| format!("{r:.4} ({n})")),
            );
            let span = |x: (f64, f64, f64)| format!("{:+.4} [{:+.4}, {:+.4}]", x.0, x.1, x.2);
            match &g.lift_over_control {
                Some(l) => {
                    row.push(span(l.lift.difference));
                    row.push(span(l.difference_adjusted));
                    row.push(l.difference_cs_adjusted.map_or("- (too few rewards)".into(), span));
                }
                None => row.extend(["-".to_string(), "-".to_string(), "-".to_string()]),
            }
            row
        })
        .collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    output::table(&headers, &rows);
    println!("{}", s.note);
}

/// The CUPED-adjusted differences beside the raw ones, with the variance removed.
fn print_cuped(c: &keel_experiments::offline::cuped::Cuped) {
    println!(
        "\nCUPED of {} by {} (theta {:.4}, correlation {:.3}; {} decisions with a value, {} without the covariate): each variant against {}",
        c.outcome, c.covariate, c.theta, c.correlation, c.rewards, c.missing, c.baseline
    );
    let span = |x: (f64, f64, f64)| format!("{:+.4} [{:+.4}, {:+.4}]", x.0, x.1, x.2);
    let rows: Vec<Vec<String>> = c
        .comparisons
        .iter()
        .map(|x| {
            vec![
                x.variant.clone(),
                span(x.difference),
                span(x.adjusted_difference),
                x.adjusted_difference_cs.map_or("- (too few rewards)".into(), span),
                pct(x.variance_reduction),
            ]
        })
        .collect();
    output::table(
        &[
            "VARIANT",
            "DIFFERENCE (FIXED)",
            "CUPED DIFFERENCE (FIXED)",
            "CUPED DIFFERENCE (ANYTIME)",
            "VARIANCE REMOVED",
        ],
        &rows,
    );
}

/// A relative lift and its interval in percent, or `-`.
fn lift_text(l: Option<(f64, f64, f64)>) -> String {
    l.map_or("-".into(), |(l, lo, hi)| {
        format!("{} [{}, {}]", pct(l), pct(lo), pct(hi))
    })
}

/// Only the bounds of a relative lift's interval in percent, or `-`.
fn bounds_text(l: Option<(f64, f64, f64)>) -> String {
    l.map_or("-".into(), |(_, lo, hi)| format!("[{}, {}]", pct(lo), pct(hi)))
}

fn range_text(r: Option<(f64, f64)>) -> String {
    r.map_or("-".into(), |(lo, hi)| format!("[{lo:.4}, {hi:.4}]"))
}

pub fn print_report(r: &Report) {
    println!(
        "deployment {} revision {}  policy {} (version {})  waiting for reward: {}",
        r.deployment, r.revision, r.policy, r.policy_version, r.waiting_for_reward
    );
    let rows: Vec<Vec<String>> = r
        .variants
        .iter()
        .map(|v| {
            vec![
                format!(
                    "{}{}{}",
                    v.name,
                    if v.shadow { " (shadow)" } else { "" },
                    if v.paused { " (PAUSED)" } else { "" }
                ),
                v.exposures.to_string(),
                pct(v.share),
                v.rewards.to_string(),
                v.conversions.to_string(),
                format!("{:.4}", v.rate),
                format!("[{:.4}, {:.4}]", v.rate_ci.0, v.rate_ci.1),
                range_text(v.rate_cs),
                pct(v.prob_best),
                if v.shadow {
                    "-".into()
                } else if v.may_be_best {
                    "yes".into()
                } else {
                    "no".into()
                },
                lift_text(v.lift_vs_control),
                bounds_text(v.lift_vs_control_cs),
            ]
        })
        .collect();
    output::table(
        &[
            "VARIANT",
            "EXPOSURES",
            "SHARE",
            "REWARDS",
            "CONVERSIONS",
            "RATE",
            "95% CI (FIXED)",
            "95% CS (ANYTIME)",
            "P(BEST) (FIXED)",
            "MAY BE BEST (ANYTIME)",
            "LIFT VS CONTROL (FIXED)",
            "LIFT CS (ANYTIME)",
        ],
        &rows,
    );
    if let Some(c) = &r.control_group {
        println!(
            "\ncontrol group ({}, {} of units): {} exposures, rate {:.4} [{:.4}, {:.4}] anytime {}; treated: {} exposures, rate {:.4} [{:.4}, {:.4}] anytime {}",
            r.control.as_ref().map_or("holdout", |c| c.description.as_str()),
            r.control.as_ref().map_or("-".into(), |c| pct(c.share)),
            c.exposures,
            c.rate,
            c.rate_ci.0,
            c.rate_ci.1,
            range_text(c.rate_cs),
            r.treated_group.exposures,
            r.treated_group.rate,
            r.treated_group.rate_ci.0,
            r.treated_group.rate_ci.1,
            range_text(r.treated_group.rate_cs)
        );
    }
    print_lifts(&r.lifts);
    print_metrics(r);
    if let Some(s) = &r.segments {
        print_segments(s);
    }
    if let Some(c) = &r.cuped {
        print_cuped(c);
    }
    println!(
        "\nFIXED: valid when the report is read once, at a sample size fixed in advance. ANYTIME: confidence sequences, valid however often the report is read (normal mixture tuned to {} rewarded decisions; `--json` states the method).",
        r.statistics.tuning_n
    );
    if let Some(s) = &r.srm {
        println!(
            "sample ratio check: chi2 {:.2}, p = {:.4}{}",
            s.chi_square,
            s.p_value,
            if s.mismatch {
                "  MISMATCH: the split differs from the weights; check assignment and logging"
            } else {
                ""
            }
        );
    }
    if let Some(share) = r.canary_share {
        println!("canary share now {}", pct(share));
    }
    if r.traffic.len() > 1 {
        println!("\ntraffic share over time:");
        let names: Vec<&str> = r.variants.iter().map(|v| v.name.as_str()).collect();
        let rows: Vec<Vec<String>> = r
            .traffic
            .iter()
            .map(|(t, counts)| {
                let total: u64 = counts.iter().sum();
                let mut row = vec![
                    chrono::DateTime::from_timestamp_millis(*t)
                        .map_or(t.to_string(), |d| d.format("%H:%M:%S").to_string()),
                ];
                row.extend(counts.iter().map(|c| {
                    if total == 0 {
                        "-".into()
                    } else {
                        pct(*c as f64 / total as f64)
                    }
                }));
                row
            })
            .collect();
        let mut headers = vec!["BUCKET (UTC)"];
        headers.extend(names);
        output::table(&headers, &rows);
    }
}

/// A monitored deployment's reference table must exist in the lake, and whoever applies the
/// deployment must be allowed to read it (the server then reads it on their behalf).
#[cfg(feature = "lake")]
async fn check_reference(global: &Global, ctx: &Context, deployment: &str, table: &str) -> anyhow::Result<()> {
    let (ws, caller) = crate::commands::data::catalogued::workspace(global, ctx).await?;
    Ok(ws.check_monitor_reference(&caller, table, deployment).await?)
}

#[cfg(not(feature = "lake"))]
async fn check_reference(_: &Global, _: &Context, _: &str, _: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "this keel was built without the lake feature, so deployments cannot be monitored against a reference table"
    )
}
