//! A `POST /v1/labels` body (a bare array or `{"labels": [...]}`, read as the REST handler
//! reads it) and a labels file (`keel monitor label`: a JSON array or JSON lines, read by
//! `parse_labels`), then `validate_labels`, which both run before anything is stored.
#![no_main]

use keel_fuzz::assert_user_fault;
use keel_predlog::LabelIn;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// The REST handler's body (crates/keel-api/src/labels.rs, private there).
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelsBody {
    Bare(Vec<LabelIn>),
    Wrapped { labels: Vec<LabelIn> },
}

fn validate(items: &[LabelIn]) {
    match keel_predlog::validate_labels(items, 1_700_000_000_000_000) {
        Ok(records) => {
            assert_eq!(records.len(), items.len());
            assert!(records.iter().all(|r| r.label.is_finite() && r.row >= 0));
        }
        Err(e) => assert_user_fault("labels_body", e.kind(), &e),
    }
}

fuzz_target!(|body: &[u8]| {
    if let Ok(LabelsBody::Bare(items) | LabelsBody::Wrapped { labels: items }) = serde_json::from_slice(body) {
        validate(&items);
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    match keel_predlog::parse_labels(text) {
        Ok(items) => validate(&items),
        Err(e) => assert_user_fault("labels_body file", e.kind(), &e),
    }
});
