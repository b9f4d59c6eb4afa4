//! Deciding, as a sequence of named steps: validate the inputs, choose and log the variant
//! durably, send the decision to the prediction log, run the chosen model variant, hold back
//! answers the output guards refuse (the fallback answers), feed the drift monitor, and send a
//! copy to shadow variants.

use keel_serving::metrics::Protocol;
use keel_serving::{InferRequest, InferResponse, InferenceService};

use crate::outcome::DecisionOut;
use crate::running::RunningDeployment;
use crate::score::Scores;
use crate::services::Services;
use crate::variants::response_scores;
use crate::{DeploymentError, Result};

/// One decide request, decoded once by its transport (REST or gRPC).
#[derive(Debug, Clone)]
pub struct DecideRequest {
    /// The unit decided for (sticky assignment and control group); `None` draws at random.
    pub unit: Option<String>,
    /// The context features, as `{name: number or category}`.
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    /// For deployments whose variants are models: the model inputs, as an infer request.
    pub inputs: Option<InferRequest>,
    /// The variants this unit may get (by name); `None`: every serving variant.
    pub eligible: Option<Vec<String>>,
    /// The transport the request came in on (for metrics of the inference it causes).
    pub protocol: Protocol,
}

impl DecideRequest {
    /// A request without model inputs, from REST.
    pub fn new(unit: Option<&str>, context: Option<&serde_json::Map<String, serde_json::Value>>) -> DecideRequest {
        DecideRequest {
            unit: unit.map(str::to_string),
            context: context.cloned(),
            inputs: None,
            eligible: None,
            protocol: Protocol::Rest,
        }
    }

    /// The same request with model inputs.
    pub fn with_inputs(mut self, inputs: Option<InferRequest>) -> DecideRequest {
        self.inputs = inputs;
        self
    }

    /// The same request, arrived on `protocol`.
    pub fn on(mut self, protocol: Protocol) -> DecideRequest {
        self.protocol = protocol;
        self
    }
}

impl RunningDeployment {
    /// Decides for a request (its parts borrowed, so the hot path copies nothing): every step
    /// below, in order.
    pub(crate) async fn decide(
        &self,
        services: &Services,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        inputs: Option<InferRequest>,
        eligible: Option<&[String]>,
        protocol: Protocol,
    ) -> Result<DecisionOut> {
        self.validate_inputs(inputs.as_ref())?;
        let (mut out, notices) = self.engine.decide_among(unit, context, eligible).await?;
        services.record_notices(&self.name, notices).await;
        services.log_decision(&self.name, unit, &out);
        // No action (a no-action control group): no model runs, not even a shadow.
        if out.no_action {
            return Ok(out);
        }
        let (Some(request), Some(inference)) = (inputs, &services.inference) else {
            return Ok(out);
        };
        if let Some(chosen) = self.engine.variant_index(&out.variant)?
            && self.variants.model(chosen).is_some()
        {
            let response = self
                .variants
                .infer(
                    inference,
                    protocol,
                    &self.engine,
                    chosen,
                    &out.decision_id,
                    request.clone(),
                )
                .await?;
            let scores = response
                .as_ref()
                .and_then(|(r, _)| response_scores(r, self.scored_output()));
            answer(&mut out, response);
            let scores = self
                .guard_outputs(inference, protocol, chosen, &request, &mut out, scores)
                .await?;
            self.observe_drift(&request, &out, scores);
        }
        self.variants.spawn_shadows(
            &services.tasks,
            inference,
            protocol,
            &self.engine,
            &out.decision_id,
            &request,
        );
        Ok(out)
    }

    /// Step 1: a deployment of model variants needs inputs every serving model accepts, checked
    /// before deciding so a bad request leaves no decision behind.
    fn validate_inputs(&self, inputs: Option<&InferRequest>) -> Result<()> {
        if !self.variants.has_models() {
            return Ok(());
        }
        let Some(request) = inputs else {
            return Err(DeploymentError::InvalidRequest(
                "this deployment's variants are models: send 'inputs' as in an Open Inference Protocol infer request"
                    .into(),
            ));
        };
        if let Err(e) = self.variants.validate(request) {
            if let Some(drift) = &self.drift {
                drift.schema_violation();
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Checks the chosen variant's answer (its `scores`) against the output guards; when it is
    /// held back, the fallback variant answers instead (its model runs on the same inputs, or
    /// it answers as a plain action) and the decision says so. Returns the scores of the
    /// answer that goes out.
    async fn guard_outputs(
        &self,
        inference: &InferenceService,
        protocol: Protocol,
        chosen: usize,
        request: &InferRequest,
        out: &mut DecisionOut,
        scores: Option<Scores>,
    ) -> Result<Option<Scores>> {
        let Some(spec) = self.safeguards.guard_spec().cloned() else {
            return Ok(scores);
        };
        let fallback = self.engine.variant_index(&spec.fallback)?;
        if fallback == Some(chosen) || out.prediction.is_none() {
            return Ok(scores);
        }
        let Scores { values, rows, .. } = scores.clone().unwrap_or_default();
        let Some(violation) = self.safeguards.check(&self.name, chosen, &out.variant, &values, &rows) else {
            return Ok(scores);
        };
        tracing::warn!(
            deployment = self.name, variant = %out.variant, fallback = %spec.fallback, ?violation,
            "output guardrail held an answer back"
        );
        let held_back = std::mem::replace(&mut out.variant, spec.fallback.clone());
        answer(out, None);
        out.fallback = Some(serde_json::json!({ "from": held_back, "violation": violation }));
        let Some(f) = fallback else { return Ok(None) };
        let response = self
            .variants
            .infer(inference, protocol, &self.engine, f, &out.decision_id, request.clone())
            .await?;
        let scores = response
            .as_ref()
            .and_then(|(r, _)| response_scores(r, spec.output.as_deref()));
        answer(out, response);
        Ok(scores)
    }

    /// Feeds the drift monitor the request and the scores of the answer that went out.
    fn observe_drift(&self, request: &InferRequest, out: &DecisionOut, scores: Option<Scores>) {
        if let Some(drift) = &self.drift {
            let rows = scores.map(|s| s.rows).unwrap_or_default();
            drift.observe(
                crate::engine::now_ms(),
                request,
                &out.variant,
                &rows,
                out.prediction_id.as_deref(),
            );
        }
    }
}

/// Puts a model's answer (or none) into the decision.
fn answer(out: &mut DecisionOut, response: Option<(InferResponse, serde_json::Value)>) {
    let (response, prediction) = response.unzip();
    out.prediction = prediction;
    out.prediction_id = response.as_ref().and_then(|r| r.prediction_id.clone());
    out.response = response;
}
