//! The serving operations, called by both the REST and the gRPC front ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use keel_predlog::{PredictionLog, PredictionParts, Routing};
use keel_registry::{Registry, VersionSelector};
use keel_runtime::{IoSpec, Tensor};
use metrics::{Gauge, gauge};
use serde::Serialize;
use tracing::Instrument as _;

use crate::metrics::{IN_FLIGHT, Protocol, record_error};
use crate::protocol::{InferRequest, InferResponse, OutputTensor, bool_param};
use crate::repository::{LoadedModel, ModelRepository};
use crate::{Result, ServingError};

/// Above this many input elements a request runs on the blocking pool instead of the async
/// worker, so no reactor thread is held for more than a fraction of a millisecond.
const INLINE_ELEMENTS: usize = 4096;

/// Server identity returned by the metadata call.
pub const SERVER_NAME: &str = "keel";
/// Protocol extensions keel implements.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "model_repository"];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// One entry of the repository index.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RepositoryEntry {
    pub name: String,
    pub version: String,
    pub state: String,
    pub reason: String,
}

/// The serving service: a model repository plus readiness and metrics.
pub struct InferenceService {
    repository: ModelRepository,
    ready: AtomicBool,
    in_flight_rest: Gauge,
    in_flight_grpc: Gauge,
    /// Where every answered request is logged, when prediction logging is on.
    log: OnceLock<Arc<PredictionLog>>,
}

