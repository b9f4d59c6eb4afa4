//! `/ui/deployments/{name}`: the report of a deployment (each variant's share, reward rate with
//! its fixed-horizon interval and anytime-valid confidence sequence, probability to be best and
//! whether it may still be best, lift against control both ways; the holdout group; the lifts
//! over control, uniform and the best variant; the SRM
//! check; canary and paused variants; decisions waiting for a reward), each variant's reward
//! rate and traffic share over time as charts (`charts`, from the decision log), its safeguards
//! (`safeguards`: SLO, output guards, alerts, the live monitor's drift, quality and AUC), the
//! breakdown by a context feature when asked (`segments`, `?segment_by=F&outcome=O`), a
//! fixed-weight test's CUPED adjustment when asked (`cuped`, `?cuped=C&outcome=O`), and its
//! revisions with a diff between any two (`revisions`, `?diff=A..B`).

mod charts;
mod cuped;
mod monitor;
mod revisions;
mod safeguards;
mod segments;
mod variants;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use keel_experiments::DeploymentSpec;
use keel_experiments::offline::timeline::BucketSize;
use keel_experiments::report::Report;
use serde::Deserialize;

use super::overview::{binary, decisions};
use super::{Who, spec_models, viewer_of};
use crate::html::{count, esc, facts, pct, time};
use crate::{Console, Failure, answer};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeploymentQuery {
    /// `A..B`: the revisions to compare.
    diff: Option<String>,
    a: Option<String>,
    b: Option<String>,
    /// The width of the buckets over time: `auto` (the default), `30s`, `5m`, `1h`, `1d`.
    bucket: Option<String>,
    /// The context feature to break the report down by (`segments`).
    segment_by: Option<String>,
    /// A fixed-weight test's pre-period covariate to adjust by (`cuped`).
    cuped: Option<String>,
    /// What the breakdown and CUPED compare: `reward` (the default), `net` or a declared metric.
    outcome: Option<String>,
}

pub(crate) async fn handler(
    State(c): State<Arc<Console>>,
    Path(name): Path<String>,
    Query(q): Query<DeploymentQuery>,
    who: Who,
) -> Response {
    let viewer = viewer_of(&who);
    let title = format!("Deployment {name}");
    answer(viewer.as_ref(), &title, render(&c, &name, &q).await)
}

/// The two revisions a query asks to compare, if it asks.
fn wanted_diff(q: &DeploymentQuery, name: &str) -> Result<Option<(i64, i64)>, Failure> {
    let text = match (&q.diff, &q.a, &q.b) {
        (Some(d), _, _) if !d.is_empty() => d.clone(),
        (_, Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => format!("{a}..{b}"),
        _ => return Ok(None),
    };
    let back = format!("/ui/deployments/{}", crate::html::segment(name));
    let parsed = text
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?)));
    match parsed {
        Some(p) => Ok(Some(p)),
        None => Err(Failure::new(
            400,
            "Bad request",
            format!("diff={text:?} is not two revision numbers: write it as A..B, e.g. ?diff=1..2"),
            (&back, "back to the deployment"),
        )),
    }
}

