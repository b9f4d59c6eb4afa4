//! The model variants of one running deployment: their loaded model versions, inference of
//! the chosen (or fallback) variant, and shadow inference in the background.

use std::sync::Arc;

use keel_predlog::Routing;
use keel_registry::VersionSelector;
use keel_serving::metrics::Protocol;
use keel_serving::{InferRequest, InferResponse, InferenceService, LoadedModel};
use tokio_util::task::TaskTracker;

use crate::engine::Deployment;
use crate::score::Scores;
use crate::spec::DeploymentSpec;
use crate::{DeploymentError, Result};

/// The variants of a running revision that are model versions, resolved and loaded when it
/// starts. Owns which model answers for which variant and which variants only shadow.
#[derive(Default)]
pub(crate) struct Variants {
    /// Per variant (spec order): its name.
    names: Vec<String>,
    /// Per variant: the loaded model version, for model variants.
    models: Vec<Option<Arc<LoadedModel>>>,
    /// Model variants that only shadow (answers logged, never returned).
    shadows: Vec<usize>,
}

impl Variants {
    /// Loads the model version behind every model variant (`name@alias`, `name:3`, `name`).
    pub(crate) async fn resolve(spec: &DeploymentSpec, inference: Option<&InferenceService>) -> Result<Variants> {
        let mut out = Variants::default();
        for (i, v) in spec.variants.iter().enumerate() {
            out.names.push(v.name.clone());
            let Some(reference) = &v.model else {
                out.models.push(None);
                continue;
            };
            let Some(inference) = inference else {
                return Err(DeploymentError::InvalidSpec(vec![format!(
                    "variant '{}' is a model, but this process serves no models",
                    v.name
                )]));
            };
            let (name, selector) = VersionSelector::split_reference(reference)
                .map_err(|e| DeploymentError::InvalidSpec(vec![format!("variant '{}': {e}", v.name)]))?;
            let loaded = inference.repository().load_pinned(&name, &selector).await?;
            if v.shadow {
                out.shadows.push(i);
            }
            out.models.push(Some(loaded));
        }
        Ok(out)
    }

    /// Whether any variant is a model (then decide needs model inputs).
    pub(crate) fn has_models(&self) -> bool {
        self.models.iter().any(Option::is_some)
    }

    /// The model versions served, as (model, version), for lineage.
    pub(crate) fn served(&self) -> Vec<(String, i64)> {
        self.models
            .iter()
            .flatten()
            .map(|m| (m.name.clone(), m.version))
            .collect()
    }

    /// The model of variant `i`, if it is a model variant.
    pub(crate) fn model(&self, i: usize) -> Option<&Arc<LoadedModel>> {
        self.models.get(i).and_then(Option::as_ref)
    }

    /// The serving (not shadow) variants that are models, by variant name.
    pub(crate) fn serving(&self) -> Vec<(String, Arc<LoadedModel>)> {
        self.models
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.shadows.contains(i))
            .filter_map(|(i, m)| Some((self.names.get(i)?.clone(), m.clone()?)))
            .collect()
    }

    /// Checks `request` against every serving model, so a bad request leaves no decision.
    pub(crate) fn validate(&self, request: &InferRequest) -> std::result::Result<(), keel_serving::ServingError> {
        for (_, model) in self.serving() {
            keel_serving::validate(&model, request)?;
        }
        Ok(())
    }

    /// Runs variant `variant`'s model on `request` for decision `decision_id` and logs its
    /// answer in the deployment's log; returns the answer and its JSON form, `None` when the
    /// variant is not a model.
    pub(crate) async fn infer(
        &self,
        inference: &InferenceService,
        protocol: Protocol,
        engine: &Deployment,
        variant: usize,
        decision_id: &str,
        request: InferRequest,
    ) -> Result<Option<(InferResponse, serde_json::Value)>> {
        let Some(model) = self.model(variant).cloned() else {
            return Ok(None);
        };
        let routing = Routing {
            deployment: engine.name.clone(),
            variant: self.names.get(variant).cloned().unwrap_or_default(),
            decision_id: decision_id.to_string(),
            shadow: false,
        };
        let response = inference.infer_on(protocol, model, request, Some(routing)).await?;
        let pred = outputs_json(&response);
        engine.log_output(decision_id, variant, false, pred.clone())?;
        Ok(Some((response, pred)))
    }

    /// Sends a copy of `request` to every shadow variant on `tasks`: their answers are logged,
    /// never returned, and their failures never reach the caller.
    pub(crate) fn spawn_shadows(
        &self,
        tasks: &TaskTracker,
        inference: &Arc<InferenceService>,
        protocol: Protocol,
        engine: &Arc<Deployment>,
        decision_id: &str,
        request: &InferRequest,
    ) {
        for &s in &self.shadows {
            let Some(model) = self.model(s).cloned() else {
                continue;
            };
            let routing = Routing {
                deployment: engine.name.clone(),
                variant: self.names.get(s).cloned().unwrap_or_default(),
                decision_id: decision_id.to_string(),
                shadow: true,
            };
            let (inference, engine, request, id) = (
                inference.clone(),
                engine.clone(),
                request.clone(),
                decision_id.to_string(),
            );
            tasks.spawn(async move {
                match inference.infer_on(protocol, model, request, Some(routing)).await {
                    Ok(response) => {
                        if let Err(e) = engine.log_output(&id, s, true, outputs_json(&response)) {
                            tracing::warn!(error = %e, "shadow answer not logged");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "shadow variant failed; the caller is unaffected"),
                }
            });
        }
    }
}

/// The scores of a response's `output` (or its first floating-point one), as output guards and
/// the drift monitor read them.
pub(crate) fn response_scores(response: &InferResponse, output: Option<&str>) -> Option<Scores> {
    crate::score::output_scores(response.outputs.iter().map(|o| (o.name.as_str(), &o.tensor)), output)
}

/// A response's outputs as `{name: {shape, data}}` JSON (the REST `prediction`).
pub(crate) fn outputs_json(response: &InferResponse) -> serde_json::Value {
    use keel_serving::TensorData;
    let mut map = serde_json::Map::new();
    for o in &response.outputs {
        let data = match &o.tensor.data {
            TensorData::Fp32(v) => serde_json::json!(v),
            TensorData::Fp64(v) => serde_json::json!(v),
            TensorData::Int64(v) => serde_json::json!(v),
            TensorData::Int32(v) => serde_json::json!(v),
            TensorData::Bool(v) => serde_json::json!(v),
            TensorData::Bytes(v) => {
                serde_json::json!(
                    v.iter()
                        .map(|b| String::from_utf8_lossy(b).to_string())
                        .collect::<Vec<_>>()
                )
            }
            other => serde_json::json!(format!("{} values of {}", other.len(), other.datatype())),
        };
        map.insert(
            o.name.clone(),
            serde_json::json!({"shape": o.tensor.shape, "data": data}),
        );
    }
    serde_json::Value::Object(map)
}
