//! One module per page (or family of pages); each renders its body from library calls and the
//! handler wraps it in the layout.

use std::sync::Arc;

use axum::extract::Extension;
use keel_auth::Principal;

use crate::html::Viewer;

pub(crate) mod approvals;
pub(crate) mod changes;
#[cfg(feature = "lake")]
pub(crate) mod data;
pub(crate) mod deployment;
pub(crate) mod diff;
pub(crate) mod models;
#[cfg(feature = "lake")]
pub(crate) mod monitoring;
pub(crate) mod overview;

/// The principal the gate put into the request.
pub(crate) type Who = Option<Extension<Arc<Principal>>>;

pub(crate) fn viewer_of(who: &Who) -> Option<Viewer> {
    crate::viewer(who.as_ref().map(|e| e.0.as_ref()))
}

/// A deployment spec's variants as `(name, model reference)`.
pub(crate) fn spec_models(spec: &serde_json::Value) -> Vec<(String, Option<String>)> {
    spec.get("variants")
        .and_then(|v| v.as_array())
        .map(|vs| {
            vs.iter()
                .map(|v| {
                    (
                        v.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_owned(),
                        v.get("model").and_then(|m| m.as_str()).map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