async fn render(c: &Console, name: &str, q: &DeploymentQuery) -> Result<String, Failure> {
    let status_of = c.status_of;
    let missing = format!("Deployment {name:?}");
    let back = ("/ui/", "all deployments");
    let store = c.deployments.store();
    let current = store
        .get_deployment(name)
        .await
        .map_err(|e| Failure::from_error(status_of, &e, &missing, back))?;
    let history = store
        .deployment_history(name)
        .await
        .map_err(|e| Failure::from_error(status_of, &e, &missing, back))?;
    let diff = wanted_diff(q, name)?;
    let size = BucketSize::parse(q.bucket.as_deref().unwrap_or("auto")).map_err(|e| {
        let here = format!("/ui/deployments/{}", crate::html::segment(name));
        Failure::new(400, "Bad request", e.to_string(), (&here, "back to the deployment"))
    })?;
    let mut out = String::new();
    let report = c.deployments.report(name);
    let health = c.deployments.health(name);
    let models: BTreeMap<String, Option<String>> = spec_models(&current.spec).into_iter().collect();
    let state = match &report {
        Ok(_) => r#"<span class="badge good">serving</span>"#.to_owned(),
        Err(e) => format!(r#"<span class="badge bad">not serving</span> {}"#, esc(&e.to_string())),
    };
    let description = current.spec.get("description").and_then(|d| d.as_str()).unwrap_or("");
    let mut items = vec![
        ("state", state),
        (
            "revision",
            format!(
                "{} of {}, applied {} by {}{}",
                current.revision,
                history.len(),
                esc(&time(&current.created_at)),
                esc(&current.created_by),
                current
                    .reason
                    .as_deref()
                    .map(|r| format!(" — “{}”", esc(r)))
                    .unwrap_or_default()
            ),
        ),
    ];
    if !description.is_empty() {
        items.push(("description", esc(description).to_string()));
    }
    if let Ok(r) = &report {
        items.push((
            "policy",
            format!("{} (updated {} times)", esc(&r.policy), count(r.policy_version)),
        ));
        items.push((
            "reward",
            if binary(r) {
                "binary (conversion rate)".into()
            } else {
                "continuous (mean reward)".into()
            },
        ));
        items.push((
            "decisions",
            format!(r#"<span data-key="decisions">{}</span>"#, count(decisions(r))),
        ));
        items.push((
            "waiting for a reward",
            format!(
                r#"<span data-key="waiting">{}</span> decisions inside their attribution window"#,
                count(r.waiting_for_reward as u64)
            ),
        ));
    }
    out.push_str(&facts(&items));
    if let Ok(r) = &report {
        out.push_str(&checks(r));
        out.push_str(&variants::variants(r, &models));
        let over_time = c.timelines.of_running(&c.deployments, name, size).await;
        out.push_str(&charts::charts(r, over_time.as_ref().map_err(|e| e.to_string())));
        // The running revision's spec passed validation when it was applied.
        if let Ok(spec) = DeploymentSpec::from_json(&current.spec) {
            out.push_str(
                &segments::segments(
                    &c.deployments,
                    name,
                    &spec,
                    q.segment_by.as_deref(),
                    q.outcome.as_deref(),
                    q.bucket.as_deref(),
                )
                .await,
            );
            out.push_str(&cuped::cuped(&c.deployments, name, &spec, q.cuped.as_deref(), q.outcome.as_deref()).await);
        }
    }
    match &health {
        Ok(h) => out.push_str(&safeguards::safeguards(name, h)),
        // A deployment that does not serve has said why above.
        Err(_) if report.is_err() => {}
        Err(e) => {
            let _ = write!(
                out,
                r#"<h2>Safeguards</h2><p class="empty">{}</p>"#,
                esc(&e.to_string())
            );
        }
    }
    out.push_str(&revisions::revisions(name, &history, diff)?);
    Ok(out)
}

/// The warnings a reader must not miss: SRM, paused variants, the canary's step.
fn checks(r: &Report) -> String {
    let mut out = String::new();
    if let Some(srm) = &r.srm {
        if srm.mismatch {
            let _ = write!(
                out,
                r#"<div class="alert bad" id="srm" role="alert"><b>Sample ratio mismatch.</b> The split of decisions differs from the configured weights beyond chance (χ² = {:.2}, p = {:.2e}): assignment or logging is broken somewhere, and the comparison below cannot be trusted until it is found.</div>"#,
                srm.chi_square, srm.p_value
            );
        } else {
            let _ = write!(
                out,
                r#"<p class="hint" id="srm">Sample ratio check passed: the split matches the configured weights (χ² = {:.2}, p = {:.3}).</p>"#,
                srm.chi_square, srm.p_value
            );
        }
    }
    let paused: Vec<&str> = r
        .variants
        .iter()
        .filter(|v| v.paused)
        .map(|v| v.name.as_str())
        .collect();
    if !paused.is_empty() {
        let _ = write!(
            out,
            r#"<div class="alert" id="paused">Paused by the reward guardrail (significantly worse than the baseline): {}. They receive no traffic until the deployment is applied again.</div>"#,
            esc(&paused.join(", "))
        );
    }
    if let Some(share) = r.canary_share {
        let _ = write!(
            out,
            r#"<p class="hint" id="canary">Canary: the candidate variant receives {} of the traffic at this step.</p>"#,
            pct(share)
        );
    }
    out
}
