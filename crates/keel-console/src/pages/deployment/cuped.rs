//! The deployment page's CUPED adjustment (`?cuped=COVARIATE&outcome=NAME`), for fixed-weight
//! A/B tests: a form to pick the pre-period covariate and the outcome, then each variant's
//! difference against the baseline variant, raw and adjusted, with the variance removed. Read
//! from the decision log on demand (`offline::cuped`, what the REST report's `?cuped=` gives).

use std::sync::Arc;

use keel_experiments::offline::cuped::{self, Cuped};
use keel_experiments::{DeploymentSpec, Deployments};

use super::segments::{Choices, feature_picker, from_log, outcome_select};
use super::variants::lift_cell;
use crate::html::{Cell, Table, count, esc, pct};

fn form(c: &Choices, covariate: Option<&str>, outcome: Option<&str>) -> String {
    let mut out = String::from(r#"<form method="get" id="cuped-form" class="inline"><label>Adjust by "#);
    out.push_str(&feature_picker("cuped", &c.numeric, covariate, "a numeric context key"));
    out.push_str(r#"</label> <label>comparing "#);
    out.push_str(&outcome_select(c, outcome));
    out.push_str(r#"</label> <button type="submit">Adjust</button></form>"#);
    out
}

fn table(c: &Cuped) -> String {
    let mut out = format!(
        r#"<p class="hint" id="cuped-note">{} adjusted by {}: θ = {:.4}, correlation {:.3}; {} decisions with a value, {} without the covariate; each variant against {}. The adjusted difference estimates the same effect as the raw one, with the variance the covariate explains removed.</p>"#,
        esc(&c.outcome),
        esc(&c.covariate),
        c.theta,
        c.correlation,
        count(c.rewards),
        count(c.missing),
        esc(&c.baseline)
    );
    let mut t = Table::new(
        "cuped",
        &[
            "Variant",
            "Difference (fixed-horizon)",
            "CUPED difference (fixed-horizon)",
            "CUPED difference (anytime)",
            "Variance removed",
        ],
    );
    for x in &c.comparisons {
        t.named_row(
            &x.variant,
            vec![
                Cell::text(&x.variant),
                lift_cell(Some(x.difference), false).key("difference"),
                lift_cell(Some(x.adjusted_difference), false).key("adjusted_difference"),
                lift_cell(x.adjusted_difference_cs, false).key("adjusted_difference_cs"),
                Cell::num(x.variance_reduction, pct(x.variance_reduction)).key("variance_reduction"),
            ],
        );
    }
    out.push_str(&t.render("no variant has two decisions with a value and the covariate yet"));
    out
}

/// The section, for fixed-weight deployments only (CUPED needs randomised assignment): the
/// form, and the adjustment when `covariate` is asked for (an error is said in the section).
pub(super) async fn cuped(
    deployments: &Arc<Deployments>,
    name: &str,
    spec: &DeploymentSpec,
    covariate: Option<&str>,
    outcome: Option<&str>,
) -> String {
    if !spec.has_fixed_weights() {
        return String::new();
    }
    let c = Choices::of(spec);
    let mut out = String::from(
        r#"<h2 id="cuped-heading">CUPED</h2><p class="hint">A fixed-weight test's differences adjusted by a covariate measured before the test (sent in the decide context), read from the decision log when asked.</p>"#,
    );
    out.push_str(&form(&c, covariate, outcome));
    let Some(covariate) = covariate.filter(|f| !f.is_empty()) else {
        return out;
    };
    let (d, n, f, o) = (
        deployments.clone(),
        name.to_owned(),
        covariate.to_owned(),
        outcome.map(str::to_owned),
    );
    let read = move || cuped::of_running(&d, &n, &f, o.as_deref());
    out.push_str(&from_log("cuped", read, table).await);
    out
}
