//! `/ui/models` and `/ui/models/{name}`: versions with their signatures and metrics, aliases
//! with their history (who, when, why), and the deployments that serve each version; with the
//! lake, a link to the version's performance over time (`monitoring`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use keel_registry::Registry;
use keel_store::ModelSummary;

use super::{Who, spec_models, viewer_of};
use crate::html::{Cell, Table, count, esc, facts, link, time};
use crate::{Console, Failure, answer};

pub(crate) async fn list_handler(State(c): State<Arc<Console>>, who: Who) -> Response {
    let viewer = viewer_of(&who);
    let result = c
        .registry
        .list_models()
        .await
        .map_err(|e| Failure::from_error(c.status_of, &e, "Models", ("/ui/", "back to the overview")))
        .map(|models| {
            let mut out = format!(
                r#"<p class="hint">{} models in the registry. The production alias is what `NAME@production` serves.</p>"#,
                models.len()
            );
            out.push_str(&models_table(&models).render("no models yet: push one with `keel model push NAME FILE.onnx`"));
            out
        });
    answer(viewer.as_ref(), "Models", result)
}

/// The models table of the overview and the models page.
pub(crate) fn models_table(models: &[ModelSummary]) -> Table {
    let mut t = Table::new(
        "models",
        &[
            "Model",
            "Latest version",
            "Versions",
            "production",
            "Aliases",
            "Updated",
        ],
    );
    for m in models {
        let production = m.aliases.iter().find(|(a, _)| a == "production").map(|(_, v)| *v);
        let aliases = m
            .aliases
            .iter()
            .map(|(a, v)| format!("{a} → v{v}"))
            .collect::<Vec<_>>()
            .join(", ");
        t.named_row(
            &m.name,
            vec![
                Cell::html(link("/ui/models", &m.name, &m.name)).sort_by(m.name.clone()),
                Cell::num(m.latest_version as f64, format!("v{}", m.latest_version)).key("latest"),
                Cell::num(m.version_count as f64, m.version_count.to_string()).key("versions"),
                match production {
                    Some(v) => Cell::num(v as f64, format!("v{v}")).key("production"),
                    None => Cell::text("—").key("production"),
                },
                Cell::text(&aliases),
                Cell::text(&time(&m.updated_at)).sort_by(m.updated_at.timestamp_millis().to_string()),
            ],
        );
    }
    t
}

pub(crate) async fn model_handler(State(c): State<Arc<Console>>, Path(name): Path<String>, who: Who) -> Response {
    let viewer = viewer_of(&who);
    let title = format!("Model {name}");
    answer(viewer.as_ref(), &title, render(&c, &name).await)
}

