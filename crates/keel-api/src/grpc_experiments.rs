//! gRPC front end of the experimentation API (`keel.experiments.v1.Experiments`).

use std::sync::Arc;

use keel_experiments::{DecideRequest, DeploymentError, Deployments, FeedbackIn};
use keel_serving::metrics::Protocol;
use tonic::{Request, Response, Status};

use crate::error::grpc_status;
use crate::experiments_proto::experiments_server::Experiments as ExperimentsApi;
use crate::experiments_proto::{self as pb, feature_value::Value};
use crate::grpc::{decode_request, encode_response};

fn status(e: DeploymentError) -> Status {
    grpc_status(&e)
}

/// One gRPC feedback item: the reward, other declared metrics, or both. Without metrics an
/// absent reward is 0, which is how proto3 carries a 0 from a client that predates `optional`.
fn feedback_in(
    decision_id: String,
    reward: Option<f64>,
    metrics: std::collections::HashMap<String, f64>,
) -> FeedbackIn {
    let reward = match metrics.is_empty() {
        true => Some(reward.unwrap_or(0.0)),
        false => reward,
    };
    FeedbackIn {
        decision_id,
        reward,
        metrics: metrics.into_iter().collect(),
    }
}

pub struct GrpcDeployments {
    experiments: Arc<Deployments>,
}

impl GrpcDeployments {
    pub fn new(experiments: Arc<Deployments>) -> GrpcDeployments {
        GrpcDeployments { experiments }
    }
}

#[tonic::async_trait]
impl ExperimentsApi for GrpcDeployments {
    async fn decide(&self, req: Request<pb::DecideRequest>) -> Result<Response<pb::DecideResponse>, Status> {
        let r = req.into_inner();
        let context: serde_json::Map<String, serde_json::Value> = r
            .context
            .into_iter()
            .filter_map(|(k, v)| {
                let value = match v.value? {
                    Value::Number(n) => serde_json::Value::from(n),
                    Value::Category(c) => serde_json::Value::from(c),
                };
                Some((k, value))
            })
            .collect();
        // Raw inputs get raw outputs back, as in plain V2 inference.
        let raw = r.inputs.as_ref().is_some_and(|i| !i.raw_input_contents.is_empty());
        let inputs = r.inputs.map(decode_request).transpose()?;
        let request = DecideRequest {
            unit: (!r.unit_id.is_empty()).then_some(r.unit_id),
            context: (!context.is_empty()).then_some(context),
            inputs,
            eligible: (!r.eligible.is_empty()).then_some(r.eligible),
            protocol: Protocol::Grpc,
        };
        let out = self
            .experiments
            .decide_request(&r.deployment, request)
            .await
            .map_err(status)?;
        crate::metrics_endpoint::count_decisions(&r.deployment, "grpc", 1);
        Ok(Response::new(pb::DecideResponse {
            decision_id: out.decision_id,
            variant: out.variant,
            propensity: out.propensity,
            policy_version: out.policy_version,
            revision: out.revision,
            control: out.control,
            prediction: out.response.map(|response| encode_response(response, raw)),
            prediction_id: out.prediction_id.unwrap_or_default(),
            fallback: out.fallback.is_some(),
            fallback_json: out.fallback.map(|f| f.to_string()).unwrap_or_default(),
            no_action: out.no_action,
        }))
    }

    async fn feedback(&self, req: Request<pb::FeedbackRequest>) -> Result<Response<pb::FeedbackResponse>, Status> {
        let r = req.into_inner();
        let item = feedback_in(r.decision_id, r.reward, r.metrics);
        let mut results = self
            .experiments
            .feedback_items(&r.deployment, &[item])
            .await
            .map_err(status)?;
        let out = results
            .pop()
            .ok_or_else(|| Status::invalid_argument("no feedback given"))?
            .map_err(status)?;
        crate::metrics_endpoint::count_feedback(&r.deployment, usize::from(out.counted), usize::from(!out.counted), 0);
        Ok(Response::new(pb::FeedbackResponse {
            decision_id: out.decision_id,
            counted: out.counted,
        }))
    }

    async fn feedback_batch(
        &self,
        req: Request<pb::FeedbackBatchRequest>,
    ) -> Result<Response<pb::FeedbackBatchResponse>, Status> {
        let r = req.into_inner();
        let items: Vec<FeedbackIn> = r
            .events
            .into_iter()
            .map(|e| feedback_in(e.decision_id, e.reward, e.metrics))
            .collect();
        let results = self
            .experiments
            .feedback_items(&r.deployment, &items)
            .await
            .map_err(status)?;
        let (mut counted, mut failed) = (0u64, 0u64);
        let results = results
            .into_iter()
            .zip(items)
            .map(|(res, item)| match res {
                Ok(out) => {
                    counted += u64::from(out.counted);
                    pb::FeedbackResult {
                        decision_id: out.decision_id,
                        counted: out.counted,
                        ..Default::default()
                    }
                }
                Err(e) => {
                    failed += 1;
                    pb::FeedbackResult {
                        decision_id: item.decision_id,
                        counted: false,
                        error: e.to_string(),
                        code: e.code().to_string(),
                    }
                }
            })
            .collect::<Vec<_>>();
        let total = results.len() as u64;
        crate::metrics_endpoint::count_feedback(
            &r.deployment,
            counted as usize,
            (total - counted - failed) as usize,
            failed as usize,
        );
        Ok(Response::new(pb::FeedbackBatchResponse {
            results,
            counted,
            failed,
        }))
    }

    async fn report(&self, req: Request<pb::ReportRequest>) -> Result<Response<pb::ReportResponse>, Status> {
        let r = req.into_inner();
        let report = self.experiments.report(&r.deployment).map_err(status)?;
        let report_json = serde_json::to_string(&report).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::ReportResponse { report_json }))
    }
}