/// Decrements the in-flight gauge when a request ends, whatever way it ends.
struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl InferenceService {
    pub fn new(repository: ModelRepository) -> Arc<InferenceService> {
        Arc::new(InferenceService {
            repository,
            ready: AtomicBool::new(false),
            in_flight_rest: gauge!(IN_FLIGHT, "protocol" => "rest"),
            in_flight_grpc: gauge!(IN_FLIGHT, "protocol" => "grpc"),
            log: OnceLock::new(),
        })
    }

    pub fn repository(&self) -> &ModelRepository {
        &self.repository
    }

    pub fn registry(&self) -> &Registry {
        self.repository.registry()
    }

    /// Logs every answered request to `log` from now on (set once, before serving).
    pub fn set_prediction_log(&self, log: Arc<PredictionLog>) {
        let _ = self.log.set(log);
    }

    /// The prediction log, when logging is on.
    pub fn prediction_log(&self) -> Option<&Arc<PredictionLog>> {
        self.log.get()
    }

    /// Loads the serving version of every model in the registry, then marks the server ready.
    /// A model that fails to load is reported and left unloaded; the others are served.
    pub async fn load_all(&self) -> Vec<(String, ServingError)> {
        let mut failures = Vec::new();
        match self.registry().list_models().await {
            Ok(models) => {
                for m in models {
                    if let Err(e) = self.repository.load(&m.name, None).await {
                        tracing::warn!(model = %m.name, error = %e, "model not loaded");
                        failures.push((m.name, e));
                    }
                }
            }
            Err(e) => failures.push((String::new(), e.into())),
        }
        self.set_ready(true);
        failures
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn server_live(&self) -> bool {
        true
    }

    pub fn server_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn server_metadata(&self) -> ServerMetadata {
        ServerMetadata {
            name: SERVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The loaded model for a name and an optional version ("" or absent: the loaded one).
    pub fn model(&self, name: &str, version: Option<&str>) -> Result<Arc<LoadedModel>> {
        let loaded = self.repository.get(name).ok_or_else(|| ServingError::ModelNotLoaded {
            name: name.escape_default().to_string(),
        })?;
        match version {
            None | Some("") => Ok(loaded),
            Some(v) if v == loaded.version_str => Ok(loaded),
            Some(v) => Err(ServingError::VersionNotLoaded {
                name: name.to_string(),
                version: v.escape_default().to_string(),
                loaded: loaded.version,
            }),
        }
    }

    pub fn model_ready(&self, name: &str, version: Option<&str>) -> bool {
        self.model(name, version).is_ok()
    }

    pub fn model_metadata(&self, name: &str, version: Option<&str>) -> Result<ModelMetadata> {
        let m = self.model(name, version)?;
        let meta = |specs: &[IoSpec]| {
            specs
                .iter()
                .map(|s| TensorMetadata {
                    name: s.name.clone(),
                    datatype: s.datatype.as_str().to_string(),
                    shape: s.shape.clone(),
                })
                .collect()
        };
        Ok(ModelMetadata {
            name: m.name.clone(),
            versions: vec![m.version_str.clone()],
            platform: "onnxruntime_onnx".to_string(),
            inputs: meta(m.model.inputs()),
            outputs: meta(m.model.outputs()),
        })
    }

    /// Runs an inference request, recording metrics for it.
    pub async fn infer(
        &self,
        protocol: Protocol,
        name: &str,
        version: Option<&str>,
        request: InferRequest,
    ) -> Result<InferResponse> {
        let started = Instant::now();
        let gauge = match protocol {
            Protocol::Rest => &self.in_flight_rest,
            Protocol::Grpc => &self.in_flight_grpc,
        };
        gauge.increment(1.0);
        let _in_flight = InFlight(gauge);
        let model = match self.model(name, version) {
            Ok(m) => m,
            Err(e) => {
                record_error(protocol, None, e.code(), started.elapsed().as_secs_f64());
                return Err(e);
            }
        };
        self.infer_loaded(protocol, model, request, started, None).await
    }

    /// Runs a request on a given loaded model (a deployment's variant), with metrics; the
    /// prediction is logged with its routing (deployment, variant, decision).
    pub async fn infer_on(
        &self,
        protocol: Protocol,
        model: Arc<LoadedModel>,
        request: InferRequest,
        routing: Option<Routing>,
    ) -> Result<InferResponse> {
        let gauge = match protocol {
            Protocol::Rest => &self.in_flight_rest,
            Protocol::Grpc => &self.in_flight_grpc,
        };
        gauge.increment(1.0);
        let _in_flight = InFlight(gauge);
        self.infer_loaded(protocol, model, request, Instant::now(), routing)
            .await
    }

    async fn infer_loaded(
        &self,
        protocol: Protocol,
        model: Arc<LoadedModel>,
        request: InferRequest,
        started: Instant,
        routing: Option<Routing>,
    ) -> Result<InferResponse> {
        let rows = request
            .inputs
            .first()
            .and_then(|i| i.tensor.shape.first())
            .copied()
            .unwrap_or(1)
            .max(0) as u64;
        let span = tracing::info_span!(
            target: crate::TRACE_TARGET,
            "infer",
            model = %model.name,
            version = model.version,
            rows,
            protocol = protocol.as_str(),
            deployment = tracing::field::Empty,
            variant = tracing::field::Empty,
        );
        if let Some(r) = &routing {
            span.record("deployment", r.deployment.as_str());
            span.record("variant", r.variant.as_str());
        }
        let (result, request) = run(model.clone(), request).instrument(span).await;
        match result {
            Ok(mut response) => {
                let elapsed = started.elapsed();
                model.metrics.record_ok(protocol, elapsed.as_secs_f64(), rows);
                if let Some(log) = self.log.get() {
                    log_prediction(log, &model, request, &mut response, elapsed, routing);
                }
                Ok(response)
            }
            Err(e) => {
                record_error(
                    protocol,
                    Some((&model.name, &model.version_str)),
                    e.code(),
                    started.elapsed().as_secs_f64(),
                );
                Err(e)
            }
        }
    }

    /// The repository index: every model in the registry, with its serving state.
    pub async fn repository_index(&self, ready_only: bool) -> Result<Vec<RepositoryEntry>> {
        let models = self.registry().list_models().await?;
        let mut out = Vec::new();
        for m in models {
            let entry = match self.repository.get(&m.name) {
                Some(loaded) => RepositoryEntry {
                    name: m.name,
                    version: loaded.version_str.clone(),
                    state: "READY".into(),
                    reason: String::new(),
                },
                None => RepositoryEntry {
                    name: m.name,
                    version: String::new(),
                    state: "UNAVAILABLE".into(),
                    reason: "unloaded".into(),
                },
            };
            if !ready_only || entry.state == "READY" {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Loads a model; `version` may be a number, `latest` or `@alias` (default: the serving
    /// version, `@production` else the newest).
    pub async fn load_model(&self, name: &str, version: Option<&str>) -> Result<Arc<LoadedModel>> {
        keel_registry::validate_model_name(name)?;
        let selector = version.map(VersionSelector::parse).transpose()?;
        self.repository.load(name, selector.as_ref()).await
    }

    /// Unloads a model. Unknown names are an error; unloading an unloaded model is not.
    pub async fn unload_model(&self, name: &str) -> Result<()> {
        keel_registry::validate_model_name(name)?;
        if !self.repository.unload(name).await {
            // Distinguish "exists but not loaded" (fine) from "no such model".
            self.registry().resolve(name, &VersionSelector::Latest).await?;
        }
        Ok(())
    }
}

/// Hands an answered request to the prediction log (never waits) and gives the response its
/// prediction id.
fn log_prediction(
    log: &PredictionLog,
    model: &LoadedModel,
    request: Option<InferRequest>,
    response: &mut InferResponse,
    elapsed: std::time::Duration,
    routing: Option<Routing>,
) {
    let Some(request) = request else { return };
    let prediction_id = keel_predlog::new_prediction_id();
    // Encoded from the request's and the response's tensors in place into this thread's lane:
    // nothing is cloned, and the request is freed here, on its own thread (keel_predlog::encoded).
    log.log_prediction(
        &PredictionParts {
            ts_us: keel_predlog::now_us(),
            prediction_id: &prediction_id,
            request_id: request.id.as_deref(),
            model: &model.name,
            version: model.version,
            routing: routing.as_ref(),
            latency_us: elapsed.as_micros() as i64,
        },
        request.inputs.iter().map(|i| (i.name.as_str(), &i.tensor)),
        response.outputs.iter().map(|o| (o.name.as_str(), &o.tensor)),
    );
    response.prediction_id = Some(prediction_id);
}

/// Validates the request against the model and runs it, inline when small. Gives the request
/// back (for the prediction log) unless the blocking task that had it failed.
async fn run(model: Arc<LoadedModel>, request: InferRequest) -> (Result<InferResponse>, Option<InferRequest>) {
    if let Err(e) = validate(&model, &request) {
        return (Err(e), Some(request));
    }
    let elements: usize = request.inputs.iter().map(|i| i.tensor.data.len()).sum();
    if elements <= INLINE_ELEMENTS {
        (execute(&model, &request), Some(request))
    } else {
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| (execute(&model, &request), request))).await {
            Ok((result, request)) => (result, Some(request)),
            Err(e) => (Err(ServingError::Internal(format!("inference task failed: {e}"))), None),
        }
    }
}

fn execute(model: &LoadedModel, request: &InferRequest) -> Result<InferResponse> {
    let _span = tracing::info_span!(target: crate::TRACE_TARGET, "onnx.run").entered();
    let inputs: Vec<(&str, &Tensor)> = request.inputs.iter().map(|i| (i.name.as_str(), &i.tensor)).collect();
    let requested: Vec<&str> = request.outputs.iter().map(|o| o.name.as_str()).collect();
    let produced = model
        .model
        .run(&inputs, (!requested.is_empty()).then_some(requested.as_slice()))?;
    let binary_default = request.binary_output_default();
    let outputs = produced
        .into_iter()
        .map(|(name, tensor)| {
            let binary = request
                .outputs
                .iter()
                .find(|o| o.name == name)
                .and_then(|o| o.binary())
                .unwrap_or(binary_default);
            OutputTensor { name, tensor, binary }
        })
        .collect();
    Ok(InferResponse {
        model_name: model.name.clone(),
        model_version: model.version_str.clone(),
        id: request.id.clone(),
        prediction_id: None,
        outputs,
    })
}

/// Checks names, datatypes, shapes and values against the model's inputs and outputs.
pub fn validate(model: &LoadedModel, request: &InferRequest) -> Result<()> {
    let specs = model.model.inputs();
    let expected = || {
        specs
            .iter()
            .map(|s| format!("'{}'", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, input) in request.inputs.iter().enumerate() {
        if request.inputs[..i].iter().any(|p| p.name == input.name) {
            return Err(ServingError::InvalidInput(format!(
                "input '{}' is given twice",
                input.name.escape_default()
            )));
        }
        let Some(spec) = specs.iter().find(|s| s.name == input.name) else {
            return Err(ServingError::InvalidInput(format!(
                "model '{}' has no input named '{}'; its inputs are {}",
                model.name,
                input.name.escape_default(),
                expected()
            )));
        };
        if input.tensor.datatype() != spec.datatype {
            return Err(ServingError::InvalidInput(format!(
                "input '{}' must be {}, got {}",
                spec.name,
                spec.datatype,
                input.tensor.datatype()
            )));
        }
        let shape = &input.tensor.shape;
        let fits = shape.len() == spec.shape.len()
            && shape
                .iter()
                .zip(&spec.shape)
                .all(|(got, want)| *want < 0 || got == want);
        if !fits {
            return Err(ServingError::InvalidInput(format!(
                "input '{}' has shape {:?} but the model expects {:?} (-1 is any size)",
                spec.name, shape, spec.shape
            )));
        }
        if shape.contains(&0) {
            return Err(ServingError::InvalidInput(format!(
                "input '{}' has shape {:?} with no rows; send at least one",
                spec.name, shape
            )));
        }
        let allow_non_finite =
            bool_param(&input.parameters, "allow_non_finite") || bool_param(&request.parameters, "allow_non_finite");
        if !allow_non_finite && let Some(at) = input.tensor.data.first_non_finite() {
            return Err(ServingError::InvalidInput(format!(
                "input '{}' has a NaN or infinite value at flat position {at}; send finite numbers \
                 (for models that treat NaN as missing, set the parameter allow_non_finite: true)",
                spec.name
            )));
        }
    }
    if let Some(missing) = specs.iter().find(|s| !request.inputs.iter().any(|i| i.name == s.name)) {
        return Err(ServingError::InvalidInput(format!(
            "input '{}' is missing; model '{}' needs {}",
            missing.name,
            model.name,
            expected()
        )));
    }
    let batch: Vec<i64> = request
        .inputs
        .iter()
        .filter_map(|i| i.tensor.shape.first().copied())
        .collect();
    if batch.windows(2).any(|w| w[0] != w[1]) {
        return Err(ServingError::InvalidInput(format!(
            "inputs disagree on the batch size (first dimensions {batch:?})"
        )));
    }
    for (i, out) in request.outputs.iter().enumerate() {
        if request.outputs[..i].iter().any(|p| p.name == out.name) {
            return Err(ServingError::InvalidInput(format!(
                "output '{}' is requested twice",
                out.name.escape_default()
            )));
        }
        if !model.model.outputs().iter().any(|s| s.name == out.name) {
            let names = model
                .model
                .outputs()
                .iter()
                .map(|s| format!("'{}'", s.name))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ServingError::InvalidInput(format!(
                "model '{}' has no output named '{}'; its outputs are {names}",
                model.name,
                out.name.escape_default()
            )));
        }
    }
    Ok(())
}