fn metrics_text(m: &serde_json::Value) -> String {
    match m.as_object() {
        Some(o) if !o.is_empty() => o
            .iter()
            .map(|(k, v)| match v.as_f64() {
                Some(x) => format!("{k} = {x}"),
                None => format!("{k} = {v}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "—".to_owned(),
    }
}

fn tensors(ts: &[keel_registry::onnx::TensorSignature]) -> String {
    ts.iter()
        .map(|t| format!("{} {} {:?}", t.name, t.datatype, t.shape))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn render(c: &Console, name: &str) -> Result<String, Failure> {
    let back = ("/ui/models", "all models");
    let status_of = c.status_of;
    let missing = format!("Model {name:?}");
    let versions = c
        .registry
        .list_versions(name)
        .await
        .map_err(|e| Failure::from_error(status_of, &e, &missing, back))?;
    let aliases = c
        .registry
        .list_aliases(name)
        .await
        .map_err(|e| Failure::from_error(status_of, &e, &missing, back))?;
    let history = c
        .registry
        .alias_history(name, None)
        .await
        .map_err(|e| Failure::from_error(status_of, &e, &missing, back))?;
    let store = c.deployments.store();
    // Lineage says which deployments served which version (recorded by every revision).
    let (_, downstream) = store
        .lineage(&format!("model/{name}"))
        .await
        .map_err(|e| Failure::from_error(status_of, &e, &missing, back))?;
    let mut served: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for e in &downstream {
        let version = e
            .source
            .strip_prefix(&format!("model/{name}/"))
            .and_then(|v| v.parse::<i64>().ok());
        if let (Some(v), Some(d)) = (version, e.target.strip_prefix("deployment/")) {
            served.entry(v).or_default().insert(d.to_owned());
        }
    }
    // And which deployments name the model in their current revision.
    let now: Vec<(String, String, String)> = store
        .list_deployments()
        .await
        .map_err(|e| Failure::from_error(status_of, &e, "Deployments", back))?
        .into_iter()
        .flat_map(|d| {
            spec_models(&d.spec)
                .into_iter()
                .filter_map(|(variant, model)| {
                    let model = model?;
                    let m = model.split(['@', ':']).next().unwrap_or(&model);
                    (m == name).then(|| (d.name.clone(), variant, model))
                })
                .collect::<Vec<_>>()
        })
        .collect();

    let latest = versions.iter().max_by_key(|v| v.version);
    let production = aliases.iter().find(|a| a.alias == "production");
    let mut out = String::new();
    out.push_str(&facts(&[
        ("versions", versions.len().to_string()),
        (
            "latest",
            latest.map_or("—".into(), |v| {
                format!(
                    "v{} pushed {} by {}",
                    v.version,
                    esc(&time(&v.created_at)),
                    esc(&v.author)
                )
            }),
        ),
        (
            "production",
            production.map_or("no production alias".into(), |a| {
                format!(
                    "v{} (moved {} by {})",
                    a.version,
                    esc(&time(&a.updated_at)),
                    esc(&a.updated_by)
                )
            }),
        ),
        (
            "deployments now",
            if now.is_empty() {
                "none".into()
            } else {
                now.iter()
                    .map(|(d, variant, r)| {
                        format!(
                            "{} (variant {}: {})",
                            link("/ui/deployments", d, d),
                            esc(variant),
                            esc(r)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ]));
    if crate::DATA_PAGES {
        let _ = write!(
            out,
            r#"<p class="hint">Performance over time once labels arrive (AUC, positive rate, calibration per version): <a id="performance-link" href="/ui/models/{}/performance">performance</a> (reads the prediction log as you, with your grants).</p>"#,
            esc(&crate::html::segment(name))
        );
    }

    out.push_str("<h2>Aliases</h2>");
    let mut t = Table::new("aliases", &["Alias", "Version", "Moved", "By"]);
    for a in &aliases {
        t.named_row(
            &a.alias,
            vec![
                Cell::text(&a.alias),
                Cell::num(a.version as f64, format!("v{}", a.version)).key("version"),
                Cell::text(&time(&a.updated_at)).sort_by(a.updated_at.timestamp_millis().to_string()),
                Cell::text(&a.updated_by),
            ],
        );
    }
    out.push_str(&t.render("no aliases: `keel model alias NAME ALIAS VERSION` sets one"));

    out.push_str("<h2>Alias history</h2><p class=\"hint\">Every move of every alias, newest first: who moved it, when and why.</p>");
    let mut t = Table::new("alias-history", &["When", "Alias", "From", "To", "By", "Reason"]);
    let mut history = history;
    history.sort_by_key(|h| std::cmp::Reverse(h.at));
    for h in &history {
        let v = |x: Option<i64>| x.map_or("—".to_owned(), |v| format!("v{v}"));
        t.row(vec![
            Cell::text(&time(&h.at)).sort_by(h.at.timestamp_millis().to_string()),
            Cell::text(&h.alias),
            Cell::text(&v(h.from_version)),
            Cell::text(&if h.to_version.is_none() {
                "deleted".to_owned()
            } else {
                v(h.to_version)
            }),
            Cell::text(&h.by),
            Cell::text(h.reason.as_deref().unwrap_or("")),
        ]);
    }
    out.push_str(&t.render("no alias was ever set"));

    out.push_str("<h2>Versions</h2>");
    let mut t = Table::new(
        "versions",
        &[
            "Version",
            "Pushed",
            "By",
            "Description",
            "Metrics",
            "Training data",
            "Inputs",
            "Outputs",
            "Size",
            "Aliases",
            "Served by",
        ],
    );
    for v in versions.iter().rev() {
        let sig = Registry::signature(v).ok();
        let on: Vec<&str> = aliases
            .iter()
            .filter(|a| a.version == v.version)
            .map(|a| a.alias.as_str())
            .collect();
        let by = served
            .get(&v.version)
            .map(|ds| {
                ds.iter()
                    .map(|d| link("/ui/deployments", d, d))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        t.named_row(
            &v.version.to_string(),
            vec![
                Cell::num(v.version as f64, format!("v{}", v.version)).key("version"),
                Cell::text(&time(&v.created_at)).sort_by(v.created_at.timestamp_millis().to_string()),
                Cell::text(&v.author),
                Cell::text(v.description.as_deref().unwrap_or("")),
                Cell::text(&metrics_text(&v.metrics)).key("metrics"),
                match &v.training_data {
                    Some(t) => Cell::html(link("/ui/data", t.split('@').next().unwrap_or(t), t)),
                    None => Cell::text(""),
                },
                Cell::text(&sig.as_ref().map(|s| tensors(&s.inputs)).unwrap_or_default()),
                Cell::text(&sig.as_ref().map(|s| tensors(&s.outputs)).unwrap_or_default()),
                Cell::num(v.size_bytes as f64, format!("{} B", count(v.size_bytes.max(0) as u64))),
                Cell::text(&on.join(", ")),
                Cell::html(by).key("served_by"),
            ],
        );
    }
    out.push_str(&t.render("no versions"));

    if let Some(v) = latest
        && let Ok(sig) = Registry::signature(v)
    {
        let _ = write!(out, "<h2>Signature of v{}</h2>", v.version);
        let mut t = Table::new("signature", &["Direction", "Name", "Datatype", "Shape", "ONNX type"]);
        for (dir, ts) in [("input", &sig.inputs), ("output", &sig.outputs)] {
            for s in ts {
                t.row(vec![
                    Cell::text(dir),
                    Cell::text(&s.name),
                    Cell::text(&s.datatype),
                    Cell::text(&format!("{:?}", s.shape)),
                    Cell::text(s.onnx_type.as_deref().unwrap_or("")),
                ]);
            }
        }
        out.push_str(&t.render("no inputs or outputs recorded"));
        let opsets = sig
            .opsets
            .iter()
            .map(|(d, v)| format!("{}:{v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&facts(&[
            ("producer", esc(&sig.producer).to_string()),
            ("IR version", sig.ir_version.to_string()),
            ("opsets", esc(&opsets).to_string()),
            ("operators", esc(&sig.operators.join(", ")).to_string()),
            ("hash", format!("<code>{}</code>", esc(&v.content_hash))),
        ]));
    }
    Ok(out)
}
