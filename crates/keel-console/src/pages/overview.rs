//! `/ui/`: every deployment with its state, revision, decisions and reward rate; every model
//! with its production alias and latest version.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use keel_experiments::report::Report;

use super::{Who, viewer_of};
use crate::html::{Cell, Table, count, esc, link, rate, time};
use crate::{Console, Failure, answer};

pub(crate) async fn handler(State(c): State<Arc<Console>>, who: Who) -> Response {
    let viewer = viewer_of(&who);
    answer(viewer.as_ref(), "Overview", render(&c).await)
}

/// Decisions a report counts: the policy-driven ones and the holdout group's.
pub(crate) fn decisions(r: &Report) -> u64 {
    r.treated_group.exposures + r.control_group.as_ref().map_or(0, |g| g.exposures)
}

pub(crate) fn binary(r: &Report) -> bool {
    matches!(r.reward_kind, keel_experiments::spec::RewardKind::Binary)
}

async fn render(c: &Console) -> Result<String, Failure> {
    let back = ("/ui/", "reload");
    let status_of = c.status_of;
    let revisions = c
        .deployments
        .store()
        .list_deployments()
        .await
        .map_err(|e| Failure::from_error(status_of, &e, "Deployments", back))?;
    let failed: BTreeMap<String, String> = c.deployments.failed().into_iter().map(|f| (f.name, f.reason)).collect();
    let mut table = Table::new(
        "deployments",
        &[
            "Deployment",
            "State",
            "Revision",
            "Policy",
            "Variants",
            "Decisions",
            "Rewards",
            "Reward rate",
            "Waiting",
            "Changed",
        ],
    );
    let (mut serving, mut broken) = (0, 0);
    for d in &revisions {
        let name_cell = Cell::html(link("/ui/deployments", &d.name, &d.name)).sort_by(d.name.clone());
        let changed = Cell::text(&format!("{} by {}", time(&d.created_at), d.created_by))
            .sort_by(d.created_at.timestamp_millis().to_string());
        match c.deployments.report(&d.name) {
            Ok(r) => {
                serving += 1;
                let paused = r.variants.iter().filter(|v| v.paused).count();
                let state = if paused > 0 {
                    format!(r#"<span class="badge warn">serving, {paused} paused</span>"#)
                } else {
                    r#"<span class="badge good">serving</span>"#.to_owned()
                };
                let variants = r
                    .variants
                    .iter()
                    .map(|v| {
                        let mut s = esc(&v.name).to_string();
                        if v.paused {
                            s.push_str(r#" <span class="badge warn">paused</span>"#);
                        }
                        if v.shadow {
                            s.push_str(r#" <span class="badge">shadow</span>"#);
                        }
                        s
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let n = decisions(&r);
                let rewards = r.treated_group.rewards + r.control_group.as_ref().map_or(0, |g| g.rewards);
                table.named_row(
                    &d.name,
                    vec![
                        name_cell,
                        Cell::html(state).sort_by("serving".into()),
                        Cell::num(r.revision as f64, r.revision.to_string()).key("revision"),
                        Cell::text(&r.policy),
                        Cell::html(variants),
                        Cell::num(n as f64, count(n)).key("decisions"),
                        Cell::num(rewards as f64, count(rewards)).key("rewards"),
                        Cell::num(r.treated_group.rate, rate(r.treated_group.rate, binary(&r))).key("reward_rate"),
                        Cell::num(r.waiting_for_reward as f64, count(r.waiting_for_reward as u64)).key("waiting"),
                        changed,
                    ],
                );
            }
            Err(e) => {
                broken += 1;
                let why = failed.get(&d.name).cloned().unwrap_or_else(|| e.to_string());
                let state = format!(r#"<span class="badge bad" title="{}">failed</span>"#, esc(&why));
                table.named_row(
                    &d.name,
                    vec![
                        name_cell,
                        Cell::html(state).sort_by("failed".into()),
                        Cell::num(d.revision as f64, d.revision.to_string()).key("revision"),
                        Cell::text(""),
                        Cell::text(&why),
                        Cell::text("—"),
                        Cell::text("—"),
                        Cell::text("—"),
                        Cell::text("—"),
                        changed,
                    ],
                );
            }
        }
    }
    let models = c
        .registry
        .list_models()
        .await
        .map_err(|e| Failure::from_error(status_of, &e, "Models", back))?;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<p class="hint">{} deployments ({serving} serving, {broken} not serving) and {} models. Click a column to sort; every name links to its page.</p>"#,
        revisions.len(),
        models.len()
    );
    out.push_str("<h2>Deployments</h2>");
    out.push_str(&table.render("no deployments yet: apply one with `keel deployment apply NAME SPEC.json`"));
    out.push_str("<h2>Models</h2>");
    out.push_str(
        &super::models::models_table(&models).render("no models yet: push one with `keel model push NAME FILE.onnx`"),
    );
    Ok(out)
}
