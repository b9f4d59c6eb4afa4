//! Preparing a drift monitor's reference: the reference table sampled, lined up with the
//! model's inputs, and scored by each serving variant's model (CPU work, run off the reactor).

use std::collections::HashMap;
use std::sync::Arc;

use keel_monitor::live::Reference;
use keel_serving::LoadedModel;

use super::{Batches, MonitorSpec};

/// Reference rows a model scores, at most, for its score track's baseline.
const SCORED_REFERENCE_ROWS: usize = 20_000;

/// Where one watched column is read from in a request: the input tensor and the position in
/// its row.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) tensor: String,
    pub(super) at: usize,
}

/// A reference sampled and lined up with the model's inputs, ready to install: where each of
/// its columns comes from in a request.
pub(crate) struct PreparedReference {
    pub(super) reference: Arc<Reference>,
    pub(super) sources: Vec<Source>,
    pub(super) tracks: Vec<PreparedTrack>,
}

/// A score track: the variant whose answers it watches and its model's scores on the
/// reference (or why there are none).
pub(super) struct PreparedTrack {
    pub(super) column: String,
    pub(super) variant: String,
    pub(super) scores: std::result::Result<Vec<f64>, String>,
}

/// Lines the reference table up with the inputs of the first serving variant's model, samples
/// it, and scores the sample with each variant's model (`models`: the serving variants that
/// are models, by name; `output` the scored output, as the guardrails read it). Fails, saying
/// which columns do not fit, when the reference has columns the model does not take; a
/// reference that cannot be scored (it lacks some input the model needs) leaves its score
/// tracks comparing with their first window, and says why.
pub(crate) fn prepare_reference(
    spec: &MonitorSpec,
    models: &[(String, Arc<LoadedModel>)],
    batches: &Batches,
    seed: u64,
    output: Option<&str>,
) -> std::result::Result<PreparedReference, String> {
    let Some((_, model)) = models.first() else {
        return Err("no serving variant of this deployment is a loaded model".into());
    };
    // Every column the model's inputs flatten into, as in the prediction log.
    let mut inputs: Vec<(String, Source)> = Vec::new();
    for io in model.model.inputs() {
        let width = match io.shape.as_slice() {
            [_] => 1,
            [_, w] if *w > 0 => *w as usize,
            _ => continue,
        };
        for (at, column) in keel_predlog::columns::input_columns(&io.name, width)
            .into_iter()
            .enumerate()
        {
            inputs.push((
                column,
                Source {
                    tensor: io.name.clone(),
                    at,
                },
            ));
        }
    }
    let Some(first) = batches.first() else {
        return Err(format!("reference table {} is empty", spec.reference));
    };
    let schema = first.schema();
    let reference_columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let input_names = || {
        let names: Vec<&str> = inputs.iter().map(|(c, _)| c.as_str()).collect();
        if names.len() > 12 {
            format!(
                "{} ... {} ({} columns)",
                names[..6].join(", "),
                names[names.len() - 3..].join(", "),
                names.len()
            )
        } else {
            names.join(", ")
        }
    };
    let wanted: Vec<String> = if spec.columns.is_empty() {
        reference_columns
            .iter()
            .filter(|c| !spec.ignore.contains(c) && inputs.iter().any(|(i, _)| i == *c))
            .cloned()
            .collect()
    } else {
        let not_in_reference: Vec<&String> = spec.columns.iter().filter(|c| !reference_columns.contains(c)).collect();
        if !not_in_reference.is_empty() {
            return Err(format!(
                "monitor.columns {not_in_reference:?} are not columns of reference table {} (it has: {})",
                spec.reference,
                reference_columns.join(", ")
            ));
        }
        spec.columns
            .iter()
            .filter(|c| !spec.ignore.contains(c))
            .cloned()
            .collect()
    };
    let not_inputs: Vec<&String> = wanted.iter().filter(|c| !inputs.iter().any(|(i, _)| i == *c)).collect();
    if !not_inputs.is_empty() {
        return Err(format!(
            "reference columns {not_inputs:?} are not inputs of model {}:{} (its input columns: {})",
            model.name,
            model.version,
            input_names()
        ));
    }
    if wanted.is_empty() {
        return Err(format!(
            "none of reference table {}'s columns ({}) is an input of model {}:{} (its input columns: {}): name the reference columns as the prediction log names inputs",
            spec.reference,
            reference_columns.join(", "),
            model.name,
            model.version,
            input_names()
        ));
    }
    let indices: Vec<usize> = wanted
        .iter()
        .filter_map(|c| reference_columns.iter().position(|r| r == c))
        .collect();
    let sampled = keel_monitor::live::sample_batches(batches, spec.reference_rows, seed)
        .map_err(|e| format!("reference table {}: {e}", spec.reference))?;
    let projected: Vec<_> = sampled
        .iter()
        .map(|b| b.project(&indices))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("reading reference table {}: {e}", spec.reference))?;
    let reference = Reference::from_batches(&projected, usize::MAX, seed)
        .map_err(|e| format!("reference table {}: {e}", spec.reference))?;
    let sources = wanted
        .iter()
        .filter_map(|c| inputs.iter().find(|(i, _)| i == c).map(|(_, s)| s.clone()))
        .collect();
    Ok(PreparedReference {
        reference: Arc::new(reference),
        sources,
        tracks: score_tracks(models, &sampled, seed, output),
    })
}

/// One score track per serving variant with a model (`prediction` alone when there is one
/// such variant), each with its model's scores on (a sample of) the reference. Variants
/// running the same model version share the scoring work, not the track.
fn score_tracks(
    models: &[(String, Arc<LoadedModel>)],
    sampled: &[keel_monitor::arrow::array::RecordBatch],
    seed: u64,
    output: Option<&str>,
) -> Vec<PreparedTrack> {
    let rows = match keel_monitor::live::sample_batches(sampled, SCORED_REFERENCE_ROWS, seed.wrapping_add(1)) {
        Ok(rows) => Ok(rows),
        Err(e) => Err(format!("sampling the reference to score it: {e}")),
    };
    let mut scored: HashMap<(String, i64), std::result::Result<Vec<f64>, String>> = HashMap::new();
    models
        .iter()
        .map(|(variant, model)| {
            let scores = scored
                .entry((model.name.clone(), model.version))
                .or_insert_with(|| {
                    let rows = rows.as_ref().map_err(Clone::clone)?;
                    crate::score::score_batches(&model.model, rows, output)
                        .map(|t| t.scores)
                        .map_err(|e| {
                        format!(
                            "model {}:{} could not score the reference, so its scores are compared with their first window: {e}",
                            model.name, model.version
                        )
                    })
                })
                .clone();
            PreparedTrack {
                column: if models.len() == 1 {
                    keel_monitor::live::PREDICTION.to_string()
                } else {
                    format!("{}[{variant}]", keel_monitor::live::PREDICTION)
                },
                variant: variant.clone(),
                scores,
            }
        })
        .collect()
}
